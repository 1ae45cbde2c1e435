"""`kotoba chat --model NAME`: a private gateway for one Live model family, beside the running stack.

The gateway's model is process configuration (KOTOBA_LIVE_MODEL), so trying another family by hand
means another gateway: this starts one on a free port with the same backends (`make run`'s env),
waits until it serves, and stops it afterwards. Its log goes to .data/logs/gateway-<model>.log.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

from devtools.procs import free_port, http_ready, stop
from devtools.stack import LocalStack
from services.common import live_models
from services.common.config import REPO_ROOT, CommonConfig, addr_var


def _answers(addr: str) -> bool:
    try:
        return http_ready(addr)
    except OSError:
        return False


@contextlib.contextmanager
def gateway_for_model(model: str, common: CommonConfig | None = None) -> Iterator[str]:
    """Yield the WebSocket URL of a gateway talking to `model`; ValueError (naming the supported
    models) when the registry does not know it for the configured backend."""
    common = common or CommonConfig.from_env()
    stack = LocalStack(common)
    env = stack.env()
    live_models.validate(model, env.get("KOTOBA_LIVE_BACKEND", "local"))
    addr = f"127.0.0.1:{free_port()}"
    env.update({addr_var("gateway"): addr, "KOTOBA_LIVE_MODEL": model})
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = stack.log_dir / f"gateway-{live_models.bare_name(model)}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not _answers(addr):
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway for {model} exited; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway for {model} did not start in 60 s; see {log_path}")
            time.sleep(0.2)
        yield f"ws://{addr}/v1/chat"
    finally:
        stop(proc)
