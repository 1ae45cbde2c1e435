"""IAM from evidence, as a pytest plugin (hooks imported by tests/conftest.py).

Every test run logs the AWS calls each workload makes (services/common/aws.py, IAM_EVIDENCE_FILE; service
subprocesses inherit the variable) and fails when one is not allowed by the workload's generated policy in
k8s/overlays/prod/iam/. With KOTOBA_IAM_RECORD=1 the run instead adds what it saw to
k8s/iam/operations.json and regenerates the policies (deploy/iam.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from services.common.aws import OPLOG_VAR

_OWNED: list[Path] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get(OPLOG_VAR):
        fd, path = tempfile.mkstemp(prefix="kotoba-iam-", suffix=".jsonl")
        os.close(fd)
        os.environ[OPLOG_VAR] = path
        _OWNED.append(Path(path))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from deploy import iam

    path = Path(os.environ.get(OPLOG_VAR, ""))
    lines = iam.read_log(path) if path.is_file() else []
    for owned in _OWNED:
        owned.unlink(missing_ok=True)
    if os.environ.get("KOTOBA_IAM_RECORD") == "1":
        iam.write_evidence(iam.merge(iam.load_evidence(), iam.normalise(lines)))
        iam.write_policies()
        return
    problems = iam.missing(lines)
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for p in problems:
            (reporter.write_line if reporter else print)(f"IAM: {p}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
