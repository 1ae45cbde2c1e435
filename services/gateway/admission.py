"""Admission of session opens: a burst of new sessions queues fairly instead of slowing every session.

Opening a session costs more than a turn (the learner's context, the connections row, a new upstream Live
session), so a morning rush or every client reconnecting after a deploy could otherwise starve the turns of
the learners already talking. Opens take one of `max_opens` slots, first come first served; they also wait
while this process has `turn_saturation` turns in flight (turns of open sessions keep priority). A learner
whose wait would exceed `max_wait_s` is told at once — `server_busy` with a retry-after — instead of
waiting in a queue that cannot serve them in time (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# How often an open held back by busy turns looks again (turns end on their own schedule, unannounced).
TURN_POLL_S = 0.02
# An open's cost before any was measured; then a moving average of the measured ones.
INITIAL_OPEN_S = 0.05
EWMA = 0.2


@dataclass
class Slot:
    """One admitted open, held until `release`. Its cost counts from the grant, not from the learner's
    arrival: counting the wait in the queue made every queued open look slower, the expected wait grow
    with the queue, and a 200-session burst be told to come back in 6-8 s instead of being served."""

    admission: Admission
    granted_at: float
    held: bool = True

    def release(self, *, done: bool) -> None:
        """Give the slot back (once); `done`: the open finished, so its duration feeds the average."""
        if self.held:
            self.held = False
            self.admission.leave(self.admission.clock() - self.granted_at if done else None)


class Admission:
    def __init__(self, max_opens: int, max_wait_s: float, turn_saturation: int,
                 turns_in_flight: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_opens = max_opens
        self.max_wait_s = max_wait_s
        self.turn_saturation = turn_saturation
        self.turns_in_flight = turns_in_flight
        self.clock = clock
        self.opening = 0
        self.open_s = INITIAL_OPEN_S
        self._queue: collections.deque[asyncio.Future[float]] = collections.deque()
        self._poller: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        """Number of openings still waiting for a slot."""
        return sum(1 for f in self._queue if not f.done())

    def queueing(self) -> bool:
        """Whether opens are waiting for a slot (a burst): work that can wait (early connects, pool refills,
        turn-log records) waits with them."""
        return self.queued > 0

    def has_room(self) -> bool:
        """Whether an open arriving now would be let in at once."""
        return not self.queueing() and self._room()

    def _room(self) -> bool:
        return self.opening < self.max_opens and self.turns_in_flight() < self.turn_saturation

    def expected_wait_s(self) -> float:
        """How long a newcomer would wait: the opens ahead of it, `max_opens` at a time, at the recent cost."""
        ahead = self.queued + self.opening
        if ahead < self.max_opens:
            return 0.0
        return ((ahead - self.max_opens) // self.max_opens + 1) * self.open_s

    def retry_after_s(self) -> int:
        """Whole seconds a refused client should wait before trying again."""
        return max(1, math.ceil(self.expected_wait_s()))

    async def enter(self) -> Slot | int:
        """A Slot once admitted (release it when the open is done); else the seconds to tell the learner
        to wait before retrying."""
        if self.has_room():
            self.opening += 1
            return Slot(self, self.clock())
        if self.expected_wait_s() > self.max_wait_s:
            return self.retry_after_s()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        self._wake()
        try:
            granted_at = await asyncio.wait_for(fut, self.max_wait_s)
        except TimeoutError:
            return self.retry_after_s()
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.leave(None)  # admitted just as the learner went away: the slot goes to the next one
            raise
        finally:
            self._drop_done()
        return Slot(self, granted_at)

    def leave(self, took_s: float | None) -> None:
        """Free an opening slot, fold its duration into the average, and wake the next waiter."""
        self.opening -= 1
        if took_s is not None:
            self.open_s += EWMA * (took_s - self.open_s)
        self._wake()

    def _drop_done(self) -> None:
        while self._queue and self._queue[0].done():
            self._queue.popleft()

    def _wake(self) -> None:
        """Admit from the head of the queue while there is room."""
        self._drop_done()
        while self._queue and self._room():
            fut = self._queue.popleft()
            if fut.done():
                continue  # gave up waiting
            self.opening += 1
            fut.set_result(self.clock())
        self._drop_done()
        if self._queue and self.opening < self.max_opens and (self._poller is None or self._poller.done()):
            # Held back by turns, not by opens: nothing else will call _wake when a turn ends.
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._queue:
            await asyncio.sleep(TURN_POLL_S)
            self._wake()

