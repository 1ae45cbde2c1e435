"""One client connection: read frames, dispatch each kind to its handler (`self.handlers`).

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
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from services.common import live_models as lm
from services.local_live import protocol as p
from services.local_live.brain.context import TurnInput
from services.local_live.brain.tutor import recall
from services.local_live.faults import SETUP_FIELD, Faults, FaultSpecError
from services.local_live.protocol import ProtocolError
from services.local_live.protocol import Usage as TurnUsage
from services.local_live.protocol import field as get
from services.local_live.reply import Reply
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
    any_audio: bool = False  # audio arrived on this connection: the audio session limit applies
    transcript: Any = None  # voice.StreamingTranscript of the utterance being spoken


# Gemini bills an image at 258 tokens (media resolution default); a video frame is one image.
VIDEO_FRAME_TOKENS = 258


class Connection:
    def __init__(self, ws: ServerConnection, engine: Engine, faults: Faults) -> None:
        self.ws = ws
        self.engine = engine
        self.faults = faults
        self.conn_id = uuid.uuid4().hex
        self.session: SessionState | None = None
        self.voice: Voice | None = None
        self.reply: Reply | None = None  # the reply generating (or about to) in the foreground
        # Replies waiting for NON_BLOCKING tool results; they answer when a result comes back
        # (INTERRUPT / WHEN_IDLE) or only update the context (SILENT).
        self.background: set[Reply] = set()
        self.audio = AudioInput()
        self.video_tokens = 0  # frames since the last turn, billed with it
        self._limits_changed = asyncio.Event()
        # An explicit table, not getattr(f"_on_{kind}"): only these kinds can ever be dispatched.
        self.handlers = {
            "setup": self._on_setup,
            "client_content": self._on_client_content,
            "realtime_input": self._on_realtime_input,
            "tool_response": self._on_tool_response,
            "context_update": self._on_context_update,
        }
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
                await self.handlers[kind](body)
        except ProtocolError as exc:
            log.info("protocol error", extra={"conn": self.conn_id, "code": exc.code, "reason": exc.reason,
                                              "why": exc.why})
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
        session = SessionState(session_id=self.conn_id, started_at=self.engine.clock.now())
        api, version = p.api_of(urlsplit(self.ws.request.path).path)
        session.apply_setup(body, api, version)
        if session.resume_handle:
            snapshot = self.engine.resumption.restore(session.resume_handle)
            if snapshot is None:
                raise ProtocolError(p.CLOSE_POLICY, "session resumption handle is unknown or expired")
            if not session.family.permissive and self.engine.is_open(snapshot.get("lineage", "")):
                raise ProtocolError(lm.CLOSE_INVALID_ARGUMENT, lm.INVALID_ARGUMENT,
                                    "resume while the session's previous connection is still open")
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
        if not session.family.permissive:
            self._timers.append(asyncio.create_task(self._connection_lifetime()))
            self._timers.append(asyncio.create_task(self._session_deadline()))
        log.info("session started", extra={"conn": self.conn_id, "model": session.model,
                                           "family": session.family.key,
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
            usage = TurnUsage(text_in=sum(text_tokens(t) for t in texts), video_in=self._take_video())
            await self._start_reply(TurnInput.from_texts(texts), usage)

    async def _on_realtime_input(self, body: dict[str, Any]) -> None:
        if isinstance(get(body, "text"), str):
            text = get(body, "text")
            await self._start_reply(TurnInput.from_texts([text]),
                                    TurnUsage(text_in=text_tokens(text), video_in=self._take_video()))
        if p.has(body, "activity_start"):
            self.audio.manual = self.audio.active = True
            self.audio.buffer.clear()
            self._drop_transcript()
            await self.interrupt()
        if p.has(body, "video"):
            self._video(get(body, "video"))
        for blob in ([get(body, "audio")] if p.has(body, "audio") else []) + list(get(body, "media_chunks") or []):
            if isinstance(blob, dict) and str(get(blob, "mime_type") or "").startswith("image/"):
                self._video(blob)
            else:
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
            scheduling = str(get(response, "scheduling") or lm.DEFAULT_SCHEDULING).upper()
            replies = [r for r in (self.reply, *self.background) if r is not None]
            if not any(r.deliver(response["id"], response.get("response") or {}, scheduling) for r in replies):
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
        if not self.audio.any_audio:
            self.audio.any_audio = True
            self._limits_changed.set()
        if self.audio.manual or not self.session or not self.session.auto_activity:
            if self.audio.active or not self.audio.manual:
                self.audio.buffer += pcm
                if self.audio.active:
                    self._hear(bytes(self.audio.buffer))
            return
        if self.audio.endpointer is None:
            self.audio.endpointer = self.voice.endpointer()
        for event in self.audio.endpointer.feed(pcm):
            await self._vad_event(event)
        if self.audio.endpointer.in_speech:
            self._hear(self.audio.endpointer.utterance_audio())

    def _hear(self, utterance: bytes) -> None:
        """Transcribe while the learner is still speaking, so only the tail is left at the end."""
        assert self.voice is not None and self.session is not None
        if self.audio.transcript is None:
            from services.local_live.reply import transcription_prompt

            self.audio.transcript = self.voice.stream_transcriber(
                self.session.language, transcription_prompt(self.session.memory, self.session.language))
        if self.audio.transcript is not None:
            self.audio.transcript.update(utterance)

    def _drop_transcript(self) -> None:
        if self.audio.transcript is not None:
            self.audio.transcript.close()
            self.audio.transcript = None

    async def _vad_event(self, event: Any) -> None:
        if event.kind == "speech_start":
            self._drop_transcript()
            await self.interrupt()
        elif event.kind == "speech_end":
            await self._end_utterance(event.audio)

    def _video(self, blob: Any) -> None:
        """One video frame (JPEG, 1 FPS as Gemini expects): billed with the next turn; its test
        caption (a JPEG comment) is what the engine says it was shown."""
        if not isinstance(blob, dict):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "realtime_input.video must be a Blob object")
        assert self.session is not None
        if not self.session.family.video_input:
            raise ProtocolError(lm.CLOSE_INVALID_ARGUMENT, lm.INVALID_ARGUMENT, "video input")
        mime = str(get(blob, "mime_type") or "").lower()
        if mime not in ("image/jpeg", "image/jpg"):
            raise ProtocolError(p.CLOSE_INVALID_DATA, f"unsupported video frame {mime!r}: send image/jpeg")
        caption = p.jpeg_comment(p.decode_b64(get(blob, "data"), "video.data"))
        self.video_tokens += VIDEO_FRAME_TOKENS
        self.session.caption = caption
        if not self.session.saw_video:
            self.session.saw_video = True
            self._limits_changed.set()

    def _take_video(self) -> int:
        tokens, self.video_tokens = self.video_tokens, 0
        return tokens

    async def _end_utterance(self, pcm: bytes) -> None:
        transcript, self.audio.transcript = self.audio.transcript, None
        if not pcm:
            if transcript is not None:
                transcript.close()
            return
        usage = TurnUsage(audio_in=audio_tokens(self.audio.received_bytes, p.INPUT_RATE), video_in=self._take_video())
        self.audio.received_bytes = 0
        await self._start_reply(None, usage, audio=pcm, transcript=transcript)

    # ---- replies --------------------------------------------------------------------------------

    async def _start_reply(self, turn: TurnInput | None, usage: TurnUsage, audio: bytes | None = None,
                           transcript: Any = None) -> None:
        await self.interrupt()
        assert self.session is not None
        self.reply = Reply(self, self.session, turn, usage, audio, transcript)
        self.reply.start()

    def detach(self, reply: Reply) -> None:
        """The reply spoke its holding sentence and waits for NON_BLOCKING results: the model is
        idle, so a new turn no longer interrupts it."""
        self.background.add(reply)
        if self.reply is reply:
            self.reply = None

    async def resume_foreground(self, reply: Reply, scheduling: str) -> None:
        """A background reply got its results and is about to answer: INTERRUPT stops what is
        being said now; WHEN_IDLE waits until the model is idle."""
        if scheduling == "INTERRUPT":
            await self.interrupt()
        else:
            while self.reply is not None and self.reply is not reply and not self.reply.done:
                await self.reply.wait()
        self.background.discard(reply)
        self.reply = reply

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

    async def _connection_lifetime(self) -> None:
        """The family's connection lifetime: goAway{timeLeft} shortly before the close (model clock)."""
        assert self.session is not None
        limits, clock = self.session.family.limits, self.engine.clock
        await clock.sleep(limits.connection_s - limits.go_away_before_s)
        await self.send(p.go_away(clock.real(limits.go_away_before_s)))
        await clock.sleep(limits.go_away_before_s)
        await self.close(p.CLOSE_GOING_AWAY, "connection lifetime reached (goAway sent earlier)")

    def _session_deadline_at(self) -> float | None:
        """When the conversation must end (model clock): audio sessions without context-window
        compression (shorter once video arrived), and the family's hard deadline if it has one."""
        assert self.session is not None
        s, limits = self.session, self.session.family.limits
        deadlines = []
        if limits.hard_deadline_s is not None:
            deadlines.append(s.started_at + limits.hard_deadline_s)
        if not s.compression and (s.audio_out or self.audio.any_audio or s.saw_video):
            deadlines.append(s.started_at + (limits.audio_video_session_s if s.saw_video else limits.audio_session_s))
        return min(deadlines) if deadlines else None

    async def _session_deadline(self) -> None:
        clock = self.engine.clock
        while True:
            self._limits_changed.clear()
            deadline = self._session_deadline_at()
            if deadline is not None and deadline <= clock.now():
                # The wording users report for 3.8's 58:00 cut; the 15-/2-minute ends are assumed alike.
                await self.close(p.CLOSE_INTERNAL, "Deadline expired.")
                return
            timeout = None if deadline is None else clock.real(deadline - clock.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._limits_changed.wait(), timeout)

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

    @property
    def is_open(self) -> bool:
        return not self._closed and self.ws.state is State.OPEN

    async def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for reply in (self.reply, *self.background):
            if reply is not None and not reply.done:
                await reply.cancel()
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
