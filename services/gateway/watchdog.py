"""The stall watchdog: a model that owes output and sends none is nudged, then reconnected.

Armed when the model owes an answer (a learner turn was sent, tool results were sent, an answer was
`interrupted`, a NON_BLOCKING holding turn ended); disarmed by any model output (text, audio,
transcription, tool call) or the end of the turn. After `stall_s` of silence it nudges (an empty
turnComplete, harmless to a model that is merely slow); after `stall_s` more it reconnects with the
latest handle and the turn is asked again (the turn runner's `after_reconnect`, reason "stall").
The learner's own audio pushes the deadline back: while they speak the model owes nothing. Each
reconnect that output has not yet followed doubles the wait: a model that is slow rather than stuck
(a long answer being prepared, a loaded local engine) is not asked again and again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.common import metrics

log = logging.getLogger(__name__)

# kotoba.errors{component="gateway", code=…}: every stall (nudged), and those the nudge did not cure.
STALL_CODE = "upstream_stall"
STALL_RECONNECT_CODE = "upstream_stall_reconnect"


class StallWatchdog:
    def __init__(self, stall_s: float, nudge: Callable[[], Awaitable[None]],
                 reconnect: Callable[[], Awaitable[None]], session_id: Callable[[], str] = lambda: "") -> None:
        self.stall_s = stall_s
        self._nudge = nudge
        self._reconnect = reconnect
        self._session_id = session_id
        self.armed_for = ""  # why the model owes output; "" when it owes none
        self._deadline = 0.0
        self._stage = 0  # 0: waiting, 1: nudged
        self._strikes = 0  # reconnects since the model last said anything
        self._task: asyncio.Task | None = None
        self.nudges = 0
        self.reconnects = 0

    def arm(self, why: str, extra_s: float = 0.0) -> None:
        """Start waiting for model output, naming what it is waited for."""
        self.armed_for = why
        self._stage = 0
        self._deadline = time.monotonic() + self._wait() + extra_s
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="stall-watchdog")

    def touch(self) -> None:
        """Activity that explains the silence (the learner is speaking): start the wait again."""
        if self.armed_for:
            self._deadline = max(self._deadline, time.monotonic() + self._wait())

    def output(self) -> None:
        """Note that the model produced output: stop waiting and forget earlier stalls."""
        self.armed_for = ""
        self._strikes = 0

    def _wait(self) -> float:
        return self.stall_s * 2 ** min(self._strikes, 5)

    def stop(self) -> None:
        """Stop watching for stalls."""
        self.armed_for = ""
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while self.armed_for:
            left = self._deadline - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue
            why = self.armed_for
            attrs = {"session_id": self._session_id(), "after": why, "stall_s": self.stall_s}
            if self._stage == 0:
                self._stage = 1
                self.nudges += 1
                self._deadline = time.monotonic() + self._wait()
                log.warning("upstream stalled; nudging", extra=attrs)
                metrics.errors.add(1, {"component": "gateway", "code": STALL_CODE})
                await self._nudge()
                continue
            self.reconnects += 1
            self._strikes += 1
            self.armed_for = ""
            log.warning("upstream stalled; reconnecting", extra=attrs)
            metrics.errors.add(1, {"component": "gateway", "code": STALL_RECONNECT_CODE})
            await self._reconnect()
