"""How every service process learns it must stop: SIGTERM (Kubernetes, `make stop`) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT; call from inside the running loop, then drain and exit when set."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # loops without signal support (not on Linux)
            loop.add_signal_handler(sig, stop.set)
    return stop
