"""services/common/waits.py: a timed wait on an event that keeps a cancel."""

from __future__ import annotations

import asyncio

from services.common.waits import wait_event


async def test_wait_event_returns_on_set_or_after_the_time_limit():
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 10) is True


async def test_a_cancel_that_arrives_as_the_event_is_set_is_kept():
    """asyncio.wait_for swallows this cancel on Python 3.11; a worker then outlives its stop()."""
    event = asyncio.Event()
    rounds = 0

    async def worker() -> None:
        nonlocal rounds
        while True:  # stops only when cancelled
            rounds += 1
            await wait_event(event, 30)
            event.clear()

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)  # the worker waits
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    if task not in done:
        task.cancel()
    assert task in done and task.cancelled() and rounds == 1
