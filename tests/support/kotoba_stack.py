"""The whole product as real processes for end-to-end tests: retrieval, tools, conversations and the local
Live engine (free ports, the session moto server, a fixture seed load and a snapshot from `kotoba index
build`), plus a gateway in front of them. One instance per test session (the `stack` fixture in
tests/conftest.py) serves the gateway, fault, fuzz and abuse tests: `stack.env()` gives the environment,
`stack.start_gateway(**env)` another gateway with different settings, `stack.stop_service(name)` /
`stack.start_service(name)` take a backend down and up again.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from devtools import procs
from devtools.stack import Stack
from services.common.tls import ensure_dev_ca

REPO = Path(__file__).resolve().parents[2]

__all__ = ["Stack", "make_env", "start_stack"]


def make_env(endpoint: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a service or CLI run against the test moto server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTOBA_", "AWS_ENDPOINT"))}
    env.update({
        "KOTOBA_ENV": "local",
        "KOTOBA_TABLE_PREFIX": prefix,
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(REPO),
    })
    env.update(extra)
    return env


def start_stack(moto_endpoint: str, root: Path, **overrides: str) -> Stack:
    """Create tables, load the fixture seed, build a snapshot and start every service under `root`.

    `overrides` replace the test defaults below (e.g. rate limits or log level for a benchmark)."""
    logs = root / "logs"
    logs.mkdir()
    tls = root / "tls"
    ensure_dev_ca(tls)
    ports = {f"KOTOBA_{s.upper()}_ADDR": f"127.0.0.1:{procs.free_port()}" for s in ("retrieval", "tools",
                                                                                     "conversations", "live")}
    env = make_env(moto_endpoint, f"gw{uuid.uuid4().hex[:6]}-", **ports,
                   KOTOBA_DATA_DIR=str(root), KOTOBA_SNAPSHOT_URI=(root / "snapshots").as_uri(),
                   KOTOBA_LIVE_CA_FILE=str(tls / "ca.pem"), KOTOBA_LOG_LEVEL="INFO",
                   KOTOBA_GATEWAY_ALLOW_FAULTS="1", KOTOBA_GATEWAY_MESSAGES_PER_MINUTE="2000",
                   KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER="6", KOTOBA_GATEWAY_RECONNECT_BASE_DELAY_S="0.05",
                   KOTOBA_DRAIN_SECONDS="1",
                   # A whole suite asks the demo learners hundreds of questions, each billed with its context
                   # as Live does; the budget test spends past this on purpose.
                   KOTOBA_GATEWAY_DAILY_BUDGET_USD="100")
    env.update(overrides)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    s = Stack(env, logs)
    started = time.monotonic()
    try:
        s.run_cli("db", "create-tables")
        s.run_cli("seed", "load", "--fixture", "--no-progress")
        s.run_cli("index", "build")
        for name in ("retrieval", "tools", "conversations", "local_live"):
            s.start_service(name)
        s.gateway_addr = s.start_gateway()
    except Exception:
        s.stop_all()
        for log in logs.iterdir():
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    print(f"stack up in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return s
