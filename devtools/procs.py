"""Start and stop helper processes (dynalite, moto server) and wait until they really answer."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from services.common.config import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f": {last}" if last else ""))


def grpc_serving(addr: str) -> bool:
    """True when the gRPC health service at addr says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(addr) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def tcp_open(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1):
        return True


def http_ready(addr: str) -> bool:
    """The gateway's /readyz answers 200."""
    import urllib.request

    with urllib.request.urlopen(f"http://{addr}/readyz", timeout=1) as r:
        return r.status == 200


def _open_log(path: Path | None):
    """A log file for a child process (created with its folder); devnull when none is wanted."""
    if path is None:
        return open(os.devnull, "ab")  # noqa: SIM115 - handed to the child
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")  # noqa: SIM115


def dynamodb_answers(endpoint: str) -> bool:
    """Readiness by a real call: dynalite prints "listening" even when its store cannot be opened."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    client.list_tables(Limit=1)
    return True


def start_moto(port: int | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A moto server process (DynamoDB + S3) on a free port. Logs go to a file: a full pipe blocks moto."""
    port = port or free_port()
    log = _open_log(log_path)
    proc = subprocess.Popen(
        [str(Path(os.sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: proc.poll() is None and dynamodb_answers(endpoint), 30, "moto server")
    return proc, endpoint


def start_dynalite(port: int, path: Path | None, log_path: Path | None = None,
                   create_table_ms: int = 0) -> tuple[subprocess.Popen, str]:
    binary = REPO_ROOT / "node_modules" / ".bin" / "dynalite"
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", str(create_table_ms)]
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        args += ["--path", str(path)]
    log = _open_log(log_path)
    proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: proc.poll() is None and dynamodb_answers(endpoint), 30, "dynalite")
    return proc, endpoint


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
