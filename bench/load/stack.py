"""The full stack for the benchmark, under `make run` settings with the local engine, but fresh: a temp folder,
a temp dynalite (persistent store inside it), free ports, its own dev CA. Nothing of the developer's running
stack is touched.

Setup steps (tables, seed load, index build) are timed apart from the cold start proper: every service process
launched at once at t0 → each one ready (health SERVING / TCP / HTTP /readyz) → the first answer through
/v1/chat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import procs
from devtools.stack import ADDR_VARS, READY, SERVICES, Stack
from services.common.tls import ensure_dev_ca


@dataclass
class BenchStack(Stack):
    root: Path = Path()
    dynalite: subprocess.Popen | None = None
    setup_s: dict[str, float] = field(default_factory=dict)
    stop_timeout: float = 10.0

    @classmethod
    def create(cls, extra_env: dict[str, str] | None = None) -> BenchStack:
        root = Path(tempfile.mkdtemp(prefix="kotoba-bench-"))
        (root / "logs").mkdir()
        ensure_dev_ca(root / "tls")
        port = procs.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTOBA_", "AWS_ENDPOINT", "OTEL_"))}
        env.update({
            "KOTOBA_ENV": "local", "KOTOBA_DATA_DIR": str(root), "KOTOBA_TABLE_PREFIX": "kotoba-",
            "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
            "KOTOBA_SNAPSHOT_URI": (root / "snapshots").as_uri(), "KOTOBA_LIVE_CA_FILE": str(root / "tls" / "ca.pem"),
            "KOTOBA_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        })
        for var in ADDR_VARS.values():
            env[var] = f"127.0.0.1:{procs.free_port()}"
        env.update(extra_env or {})
        return cls(env, root / "logs", root=root)

    def prepare(self, fixture: bool) -> None:
        """dynalite, tables, seed, snapshot — timed step by step (what `make run` does before the services)."""
        started = time.perf_counter()
        port = int(self.base_env["AWS_ENDPOINT_URL_DYNAMODB"].rsplit(":", 1)[1])
        self.dynalite, _ = procs.start_dynalite(port, self.root / "dynamodb", self.logs / "dynalite.log")
        self.setup_s["dynalite"] = time.perf_counter() - started
        for step, args in (("tables", ("db", "create-tables")),
                           ("seed_load", ("seed", "load", "--no-progress", *(("--fixture",) if fixture else ()))),
                           ("index_build", ("index", "build"))):
            t = time.perf_counter()
            self.run_cli(*args, timeout=1800)
            self.setup_s[step] = time.perf_counter() - t

    def cold_start(self, timeout: float = 180) -> dict[str, float]:
        """Launch every service at once; seconds from launch until each is ready."""
        t0 = time.perf_counter()
        for name in SERVICES:
            self.spawn(name)
        ready: dict[str, float] = {}
        deadline = t0 + timeout
        while len(ready) < len(SERVICES):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {set(SERVICES) - set(ready)}")
            for name in SERVICES:
                if name in ready:
                    continue
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.logs / name}.log")
                try:
                    if READY[name](self.addr(name)):
                        ready[name] = time.perf_counter() - t0
                except Exception:  # noqa: BLE001 - not yet
                    pass
            time.sleep(0.05)
        ready["all"] = max(ready.values())
        return ready

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    def rss_mb(self) -> dict[str, float]:
        return self._per_process(lambda proc: proc.memory_info().rss / 2**20)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by each service (with its children), dynalite, and this bench process (the
        learners' clients): sampled before and after a run, the difference is what the run cost the machine."""
        import psutil

        out = self._per_process(lambda proc: sum(sum(p.cpu_times()[:2])
                                                 for p in (proc, *proc.children(recursive=True))),
                                with_dynalite=True)
        out["bench"] = sum(psutil.Process().cpu_times()[:2])
        return out

    def _per_process(self, measure: Callable[[Any], float], *, with_dynalite: bool = False) -> dict[str, float]:
        """`measure(psutil.Process)` for each running service (and dynalite); a process gone meanwhile is left out."""
        import psutil

        pids = self.pids()
        if with_dynalite and self.dynalite is not None and self.dynalite.poll() is None:
            pids["dynalite"] = self.dynalite.pid
        out = {}
        for name, pid in pids.items():
            try:
                out[name] = measure(psutil.Process(pid))
            except psutil.Error:
                pass
        return out

    def stop(self, keep: bool = False) -> None:
        self.stop_all()
        if self.dynalite is not None:
            procs.stop(self.dynalite)
            self.dynalite = None
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
