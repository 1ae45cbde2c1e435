"""Upstream Live sessions connected ahead of need, so that opening a learner session does not wait for one.

A session's first upstream opens with the opening instruction (prompts.opening_instruction: nothing of the
learner) and gets the learner's instruction in a contextUpdate (link.py). That setup is the same for every
session of a mode, so the gateway keeps `size` of them connected per mode; a session takes one and a
replacement connects in the background. A parked upstream that is told to go away, or drops, is replaced.
A setup that is the learner's own (a resumption handle, a test's fault header) never comes from here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from google import genai
from google.genai import types

from services.gateway import prompts
from services.gateway.link import session_setup
from services.gateway.live import Upstream
from services.gateway.session_parts import LinkSettings

log = logging.getLogger(__name__)

MODES = ("text", "audio")
RETRY_AFTER_FAILURE_S = 5.0  # a failed connect pauses refilling: the upstream may be down, sessions still try
# A replacement connects this long after a take: not beside the reads of the open that took one (on a busy
# machine they would share the CPU), and a burst of opens takes what is parked before refilling starts.
REFILL_DELAY_S = 0.2


@dataclass
class Parked:
    """A connected upstream waiting for a session, and the resumption handle it was last given."""

    mode: str
    upstream: Upstream | None = None
    handle: str = ""
    resumable: bool = False


class _ParkedHandler:
    """Reads a parked upstream's messages until a session takes it (then the session's link does)."""

    def __init__(self, pool: UpstreamPool, parked: Parked) -> None:
        self.pool = pool
        self.parked = parked

    async def on_upstream_message(self, msg: types.LiveServerMessage) -> None:
        """Keep the newest resumption handle; a goAway retires the upstream."""
        update = msg.session_resumption_update
        if update is not None and update.new_handle:
            self.parked.handle, self.parked.resumable = update.new_handle, bool(update.resumable)
        if msg.go_away is not None:
            self.pool.retire(self.parked)

    async def on_upstream_lost(self, exc: BaseException | None) -> None:
        """A parked upstream that dropped is of no use: replace it."""
        self.pool.retire(self.parked)


class UpstreamPool:
    def __init__(self, client: genai.Client, settings: LinkSettings, size: int,
                 busy: Callable[[], bool] = lambda: False) -> None:
        self.client = client
        self.settings = settings
        self.size = size
        self.busy = busy  # opens are queueing: sessions connect their own (chat.py), refilling waits
        self._parked: dict[str, collections.deque[Parked]] = {m: collections.deque() for m in MODES}
        self._connecting = {m: 0 for m in MODES}
        self._tasks: set[asyncio.Task] = set()
        self._paused_until = {m: 0.0 for m in MODES}  # per mode: an engine without voice refuses audio only
        self._closed = False

    def parked(self, mode: str) -> list[Parked]:
        """The connected upstreams of `mode` waiting for a session, oldest first."""
        return list(self._parked[mode])

    def start(self) -> None:
        """Connect the first ones (in the background)."""
        for mode in MODES:
            self._fill(mode)

    def take(self, mode: str) -> Parked | None:
        """A connected upstream for a session of `mode` (its handler is the caller's to set), or None."""
        queue = self._parked.get(mode)
        taken = queue.popleft() if queue else None
        if mode in self._parked:
            self._fill(mode, delay_s=REFILL_DELAY_S)
        return taken

    def retire(self, parked: Parked) -> None:
        """Drop a parked upstream (told to go away, or dropped) and connect another."""
        with contextlib.suppress(ValueError):
            self._parked[parked.mode].remove(parked)
            if parked.upstream is not None:
                self._spawn(parked.upstream.close())
            self._fill(parked.mode)

    async def close(self) -> None:
        """Stop refilling and close every parked upstream."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._parked.values():
            while queue:
                parked = queue.popleft()
                if parked.upstream is not None:
                    await parked.upstream.close()

    def _fill(self, mode: str, delay_s: float = 0.0) -> None:
        if self._closed or time.monotonic() < self._paused_until[mode]:
            return
        for _ in range(self.size - len(self._parked[mode]) - self._connecting[mode]):
            self._connecting[mode] += 1  # counted now: takes before the task runs must not connect more
            self._spawn(self._connect(mode, delay_s))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, mode: str, delay_s: float = 0.0) -> None:
        parked = Parked(mode)
        try:
            await asyncio.sleep(delay_s)
            while self.busy():  # noqa: ASYNC110 - polled: the admission queue has no event to wait on
                await asyncio.sleep(REFILL_DELAY_S)
            upstream = Upstream(self.client, self.settings.model, _ParkedHandler(self, parked))
            await upstream.open(session_setup(self.settings, mode, prompts.opening_instruction(mode)))
        except Exception as exc:  # noqa: BLE001 - sessions open their own meanwhile
            log.info("upstream pool: connect failed", extra={"mode": mode, "error": repr(exc)})
            self._paused_until[mode] = time.monotonic() + RETRY_AFTER_FAILURE_S
            return
        finally:
            self._connecting[mode] -= 1
        parked.upstream = upstream
        if self._closed:
            await upstream.close()
            return
        self._parked[mode].append(parked)
