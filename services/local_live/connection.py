"""One client connection: read frames, dispatch each kind to its `_on_<kind>` handler.

Replies run in their own task (`reply.Reply`) so the read loop keeps reading: a tool response,
an interruption or a new turn can arrive while the model is still talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from services.local_live import protocol as p
from services.local_live.brain.context import TurnInput
from services.local_live.brain.tutor import recall
from services.local_live.faults import SETUP_FIELD, Faults, FaultSpecError
from services.local_live.protocol import ProtocolError
from services.local_live.protocol import field as get
from services.local_live.reply import Reply, TurnUsage
from services.local_live.session import SessionState
from services.local_live.tokens import audio_tokens, text_tokens
from services.local_live.voice_bridge import Voice, VoiceUnavailable, get_voice

if TYPE_CHECKING:
    from services.local_live.server import Engine

log = logging.getLogger(__name__)


@dataclass
class AudioInput:
    """Learner audio between turns: manual activity markers, or server-side VAD."""

    manual: bool = False  # the client sends activity_start / activity_end
    active: bool = False  # inside activity_start .. activity_end
    buffer: bytearray = field(default_factory=bytearray)
    endpointer: Any = None
    received_bytes: int = 0  # all audio since the last turn, for usage


class Connection:
    def __init__(self, ws: ServerConnection, engine: Engine, faults: Faults) -> None:
        self.ws = ws
        self.engine = engine
        self.faults = faults
        self.conn_id = uuid.uuid4().hex
        self.session: SessionState | None = None
        self.voice: Voice | None = None
        self.reply: Reply | None = None
        self.audio = AudioInput()
        self.user_parts: list[str] = []  # client_content parts waiting for turn_complete
        self._timers: list[asyncio.Task[None]] = []
        self._closed = False

    # ---- the read loop --------------------------------------------------------------------------

    async def run(self) -> None:
        self._delay_pongs()
        try:
            async for raw in self.ws:
                self.record("in", raw)
                kind, body = p.parse_client_frame(raw)
                if self.session is None and kind != "setup":
                    raise ProtocolError(p.CLOSE_POLICY, f"the first message must be setup, got {kind}")
                if self.session is not None and kind == "setup":
                    raise ProtocolError(p.CLOSE_POLICY, "setup was already received on this connection")
                await getattr(self, f"_on_{kind}")(body)
        except ProtocolError as exc:
            log.info("protocol error", extra={"conn": self.conn_id, "code": exc.code, "reason": exc.reason})
            await self.close(exc.code, exc.reason)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection failed", extra={"conn": self.conn_id})
            await self.close(p.CLOSE_INTERNAL, "internal error in the local Live engine")
        finally:
            await self._shutdown()

    # ---- handlers, one per client message kind ---------------------------------------------------

    async def _on_setup(self, body: dict[str, Any]) -> None:
        body = dict(body)
        spec = body.pop(SETUP_FIELD, None)
        if spec is not None:
            try:
                self.faults = Faults.parse(str(spec), self.faults)
            except FaultSpecError as exc:
                raise ProtocolError(p.CLOSE_POLICY, str(exc)) from None
        if self.faults.reject_setup:
            raise ProtocolError(p.CLOSE_POLICY, "setup rejected (fault injection: reject_setup)")
        if self.faults.delay_setup_ms:
            await asyncio.sleep(self.faults.delay_setup_ms / 1000)
        session = SessionState(session_id=self.conn_id)
        session.apply_setup(body)
        if session.resume_handle:
            snapshot = self.engine.resumption.restore(session.resume_handle)
            if snapshot is None:
                raise ProtocolError(p.CLOSE_POLICY, "session resumption handle is unknown or expired")
            session.restore(snapshot)
        if session.audio_out:
            self.voice = await self._load_voice()
            asyncio.create_task(self.voice.pipeline.warm())
        self.session = session
        await self.send(p.setup_complete(self.conn_id))
        if session.resumption:
            await self.send(p.resumption_update(self.issue_handle()))
        if self.faults.goaway_after_seconds:
            self._timers.append(asyncio.create_task(self._go_away_later(self.faults.goaway_after_seconds)))
        log.info("session started", extra={"conn": self.conn_id, "model": session.model,
                                           "modalities": list(session.modalities),
                                           "resumed": bool(session.resume_handle)})

    async def _on_client_content(self, body: dict[str, Any]) -> None:
        turns = get(body, "turns") or []
        if isinstance(turns, dict):
            turns = [turns]
        if not isinstance(turns, list):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "client_content.turns must be a list of Content")
        assert self.session is not None
        primed = False
        for content in turns:
            texts = p.content_text(content)
            if content.get("role") == "model":
                # Earlier turns the client replays (a fresh session primed with recent turns): the
                # user text before a model turn was answered, so it is history, not a new question.
                if self.user_parts:
                    question, self.user_parts = TurnInput.from_texts(self.user_parts).text, []
                    self.session.memory.add("user", question)
                self.session.memory.add("model", " ".join(texts))
                primed = True
            else:
                self.user_parts.extend(texts)
        if primed:
            recall(self.session.memory)
            if self.session.resumption:  # the replayed turns are part of the conversation a handle restores
                await self.send(p.resumption_update(self.issue_handle()))
        if get(body, "turn_complete") is True and self.user_parts:
            texts, self.user_parts = self.user_parts, []
            usage = TurnUsage(text_in=sum(text_tokens(t) for t in texts))
            await self._start_reply(TurnInput.from_texts(texts), usage)

    async def _on_realtime_input(self, body: dict[str, Any]) -> None:
        if isinstance(get(body, "text"), str):
            text = get(body, "text")
            await self._start_reply(TurnInput.from_texts([text]), TurnUsage(text_in=text_tokens(text)))
        if p.has(body, "activity_start"):
            self.audio.manual = self.audio.active = True
            self.audio.buffer.clear()
            await self.interrupt()
        for blob in ([get(body, "audio")] if p.has(body, "audio") else []) + list(get(body, "media_chunks") or []):
            await self._audio(blob)
        if p.has(body, "activity_end"):
            self.audio.active = False
            await self._end_utterance(bytes(self.audio.buffer))
            self.audio.buffer.clear()
        if get(body, "audio_stream_end") is True:
            if self.audio.manual:
                if self.audio.active:
                    self.audio.active = False
                    await self._end_utterance(bytes(self.audio.buffer))
                    self.audio.buffer.clear()
            elif self.audio.endpointer is not None:
                for event in self.audio.endpointer.flush():
                    await self._vad_event(event)

    async def _on_tool_response(self, body: dict[str, Any]) -> None:
        responses = get(body, "function_responses") or []
        if not isinstance(responses, list):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "tool_response.functionResponses must be a list")
        for response in responses:
            if not isinstance(response, dict) or not isinstance(response.get("id"), str):
                raise ProtocolError(p.CLOSE_INVALID_DATA, "each function response needs a string id")
            if self.reply is None or not self.reply.deliver(response["id"], response.get("response") or {}):
                # A late answer to a call that was cancelled (the learner interrupted): harmless.
                log.info("tool response for no pending call", extra={"conn": self.conn_id, "id": response["id"]})

    async def _on_context_update(self, body: dict[str, Any]) -> None:
        assert self.session is not None
        self.session.set_system_instruction(get(body, "system_instruction"))
        self.session.set_tools(get(body, "tools"))

    # ---- audio ----------------------------------------------------------------------------------

    async def _load_voice(self) -> Voice:
        try:
            return await get_voice()
        except VoiceUnavailable as exc:
            raise ProtocolError(p.CLOSE_INTERNAL, f"audio unavailable: {exc}") from None

    async def _audio(self, blob: Any) -> None:
        if not isinstance(blob, dict):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "realtime_input.audio must be a Blob object")
        mime = str(get(blob, "mime_type") or "audio/pcm;rate=16000").replace(" ", "").lower()
        if not mime.startswith("audio/pcm") or ("rate=" in mime and "rate=16000" not in mime):
            raise ProtocolError(p.CLOSE_INVALID_DATA, f"unsupported audio {mime!r}: send audio/pcm;rate=16000")
        pcm = p.decode_b64(get(blob, "data"), "audio.data")
        if self.voice is None:
            self.voice = await self._load_voice()
        self.audio.received_bytes += len(pcm)
        if self.audio.manual or not self.session or not self.session.auto_activity:
            if self.audio.active or not self.audio.manual:
                self.audio.buffer += pcm
            return
        if self.audio.endpointer is None:
            self.audio.endpointer = self.voice.endpointer()
        for event in self.audio.endpointer.feed(pcm):
            await self._vad_event(event)

    async def _vad_event(self, event: Any) -> None:
        if event.kind == "speech_start":
            await self.interrupt()
        elif event.kind == "speech_end":
            await self._end_utterance(event.audio)

    async def _end_utterance(self, pcm: bytes) -> None:
        if not pcm:
            return
        usage = TurnUsage(audio_in=audio_tokens(self.audio.received_bytes, p.INPUT_RATE))
        self.audio.received_bytes = 0
        await self._start_reply(None, usage, audio=pcm)

    # ---- replies --------------------------------------------------------------------------------

    async def _start_reply(self, turn: TurnInput | None, usage: TurnUsage, audio: bytes | None = None) -> None:
        await self.interrupt()
        assert self.session is not None
        self.reply = Reply(self, self.session, turn, usage, audio)
        self.reply.start()

    async def interrupt(self) -> None:
        """The learner spoke (or sent a new turn) while the model was answering: stop the stale
        reply, cancel its pending tool calls, and tell the client to flush what it buffered."""
        reply = self.reply
        if reply is None or reply.done:
            return
        pending = await reply.cancel()
        if pending:
            await self.send(p.tool_call_cancellation(pending))
        await self.send(p.interrupted())
        await self.send(p.turn_complete())

    async def turn_finished(self) -> None:
        """Called by the reply after turnComplete: goAway after N turns."""
        assert self.session is not None
        if self.faults.goaway_after_turns and self.session.turns == self.faults.goaway_after_turns:
            self._timers.append(asyncio.create_task(self._go_away_later(0)))

    async def _go_away_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.send(p.go_away(self.faults.goaway_time_left))
        await asyncio.sleep(self.faults.goaway_time_left)
        await self.close(p.CLOSE_GOING_AWAY, "session lifetime reached (goAway sent earlier)")

    # ---- sending, faults, teardown ----------------------------------------------------------------

    def issue_handle(self) -> str:
        """A resumption handle for the conversation so far (one that will be refused under the
        reject_resume fault: it is never stored)."""
        assert self.session is not None
        if self.faults.reject_resume:
            return "kr-rejected-" + uuid.uuid4().hex
        return self.engine.resumption.issue(self.session.snapshot())

    async def send(self, frame: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionClosed(None, None)
        self.record("out", frame)
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    def drop(self) -> None:
        """Fault: vanish mid-turn without a close frame, like a network cut."""
        log.info("dropping connection (fault injection)", extra={"conn": self.conn_id})
        self._closed = True
        self.ws.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.record("out", {"close": {"code": code, "reason": reason}})
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    async def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self.reply is not None and not self.reply.done:
            await self.reply.cancel()
        self._closed = True

    def record(self, direction: str, frame: Any) -> None:
        if not self.engine.frames.wants(self.faults):
            return
        if isinstance(frame, str | bytes):
            try:
                frame = json.loads(frame)
            except (ValueError, UnicodeDecodeError):
                frame = {"raw": frame[:200] if isinstance(frame, str) else f"<{len(frame)} bytes>"}
        self.engine.frames.add(self.conn_id, direction, _shorten(frame))

    def _delay_pongs(self) -> None:
        """Fault: answer WebSocket pings late, like Gemini under load (8–30 s seen)."""
        delay = self.faults.ping_delay_ms / 1000
        if not delay:
            return
        protocol, loop = self.ws.protocol, asyncio.get_running_loop()
        send_frame = protocol.send_frame

        def late_pong(frame: Frame) -> None:
            if frame.opcode is not Opcode.PONG:
                send_frame(frame)
                return

            def later() -> None:
                with contextlib.suppress(Exception):
                    send_frame(frame)
                    self.ws.send_data()
            loop.call_later(delay, later)

        protocol.send_frame = late_pong  # type: ignore[method-assign]


def _shorten(value: Any) -> Any:
    """Frames as recorded: long base64 audio replaced by its length."""
    if isinstance(value, dict):
        return {k: (f"<{len(v)} base64 chars>" if k == "data" and isinstance(v, str) and len(v) > 256
                    else _shorten(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value
