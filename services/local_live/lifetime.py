"""The session rules of a Live model family on one connection: connection lifetime with goAway,
the audio/video session deadline, and the goAway faults."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from services.common.waits import wait_event
from services.local_live import protocol as p

if TYPE_CHECKING:
    from services.local_live.connection import Connection


class SessionRules:
    """Timers that end a connection the way Gemini does (goAway first, then the close)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._timers: list[asyncio.Task[None]] = []
        self._limits_changed = asyncio.Event()

    def start(self) -> None:
        """Arm the timers once setup is accepted: fault goAways, and the family's lifetime and deadline."""
        session, faults = self.conn.session, self.conn.faults
        assert session is not None
        if faults.goaway_after_seconds:
            self._timers.append(asyncio.create_task(self._go_away_later(faults.goaway_after_seconds)))
        if not session.family.permissive:
            self._timers.append(asyncio.create_task(self._connection_lifetime()))
            self._timers.append(asyncio.create_task(self._session_deadline()))

    def limits_changed(self) -> None:
        """Audio or video arrived for the first time: the session deadline may now be shorter."""
        self._limits_changed.set()

    def turn_finished(self) -> None:
        """Called after turnComplete: goAway after N turns (fault injection)."""
        session, faults = self.conn.session, self.conn.faults
        assert session is not None
        if faults.goaway_after_turns and session.turns == faults.goaway_after_turns:
            self._timers.append(asyncio.create_task(self._go_away_later(0)))

    def cancel(self) -> None:
        """The connection is over: no goAway or close is due any more."""
        for timer in self._timers:
            timer.cancel()

    async def _connection_lifetime(self) -> None:
        """The family's connection lifetime: goAway{timeLeft} shortly before the close (model clock)."""
        assert self.conn.session is not None
        limits, clock = self.conn.session.family.limits, self.conn.engine.clock
        await clock.sleep(limits.connection_s - limits.go_away_before_s)
        await self.conn.send(p.go_away(clock.real(limits.go_away_before_s)))
        await clock.sleep(limits.go_away_before_s)
        await self.conn.close(p.CLOSE_GOING_AWAY, "connection lifetime reached (goAway sent earlier)")

    def _session_deadline_at(self) -> float | None:
        """When the conversation must end (model clock): audio sessions without context-window
        compression (shorter once video arrived), and the family's hard deadline if it has one."""
        s = self.conn.session
        assert s is not None
        limits = s.family.limits
        deadlines = []
        if limits.hard_deadline_s is not None:
            deadlines.append(s.started_at + limits.hard_deadline_s)
        if not s.compression and (s.audio_out or self.conn.media.audio.any_audio or s.saw_video):
            deadlines.append(s.started_at + (limits.audio_video_session_s if s.saw_video else limits.audio_session_s))
        return min(deadlines) if deadlines else None

    async def _session_deadline(self) -> None:
        clock = self.conn.engine.clock
        while True:
            self._limits_changed.clear()
            deadline = self._session_deadline_at()
            if deadline is not None and deadline <= clock.now():
                # The wording users report for 3.8's 58:00 cut; the 15-/2-minute ends are assumed alike.
                await self.conn.close(p.CLOSE_INTERNAL, "Deadline expired.")
                return
            timeout = None if deadline is None else clock.real(deadline - clock.now())
            await wait_event(self._limits_changed, timeout)

    async def _go_away_later(self, delay: float) -> None:
        faults = self.conn.faults
        await asyncio.sleep(delay)
        await self.conn.send(p.go_away(faults.goaway_time_left))
        await asyncio.sleep(faults.goaway_time_left)
        await self.conn.close(p.CLOSE_GOING_AWAY, "session lifetime reached (goAway sent earlier)")
