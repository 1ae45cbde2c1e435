"""What a session open reads about its learner, begun as soon as the connection is up so the open waits only
for what is left of them: their settings row and today's spend (one read of the gateway's own, for the budget
check and the session's language and level) and their context (Tools.GetUserContext, cached briefly per
learner, for the system instruction). The `session` frame waits for the first only; the upstream's
instruction, and so the first answer, for the context."""

from __future__ import annotations

import asyncio
import logging

from kotoba.v1 import tools_pb2
from services.common import metrics
from services.common.auth import auth_metadata
from services.common.learner_settings import DEFAULT_SETTINGS
from services.gateway import protocol
from services.gateway.persistence import SessionPersistence
from services.gateway.session_parts import Background, SessionDeps, SessionInfo
from services.gateway.usage import LearnerSettings

log = logging.getLogger(__name__)

_Context = tools_pb2.GetUserContextResponse


class LearnerReads:
    def __init__(self, deps: SessionDeps, info: SessionInfo, persistence: SessionPersistence,
                 stages: metrics.Stages, background: Background) -> None:
        self.deps = deps
        self.info = info
        self.persistence = persistence  # bounds the usage read by the store deadline
        self.stages = stages
        self.background = background
        # Set once the session's language and the learner's context are in `info`: the learner's instruction
        # can be written (link.py).
        self.learner_known = asyncio.Event()
        self._reading: tuple[asyncio.Task[LearnerSettings | None], asyncio.Task[_Context | None]] | None = None

    def start_ahead(self) -> None:
        """Begin the reads before the learner's first frame. Not when admission is queueing opens: in a burst
        the reads wait their turn with the rest of the open."""
        if self.deps.admission.has_room():
            self._reads()

    def _reads(self) -> tuple[asyncio.Task[LearnerSettings | None], asyncio.Task[_Context | None]]:
        """Both reads, begun now unless they are under way."""
        if self._reading is None:
            uid = self.info.identity.user_id
            self._reading = (
                self.background.spawn(self.stages.timed(
                    "usage", self.persistence.bounded(self.deps.limits.load(uid), "usage", None))),
                self.background.spawn(self.stages.timed(
                    "context", self.deps.contexts.get(uid, self._fetch_context))))
        return self._reading

    async def settle(self, language: str | None) -> None:
        """The session's language (the `start` frame's, else the learner's) and level, from the learner's
        settings row; their context follows into `info` in the background, then `learner_known` is set."""
        settings = await self._settings()
        self.info.base_level = settings.base_level
        self.info.language = language or settings.language
        if self.info.language not in protocol.LANGUAGES:
            self.info.language = "en"
        self.background.spawn(self._learn_context())

    async def _learn_context(self) -> None:
        self.info.context = await self._context()
        self.learner_known.set()

    async def _settings(self) -> LearnerSettings:
        """The learner's language and level from their settings row, with today's spend loaded beside them.
        When the store did not answer in time, from their context (Tools reads the same row); English and no
        level when neither answered."""
        settings = await self._reads()[0]
        if settings is not None:
            return settings
        context = await self._reads()[1]
        if context is None:
            return LearnerSettings(DEFAULT_SETTINGS["language"], "")
        return LearnerSettings(context.settings.language, context.settings.base_level)

    async def _context(self) -> _Context | None:
        """The learner's context; None when Tools did not answer (the session goes on with a minimal one)."""
        return await self._reads()[1]

    async def _fetch_context(self) -> _Context | None:
        try:
            return await self.deps.backends.tools.GetUserContext(
                tools_pb2.GetUserContextRequest(), timeout=self.deps.session.context_deadline_s,
                metadata=auth_metadata(self.info.identity.token))
        except Exception as exc:  # noqa: BLE001 - the session goes on with a minimal context
            log.info("learner context unavailable", extra={"error": type(exc).__name__})
            return None
