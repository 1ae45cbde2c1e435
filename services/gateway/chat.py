"""One learner connection on /v1/chat: protocol dispatch, turns, the upstream Live session, reconnection.

Learner frames are read by `run`; text turns are queued and processed one at
a time by `_turn_worker` (RAG → send → wait for turnComplete); audio frames go
straight upstream. Upstream messages arrive through `on_upstream_message` and
are dispatched to `_on_<kind>` handlers that stream deltas to the learner as
they come.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.genai import types
from opentelemetry import context as otel_context
from opentelemetry import trace
from websockets.exceptions import ConnectionClosed

from kotoba.v1 import conversations_pb2, tools_pb2
from services.common import metrics
from services.common.auth import Identity, auth_metadata
from services.common.telemetry import tracer
from services.gateway import prompts, protocol, rag
from services.gateway.connections import SessionRow, stored_recent
from services.gateway.live import MESSAGE_KINDS, Upstream, connect_config
from services.gateway.resumption import ResumptionState, backoff_delays, priming_turns
from services.gateway.tools_bridge import CallRecord, function_declarations, function_responses, genai_tools
from services.gateway.usage import AUDIO_TOKENS_PER_SECOND, TurnUsage, from_metadata

if TYPE_CHECKING:
    from services.gateway.server import App

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

TURN_TIMEOUT_S = 90.0
MAX_ERRORS_PER_MINUTE = 30
MAX_BUFFERED_AUDIO = 16000 * 2 * 10  # bytes: 10 s of 16 kHz PCM16 kept while the upstream reconnects


@dataclass
class TurnState:
    mode: str  # "text" | "voice"
    question: str = ""
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    answer: list[str] = field(default_factory=list)
    transcript_in: list[str] = field(default_factory=list)
    content: types.Content | None = None
    retrieved: rag.Retrieved | None = None
    tool_calls: list[CallRecord] = field(default_factory=list)
    tools_ms: float = 0.0
    usage: TurnUsage = field(default_factory=TurnUsage)
    first_text_ms: float = 0.0
    first_audio_ms: float = 0.0
    audio_end: float = 0.0
    sent_chars: int = 0
    skip_chars: int = 0
    interrupted: bool = False
    span: trace.Span | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def elapsed_ms(self, since: float | None = None) -> float:
        return (time.perf_counter() - (since or self.started)) * 1000


class Closing(Exception):
    """The connection is being closed by the gateway."""


class ChatSession:
    def __init__(self, app: App, ws, identity: Identity, fault_header: str = "") -> None:
        self.app = app
        self.ws = ws
        self.identity = identity
        self.fault_header = fault_header
        self.session_id = ""
        self.connection_id = uuid.uuid4().hex[:12]
        self.mode = "text"
        self.language = "en"
        self.started = False
        self.superseded = False
        self.context: tools_pb2.GetUserContextResponse | None = None
        self.state = ResumptionState()
        self.upstream: Upstream | None = None
        self.turn: TurnState | None = None
        self.pending: asyncio.Queue[str] = asyncio.Queue(maxsize=app.config.max_pending_turns)
        self.ready = asyncio.Event()  # upstream usable
        self.idle = asyncio.Event()  # no turn in progress
        self.idle.set()
        self._reconnect_lock = asyncio.Lock()
        self._upstream_gen = 0
        self._worker: asyncio.Task | None = None
        self._tool_tasks: dict[str, asyncio.Task] = {}
        self._audio_buffer: collections.deque[bytes] = collections.deque()
        self._audio_buffered = 0
        self._budget_error_sent = False
        self._errors: collections.deque[float] = collections.deque()
        self._background: set[asyncio.Task] = set()
        # connections-row writes: in order (a lock), never cancelled, so the row ends with the latest state.
        self._persist_lock = asyncio.Lock()
        self._persists: set[asyncio.Task] = set()
        self._closed = False
        self._turn_index = 0
        self._active_mode = ""

    # ------------------------------------------------------------------ learner side

    async def send(self, data: str | bytes) -> None:
        if self._closed:
            return
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            self._closed = True

    async def send_error(self, code: str, message: str) -> None:
        metrics.errors.add(1, {"component": "gateway", "code": code})
        await self.send(protocol.error(code, message))

    async def _count_error(self) -> None:
        """A flood of bad frames ends the connection cleanly; the gateway keeps serving others."""
        now = time.monotonic()
        self._errors.append(now)
        while self._errors and now - self._errors[0] > 60:
            self._errors.popleft()
        if len(self._errors) > MAX_ERRORS_PER_MINUTE:
            await self.ws.close(1008, "too many bad messages")
            raise Closing()

    async def _expire(self) -> None:
        """The token is the learner's permission to be answered: it ends with the token, and the client,
        told why, signs in again and resumes (the row is written as the connection closes)."""
        await asyncio.sleep(max(0.0, self.identity.expires_at - time.time()))
        await self.send_error(protocol.TOKEN_EXPIRED, "your sign-in expired; sign in again and resume the session")
        with contextlib.suppress(Exception):
            await self.ws.close(protocol.CLOSE_TOKEN_EXPIRED, "token expired")

    async def run(self) -> None:
        self._spawn(self._expire())
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(self.ws.recv(), self.app.config.idle_timeout_s)
                except TimeoutError:
                    if self.turn is None and self.pending.empty():
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
        if isinstance(raw, bytes):
            await self._on_audio(raw)
            return
        msg = protocol.parse(raw, self.app.config.max_text_chars)
        if isinstance(msg, protocol.ProtocolError):
            await self.send_error(msg.code, msg.message)
            await self._count_error()
        elif isinstance(msg, protocol.Start):
            await self._on_start(msg)
        elif isinstance(msg, protocol.Text):
            await self._on_text(msg.text)
        elif isinstance(msg, protocol.AudioEnd):
            await self._on_audio_end()
        elif isinstance(msg, protocol.Ping):
            await self.send(protocol.frame("pong"))

    async def _on_start(self, msg: protocol.Start) -> None:
        if not self.started:
            await self.start(msg.mode, msg.language, msg.resume)
            return
        if msg.resume and msg.resume != self.session_id:
            await self.send_error(protocol.BAD_MESSAGE, "this connection already has a session")
            return
        if msg.language and msg.language != self.language:
            self.language = msg.language
        if msg.mode and msg.mode != self.mode:
            # Switching text ↔ audio needs another response modality: resume upstream between turns.
            await self.idle.wait()
            self.mode = msg.mode
            await self._reconnect("mode")
        await self.send(protocol.frame("session", session_id=self.session_id, mode=self.mode,
                                       language=self.language, resumed=False))

    async def _on_text(self, text: str) -> None:
        if not self.started:
            await self.start(None, None, None)
        if not self.app.limits.allow_message(self.identity.user_id):
            await self.send_error(protocol.RATE_LIMITED, "too many messages; wait a moment and try again")
            await self._count_error()
            return
        if self.app.limits.over_budget(self.identity.user_id):
            await self.send_error(protocol.BUDGET_EXCEEDED, "today's tutoring budget is used up; it resets at "
                                                            "midnight UTC")
            return
        try:
            self.pending.put_nowait(text)
        except asyncio.QueueFull:
            await self.send_error(protocol.BUSY, "still answering earlier messages; wait for turn_complete")
            await self._count_error()

    async def _on_audio(self, chunk: bytes) -> None:
        if not self.started:
            await self.start(None, None, None)
        if self.mode != "audio":
            await self.send_error(protocol.BINARY_IN_TEXT_MODE, "binary frames need {\"type\":\"start\","
                                                                "\"mode\":\"audio\"} first")
            await self._count_error()
            return
        if len(chunk) % 2:
            await self.send_error(protocol.BAD_MESSAGE, "audio must be 16-bit PCM (an even number of bytes)")
            await self._count_error()
            return
        if not self.app.limits.allow_audio(self.identity.user_id, len(chunk) / 32000):
            await self.send_error(protocol.RATE_LIMITED, "too much audio; pause for a moment")
            await self._count_error()
            return
        if self.turn is None:
            if self.app.limits.over_budget(self.identity.user_id):
                if not self._budget_error_sent:
                    self._budget_error_sent = True
                    await self.send_error(protocol.BUDGET_EXCEEDED, "today's tutoring budget is used up")
                return
            self._begin_turn("voice", "")
        if self.ready.is_set() and self.upstream is not None:
            try:
                await self.upstream.send_audio(chunk)
                return
            except Exception:  # noqa: BLE001 - upstream gone: keep the audio, the receive loop reconnects
                pass
        if self._audio_buffered + len(chunk) <= MAX_BUFFERED_AUDIO:
            self._audio_buffer.append(chunk)
            self._audio_buffered += len(chunk)

    async def _on_audio_end(self) -> None:
        if self.mode != "audio" or not self.started:
            await self.send_error(protocol.BAD_MESSAGE, "audio_end without an audio session")
            return
        self._budget_error_sent = False
        if self.turn is not None:
            self.turn.audio_end = time.perf_counter()
        await self.ready.wait()
        with contextlib.suppress(Exception):
            await self.upstream.send_audio_end()

    # ------------------------------------------------------------------ session start / end

    async def start(self, mode: str | None, language: str | None, resume: str | None) -> None:
        app = self.app
        row: SessionRow | None = None
        resumed = False
        # Looked up before the row is read: a session closing meanwhile leaves app.sessions once its
        # last row is written, and the row read may predate that write.
        held: ChatSession | None = app.sessions.get(resume) if resume else None
        # The learner's slot is taken before any await: simultaneous starts cannot all pass the cap.
        handed_over = resume if held is not None and held.identity.user_id == self.identity.user_id else ""
        if not app.sessions.reserve(self.connection_id, self.identity.user_id, app.config.max_sessions_per_learner,
                                    handed_over):
            await self._refuse_too_many()
        if resume:
            row = await app.sessions_store_get(resume)
            if row is None or row.user_id != self.identity.user_id:
                # Same answer for "unknown" and "someone else's": nothing leaks about other sessions.
                await self.send_error(protocol.RESUME_FAILED, "that session cannot be resumed; starting a new one")
                row = None
        if row is not None:
            old = app.sessions.get(row.session_id) or held
            if old is not None and old is not self:
                # Still held here (open, or closing and writing its last row): its memory is the newest state.
                await old.supersede()
                await old.settle()
                self.state.handle, self.state.history = old.state.handle, list(old.state.history)
            else:
                self.state.handle, self.state.history = row.handle, list(row.recent)
            self.session_id = row.session_id
            mode, language = mode or row.mode, language or row.language
            resumed = True
        else:
            self.session_id = uuid.uuid4().hex
        app.sessions.bind(self.connection_id, self.session_id)
        if await self._attached_elsewhere() >= app.config.max_sessions_per_learner:
            if app.store is not None:
                await self._store_call(app.store.unclaim(self.session_id, self.identity.user_id, fresh=not resumed),
                                       "session cap", None)
            await self._refuse_too_many()
        with _tracer.start_as_current_span(metrics.SPAN_SESSION_START, context=otel_context.Context(),
                                           attributes={"session.id": self.session_id}):
            self.context, _ = await asyncio.gather(
                self._learner_context(), self._store_call(app.limits.load(self.identity.user_id), "usage", None))
            self.mode = mode or "text"
            self.language = language or (self.context.settings.language if self.context else "") or "en"
            if self.language not in protocol.LANGUAGES:
                self.language = "en"
            self.started = True
            app.sessions.add(self.session_id, self)
            try:
                await self._open_upstream(resume=resumed, first=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("upstream unavailable at start", extra={"error": repr(exc)})
                metrics.errors.add(1, {"component": "gateway", "code": protocol.UPSTREAM_UNAVAILABLE})
                await self.send_error(protocol.UPSTREAM_UNAVAILABLE,
                                      "the tutor is unavailable right now; try again soon")
                await self.ws.close(1011, "upstream unavailable")
                raise Closing() from None
        self._active_mode = _mode_attr(self.mode)
        metrics.active_sessions.add(1, {"mode": self._active_mode})
        self._worker = asyncio.create_task(self._turn_worker(), name="turn-worker")
        self._persist_soon()  # in the background: a slow connections table must not hold the answer
        await self.send(protocol.frame("session", session_id=self.session_id, mode=self.mode,
                                       language=self.language, resumed=resumed))

    async def _store_call(self, coro, what: str, default: Any) -> Any:
        """A DynamoDB read at session start, bounded: when the table is slow or unreachable the learner is
        still answered (the Live engine and tools may well work) and the gap is logged and counted."""
        try:
            return await asyncio.wait_for(coro, self.app.config.store_deadline_s)
        except Exception as exc:  # noqa: BLE001
            log.warning("store unavailable at session start; going on without it",
                        extra={"what": what, "error": repr(exc), "session_id": self.session_id})
            metrics.errors.add(1, {"component": "gateway", "code": "store_unavailable"})
            return default

    async def _attached_elsewhere(self) -> int:
        """Open sessions of this learner besides this one: the connections table (all gateways) when it
        answers in time, else this gateway's own sessions only (fail open: a learner is not refused for a
        storage outage; the per-learner rate limits and the global cap still hold)."""
        uid = self.identity.user_id
        here = self.app.sessions.held(uid, exclude_connection=self.connection_id, exclude_session=self.session_id)
        if self.app.store is None:
            return here
        stored = await self._store_call(self._claim_and_count(), "session cap", None)
        return here if stored is None else max(here, stored)

    async def _claim_and_count(self) -> int:
        """Claim the row (a conditional write) first, then count: of two gateways starting this learner's
        sessions at once, each sees the other's claim."""
        if not await self.app.store.claim(self.session_id, self.identity.user_id):
            raise PermissionError("the session row belongs to another learner")
        return await self.app.store.attached_count(self.identity.user_id, exclude=self.session_id)

    async def _refuse_too_many(self) -> None:
        self.app.sessions.release(self.connection_id)
        await self.send_error(protocol.TOO_MANY_SESSIONS,
                              f"at most {self.app.config.max_sessions_per_learner} sessions at once")
        await self.ws.close(1008, "too many sessions")
        raise Closing()

    async def _learner_context(self) -> tools_pb2.GetUserContextResponse | None:
        try:
            return await self.app.backends.tools.GetUserContext(
                tools_pb2.GetUserContextRequest(), timeout=self.app.config.context_deadline_s,
                metadata=auth_metadata(self.identity.token))
        except Exception as exc:  # noqa: BLE001 - the session goes on with a minimal context
            log.info("learner context unavailable", extra={"error": type(exc).__name__})
            return None

    async def supersede(self) -> None:
        """Another connection resumed this session: hand it over and close this socket."""
        self.superseded = True
        self.app.sessions.release(self.connection_id)
        await self.send_error("session_moved", "this session was resumed on another connection")
        with contextlib.suppress(Exception):
            await self.ws.close(4000, "session resumed elsewhere")
        await self._shutdown_tasks()

    async def _shutdown_tasks(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for task in list(self._tool_tasks.values()) + list(self._background):
            task.cancel()
        if self.upstream is not None:
            await self.upstream.close()

    async def detach(self) -> None:
        if self._closed and self.superseded:
            return
        self._closed = True
        await self._shutdown_tasks()
        self.app.sessions.release(self.connection_id)
        if not self.started:
            return
        if self._active_mode:
            metrics.active_sessions.add(-1, {"mode": self._active_mode})
            self._active_mode = ""
        if not self.superseded:
            # Written before the session leaves app.sessions: a resume arriving meanwhile (a learner
            # reconnecting at once) finds it here and takes the in-memory state instead of a row that may
            # still lack the last turn's handle. Bounded: a DynamoDB outage must not hold the slot.
            task = self._persist_soon(state="detached")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 3 * self.app.config.store_deadline_s)
        self.app.sessions.remove(self.session_id, self)

    def _persist_soon(self, state: str = "attached") -> asyncio.Task:
        task = asyncio.create_task(self._persist(state))
        self._persists.add(task)
        task.add_done_callback(self._persists.discard)
        return task

    async def settle(self) -> None:
        """Wait (bounded) until this session's connections-row writes so far are done."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._persists, return_exceptions=True),
                                   3 * self.app.config.store_deadline_s)

    async def _persist(self, state: str = "attached") -> None:
        if self.app.store is None:
            return
        async with self._persist_lock:
            if self.superseded:
                return  # the resuming connection owns the row now
            keep_turns = await self.app.limits.logging_enabled(self.identity.user_id)
            # Built under the lock, so each write carries the newest handle and turns.
            row = SessionRow(self.session_id, self.identity.user_id, handle=self.state.handle, state=state,
                             language=self.language, mode=self.mode,
                             recent=stored_recent(self.state.history, keep_turns))
            try:
                await self.app.store.put(row)
            except Exception:  # noqa: BLE001 - losing resumability is not worth failing a turn
                log.warning("connections row not written", exc_info=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------------ upstream lifecycle

    async def _open_upstream(self, *, resume: bool, first: bool = False) -> None:
        app = self.app
        system = prompts.system_instruction(self.context, self.language, self.mode)
        tools = genai_tools(function_declarations(voice=self.mode == "audio"))
        headers = {"x-kotoba-faults": self.fault_header} if self.fault_header and first else None
        handle = self.state.resume_handle() if resume else None
        upstream = Upstream(app.live_client, app.config.live.model, self)
        if handle:
            try:
                await upstream.open(connect_config(system_instruction=system, tools=tools, mode=self.mode,
                                                   handle=handle, config=app.config, headers=headers))
                self._install(upstream)
                self.state.reconnects += 0 if first else 1
                return
            except Exception as exc:  # noqa: BLE001 - refused or expired handle: start fresh below
                log.info("resumption refused; starting a fresh upstream session", extra={"error": repr(exc)})
                self.state.handle = ""
        await upstream.open(connect_config(system_instruction=system, tools=tools, mode=self.mode, handle=None,
                                           config=app.config, headers=headers))
        self._install(upstream)
        if self.state.history:
            self.state.fresh_sessions += 1
            await upstream.send_turn(priming_turns(self.state.history), turn_complete=False)

    def _install(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._upstream_gen += 1
        self.ready.set()

    async def _reconnect(self, reason: str, gen: int | None = None) -> None:
        """Close and resume with the latest handle (backoff on failure). Idempotent per upstream generation."""
        async with self._reconnect_lock:
            if gen is not None and gen != self._upstream_gen:
                return  # another path already replaced this upstream
            if reason == "go_away" and not self.state.go_away:
                return  # the turn worker and the goAway handler both ask; one reconnect is enough
            self.ready.clear()
            if self.upstream is not None:
                await self.upstream.close()
            if reason == "go_away":
                self.state.go_away = False
            last: BaseException | None = None
            for delay in backoff_delays(self.app.config.reconnect_attempts, self.app.config.reconnect_base_delay_s):
                await asyncio.sleep(delay)
                try:
                    await self._open_upstream(resume=True)
                    last = None
                    break
                except Exception as exc:  # noqa: BLE001
                    last = exc
            if last is not None:
                log.warning("upstream lost for good", extra={"reason": reason, "error": repr(last)})
                await self.send_error(protocol.UPSTREAM_UNAVAILABLE, "the tutor is unavailable right now")
                with contextlib.suppress(Exception):
                    await self.ws.close(1011, "upstream unavailable")
                if self.turn is not None:
                    self.turn.done.set()
                return
            log.info("upstream reconnected", extra={"reason": reason, "session_id": self.session_id})
            await self._after_reconnect(reason)

    async def _after_reconnect(self, reason: str) -> None:
        while self._audio_buffer:
            chunk = self._audio_buffer.popleft()
            self._audio_buffered -= len(chunk)
            with contextlib.suppress(Exception):
                await self.upstream.send_audio(chunk)
        turn = self.turn
        if reason == "drop" and turn is not None:
            if turn.content is not None:
                # Ask again; the answer's already-streamed prefix is not sent twice.
                turn.skip_chars = turn.sent_chars
                turn.answer = [("".join(turn.answer))[:turn.sent_chars]]
                await self.upstream.send_turn(turn.content)
            else:
                await self.send(protocol.frame("interrupted"))
                await self._finish_turn()

    async def on_upstream_lost(self, exc: BaseException | None) -> None:
        gen = self._upstream_gen
        log.info("upstream dropped", extra={"error": repr(exc), "session_id": self.session_id})
        self._spawn(self._reconnect("drop", gen))

    async def on_upstream_message(self, msg: types.LiveServerMessage) -> None:
        for kind in MESSAGE_KINDS:
            value = getattr(msg, kind, None)
            if value is not None:
                await getattr(self, f"_on_{kind}")(value)

    # ------------------------------------------------------------------ turns

    def _begin_turn(self, mode: str, question: str) -> TurnState:
        turn = TurnState(mode=mode, question=question)
        self._turn_index += 1
        turn.span = _tracer.start_span(metrics.SPAN_TURN, context=otel_context.Context(),
                                       attributes={"mode": _mode_attr(mode), "turn.index": self._turn_index,
                                                   "session.id": self.session_id})
        self.turn = turn
        self.idle.clear()
        return turn

    def _turn_or_implicit(self) -> TurnState:
        return self.turn or self._begin_turn("voice" if self.mode == "audio" else "text", "")

    async def _turn_worker(self) -> None:
        while True:
            text = await self.pending.get()
            await self.idle.wait()
            await self.ready.wait()
            try:
                await self._text_turn(text)
            except Exception:  # noqa: BLE001 - one bad turn must not end the session
                log.exception("turn failed")
                await self.send_error(protocol.INTERNAL, "something went wrong with that message; try again")
                if self.turn is not None:
                    await self._finish_turn()
            if self.state.go_away and self.turn is None:
                await self._reconnect("go_away")

    async def _text_turn(self, text: str) -> None:
        turn = self._begin_turn("text", text)
        level = self.context.settings.base_level if self.context else ""
        with trace.use_span(turn.span, end_on_exit=False):
            with _tracer.start_as_current_span(metrics.SPAN_RAG) as span:
                turn.retrieved = await rag.search(self.app.backends.retrieval, self.identity.token, text,
                                                  deadline_s=self.app.config.rag_deadline_s,
                                                  top_k=self.app.config.rag_top_k, learner_level=level)
                span.set_attribute("rag.hits", len(turn.retrieved.items))
                span.set_attribute("rag.unavailable", not turn.retrieved.available)
            metrics.retrieval_latency.record(turn.retrieved.latency_ms, {
                "component": "gateway", "outcome": "ok" if turn.retrieved.available else "error"})
            turn.content = rag.user_turn(turn.retrieved, text)
            gen = self._upstream_gen
            with _tracer.start_as_current_span(metrics.SPAN_LIVE_SEND):
                try:
                    await self.upstream.send_turn(turn.content)
                except Exception as exc:  # noqa: BLE001 - the reconnect resends turn.content
                    log.info("send failed; reconnecting", extra={"error": repr(exc)})
                    self._spawn(self._reconnect("drop", gen))
        try:
            await asyncio.wait_for(turn.done.wait(), TURN_TIMEOUT_S)
        except TimeoutError:
            await self.send_error(protocol.UPSTREAM_UNAVAILABLE, "the tutor took too long to answer")
            await self._finish_turn()

    async def _finish_turn(self) -> None:
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        total_ms = turn.elapsed_ms()
        answer = "".join(turn.answer)
        question = turn.question or "".join(turn.transcript_in)
        self.state.remember(question, answer)
        # The row with this turn's handle is on its way before the learner hears "complete" (and may
        # reconnect at once, possibly to another gateway).
        self._persist_soon()
        await self.send(protocol.frame("turn_complete", turn_id=turn.turn_id, usage=turn.usage.as_dict()))
        outcome = "interrupted" if turn.interrupted else "ok"
        turn.span.set_attribute("outcome", outcome)
        with trace.use_span(turn.span, end_on_exit=True):
            self.app.turnlog.submit(self._turn_record(turn, question, answer, total_ms), self.identity.token,
                                    user_id=self.identity.user_id, expires_at=self.identity.expires_at)
        self._spawn(self.app.limits.record(self.identity.user_id, turn.usage))
        _record_turn_metrics(turn, total_ms, outcome, self.app.config.live.kind)
        turn.done.set()
        self.idle.set()
        if self.state.go_away and self.pending.empty():
            self._spawn(self._reconnect("go_away", self._upstream_gen))

    def _turn_record(self, turn: TurnState, question: str, answer: str, total_ms: float) -> conversations_pb2.Turn:
        u = turn.usage
        return conversations_pb2.Turn(
            turn_id=turn.turn_id, session_id=self.session_id, connection_id=self.connection_id, mode=turn.mode,
            language=self.language, question=question, answer=answer,
            retrieved_item_ids=turn.retrieved.item_ids if turn.retrieved else [],
            tool_calls=[conversations_pb2.ToolCall(
                name=r.name, args_json=json.dumps(r.args, ensure_ascii=False)[:4000],
                result_json=json.dumps(r.response, ensure_ascii=False)[:8000], error=r.error,
                latency_ms=r.latency_ms) for r in turn.tool_calls],
            latencies=conversations_pb2.Latencies(
                first_text_ms=turn.first_text_ms, first_audio_ms=turn.first_audio_ms, total_ms=total_ms,
                retrieval_ms=turn.retrieved.latency_ms if turn.retrieved else 0.0, tools_ms=turn.tools_ms),
            usage=conversations_pb2.Usage(text_in_tokens=u.text_in_tokens, text_out_tokens=u.text_out_tokens,
                                          audio_in_tokens=u.audio_in_tokens, audio_out_tokens=u.audio_out_tokens,
                                          cost_usd=u.cost_usd),
            started_at=turn.started_at, summary_status="pending",
        )

    # ------------------------------------------------------------------ upstream message handlers

    async def _on_setup_complete(self, _value: Any) -> None:
        pass

    async def _on_server_content(self, sc: types.LiveServerContent) -> None:
        if sc.interrupted:
            # At once: the client drops queued audio; nothing more of the old answer is sent.
            await self.send(protocol.frame("interrupted"))
            if self.turn is not None:
                self.turn.interrupted = True
        if sc.input_transcription and sc.input_transcription.text:
            turn = self._turn_or_implicit()
            turn.transcript_in.append(sc.input_transcription.text)
            await self.send(protocol.frame("transcript", role="user", text=sc.input_transcription.text))
        if sc.model_turn and sc.model_turn.parts and not sc.interrupted:
            for part in sc.model_turn.parts:
                if part.text and not part.thought:
                    await self._emit_text(part.text)
                elif part.inline_data and part.inline_data.data and self.mode == "audio":
                    await self._emit_audio(part.inline_data.data)
        if sc.output_transcription and sc.output_transcription.text:
            turn = self._turn_or_implicit()
            if self.mode == "audio":
                turn.answer.append(sc.output_transcription.text)
            await self.send(protocol.frame("transcript", role="tutor", text=sc.output_transcription.text))
        if sc.turn_complete:
            await self._finish_turn()

    async def _emit_text(self, delta: str) -> None:
        turn = self._turn_or_implicit()
        if turn.skip_chars:
            cut = min(turn.skip_chars, len(delta))
            turn.skip_chars -= cut
            delta = delta[cut:]
            if not delta:
                return
        if not turn.first_text_ms:
            turn.first_text_ms = turn.elapsed_ms()
        turn.sent_chars += len(delta)
        if self.mode == "text" or turn.mode == "text":
            turn.answer.append(delta)
        await self.send(protocol.frame("text", text=delta))

    async def _emit_audio(self, pcm: bytes) -> None:
        turn = self._turn_or_implicit()
        if not turn.first_audio_ms:
            turn.first_audio_ms = turn.elapsed_ms(turn.audio_end or turn.started)
        await self.send(pcm)

    async def _on_tool_call(self, tc: types.LiveServerToolCall) -> None:
        calls = list(tc.function_calls or [])
        if not calls:
            return
        turn = self._turn_or_implicit()
        for fc in calls:
            await self.send(protocol.frame("tool", name=fc.name))
        self._spawn(self._run_tools(turn, calls, self._upstream_gen))

    async def _run_tools(self, turn: TurnState, calls: list[types.FunctionCall], gen: int) -> None:
        started = time.perf_counter()
        with trace.use_span(turn.span, end_on_exit=False):  # each kotoba.tool span sits under the turn
            tasks = {}
            for fc in calls:
                call_id = fc.id or uuid.uuid4().hex
                fc.id = call_id
                tasks[call_id] = asyncio.create_task(self._one_tool(fc))
                self._tool_tasks[call_id] = tasks[call_id]
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            records = []
            for call_id, task in tasks.items():
                self._tool_tasks.pop(call_id, None)
                if task.cancelled():
                    fc = next(c for c in calls if c.id == call_id)
                    turn.tool_calls.append(CallRecord(call_id, fc.name or "", dict(fc.args or {}),
                                                      {"error": {"code": "CANCELLED", "message": "cancelled"}}, 0))
                    continue  # the model withdrew it: no response expected
                records.append(task.result())
        turn.tool_calls.extend(records)
        turn.tools_ms += (time.perf_counter() - started) * 1000
        if records and gen == self._upstream_gen and self.upstream is not None:
            try:
                await self.upstream.send_tool_response(function_responses(records))
            except Exception as exc:  # noqa: BLE001 - a dropped upstream resends the whole turn
                log.info("tool response not sent", extra={"error": repr(exc)})

    async def _one_tool(self, fc: types.FunctionCall) -> CallRecord:
        started = time.perf_counter()
        response = await self.app.bridge.call(fc.name or "", dict(fc.args or {}), self.identity.token)
        return CallRecord(fc.id or "", fc.name or "", dict(fc.args or {}), response,
                          (time.perf_counter() - started) * 1000)

    async def _on_tool_call_cancellation(self, cancel: types.LiveServerToolCallCancellation) -> None:
        for call_id in cancel.ids or []:
            task = self._tool_tasks.get(call_id)
            if task is not None:
                task.cancel()
                log.info("tool call cancelled", extra={"call_id": call_id, "session_id": self.session_id})

    async def _on_usage_metadata(self, meta: types.UsageMetadata) -> None:
        usage = from_metadata(meta, self.app.config.prices)
        if self.turn is not None:
            self.turn.usage.add(usage)
        else:
            self._spawn(self.app.limits.record(self.identity.user_id, usage))

    async def _on_go_away(self, go_away: types.LiveServerGoAway) -> None:
        log.info("upstream goAway", extra={"time_left": go_away.time_left, "session_id": self.session_id})
        self.state.go_away = True
        if self.turn is None and self.pending.empty():
            self._spawn(self._reconnect("go_away", self._upstream_gen))

    async def _on_session_resumption_update(self, update: types.LiveServerSessionResumptionUpdate) -> None:
        self.state.update(update.new_handle, update.resumable)


def audio_seconds(tokens: int) -> float:
    return tokens / AUDIO_TOKENS_PER_SECOND


def _mode_attr(mode: str) -> str:
    return "audio" if mode in ("voice", "audio") else "text"


def _record_turn_metrics(turn: TurnState, total_ms: float, outcome: str, backend: str) -> None:
    mode = {"mode": _mode_attr(turn.mode)}
    metrics.turn_latency.record(total_ms, {**mode, "outcome": outcome})
    if turn.first_text_ms:
        metrics.time_to_first_token.record(turn.first_text_ms, mode)
    if turn.first_audio_ms:
        metrics.time_to_first_audio.record(turn.first_audio_ms, mode)
    u = turn.usage
    for direction, modality, count in (("input", "text", u.text_in_tokens), ("input", "audio", u.audio_in_tokens),
                                       ("output", "text", u.text_out_tokens),
                                       ("output", "audio", u.audio_out_tokens)):
        if count:
            metrics.tokens.add(count, {"direction": direction, "modality": modality, "backend": backend})
    if u.cost_usd:
        metrics.cost.add(u.cost_usd, {"modality": "audio" if turn.mode == "voice" else "text", "backend": backend})
