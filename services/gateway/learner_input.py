"""What a chat session refuses and how it takes media: bad-frame counting, the closing refusals, and the
learner's audio and camera frames with their rate and budget checks (chat.py dispatches to these)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

from services.common import metrics
from services.common.auth import Identity
from services.gateway import protocol
from services.gateway.link import UpstreamLink
from services.gateway.session_parts import LearnerChannel, SessionInfo
from services.gateway.turns import TurnRunner
from services.gateway.usage import Limits

MAX_ERRORS_PER_MINUTE = 30
VIDEO_MIN_INTERVAL_S = 0.9  # 1 FPS, with room for a client's timer jitter


class Closing(Exception):
    """The connection is being closed by the gateway."""


class Refusals:
    """Errors sent to the learner; a flood of bad frames, or an open that cannot go ahead, closes the socket."""

    def __init__(self, ws, learner: LearnerChannel, release_slot: Callable[[], None]) -> None:
        self.ws = ws
        self.learner = learner
        self.release_slot = release_slot
        self._errors: collections.deque[float] = collections.deque()

    async def refuse(self, code: str, message: str) -> None:
        """Send the error and count it against the learner's bad-frame allowance."""
        await self.learner.send_error(code, message)
        await self._count_error()

    async def _count_error(self) -> None:
        """A flood of bad frames ends the connection cleanly; the gateway keeps serving others."""
        now = time.monotonic()
        self._errors.append(now)
        while self._errors and now - self._errors[0] > 60:
            self._errors.popleft()
        if len(self._errors) > MAX_ERRORS_PER_MINUTE:
            await self.ws.close(1008, "too many bad messages")
            raise Closing()

    async def expire_at(self, expires_at: float) -> None:
        """The token is the learner's permission to be answered: the session ends with it, and the client,
        told why, signs in again and resumes (the row is written as the connection closes)."""
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.learner.send_error(protocol.TOKEN_EXPIRED, "your sign-in expired; sign in again and resume "
                                                              "the session")
        with contextlib.suppress(Exception):
            await self.ws.close(protocol.CLOSE_TOKEN_EXPIRED, "token expired")

    async def rate_limited(self, retry_after: int, what: str) -> None:
        """Over a per-learner rate: `retry_after` tells the client when it may send again (docs/protocol.md)."""
        metrics.errors.add(1, {"component": "gateway", "code": protocol.RATE_LIMITED})
        await self.learner.frame("error", code=protocol.RATE_LIMITED, retry_after=retry_after,
                                 message=f"{what}; try again in {retry_after} s")
        await self._count_error()

    async def busy(self, retry_after: int) -> None:
        """Too many sessions opening at once for this gateway to open this one within the promise."""
        self.release_slot()
        metrics.errors.add(1, {"component": "gateway", "code": protocol.SERVER_BUSY})
        await self.learner.frame("error", code=protocol.SERVER_BUSY, retry_after=retry_after,
                                 message=f"the tutor is busy right now; try again in {retry_after} seconds")
        await self.ws.close(protocol.CLOSE_TRY_AGAIN_LATER, "busy")
        raise Closing()

    async def too_many(self, cap: int) -> None:
        """The learner already holds as many sessions as they may."""
        self.release_slot()
        await self.learner.send_error(protocol.TOO_MANY_SESSIONS, f"at most {cap} sessions at once")
        await self.ws.close(1008, "too many sessions")
        raise Closing()


class MediaInput:
    """The learner's microphone audio and camera frames, passed upstream within their limits."""

    def __init__(self, info: SessionInfo, identity: Identity, limits: Limits, turns: TurnRunner,
                 link: UpstreamLink, learner: LearnerChannel, refusals: Refusals,
                 ensure_started: Callable[[], Awaitable[None]]) -> None:
        self.info = info
        self.identity = identity
        self.limits = limits
        self.turns = turns
        self.link = link
        self.learner = learner
        self.refusals = refusals
        self.ensure_started = ensure_started
        self._budget_error_sent = False
        self._last_frame = 0.0

    async def audio(self, chunk: bytes) -> None:
        """Stream a chunk of the learner's speech, starting a voice turn if none is running."""
        await self.ensure_started()
        refuse = self.refusals.refuse
        if self.info.mode != "audio":
            await refuse(protocol.BINARY_IN_TEXT_MODE, "binary frames need {\"type\":\"start\","
                                                       "\"mode\":\"audio\"} first")
            return
        if len(chunk) % 2:
            await refuse(protocol.BAD_MESSAGE, "audio must be 16-bit PCM (an even number of bytes)")
            return
        if not self.limits.allow_audio(self.identity.user_id, len(chunk) / 32000):
            await refuse(protocol.RATE_LIMITED, "too much audio; pause for a moment")
            return
        if self.turns.turn is None and self.limits.over_budget(self.identity.user_id):
            if not self._budget_error_sent:
                self._budget_error_sent = True
                await self.learner.send_error(protocol.BUDGET_EXCEEDED, "today's tutoring budget is used up")
            return
        self.turns.begin_voice_if_idle()
        await self.link.send_audio(chunk)

    async def video(self, msg: protocol.Video) -> None:
        """A camera frame, passed on as realtime video input (Live takes about one a second)."""
        await self.ensure_started()
        now = time.monotonic()
        if now - self._last_frame < VIDEO_MIN_INTERVAL_S:
            await self.refusals.refuse(protocol.RATE_LIMITED, "at most one video frame a second")
            return
        self._last_frame = now
        await self.link.send_video(msg.jpeg)

    async def audio_end(self, started: bool) -> None:
        """The learner stopped speaking: the model may answer now."""
        if self.info.mode != "audio" or not started:
            await self.learner.send_error(protocol.BAD_MESSAGE, "audio_end without an audio session")
            return
        self._budget_error_sent = False
        self.turns.mark_audio_end()
        await self.link.send_audio_end()
