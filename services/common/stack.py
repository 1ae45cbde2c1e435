"""`make run` / `make stop`: bring the whole product up on one machine, or down.

Starts dynalite (persistent store under .data/dynamodb), creates tables,
loads the seed data, builds the index snapshot, then starts every service
in dependency order and waits until each one answers its health check.
Process ids live in .data/pids so `make stop` stops exactly what was started.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.config import REPO_ROOT, CommonConfig
from services.common.procs import (
    dynamodb_answers,
    grpc_serving,
    http_ready,
    start_dynalite,
    tcp_open,
    wait_until,
)

# Services in start order; a service without a __main__ yet is skipped.
SERVICES = ("retrieval", "tools", "conversations", "local_live", "gateway")
GRPC_SERVICES = {"retrieval", "tools", "conversations"}


@dataclass
class Stack:
    config: CommonConfig

    @property
    def pid_dir(self) -> Path:
        return self.config.data_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.config.data_dir / "logs"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("AWS_ENDPOINT_URL_DYNAMODB", self.config.aws.dynamodb_endpoint)
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        env.setdefault("AWS_DEFAULT_REGION", self.config.aws.region)
        env.setdefault("KOTOBA_SNAPSHOT_URI", (self.config.data_dir / "snapshots").resolve().as_uri())
        env.setdefault("KOTOBA_LIVE_CA_FILE", str((self.config.data_dir / "tls" / "ca.pem").resolve()))
        env["PYTHONPATH"] = str(REPO_ROOT)
        return env

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.pid_dir / name).read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env(),
                                cwd=REPO_ROOT, start_new_session=True)
        (self.pid_dir / name).write_text(str(proc.pid))
        return proc

    def _run(self, what: str, argv: list[str]) -> None:
        print(f"==> {what}", flush=True)
        subprocess.run(argv, check=True, env=self.env(), cwd=REPO_ROOT)

    def up(self) -> None:
        started = time.monotonic()
        endpoint = self.config.aws.dynamodb_endpoint
        if self._pid("dynalite") is None:
            port = int(endpoint.rsplit(":", 1)[1])
            proc, _ = start_dynalite(port, self.config.data_dir / "dynamodb", self.log_dir / "dynalite.log",
                                     create_table_ms=0)
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / "dynalite").write_text(str(proc.pid))
            print(f"==> dynalite on {endpoint} (store {self.config.data_dir / 'dynamodb'})", flush=True)
        else:
            wait_until(lambda: dynamodb_answers(endpoint), 30, "dynalite")
        kotoba = [sys.executable, "-m", "services.cli"]
        self._run("tables", [*kotoba, "db", "create-tables"])
        if _has("services.seed.cli"):
            self._run("seed data", [*kotoba, "seed", "load"])
        if _has("services.indexer.cli"):
            self._run("index snapshot", [*kotoba, "index", "build"])
        for name in SERVICES:
            if not _has(f"services.{name}.__main__"):
                continue
            if self._pid(name) is None:
                self._spawn(name, [sys.executable, "-m", f"services.{name}"])
            addr = self.config.addr("live" if name == "local_live" else name)
            wait_until(lambda n=name, a=addr: self._ready(n, a), 120, name, interval=0.2)
            print(f"==> {name:14} ready on {addr}", flush=True)
        print(f"Kotoba is up in {time.monotonic() - started:.1f}s. Open http://{self.config.addr('gateway')}/ "
              f"(token: kotoba token --user demo-n5). Logs: {self.log_dir}. Stop: make stop.")

    def _ready(self, name: str, addr: str) -> bool:
        if self._pid(name) is None:
            raise RuntimeError(f"{name} exited; see {self.log_dir / (name + '.log')}")
        if name in GRPC_SERVICES:
            return grpc_serving(addr)
        return http_ready(addr) if name == "gateway" else tcp_open(addr)

    def down(self) -> None:
        for name in [*reversed(SERVICES), "dynalite"]:
            pid = self._pid(name)
            if pid is None:
                (self.pid_dir / name).unlink(missing_ok=True)
                continue
            os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._pid(name) is not None:
                time.sleep(0.1)
            if self._pid(name) is not None:
                os.kill(pid, signal.SIGKILL)
            (self.pid_dir / name).unlink(missing_ok=True)
            print(f"stopped {name}")

    def status(self) -> dict[str, int | None]:
        return {name: self._pid(name) for name in ["dynalite", *SERVICES]}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.stack")
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    stack = Stack(CommonConfig.from_env())
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    else:
        print(json.dumps(stack.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
