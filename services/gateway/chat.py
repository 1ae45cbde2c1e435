"""One learner connection on /v1/chat: reads the learner's frames, starts (or resumes) the session and ends it.

The work is done by the session's parts, each with its own dependencies
(session_parts.py): the upstream link (link.py), the turn runner (turns.py) and
the connections row (persistence.py), refusals and media input (learner_input.py). Learner messages are dispatched through
an explicit table from message type to handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as otel_context
from websockets.exceptions import ConnectionClosed

from services.common import metrics
from services.common.auth import Identity
from services.common.telemetry import tracer
from services.gateway import protocol
from services.gateway.admission import Slot
from services.gateway.connections import SessionRow
from services.gateway.learner_input import Closing, MediaInput, Refusals
from services.gateway.learner_reads import LearnerReads
from services.gateway.link import UpstreamLink
from services.gateway.persistence import SessionPersistence
from services.gateway.resumption import ResumptionState
from services.gateway.session_parts import Background, LearnerChannel, SessionDeps, SessionInfo
from services.gateway.turns import TurnDeps, TurnRunner, mode_attr

log = logging.getLogger(__name__)
_tracer = tracer(__name__)


class ChatSession:
    def __init__(self, deps: SessionDeps, ws, identity: Identity, fault_header: str = "") -> None:
        self.deps = deps
        self.settings = deps.session
        self.ws = ws
        self.identity = identity
        self.info = SessionInfo(identity, uuid.uuid4().hex[:12], fault_header)
        self.state = ResumptionState()
        self.learner = LearnerChannel(ws)
        self.background = Background()
        self.persistence = SessionPersistence(deps.store, self.info, self.state, self.settings.store_deadline_s,
                                              deps.limits.logging_enabled)
        self.link = UpstreamLink(deps.live_client, deps.link, self.info, self.state, self.background,
                                 self._upstream_lost, deps.upstreams)
        self.turns = TurnRunner(TurnDeps(deps.turn, deps.backends.retrieval, deps.bridge, deps.turnlog, deps.limits),
                                self.info, self.state, self.link, self.learner, self.background,
                                self.settings.max_pending_turns, self.persistence.write_soon)
        self.link.bind(self.turns)
        self.refusals = Refusals(ws, self.learner, lambda: deps.sessions.release(self.info.connection_id))
        self.media = MediaInput(self.info, identity, deps.limits, self.turns, self.link, self.learner, self.refusals,
                                self._ensure_started)
        self.started = False
        self.stages = metrics.Stages()
        self.reads = LearnerReads(deps, self.info, self.persistence, self.stages, self.background)
        self._session_sent = asyncio.Event()
        self._slot: Slot | None = None  # the admission slot (admission.py), held until the upstream is open
        self._cap_check: asyncio.Future[int] | None = None  # the cross-gateway session count (claim + list)
        self.superseded = False
        self._active_mode = ""
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            protocol.ProtocolError: self._on_protocol_error,
            protocol.Start: self._on_start,
            protocol.Text: self._on_text,
            protocol.AudioEnd: self._on_audio_end,
            protocol.Ping: self._on_ping,
            protocol.Video: self.media.video,
        }

    @property
    def session_id(self) -> str:
        """The id the learner resumes this session by."""
        return self.info.session_id

    async def send_error(self, code: str, message: str) -> None:
        """Tell the learner something went wrong, with a machine-readable code."""
        await self.learner.send_error(code, message)

    # ------------------------------------------------------------------ learner side

    async def run(self) -> None:
        """Serve the learner's socket until it closes, then detach the session."""
        self.background.spawn(self.refusals.expire_at(self.identity.expires_at))
        self.reads.start_ahead()  # the learner is known from the token: read what the open needs now
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(self.ws.recv(), self.settings.idle_timeout_s)
                except TimeoutError:
                    if self.turns.between_turns():
                        await self.send_error("idle_timeout", "closing an idle session; reconnect to continue")
                        await self.ws.close(1000, "idle timeout")
                        return
                    continue
                await self.handle_frame(raw)
        except (ConnectionClosed, Closing):
            pass
        finally:
            await self.detach()

    async def handle_frame(self, raw: str | bytes) -> None:
        """Route one frame from the learner: audio bytes, or a parsed JSON message."""
        if isinstance(raw, bytes):
            await self.media.audio(raw)
            return
        msg = protocol.parse(raw, self.settings.max_text_chars)
        handler = self._handlers.get(type(msg))
        if handler is not None:
            await handler(msg)

    async def _on_protocol_error(self, msg: protocol.ProtocolError) -> None:
        await self.refusals.refuse(msg.code, msg.message)

    async def _on_ping(self, _msg: protocol.Ping) -> None:
        await self.learner.frame("pong")

    async def _on_start(self, msg: protocol.Start) -> None:
        if not self.started:
            await self.start(msg.mode, msg.language, msg.resume)
            return
        if msg.resume and msg.resume != self.session_id:
            await self.send_error(protocol.BAD_MESSAGE, "this connection already has a session")
            return
        if msg.language and msg.language != self.info.language:
            self.info.language = msg.language
        if msg.mode and msg.mode != self.info.mode:
            # Switching text ↔ audio needs another response modality: resume upstream between turns.
            await self.turns.idle.wait()
            self.info.mode = msg.mode
            await self.link.reconnect("mode")
        await self.learner.frame("session", session_id=self.session_id, mode=self.info.mode,
                                 language=self.info.language, resumed=False)

    async def _on_text(self, msg: protocol.Text) -> None:
        await self._ensure_started()
        limits = self.deps.limits
        if not limits.allow_message(self.identity.user_id):
            wait = max(1, math.ceil(limits.message_wait_s(self.identity.user_id)))
            await self.refusals.rate_limited(wait, "too many messages")
            return
        if limits.over_budget(self.identity.user_id):
            await self.send_error(protocol.BUDGET_EXCEEDED, "today's tutoring budget is used up; it resets at "
                                                            "midnight UTC")
            return
        if not self.turns.enqueue(msg.text):
            await self.refusals.refuse(protocol.BUSY, "still answering earlier messages; wait for turn_complete")

    async def _on_audio_end(self, _msg: protocol.AudioEnd) -> None:
        await self.media.audio_end(self.started)

    async def _ensure_started(self) -> None:
        if not self.started:
            await self.start(None, None, None)

    # ------------------------------------------------------------------ session start / end

    async def start(self, mode: str | None, language: str | None, resume: str | None) -> None:
        """Open (or resume) the session: claim a slot, load the learner's context, connect upstream."""
        stages = self.stages
        stages.restart()
        sessions, cap = self.deps.sessions, self.settings.max_sessions_per_learner
        # Looked up before the row is read: a session closing meanwhile leaves the registry once its last row
        # is written, and the row read may predate that write.
        held: ChatSession | None = sessions.get(resume) if resume else None
        # The learner's slot is taken before any await: simultaneous starts cannot all pass the cap.
        handed_over = resume if held is not None and held.identity.user_id == self.identity.user_id else ""
        if not sessions.reserve(self.info.connection_id, self.identity.user_id, cap, handed_over):
            await self.refusals.too_many(cap)
        admitted = await self.deps.admission.enter()
        stages.mark("admission")
        if not isinstance(admitted, Slot):
            await self.refusals.busy(admitted)
        self._slot = admitted
        try:
            await self._start_admitted(mode, language, resume, held, stages)
        except BaseException:
            self._leave_admission(done=False)
            raise

    def _leave_admission(self, *, done: bool) -> None:
        if self._slot is not None:
            self._slot.release(done=done)

    async def _start_admitted(self, mode: str | None, language: str | None, resume: str | None,
                              held: ChatSession | None, stages: metrics.Stages) -> None:
        sessions = self.deps.sessions
        row = await self._resumable_row(resume, held) if resume else None
        stages.mark("resume_lookup")
        if row is not None:
            mode, language = mode or row.mode, language or row.language
        else:
            self.info.session_id = uuid.uuid4().hex
        sessions.bind(self.info.connection_id, self.session_id)
        await self._open(mode, language, resumed=row is not None)
        # The cross-gateway cap (claim the row, count the learner's others) runs after the reads and does not
        # hold the session: this gateway's sessions were counted at `reserve`, so only other gateways' can put
        # an open over the cap (rare; then `_enforce_cap` closes it). docs/protocol.md, "Opening a session".
        here = sessions.held(self.identity.user_id, exclude_connection=self.info.connection_id,
                             exclude_session=self.session_id)
        self._cap_check = asyncio.ensure_future(stages.timed(
            "claim_count", self.persistence.attached_elsewhere(here, sessions.open_elsewhere)))
        self._active_mode = mode_attr(self.info.mode)
        metrics.active_sessions.add(1, {"mode": self._active_mode})
        self.turns.start_worker()
        self.background.spawn(self._enforce_cap(self._cap_check, fresh=row is None))
        extra = {"history": await self.persistence.shown_history()} if row is not None else {}
        await self.learner.frame("session", session_id=self.session_id, mode=self.info.mode,
                                 language=self.info.language, resumed=row is not None, **extra)
        stages.mark("session_frame")
        stages.at("session_frame_at")
        self._session_sent.set()

    async def _enforce_cap(self, cap_check: asyncio.Future[int], *, fresh: bool) -> None:
        """Close the session when the learner's sessions on all gateways reach the cap. Else a resumed
        session's row gets the state taken over, after the claim (a fresh row is whole from the claim)."""
        cap = self.settings.max_sessions_per_learner
        if await cap_check >= cap:
            self.started = False
            self.deps.sessions.remove(self.session_id, self)
            await self.persistence.unclaim(fresh=fresh)
            with contextlib.suppress(Closing, ConnectionClosed):
                await self.refusals.too_many(cap)
            return
        if not fresh:
            self.persistence.write_soon()  # in the background: a slow connections table must not hold the answer

    async def _resumable_row(self, resume: str, held: ChatSession | None) -> SessionRow | None:
        """The learner's own session `resume`, its state taken over (from the connection still holding it
        here, else from its row); None (and `resume_failed`) when it is unknown or someone else's."""
        in_memory = SessionRow(resume, held.identity.user_id, handle=held.state.handle) if held else None
        row = await self.persistence.lookup(resume, in_memory)
        if row is None or row.user_id != self.identity.user_id:
            # Same answer for "unknown" and "someone else's": nothing leaks about other sessions.
            await self.send_error(protocol.RESUME_FAILED, "that session cannot be resumed; starting a new one")
            return None
        old = self.deps.sessions.get(row.session_id) or held
        if old is not None and old is not self:
            # Still held here (open, or closing and writing its last row): its memory is the newest state.
            await old.supersede()
            await old.persistence.settle()
            self.state.handle, self.state.history = old.state.handle, list(old.state.history)
        else:
            self.state.handle, self.state.history = row.handle, list(row.recent)
        self.info.session_id = row.session_id
        return row

    async def _open(self, mode: str | None, language: str | None, *, resumed: bool) -> None:
        with _tracer.start_as_current_span(metrics.SPAN_SESSION_START, context=otel_context.Context(),
                                           attributes={"session.id": self.session_id}):
            self.info.mode = mode or "text"
            # The upstream connects beside the reads (the learner's instruction follows in a contextUpdate,
            # link.py); not while opens queue: then reads-then-connect in each slot paces a burst (early
            # connects made its turns' first text 1.3-2x slower at p95).
            early = self.deps.link.early_upstream and not self.deps.admission.queueing()
            opening = self.background.spawn(self._open_upstream(resumed, early=early))
            # The `session` frame waits for the learner's settings row and spend only: their context (the
            # slowest read) is awaited by the upstream, so by the first answer, while the first question
            # comes in and its retrieval runs.
            await self.reads.settle(language)
            self.stages.mark("settings_usage")  # what the open waited for them (less when read ahead)
            self.started = True
            self.deps.sessions.add(self.session_id, self)
            # The admission slot is held until the upstream is ready: it is the costly part of an open.
            opening.add_done_callback(lambda _t: self._leave_admission(done=True))

    async def _open_upstream(self, resumed: bool, *, early: bool) -> None:
        known = self.reads.learner_known
        try:
            if not early:  # the context first, then a connect with the whole instruction
                await known.wait()
            await self.stages.timed("upstream_open", self.link.open_first(
                resume=resumed, learner_known=known if early else None,
                on_connected=lambda: self.stages.at("upstream_connected")))
        except Exception as exc:  # noqa: BLE001
            log.warning("upstream unavailable at start", extra={"error": repr(exc)})
            metrics.errors.add(1, {"component": "gateway", "code": protocol.UPSTREAM_UNAVAILABLE})
            await self.send_error(protocol.UPSTREAM_UNAVAILABLE, "the tutor is unavailable right now; try again soon")
            with contextlib.suppress(Exception):
                await self.ws.close(1011, "upstream unavailable")
            return
        self.stages.at("upstream_ready")
        await self._session_sent.wait()  # the record has every stage (the cap check can finish last)
        log.info("session opened", extra={"session_id": self.session_id, "stages_ms": self.stages.ms()})

    async def _upstream_lost(self) -> None:
        await self.send_error(protocol.UPSTREAM_UNAVAILABLE, "the tutor is unavailable right now")
        with contextlib.suppress(Exception):
            await self.ws.close(1011, "upstream unavailable")
        self.turns.release_waiting()

    async def supersede(self) -> None:
        """Another connection resumed this session: hand it over and close this socket."""
        self.superseded = True
        self.persistence.hand_over()
        self.deps.sessions.release(self.info.connection_id)
        await self.send_error("session_moved", "this session was resumed on another connection")
        with contextlib.suppress(Exception):
            await self.ws.close(4000, "session resumed elsewhere")
        await self._shutdown_tasks()

    async def _shutdown_tasks(self) -> None:
        self.turns.stop()
        self.background.cancel_all()
        await self.link.close()

    async def detach(self) -> None:
        """Stop serving the socket, keeping the session resumable until it expires."""
        if self.learner.closed and self.superseded:
            return
        self.learner.closed = True
        await self._shutdown_tasks()
        if self._cap_check is not None:
            # The claim lands before the closing row write, never after it (it would count for its TTL).
            await asyncio.gather(self._cap_check, return_exceptions=True)
        self.deps.sessions.release(self.info.connection_id)
        if self._active_mode:  # also for a session closed over the cap (no longer `started`)
            metrics.active_sessions.add(-1, {"mode": self._active_mode})
            self._active_mode = ""
        if not self.started:
            return
        if not self.superseded:
            # Written before the session leaves the registry: a resume arriving meanwhile (a learner
            # reconnecting at once) finds it here and takes the in-memory state instead of a row that may
            # still lack the last turn's handle.
            await self.persistence.write_last()
        self.deps.sessions.remove(self.session_id, self)
