"""Waiting on an asyncio.Event with a time limit, without losing a cancel.

`asyncio.wait_for(event.wait(), timeout)` on Python 3.11 returns normally when the event is set in the same
turn of the loop as the waiting task is cancelled: the cancel is swallowed, and a loop built around the wait
(a worker, a deadline watcher) goes on after it was told to stop. `asyncio.timeout` keeps the cancel.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until `event` is set or `timeout_s` seconds pass (None: no limit); whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()
