"""The one launcher of Kotoba's services as local processes: `make run`, the end-to-end tests and the bench.

`Stack` starts each service (`python -m services.<name>`) with one environment, waits until it really
answers (gRPC health SERVING, TCP accept for the engine, `/readyz` for the gateway) and stops it again.
tests/support/kotoba_stack.py and bench/load/stack.py build on it; `LocalStack` below is `make run` /
`make stop` / `make status`: dynalite with a persistent store under .data/dynamodb, tables, seed data and a
snapshot (both skipped when nothing changed), every service detached as soon as what it needs is there and
all of them coming up together, with pid files in .data/pids so `make stop` stops exactly what was started.

Dev tooling only: the production image copies services/ and nothing of this package.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devtools import procs
from services.common.auth import mint_token
from services.common.config import REPO_ROOT, CommonConfig

# Services in start order.
SERVICES = ("retrieval", "tools", "conversations", "local_live", "gateway")
ADDR_VARS = {"retrieval": "KOTOBA_RETRIEVAL_ADDR", "tools": "KOTOBA_TOOLS_ADDR",
             "conversations": "KOTOBA_CONVERSATIONS_ADDR", "local_live": "KOTOBA_LIVE_ADDR",
             "gateway": "KOTOBA_GATEWAY_ADDR"}
READY: dict[str, Callable[[str], bool]] = {
    "retrieval": procs.grpc_serving, "tools": procs.grpc_serving, "conversations": procs.grpc_serving,
    "local_live": procs.tcp_open, "gateway": procs.http_ready,
}


def ready_check(name: str) -> Callable[[str], bool]:
    """How to tell a service is up; extra gateways ("gateway-idle", …) are gateways."""
    return READY.get(name) or READY["gateway" if name.startswith("gateway") else name]


@dataclass
class Stack:
    """Services as child processes of this one, on the addresses named in `base_env`."""

    base_env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    gateway_addr: str = ""
    stop_timeout: float = 5.0

    @property
    def config(self) -> CommonConfig:
        return CommonConfig.from_env(self.base_env)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, **extra}

    def addr(self, service: str) -> str:
        if service == "gateway" and self.gateway_addr:
            return self.gateway_addr
        return self.base_env[ADDR_VARS[service]]

    def token(self, user: str, *roles: str) -> str:
        return mint_token(self.config.auth, user, roles)

    @property
    def url(self) -> str:
        return f"ws://{self.addr('gateway')}/v1/chat"

    def run_cli(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.base_env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"kotoba {' '.join(args)} failed: {out.stderr[-2000:]}")
        return out.stdout

    def spawn(self, name: str, module: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([sys.executable, "-m", module or f"services.{name}"], env=env or self.base_env,
                                cwd=REPO_ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        return proc

    def wait_ready(self, name: str, proc: subprocess.Popen, addr: str, timeout: float) -> None:
        check = ready_check(name)
        procs.wait_until(lambda: proc.poll() is None and check(addr), timeout, name, interval=0.1)

    def start_service(self, name: str, timeout: float = 120) -> float:
        """Start one service and wait until it answers; seconds it took."""
        started = time.perf_counter()
        proc = self.spawn(name)
        self.wait_ready(name, proc, self.addr(name), timeout)
        return time.perf_counter() - started

    def stop_service(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            procs.stop(proc, timeout=self.stop_timeout)

    def start_gateway(self, name: str = "gateway", **extra: str) -> str:
        """A gateway process on a free port with `extra` settings; returns its host:port."""
        addr = f"127.0.0.1:{procs.free_port()}"
        proc = self.spawn(name, "services.gateway", self.env(KOTOBA_GATEWAY_ADDR=addr, **extra))
        self.wait_ready(name, proc, addr, 60)
        return addr

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop_service(name)


class LocalStack:
    """`make run`: the whole product on this machine, detached, surviving this process (pid files)."""

    def __init__(self, config: CommonConfig) -> None:
        self.config = config
        self.pid_dir = config.data_dir / "pids"
        self.log_dir = config.data_dir / "logs"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("AWS_ENDPOINT_URL_DYNAMODB", self.config.aws.dynamodb_endpoint)
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        env.setdefault("AWS_DEFAULT_REGION", self.config.aws.region)
        env.setdefault("KOTOBA_SNAPSHOT_URI", (self.config.data_dir / "snapshots").resolve().as_uri())
        env.setdefault("KOTOBA_LIVE_CA_FILE", str((self.config.data_dir / "tls" / "ca.pem").resolve()))
        # Restarts start Tools from the words of its last full build (rebuilt at once in the background).
        env.setdefault("KOTOBA_TOOLS_PREFIX_CACHE", str((self.config.data_dir / "cache" / "tools-prefix.json").resolve()))
        env["PYTHONPATH"] = str(REPO_ROOT)
        return env

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.pid_dir / name).read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def _spawn(self, name: str) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=self.env(), cwd=REPO_ROOT, start_new_session=True)
        (self.pid_dir / name).write_text(str(proc.pid))

    def _run(self, what: str, argv: list[str]) -> None:
        """One `kotoba` step in this process: three interpreters importing boto3 and every CLI area one
        after another cost more than the checks themselves on a restart with nothing changed."""
        from services import cli  # here, not at the top: `make stop` and `make status` need none of it

        print(f"==> {what}", flush=True)
        os.environ.update(self.env())
        if cli.main(argv) != 0:
            raise RuntimeError(f"kotoba {' '.join(argv)} failed")

    def up(self) -> None:
        """Each service starts as soon as what it needs is there, and they come up together: the engine needs
        nothing (its models load meanwhile), conversations and the gateway the tables, tools the seed (its
        prefix index is built from the items at start), retrieval the snapshot. The seed load and the index
        build are skipped when nothing changed (`--if-changed`), so a restart takes seconds."""
        started = time.monotonic()
        # The steps below run in this process (_run): their imports load while dynalite starts.
        importing = threading.Thread(target=importlib.import_module, args=("services.cli",), daemon=True)
        importing.start()
        endpoint = self.config.aws.dynamodb_endpoint
        if self._pid("dynalite") is None:
            port = int(endpoint.rsplit(":", 1)[1])
            proc, _ = procs.start_dynalite(port, self.config.data_dir / "dynamodb", self.log_dir / "dynalite.log",
                                           create_table_ms=0)
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / "dynalite").write_text(str(proc.pid))
            print(f"==> dynalite on {endpoint} (store {self.config.data_dir / 'dynamodb'})", flush=True)
        else:
            procs.wait_until(lambda: procs.dynamodb_answers(endpoint), 30, "dynalite")
        self._start("local_live")
        importing.join()
        self._run("tables", ["db", "create-tables"])
        # Tools starts beside the seed check (its prefix index scan is the slowest start): restarted if the
        # check finds the seed changed and loads it.
        self._start("conversations", "gateway", "tools")
        if not self._seed_is_current():
            self._run("seed data", ["seed", "load"])
            cache = self.env()["KOTOBA_TOOLS_PREFIX_CACHE"]
            self._restart("tools", forget=Path(cache) if cache else None)
        self._run("index snapshot", ["index", "build", "--if-changed"])
        self._start("retrieval")
        waiting = {name: self.config.addr("live" if name == "local_live" else name) for name in SERVICES}
        deadline = time.monotonic() + 120
        while waiting:
            for name, addr in list(waiting.items()):
                try:
                    up = self._ready(name, addr)
                except RuntimeError:  # the process exited
                    raise
                except Exception:  # noqa: BLE001 - not answering yet
                    up = False
                if up:
                    del waiting[name]
                    print(f"==> {name:14} ready on {addr} ({time.monotonic() - started:.1f}s)", flush=True)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after 120 s: {', '.join(waiting)}")
            time.sleep(0.1)
        print(f"Kotoba is up in {time.monotonic() - started:.1f}s. Open http://{self.config.addr('gateway')}/ "
              f"(token: kotoba token --user demo-n5). Logs: {self.log_dir}. Stop: make stop.")

    def _seed_is_current(self) -> bool:
        from services.common.aws import dynamodb_client
        from services.common.seed_stamp import seed_digest
        from services.seed.cli import seed_is_current
        from services.seed.load import DEFAULT_SEED_DIR

        digest = seed_digest(DEFAULT_SEED_DIR)
        current = seed_is_current(dynamodb_client(self.config.aws), self.config.aws.table_prefix, digest)
        if current:
            print(f"==> seed data unchanged since the last load ({DEFAULT_SEED_DIR}, digest {digest[:12]})", flush=True)
        return current

    def _restart(self, name: str, forget: Path | None = None) -> None:
        # Waited for even when an earlier `make run` started it: the new one needs its port.
        self._stop(name)
        if forget is not None:  # a cache made stale by the restart's cause (Tools: new seed words)
            forget.unlink(missing_ok=True)
        self._spawn(name)

    def _start(self, *names: str) -> None:
        for name in names:
            if self._pid(name) is None:
                self._spawn(name)

    def _ready(self, name: str, addr: str) -> bool:
        if self._pid(name) is None:
            raise RuntimeError(f"{name} exited; see {self.log_dir / (name + '.log')}")
        return ready_check(name)(addr)

    def down(self) -> None:
        for name in [*reversed(SERVICES), "dynalite"]:
            if self._stop(name):
                print(f"stopped {name}")

    def _stop(self, name: str) -> bool:
        """SIGTERM, up to 15 s to drain, then SIGKILL; False when it was not running."""
        pid = self._pid(name)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._running(name, pid):
                time.sleep(0.1)
            if self._running(name, pid):
                os.kill(pid, signal.SIGKILL)
        (self.pid_dir / name).unlink(missing_ok=True)
        return pid is not None

    def _running(self, name: str, pid: int) -> bool:
        # A process this one started stays a zombie (and answers signals) until it is reaped here.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return self._pid(name) is not None

    def status(self) -> dict[str, int | None]:
        return {name: self._pid(name) for name in ["dynalite", *SERVICES]}


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack")
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    stack = LocalStack(CommonConfig.from_env())
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    else:
        print(json.dumps(stack.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
