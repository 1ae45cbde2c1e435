"""A Tools server process over the fixture seed data and the three demo learners in the session moto server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools import procs
from kotoba.v1 import tools_pb2_grpc
from services.common.auth import auth_metadata, mint_token
from services.common.aws import dynamodb_client
from services.common.config import CommonConfig
from services.common.tables import create_tables
from services.seed.learners import ensure_learners
from services.seed.load import FIXTURE_DIR, load_items
from services.seed.reader import iter_items

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ToolsEnv:
    env: dict[str, str]
    config: CommonConfig
    stub: tools_pb2_grpc.ToolsStub
    client: object  # boto3 DynamoDB client on the same moto server
    prefix: str

    def md(self, user: str, *roles: str, ttl: int | None = None) -> tuple[tuple[str, str], ...]:
        return auth_metadata(mint_token(self.config.auth, user, roles, ttl_seconds=ttl))


def _env(endpoint: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTOBA_", "AWS_ENDPOINT"))}
    env.update({"KOTOBA_ENV": "local", "KOTOBA_TABLE_PREFIX": prefix, "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def tools_env(moto_endpoint: str, tmp_path_factory) -> Iterator[ToolsEnv]:
    prefix = f"tools{uuid.uuid4().hex[:6]}-"
    port = procs.free_port()
    env = _env(moto_endpoint, prefix,
               KOTOBA_TOOLS_ADDR=f"127.0.0.1:{port}",
               # Nothing listens here: the meaning fallback must degrade, not fail.
               KOTOBA_RETRIEVAL_ADDR=f"127.0.0.1:{procs.free_port()}",
               KOTOBA_TOOLS_RETRIEVAL_TIMEOUT_MS="200",
               KOTOBA_TOOLS_CATALOG_CACHE_SECONDS="0",
               KOTOBA_TOOLS_PREFIX_POLL_SECONDS="1",
               KOTOBA_DRAIN_SECONDS="0")
    config = CommonConfig.from_env(env)
    client = dynamodb_client(config.aws)
    create_tables(client, prefix)
    items = list(iter_items(FIXTURE_DIR))
    load_items(client, prefix, FIXTURE_DIR, items=items, progress=False)
    ensure_learners(client, prefix, items)
    proc, channel = _start_tools(env, tmp_path_factory.mktemp("tools") / "tools.log")
    yield ToolsEnv(env, config, tools_pb2_grpc.ToolsStub(channel), client, prefix)
    channel.close()
    procs.stop(proc)


@pytest.fixture
def start_tools():
    """Start another Tools process: start_tools(env, log) -> (process, channel)."""
    return _start_tools


def _start_tools(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, grpc.Channel]:
    """`python -m services.tools` with this environment, once its health says SERVING."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.tools"], env=env, cwd=REPO, stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL)
    channel = grpc.insecure_channel(env["KOTOBA_TOOLS_ADDR"])

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"tools server exited: {log.read_text()[-2000:]}")
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    procs.wait_until(serving, 60, "tools server", interval=0.2)
    return proc, channel
