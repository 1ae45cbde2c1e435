"""One upstream Live session through the real google-genai client, with a receive loop that hands each
server message to a `LiveHandler` (the session's upstream link, link.py).

`session.receive()` ends at every turnComplete, so the loop re-enters it; a
closed socket surfaces as `errors.APIError`/ConnectionClosed and is reported
once through `on_upstream_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Protocol

from google import genai
from google.genai import types

from services.common import live_models
from services.gateway.config import GatewayConfig

log = logging.getLogger(__name__)

class LiveHandler(Protocol):
    async def on_upstream_message(self, msg: types.LiveServerMessage) -> None:
        """Handle one message from the live model."""
    async def on_upstream_lost(self, exc: BaseException | None) -> None:
        """Handle the live connection ending on its own."""


class CompressionSettings(Protocol):
    """The part of the settings `connect_config` reads (GatewayConfig or the link's LinkSettings)."""

    compression_trigger_tokens: int
    compression_target_tokens: int


def make_client(config: GatewayConfig) -> genai.Client:
    """Build the google-genai client for the configured live backend."""
    live = config.live
    # Slow pongs are normal upstream (8-30 s seen): a 20 s timeout would drop healthy sessions.
    # No permessage-deflate upstream (as on the learner side): compressing every audio chunk and text frame
    # was the gateway event loop's largest cost per turn after the socket writes, and each session kept two
    # zlib windows; base64 audio barely shrinks, and the link is datacentre to Google.
    ws_args: dict = {"ping_interval": config.upstream_ping_interval_s,
                     "ping_timeout": config.upstream_ping_timeout_s, "max_size": 16 * 1024 * 1024,
                     "compression": None}
    if live.ca_file is not None:
        ws_args["ssl"] = ssl.create_default_context(cafile=str(live.ca_file))
    if live.kind == "vertex":
        return genai.Client(vertexai=True, project=live.project, location=live.location,
                            http_options=types.HttpOptions(async_client_args=ws_args))
    # Affective dialog exists only on v1alpha of the Gemini API (on v1beta the setup is refused with 1007).
    affective = config.affective_dialog and live_models.validate(live.model, live.kind).affective_dialog
    options = types.HttpOptions(api_version="v1alpha" if affective else "v1beta", async_client_args=ws_args)
    if live.base_url:
        options.base_url = live.base_url
    return genai.Client(api_key=live.api_key, http_options=options)


def function_mode(family: live_models.Family) -> str:
    """How the session's functions behave: the family's default (3.8 answers NON_BLOCKING calls in a later
    turn, which the turn runner follows: turns.py), its only mode where it has one."""
    if len(family.function_modes) == 1:
        return next(iter(family.function_modes))
    return family.default_function_mode


def connect_config(*, system_instruction: str, tools: list[types.Tool], mode: str, handle: str | None,
                   config: CompressionSettings, headers: dict[str, str] | None = None) -> types.LiveConnectConfig:
    """What the configured model's family accepts for `mode` (live_models.live_connect_config): on an
    audio-only model text mode asks for AUDIO + output transcription (the transcription is the text)."""
    # LinkSettings carries the model; a GatewayConfig has it under .live (bench/load passes one).
    model = getattr(config, "model", None) or config.live.model  # type: ignore[attr-defined]
    cfg = live_models.live_connect_config(
        model, mode, system_instruction=system_instruction, tools=tools, handle=handle,
        compression=(config.compression_trigger_tokens, config.compression_target_tokens),
        # The name was validated for its backend at start; a name only Vertex serves means Vertex.
        backend="gemini" if live_models.find(model) is not None else "vertex",
        google_search=bool(getattr(config, "google_search", False)),
        affective_dialog=bool(getattr(config, "affective_dialog", False)),
        proactive_audio=bool(getattr(config, "proactive_audio", False)),
        function_mode=None)  # the family's default: see function_mode()
    if headers:
        cfg.http_options = types.HttpOptions(headers=headers)
    return cfg


class Upstream:
    """An open Live session plus its receive task."""

    def __init__(self, client: genai.Client, model: str, handler: LiveHandler) -> None:
        self.client = client
        self.model = model
        self.handler = handler
        self.session = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._recv: asyncio.Task | None = None
        self._closing = False

    async def open(self, cfg: types.LiveConnectConfig, timeout_s: float = 10.0) -> None:
        """Connect to the live model and start reading its messages."""
        stack = contextlib.AsyncExitStack()
        try:
            self.session = await asyncio.wait_for(
                stack.enter_async_context(self.client.aio.live.connect(model=self.model, config=cfg)), timeout_s)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._closing = False
        self._recv = asyncio.create_task(self._receive_loop(), name="live-receive")

    async def _receive_loop(self) -> None:
        lost: BaseException | None = None
        try:
            while True:
                async for msg in self.session.receive():
                    await self.handler.on_upstream_message(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - APIError on close, ConnectionClosed, parse errors
            lost = exc
        if not self._closing:
            await self.handler.on_upstream_lost(lost)

    async def close(self) -> None:
        """Stop reading and close the live connection."""
        self._closing = True
        recv, self._recv = self._recv, None
        if recv is not None and recv is not asyncio.current_task():
            recv.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recv
        stack, self._stack = self._stack, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stack.aclose(), 5)
        self.session = None

    async def send_turn(self, content: types.Content | list[types.Content], turn_complete: bool = True) -> None:
        """Send conversation content to the model."""
        await self.session.send_client_content(turns=content, turn_complete=turn_complete)

    async def send_audio(self, pcm16: bytes) -> None:
        """Stream a chunk of the learner's 16 kHz speech."""
        await self.session.send_realtime_input(audio=types.Blob(data=pcm16, mime_type="audio/pcm;rate=16000"))

    async def send_video(self, jpeg: bytes) -> None:
        """Stream one camera frame."""
        await self.session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))

    async def send_audio_end(self) -> None:
        """Tell the model the learner's audio stream has ended."""
        await self.session.send_realtime_input(audio_stream_end=True)

    async def send_nudge(self) -> None:
        """An empty turnComplete: asks a model that went quiet to take its turn, changing nothing else."""
        await self.session.send_client_content(turn_complete=True)

    async def send_context_update(self, system_instruction: str) -> None:
        """Replace the session's system instruction for everything sent after this (LiveClientContextUpdate,
        processed in order with the other input)."""
        await self.session.send_context_update(system_instruction=system_instruction)

    async def send_tool_response(self, responses: list[types.FunctionResponse]) -> None:
        """Return tool results to the model."""
        await self.session.send_tool_response(function_responses=responses)

