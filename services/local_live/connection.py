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
from services.local_live.lifetime import SessionRules
from services.local_live.media import MediaInput
from services.local_live.protocol import ProtocolError
from services.local_live.protocol import Usage as TurnUsage
from services.local_live.protocol import field as get
from services.local_live.reply import Reply
from services.local_live.session import SessionState
from services.local_live.tokens import text_tokens
from services.local_live.voice_bridge import Voice, VoiceUnavailable, get_voice

if TYPE_CHECKING:
    from services.local_live.server import Engine

log = logging.getLogger(__name__)


class Connection:
    """One client WebSocket: the read loop, one handler per client message kind, sending and teardown."""

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
        self.media = MediaInput(self)
        self.rules = SessionRules(self)
        self._warming: set[asyncio.Task[None]] = set()  # held so the loop does not drop them mid-run
        # An explicit table, not getattr(f"_on_{kind}"): only these kinds can ever be dispatched.
        self.handlers = {
            "setup": self._on_setup,
            "client_content": self._on_client_content,
            "realtime_input": self.media.on_realtime_input,
            "tool_response": self._on_tool_response,
            "context_update": self._on_context_update,
        }
        self.user_parts: list[str] = []  # client_content parts waiting for turn_complete
        self._closed = False

    # ---- the read loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes: setup first, then any client message kind."""
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
        if self.faults.delay_setup_ms:
            await asyncio.sleep(self.faults.delay_setup_ms / 1000)
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
            warming = asyncio.create_task(self.voice.pipeline.warm())
            self._warming.add(warming)
            warming.add_done_callback(self._warming.discard)
        self.session = session
        await self.send(p.setup_complete(self.conn_id))
        if session.resumption:
            await self.send(p.resumption_update(self.issue_handle()))
        self.rules.start()
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
            usage = TurnUsage(text_in=sum(text_tokens(t) for t in texts), video_in=self.media.take_video())
            await self.start_reply(TurnInput.from_texts(texts), usage)

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
        """A new system instruction and/or tools for the turns that follow (LiveClientContextUpdate: taken in
        order with the other input). The tools come wrapped, `{"tools": [...]}`, so that an empty list can
        clear them."""
        assert self.session is not None
        unknown = set(body) - {"system_instruction", "systemInstruction", "tools"}
        if unknown:
            raise ProtocolError(p.CLOSE_INVALID_DATA, f"contextUpdate: unknown field {sorted(unknown)[0]!r}")
        tools = get(body, "tools")
        if tools is not None and not (isinstance(tools, dict) and isinstance(tools.get("tools"), list)):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "contextUpdate.tools must be an object with a tools list")
        self.session.set_system_instruction(get(body, "system_instruction"))
        if tools is not None:
            self.session.set_tools(tools["tools"])

    # ---- audio ----------------------------------------------------------------------------------

    async def _load_voice(self) -> Voice:
        try:
            return await get_voice()
        except VoiceUnavailable as exc:
            raise ProtocolError(p.CLOSE_INTERNAL, f"audio unavailable: {exc}") from None

    async def ensure_voice(self) -> Voice:
        """The speech pipeline, loaded on the first audio if setup did not ask for audio out."""
        if self.voice is None:
            self.voice = await self._load_voice()
        return self.voice

    # ---- replies --------------------------------------------------------------------------------

    async def start_reply(self, turn: TurnInput | None, usage: TurnUsage, audio: bytes | None = None,
                          transcript: Any = None) -> None:
        """A new learner turn: interrupt whatever is being said and answer this one."""
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
        self.rules.turn_finished()

    # ---- sending, faults, teardown ----------------------------------------------------------------

    def issue_handle(self) -> str:
        """A resumption handle for the conversation so far (one that will be refused under the
        reject_resume fault: it is never stored)."""
        assert self.session is not None
        if self.faults.reject_resume:
            return "kr-rejected-" + uuid.uuid4().hex
        return self.engine.resumption.issue(self.session.snapshot())

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one server message (recorded when the frames recorder wants this connection)."""
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
        """Close once with a WebSocket code and reason; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self.record("out", {"close": {"code": code, "reason": reason}})
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    @property
    def closed(self) -> bool:
        """This side closed (or dropped) the connection: nothing more is to be sent."""
        return self._closed

    @property
    def is_open(self) -> bool:
        """The connection can still carry frames: the engine refuses a resume into an open lineage."""
        return not self._closed and self.ws.state is State.OPEN

    async def _shutdown(self) -> None:
        self.rules.cancel()
        for reply in (self.reply, *self.background):
            if reply is not None and not reply.done:
                await reply.cancel()
        self._closed = True

    def record(self, direction: str, frame: Any) -> None:
        """Keep a frame for the test-only frames endpoint, audio shortened to its length."""
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
