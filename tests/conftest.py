"""Shared fixtures: a real moto server process per test session, tables per test, config and tokens.

Tests never patch boto3 in-process: they talk HTTP to moto (or dynalite) like production talks to AWS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import procs
from services.common.auth import mint_token
from services.common.aws import dynamodb_client
from services.common.config import CommonConfig
from services.common.tables import create_tables
from tests.support.kotoba_stack import make_env

REPO = Path(__file__).resolve().parents[1]
# IAM from evidence: every run checks the AWS calls it saw against the generated prod policies.
from tests.support.iam_record import pytest_sessionfinish, pytest_sessionstart  # noqa: E402,F401

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    """One moto server process (DynamoDB + S3) for the whole test session, on a free port."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc, endpoint = procs.start_moto(log_path=log)
    yield endpoint
    procs.stop(proc)




@pytest.fixture
def table_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def aws_env(moto_endpoint: str, table_prefix: str) -> dict[str, str]:
    return make_env(moto_endpoint, table_prefix)


@pytest.fixture
def config(aws_env: dict[str, str]) -> CommonConfig:
    return CommonConfig.from_env(aws_env)


@pytest.fixture
def tables(config: CommonConfig) -> CommonConfig:
    """Fresh tables under a unique prefix on the shared moto server."""
    create_tables(dynamodb_client(config.aws), config.aws.table_prefix)
    return config


@pytest.fixture
def token_for(config: CommonConfig):
    def mint(user: str, *roles: str, ttl: int | None = None) -> str:
        return mint_token(config.auth, user, roles, ttl_seconds=ttl)

    return mint


@pytest.fixture(scope="session")
def stack(moto_endpoint: str, tmp_path_factory):
    """The whole product as real processes, once per test session (see tests/support/kotoba_stack.py)."""
    from tests.support.kotoba_stack import start_stack

    running = start_stack(moto_endpoint, tmp_path_factory.mktemp("stack"))
    yield running
    running.stop_all()


@pytest.fixture(scope="session")
def kit():
    """Fault, fuzz and abuse helpers (tests/support/faultkit.py)."""
    from tests.support import faultkit

    return faultkit
