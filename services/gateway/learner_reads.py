"""What a session open reads about its learner: their context (Tools.GetUserContext, cached briefly per
learner, for the system instruction and the session's language) and today's spend (for the budget check),
begun as soon as the connection is up so the open waits only for what is left of them."""

from __future__ import annotations

import asyncio
import logging

from kotoba.v1 import tools_pb2
from services.common import metrics
from services.common.auth import Identity, auth_metadata
from services.gateway.persistence import SessionPersistence
from services.gateway.session_parts import Background, SessionDeps

log = logging.getLogger(__name__)


class LearnerReads:
    def __init__(self, deps: SessionDeps, identity: Identity, persistence: SessionPersistence,
                 stages: metrics.Stages, background: Background) -> None:
        self.deps = deps
        self.identity = identity
        self.persistence = persistence  # bounds the usage read by the store deadline
        self.stages = stages
        self.background = background
        self._ahead: asyncio.Task | None = None

    def start_ahead(self) -> None:
        """Begin the reads before the learner's first frame. Not when admission is queueing opens: in a burst
        the reads wait their turn with the rest of the open."""
        if self.deps.admission.has_room():
            self._ahead = self.background.spawn(self._read())

    async def context(self) -> tools_pb2.GetUserContextResponse | None:
        """The learner's context, from the reads begun ahead or now; today's spend is loaded beside it."""
        ahead, self._ahead = self._ahead, None
        return await (ahead or self._read())

    async def _read(self) -> tools_pb2.GetUserContextResponse | None:
        uid = self.identity.user_id
        context, _ = await asyncio.gather(
            self.stages.timed("context", self.deps.contexts.get(uid, self._fetch_context)),
            self.stages.timed("usage", self.persistence.bounded(self.deps.limits.load(uid), "usage", None)))
        return context

    async def _fetch_context(self) -> tools_pb2.GetUserContextResponse | None:
        try:
            return await self.deps.backends.tools.GetUserContext(
                tools_pb2.GetUserContextRequest(), timeout=self.deps.session.context_deadline_s,
                metadata=auth_metadata(self.identity.token))
        except Exception as exc:  # noqa: BLE001 - the session goes on with a minimal context
            log.info("learner context unavailable", extra={"error": type(exc).__name__})
            return None
