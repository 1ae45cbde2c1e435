"""A session's turns: the queue of learner messages, one turn at a time, the answer streamed to the learner,
the tool fan-out, and the turn record (turn log, usage, metrics) when the answer is complete.

Text turns are queued and run one at a time by `worker` (RAG → send → wait for
turnComplete); voice turns begin with the learner's first audio frame. The
upstream link hands on server content, tool calls and usage as they arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.genai import types
from opentelemetry import context as otel_context
from opentelemetry import trace

from kotoba.v1 import conversations_pb2
from services.common import live_models, metrics
from services.common.telemetry import tracer
from services.gateway import furigana, protocol, rag
from services.gateway.citations import CitationStream
from services.gateway.link import UpstreamLink
from services.gateway.live import function_mode
from services.gateway.resumption import ResumptionState
from services.gateway.session_parts import Background, LearnerChannel, SessionInfo, TurnSettings
from services.gateway.tool_calls import ToolFanOut
from services.gateway.tools_bridge import CallRecord, ToolBridge
from services.gateway.turnlog import TurnLog
from services.gateway.usage import Limits, TurnUsage, from_metadata
from services.gateway.watchdog import StallWatchdog

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

TURN_TIMEOUT_S = 90.0


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
    # NON_BLOCKING functions (3.8): the model says it is looking and ends a holding turn; the learner's turn
    # stays open across that turnComplete until the answer that uses the results.
    holding: bool = False  # a holding turnComplete is still to come
    held: bool = False  # it came (the engine holds once per answer)
    tools_pending: int = 0  # tool fan-outs whose results are not yet with the model
    # The model's text keeps its item citations (turn log, resumption); the learner gets it without them and
    # the ids as the turn's `sources`.
    citations: CitationStream = field(default_factory=CitationStream)
    span: trace.Span | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def elapsed_ms(self, since: float | None = None) -> float:
        """Milliseconds since the turn (or the given moment) began."""
        return (time.perf_counter() - (since or self.started)) * 1000


@dataclass(frozen=True)
class TurnDeps:
    settings: TurnSettings
    retrieval: Any  # Retrieval stub
    bridge: ToolBridge
    turnlog: TurnLog
    limits: Limits


class TurnRunner:
    def __init__(self, deps: TurnDeps, info: SessionInfo, state: ResumptionState, link: UpstreamLink,
                 learner: LearnerChannel, background: Background, max_pending: int,
                 on_turn_done: Callable[[], Any]) -> None:
        self.deps = deps
        self.info = info
        self.state = state
        self.link = link
        self.learner = learner
        self.background = background
        self.on_turn_done = on_turn_done  # the connections row gets the turn's handle (persistence)
        self.pending: asyncio.Queue[str] = asyncio.Queue(maxsize=max_pending)
        self.turn: TurnState | None = None
        self.idle = asyncio.Event()  # no turn in progress
        self.idle.set()
        self._turn_index = 0
        self._worker: asyncio.Task | None = None
        family = deps.settings.family
        self.non_blocking = function_mode(family) == live_models.NON_BLOCKING
        self.watchdog = StallWatchdog(deps.settings.stall_s, link.nudge, self._stalled,
                                      lambda: self.info.session_id)
        self.tools = ToolFanOut(deps.bridge, info, link, learner, background, self.watchdog, self.non_blocking,
                                self._current, lambda: self.turn)

    def text_from_transcription(self) -> bool:
        """Text mode on an audio-only model: the learner reads the model's output transcription."""
        return live_models.text_from_transcription(self.deps.settings.family, self.info.mode)

    async def _stalled(self) -> None:
        await self.link.reconnect("stall", self.link.generation)

    # ------------------------------------------------------------------ turn lifecycle

    def begin(self, mode: str, question: str) -> TurnState:
        """Start tracking a new turn, with its own trace span."""
        turn = TurnState(mode=mode, question=question)
        self._turn_index += 1
        turn.span = _tracer.start_span(metrics.SPAN_TURN, context=otel_context.Context(),
                                       attributes={"mode": mode_attr(mode), "turn.index": self._turn_index,
                                                   "session.id": self.info.session_id})
        self.turn = turn
        self.idle.clear()
        return turn

    def _current(self) -> TurnState:
        return self.turn or self.begin("voice" if self.info.mode == "audio" else "text", "")

    def enqueue(self, text: str) -> bool:
        """Queue a typed question; False when too many are waiting."""
        try:
            self.pending.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    def between_turns(self) -> bool:
        """Whether no turn is running or queued."""
        return self.turn is None and self.pending.empty()

    def start_worker(self) -> None:
        """Start answering queued questions in order."""
        self._worker = asyncio.create_task(self._work(), name="turn-worker")

    def stop(self) -> None:
        """Stop the watchdog, the question worker and any running tools."""
        self.watchdog.stop()
        if self._worker is not None:
            self._worker.cancel()
        self.tools.cancel_all()

    def release_waiting(self) -> None:
        """The upstream is gone for good: nothing will complete the turn in progress."""
        if self.turn is not None:
            self.turn.done.set()

    async def _work(self) -> None:
        while True:
            text = await self.pending.get()
            await self.idle.wait()
            try:
                await self._text_turn(text)
            except Exception:  # noqa: BLE001 - one bad turn must not end the session
                log.exception("turn failed")
                await self.learner.send_error(protocol.INTERNAL, "something went wrong with that message; try again")
                if self.turn is not None:
                    await self.finish()
            if self.state.go_away and self.turn is None:
                await self.link.reconnect("go_away")

    async def _text_turn(self, text: str) -> None:
        turn = self.begin("text", text)
        with trace.use_span(turn.span, end_on_exit=False):
            # Retrieval needs no upstream: a session's first question is looked up while its upstream still
            # waits for the learner's context (chat.py, `_open`).
            await self._retrieve(turn, text)
            await self.link.ready.wait()
            turn.content = rag.user_turn(turn.retrieved, text)
            gen = self.link.generation
            with _tracer.start_as_current_span(metrics.SPAN_LIVE_SEND):
                try:
                    await self.link.send_turn(turn.content)
                    self.watchdog.arm("learner_turn")
                except Exception as exc:  # noqa: BLE001 - the reconnect resends turn.content
                    log.info("send failed; reconnecting", extra={"error": repr(exc)})
                    self.link.reconnect_soon("drop", gen)
        try:
            await asyncio.wait_for(turn.done.wait(), TURN_TIMEOUT_S)
        except TimeoutError:
            await self.learner.send_error(protocol.UPSTREAM_UNAVAILABLE, "the tutor took too long to answer")
            await self.finish()

    async def _retrieve(self, turn: TurnState, text: str) -> None:
        s = self.deps.settings
        with _tracer.start_as_current_span(metrics.SPAN_RAG) as span:
            turn.retrieved = await rag.search(self.deps.retrieval, self.info.identity.token, text,
                                              deadline_s=s.rag_deadline_s, top_k=s.rag_top_k,
                                              learner_level=self.info.level)
            span.set_attribute("rag.hits", len(turn.retrieved.items))
            span.set_attribute("rag.unavailable", not turn.retrieved.available)
        metrics.retrieval_latency.record(turn.retrieved.latency_ms, {
            "component": "gateway", "outcome": "ok" if turn.retrieved.available else "error"})

    async def finish(self) -> None:
        """Close the current turn: tell the learner, record metrics, log it."""
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        if not turn.interrupted:  # after a barge-in the model still owes the answer to what was said
            self.watchdog.output()
        total_ms = turn.elapsed_ms()
        answer = "".join(turn.answer)
        question = turn.question or "".join(turn.transcript_in)
        self.state.remember(question, answer)
        # The row with this turn's handle is on its way before the learner hears "complete" (and may
        # reconnect at once, possibly to another gateway).
        self.on_turn_done()
        tail = turn.citations.close()
        if tail:
            await self.learner.frame("text", text=tail)
        # Readings from the dictionary pipeline, never the model's (furigana.py); off the loop (a few ms).
        shown = await asyncio.to_thread(furigana.display_if_ready, answer) if answer else None
        await self.learner.frame("turn_complete", turn_id=turn.turn_id, usage=turn.usage.as_dict(),
                                 sources=[source.as_dict() for source in turn.citations.sources],
                                 **({"display": shown} if shown else {}))
        outcome = "interrupted" if turn.interrupted else "ok"
        turn.span.set_attribute("outcome", outcome)
        identity = self.info.identity
        with trace.use_span(turn.span, end_on_exit=True):
            self.deps.turnlog.submit(turn_record(turn, self.info, question, answer, total_ms), identity.token,
                                     user_id=identity.user_id, expires_at=identity.expires_at)
        self.deps.limits.record_soon(identity.user_id, turn.usage)
        record_turn_metrics(turn, total_ms, outcome, self.deps.settings.backend)
        turn.done.set()
        self.idle.set()
        if self.state.go_away and self.pending.empty():
            self.link.reconnect_soon("go_away", self.link.generation)

    async def after_reconnect(self, reason: str) -> None:
        """A dropped (or stalled) upstream is back: the turn in flight is asked again on the new one (tool
        results owed to the old session cannot be delivered: its call ids mean nothing to the new one, so
        the model calls again). A text turn's already-streamed prefix is not sent twice; a voice turn is
        asked again from its transcript while nothing of its answer was heard, else it ends as interrupted."""
        turn = self.turn
        if reason not in ("drop", "stall"):
            return
        if turn is None:
            if reason == "stall" and self.info.mode == "audio" and self.link.utterance:
                # Barged in, and the answer to what was said never came: say it again.
                self.begin("voice", "")
                await self.link.say_again()
                self.watchdog.arm("asked_again", len(self.link.utterance) / 32000)
            return
        if turn.mode == "text" and turn.content is None:
            return  # still being looked up: the worker sends it once the new upstream is ready
        turn.holding = turn.held = False
        turn.tools_pending = 0
        if turn.content is None and turn.transcript_in and not turn.first_audio_ms:
            turn.content = types.Content(role="user", parts=[types.Part(text="".join(turn.transcript_in))])
        if turn.content is None and not turn.transcript_in and not turn.first_audio_ms and self.link.utterance:
            log.info("utterance said again", extra={"reason": reason, "session_id": self.info.session_id})
            await self.link.say_again()
            self.watchdog.arm("asked_again", len(self.link.utterance) / 32000)
        elif turn.content is not None:
            turn.skip_chars = turn.sent_chars
            turn.answer = [("".join(turn.answer))[:turn.sent_chars]]
            log.info("turn asked again", extra={"reason": reason, "session_id": self.info.session_id})
            await self.link.send_turn(turn.content)
            self.watchdog.arm("asked_again")
        else:
            await self.learner.frame("interrupted")
            await self.finish()

    # ------------------------------------------------------------------ voice turns (learner audio)

    def begin_voice_if_idle(self) -> None:
        """Every learner audio frame: a voice turn begins; while the learner speaks the model owes nothing."""
        if self.turn is None:
            self.begin("voice", "")
        self.watchdog.touch()

    def mark_audio_end(self) -> None:
        """Note the learner finished speaking and wait for the model's reply."""
        if self.turn is not None:
            self.turn.audio_end = time.perf_counter()
        # The model hears the utterance before it can answer: its length is added to the wait.
        self.watchdog.arm("learner_turn", len(self.link.utterance) / 32000)

    # ------------------------------------------------------------------ server content (from the link)

    async def on_server_content(self, sc: types.LiveServerContent) -> None:
        """Forward model output to the learner and track the turn's progress."""
        if sc.interrupted:
            # At once: the client drops queued audio; nothing more of the old answer is sent.
            await self.learner.frame("interrupted")
            if self.turn is not None:
                self.turn.interrupted = True
            self.watchdog.arm("interrupted")
        if sc.input_transcription and sc.input_transcription.text:
            self._current().transcript_in.append(sc.input_transcription.text)
            self.watchdog.touch()  # the model heard the learner and is at work on it
            await self.learner.frame("transcript", role="user", text=sc.input_transcription.text)
        if sc.model_turn and sc.model_turn.parts and not sc.interrupted:
            self.watchdog.output()
            await self._emit_parts(sc.model_turn.parts)
        if sc.output_transcription and sc.output_transcription.text:
            self.watchdog.output()
            text = sc.output_transcription.text
            if self.text_from_transcription():
                # The same path as a text model's words (answer, citations, first_text_ms); the audio is dropped.
                await self._emit_text(text)
            else:
                turn = self._current()
                if self.info.mode == "audio":
                    turn.answer.append(text)
                await self.learner.frame("transcript", role="tutor", text=text)
        if sc.turn_complete:
            turn = self.turn
            if turn is not None and turn.holding and not sc.interrupted:
                # The model's holding turn ("let me check") ends; the learner's turn waits for the answer.
                turn.holding, turn.held = False, True
                log.info("holding turn complete; waiting for the answer", extra={"session_id": self.info.session_id})
                if not turn.tools_pending:
                    self.watchdog.arm("holding_turn")
                return
            await self.finish()

    async def _emit_parts(self, parts: list[types.Part]) -> None:
        for part in parts:
            if part.text and not part.thought:
                await self._emit_text(part.text)
            elif part.inline_data and part.inline_data.data and self.info.mode == "audio":
                await self._emit_audio(part.inline_data.data)

    async def _emit_text(self, delta: str) -> None:
        turn = self._current()
        if turn.skip_chars:
            cut = min(turn.skip_chars, len(delta))
            turn.skip_chars -= cut
            delta = delta[cut:]
            if not delta:
                return
        turn.sent_chars += len(delta)
        if self.info.mode == "text" or turn.mode == "text":
            turn.answer.append(delta)
        shown = turn.citations.feed(delta)
        if not shown:
            return  # held back: it may be the start of a citation
        if not turn.first_text_ms:
            turn.first_text_ms = turn.elapsed_ms()
        await self.learner.frame("text", text=shown)

    async def _emit_audio(self, pcm: bytes) -> None:
        turn = self._current()
        if not turn.first_audio_ms:
            turn.first_audio_ms = turn.elapsed_ms(turn.audio_end or turn.started)
        await self.learner.send(pcm)

    async def on_usage_metadata(self, meta: types.UsageMetadata) -> None:
        """Add reported token use to the turn, or to the learner's spend between turns."""
        usage = from_metadata(meta, self.deps.settings.prices)
        if self.turn is not None:
            self.turn.usage.add(usage)
        else:
            self.deps.limits.record_soon(self.info.identity.user_id, usage)

    # ------------------------------------------------------------------ tools (tool_calls.py)

    async def on_tool_call(self, tc: types.LiveServerToolCall) -> None:
        """Hand the model's tool calls to the fan-out, which runs them and answers upstream."""
        await self.tools.on_tool_call(tc)

    async def on_tool_call_cancellation(self, cancel: types.LiveServerToolCallCancellation) -> None:
        """Cancel tool calls the model withdrew."""
        await self.tools.on_tool_call_cancellation(cancel)


def mode_attr(mode: str) -> str:
    """Collapse session modes to the two metric labels, audio and text."""
    return "audio" if mode in ("voice", "audio") else "text"


def turn_record(turn: TurnState, info: SessionInfo, question: str, answer: str,
                total_ms: float) -> conversations_pb2.Turn:
    """The turn as Conversations.AppendTurn stores it."""
    u = turn.usage
    return conversations_pb2.Turn(
        turn_id=turn.turn_id, session_id=info.session_id, connection_id=info.connection_id, mode=turn.mode,
        language=info.language, question=question, answer=answer,
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


def record_turn_metrics(turn: TurnState, total_ms: float, outcome: str, backend: str) -> None:
    """Record the turn's latency, first-output times and outcome."""
    mode = {"mode": mode_attr(turn.mode)}
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
