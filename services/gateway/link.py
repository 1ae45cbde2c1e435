"""A session's upstream link: the Live session it talks to, and keeping it alive.

It opens the upstream (resuming with the latest handle, or fresh and primed with
the recent turns when the handle is refused), dispatches each server message
through an explicit table (content, tool calls and usage to the turn runner;
goAway and resumption updates it handles itself), reconnects after a drop with
backoff and after a goAway between turns, and buffers the learner's audio while
the upstream is away. Policy: resumption.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from google import genai
from google.genai import types

from services.gateway import prompts
from services.gateway.live import Upstream, connect_config
from services.gateway.resumption import ResumptionState, backoff_delays, priming_turns
from services.gateway.session_parts import Background, LinkSettings, SessionInfo
from services.gateway.tools_bridge import CallRecord, function_declarations, function_responses, genai_tools

if TYPE_CHECKING:
    from services.gateway.upstream_pool import UpstreamPool

log = logging.getLogger(__name__)

MAX_BUFFERED_AUDIO = 16000 * 2 * 10  # bytes: 10 s of 16 kHz PCM16 kept while the upstream reconnects


class LinkEvents(Protocol):
    """What the link hands on (the turn runner)."""

    async def on_server_content(self, sc: types.LiveServerContent) -> None:
        """Handle model output: text, audio, transcripts, turn ends."""
    async def on_tool_call(self, tc: types.LiveServerToolCall) -> None:
        """Handle the model asking for tools to run."""
    async def on_tool_call_cancellation(self, cancel: types.LiveServerToolCallCancellation) -> None:
        """Handle the model withdrawing tool calls it no longer needs."""
    async def on_usage_metadata(self, meta: types.UsageMetadata) -> None:
        """Handle token counts reported upstream."""
    async def after_reconnect(self, reason: str) -> None:
        """React to a fresh upstream connection replacing a lost one."""
    def between_turns(self) -> bool:
        """Whether no turn is running or queued, so a reconnect loses nothing."""


def session_setup(settings: LinkSettings, mode: str, instruction: str, *, handle: str | None = None,
                  headers: dict[str, str] | None = None) -> types.LiveConnectConfig:
    """What a session's upstream of `mode` is set up with: the instruction, that mode's functions and the
    link's settings. Defined once, so a pooled upstream (upstream_pool.py) is set up exactly as one a
    session connects itself."""
    return connect_config(system_instruction=instruction, tools=genai_tools(function_declarations(voice=mode == "audio")),
                          mode=mode, handle=handle, config=settings, headers=headers)


class UpstreamLink:
    def __init__(self, client: genai.Client, settings: LinkSettings, info: SessionInfo, state: ResumptionState,
                 background: Background, on_lost: Callable[[], Awaitable[None]],
                 pool: UpstreamPool | None = None) -> None:
        self.client = client
        self.pool = pool  # connected upstreams for an early first open (upstream_pool.py)
        self.settings = settings
        self.info = info
        self.state = state
        self.background = background
        self.on_lost = on_lost  # reconnecting failed for good
        self.events: LinkEvents | None = None
        self.upstream: Upstream | None = None
        self.ready = asyncio.Event()  # upstream usable
        self.generation = 0  # bumped per upstream opened: stale reconnects and tool responses are dropped
        self._reconnect_lock = asyncio.Lock()
        self._audio: collections.deque[bytes] = collections.deque()
        self._audio_bytes = 0
        self._video: bytes | None = None  # the learner's latest camera frame while the upstream is not ready
        # The learner's current utterance (the audio since the last audio_end, its last 10 s): a voice turn
        # the upstream lost before answering it is said again on the new one.
        self.utterance = bytearray()
        self._utterance_ended = False
        self._handlers: dict[str, Callable[[Any], Awaitable[None]]] = {}

    def bind(self, events: LinkEvents) -> None:
        """Attach the session's event handlers and map upstream message kinds to them."""
        # Order matters when one frame carries several: usage and the new handle belong to the turn that the
        # same frame's turnComplete closes, and a goAway is acted on only after that.
        self.events = events
        self._handlers = {
            "usage_metadata": events.on_usage_metadata,
            "session_resumption_update": self._on_session_resumption_update,
            "tool_call_cancellation": events.on_tool_call_cancellation,
            "server_content": events.on_server_content,
            "tool_call": events.on_tool_call,
            "go_away": self._on_go_away,
        }

    # ------------------------------------------------------------------ opening

    def _instruction(self) -> str:
        info = self.info
        return prompts.system_instruction(info.context, info.language, info.mode)

    def _connect_config(self, handle: str | None, first: bool, early: bool = False) -> types.LiveConnectConfig:
        info = self.info
        headers = {"x-kotoba-faults": info.fault_header} if info.fault_header and first else None
        instruction = prompts.opening_instruction(info.mode) if early else self._instruction()
        return session_setup(self.settings, info.mode, instruction, handle=handle, headers=headers)

    async def open(self, *, resume: bool, first: bool = False, early: bool = False) -> None:
        """Resume with the latest handle when there is one; else (or when refused) a fresh upstream session
        primed with the recent turns. `early`: opened before the learner's context is known, with the opening
        instruction, and not yet usable (`open_first` sends the learner's instruction, then marks it ready)."""
        handle = self.state.resume_handle() if resume else None
        if handle:
            upstream = Upstream(self.client, self.settings.model, self)
            try:
                await upstream.open(self._connect_config(handle, first, early))
                self._install(upstream, ready=not early)
                return
            except Exception as exc:  # noqa: BLE001 - refused or expired handle: start fresh below
                log.info("resumption refused; starting a fresh upstream session", extra={"error": repr(exc)})
                self.state.handle = ""
        upstream = self._pooled() if early and first else None
        if upstream is None:
            upstream = Upstream(self.client, self.settings.model, self)
            await upstream.open(self._connect_config(None, first, early))
        self._install(upstream, ready=not early)
        if self.state.history:
            await upstream.send_turn(priming_turns(self.state.history), turn_complete=False)

    def _pooled(self) -> Upstream | None:
        """A connected upstream from the pool, now reporting to this link; None when there is none or this
        session's setup is its own (a test's fault header)."""
        if self.pool is None or self.info.fault_header:
            return None
        parked = self.pool.take(self.info.mode)
        if parked is None or parked.upstream is None:
            return None
        parked.upstream.handler = self
        if parked.handle:
            self.state.update(parked.handle, parked.resumable)
        return parked.upstream

    async def open_first(self, *, resume: bool, learner_known: asyncio.Event | None = None,
                         on_connected: Callable[[], None] = lambda: None) -> None:
        """The session's first upstream, opened while the session starts: a mode switch or a reconnect asked
        meanwhile waits for it (same lock), and audio the learner sent meanwhile follows it.

        With `learner_known` (settings.early_upstream) the connection is made at once, beside the read of the
        learner's context, with the opening instruction; when `learner_known` resolves, the learner's whole
        instruction follows in a contextUpdate (taken in order, so before anything the learner says), and only
        then is the upstream ready. A session open then waits for the longer of the two, not their sum."""
        async with self._reconnect_lock:
            if learner_known is None:
                await self.open(resume=resume, first=True)
            else:
                await self.open(resume=resume, first=True, early=True)
                on_connected()
                await learner_known.wait()
                try:
                    await self.upstream.send_context_update(self._instruction())
                    self.ready.set()
                except Exception:  # noqa: BLE001 - dropped while the context was read: open it whole
                    await self.upstream.close()
                    await self.open(resume=resume)
            await self._replay_media()

    def _install(self, upstream: Upstream, *, ready: bool = True) -> None:
        self.upstream = upstream
        self.generation += 1
        if ready:
            self.ready.set()

    async def close(self) -> None:
        """Close the upstream connection, if any."""
        if self.upstream is not None:
            await self.upstream.close()

    # ------------------------------------------------------------------ reconnecting

    def reconnect_soon(self, reason: str, gen: int | None = None) -> asyncio.Task:
        """Reconnect in the background, so the caller is not held up."""
        return self.background.spawn(self.reconnect(reason, gen))

    async def reconnect(self, reason: str, gen: int | None = None) -> None:
        """Close and resume with the latest handle (backoff on failure). Idempotent per upstream generation."""
        async with self._reconnect_lock:
            if gen is not None and gen != self.generation:
                return  # another path already replaced this upstream
            if reason == "go_away" and not self.state.go_away:
                return  # the turn worker and the goAway handler both ask; one reconnect is enough
            self.ready.clear()
            await self.close()
            if reason == "go_away":
                self.state.go_away = False
            last = await self._reopen()
            if last is not None:
                log.warning("upstream lost for good", extra={"reason": reason, "error": repr(last)})
                await self.on_lost()
                return
            log.info("upstream reconnected", extra={"reason": reason, "session_id": self.info.session_id})
            await self._replay_media()
            if self.events is not None:
                await self.events.after_reconnect(reason)

    async def _reopen(self) -> BaseException | None:
        last: BaseException | None = None
        for delay in backoff_delays(self.settings.reconnect_attempts, self.settings.reconnect_base_delay_s):
            await asyncio.sleep(delay)
            try:
                await self.open(resume=True)
                return None
            except Exception as exc:  # noqa: BLE001
                last = exc
        return last

    async def _replay_media(self) -> None:
        await self._send_kept_video()
        while self._audio:
            chunk = self._audio.popleft()
            self._audio_bytes -= len(chunk)
            with contextlib.suppress(Exception):
                await self.upstream.send_audio(chunk)

    # ------------------------------------------------------------------ LiveHandler (live.Upstream calls these)

    async def on_upstream_lost(self, exc: BaseException | None) -> None:
        """Reconnect after the upstream connection dropped."""
        gen = self.generation
        log.info("upstream dropped", extra={"error": repr(exc), "session_id": self.info.session_id})
        self.reconnect_soon("drop", gen)

    async def on_upstream_message(self, msg: types.LiveServerMessage) -> None:
        """Dispatch each part of an upstream message to its handler."""
        for kind, handler in self._handlers.items():
            value = getattr(msg, kind, None)
            if value is not None:
                await handler(value)

    async def _on_go_away(self, go_away: types.LiveServerGoAway) -> None:
        log.info("upstream goAway", extra={"time_left": go_away.time_left, "session_id": self.info.session_id})
        self.state.go_away = True
        if self.events is not None and self.events.between_turns():
            self.reconnect_soon("go_away", self.generation)

    async def _on_session_resumption_update(self, update: types.LiveServerSessionResumptionUpdate) -> None:
        self.state.update(update.new_handle, update.resumable)

    # ------------------------------------------------------------------ sending

    async def send_turn(self, content: types.Content) -> None:
        """Send a complete learner turn upstream, after a camera frame shown before it was ready."""
        await self._send_kept_video()
        await self.upstream.send_turn(content)

    async def send_audio(self, chunk: bytes) -> None:
        """Straight upstream when it is there; else kept (bounded) for the reconnect to replay."""
        if self._utterance_ended:
            self._utterance_ended = False
            self.utterance.clear()
        self.utterance += chunk
        if len(self.utterance) > MAX_BUFFERED_AUDIO:
            del self.utterance[:len(self.utterance) - MAX_BUFFERED_AUDIO]
        if self.ready.is_set() and self.upstream is not None:
            try:
                await self.upstream.send_audio(chunk)
                return
            except Exception:  # noqa: BLE001 - upstream gone: keep the audio, the receive loop reconnects
                pass
        if self._audio_bytes + len(chunk) <= MAX_BUFFERED_AUDIO:
            self._audio.append(chunk)
            self._audio_bytes += len(chunk)

    async def send_video(self, jpeg: bytes) -> None:
        """Straight upstream when it is ready; else the latest frame is kept for when it is (a frame is only
        worth its moment: an older kept one is dropped). A frame sent as the session opens reaches the model."""
        if self.ready.is_set() and self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.send_video(jpeg)
            return
        self._video = jpeg

    async def _send_kept_video(self) -> None:
        jpeg, self._video = self._video, None
        if jpeg is not None and self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.send_video(jpeg)

    async def say_again(self) -> None:
        """The lost utterance, then its end, on the current upstream."""
        pcm = bytes(self.utterance)
        for start in range(0, len(pcm), 3200):
            await self.upstream.send_audio(pcm[start:start + 3200])
        await self.upstream.send_audio_end()

    async def send_audio_end(self) -> None:
        """Tell the model the learner stopped speaking, once connected."""
        self._utterance_ended = True
        await self.ready.wait()
        with contextlib.suppress(Exception):
            await self.upstream.send_audio_end()

    async def send_tool_responses(self, records: list[CallRecord], gen: int, scheduling: str = "") -> bool:
        """Answer a toolCall on the upstream that asked it; False when that upstream is gone (the turn
        runner then asks the turn again on the new one: a call id means nothing to another session)."""
        responses = function_responses(records)
        if not responses:
            return True
        if gen != self.generation or self.upstream is None:
            return False
        if scheduling:  # NON_BLOCKING calls: how the model is to use the result (INTERRUPT: answer now)
            for response in responses:
                response.scheduling = types.FunctionResponseScheduling(scheduling)
        try:
            await self.upstream.send_tool_response(responses)
        except Exception as exc:  # noqa: BLE001 - a dropped upstream: the turn is asked again after the reconnect
            log.info("tool response not sent", extra={"error": repr(exc)})
            return False
        return True

    async def nudge(self) -> None:
        """Prod a silent model to answer; best effort."""
        if self.upstream is not None and self.ready.is_set():
            with contextlib.suppress(Exception):
                await self.upstream.send_nudge()
