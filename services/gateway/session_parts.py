"""What a learner session is built from: the slices of the gateway config it reads, the shared services it
uses (one `SessionDeps` per gateway process), the per-connection facts its parts share (`SessionInfo`), the
learner's socket as its parts write to it (`LearnerChannel`) and its background tasks (`Background`).

The session's parts (chat.py, link.py, turns.py, persistence.py) get these explicitly instead of reaching
into the gateway's `App`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google import genai
from websockets.exceptions import ConnectionClosed

from kotoba.v1 import tools_pb2
from services.common import live_models, metrics
from services.common.auth import Identity
from services.gateway import protocol
from services.gateway.admission import Admission
from services.gateway.backends import Backends
from services.gateway.config import GatewayConfig, Prices
from services.gateway.connections import ConnectionStore
from services.gateway.context_cache import ContextCache
from services.gateway.registry import SessionRegistry
from services.gateway.tools_bridge import ToolBridge
from services.gateway.turnlog import TurnLog
from services.gateway.usage import Limits

if TYPE_CHECKING:
    from services.gateway.upstream_pool import UpstreamPool


@dataclass(frozen=True)
class SessionSettings:
    """The learner-facing limits of one session."""

    max_text_chars: int
    idle_timeout_s: float
    max_pending_turns: int
    max_sessions_per_learner: int
    store_deadline_s: float
    context_deadline_s: float

    @classmethod
    def from_config(cls, c: GatewayConfig) -> SessionSettings:
        """The session-level settings from the gateway config."""
        return cls(c.max_text_chars, c.idle_timeout_s, c.max_pending_turns, c.max_sessions_per_learner,
                   c.store_deadline_s, c.context_deadline_s)


@dataclass(frozen=True)
class TurnSettings:
    rag_deadline_s: float
    rag_top_k: int
    prices: Prices
    backend: str  # the Live backend kind, a metrics attribute
    # The model's family: whether text mode reads the output transcription, how tool calls behave.
    family: live_models.Family = live_models.family("half-cascade")
    stall_s: float = 8.0  # no model output this long after the model owes some: nudge, then reconnect

    @classmethod
    def from_config(cls, c: GatewayConfig) -> TurnSettings:
        """The turn-level settings from the gateway config."""
        return cls(c.rag_deadline_s, c.rag_top_k, c.prices, c.live.kind, c.live.family, c.stall_s)


@dataclass(frozen=True)
class LinkSettings:
    model: str
    reconnect_attempts: int
    reconnect_base_delay_s: float
    compression_trigger_tokens: int
    compression_target_tokens: int
    google_search: bool = False  # Google Search grounding declared beside the functions
    affective_dialog: bool = False
    proactive_audio: bool = False
    early_upstream: bool = True  # open before the learner's context is read; it follows in a contextUpdate

    @classmethod
    def from_config(cls, c: GatewayConfig) -> LinkSettings:
        """The upstream-link settings from the gateway config."""
        return cls(c.live.model, c.reconnect_attempts, c.reconnect_base_delay_s, c.compression_trigger_tokens,
                   c.compression_target_tokens, c.google_search, c.affective_dialog, c.proactive_audio,
                   c.early_upstream)


@dataclass(frozen=True)
class SessionDeps:
    """Everything a session uses that outlives it; built once per gateway process."""

    session: SessionSettings
    turn: TurnSettings
    link: LinkSettings
    sessions: SessionRegistry
    limits: Limits
    store: ConnectionStore | None
    backends: Backends
    bridge: ToolBridge
    turnlog: TurnLog
    live_client: genai.Client
    admission: Admission
    contexts: ContextCache
    upstreams: UpstreamPool | None = None  # connected upstreams to take (None: each session connects its own)

    @classmethod
    def build(cls, config: GatewayConfig, **parts: Any) -> SessionDeps:
        """Bundle the per-area settings with the shared parts a session needs."""
        return cls(session=SessionSettings.from_config(config), turn=TurnSettings.from_config(config),
                   link=LinkSettings.from_config(config), **parts)


@dataclass
class SessionInfo:
    """Facts about one connection's session that all its parts read; the chat session sets them."""

    identity: Identity
    connection_id: str
    fault_header: str = ""
    session_id: str = ""
    mode: str = "text"  # "text" | "audio"
    language: str = "en"
    context: tools_pb2.GetUserContextResponse | None = None
    base_level: str = ""  # from the learner's settings row, read before their context (learner_reads.py)

    @property
    def level(self) -> str:
        """The learner's JLPT level: from their context once it has loaded, else from their settings row
        ("" when neither could be read)."""
        return self.context.settings.base_level if self.context else self.base_level


class LearnerChannel:
    """The learner's socket as the session's parts write to it: a closed socket is noted, never raised."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.closed = False

    async def send(self, data: str | bytes) -> None:
        """Send to the learner, dropping frames once the socket has closed."""
        if self.closed:
            return
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            self.closed = True

    async def send_error(self, code: str, message: str) -> None:
        """Count and send an error to the learner."""
        metrics.errors.add(1, {"component": "gateway", "code": code})
        await self.send(protocol.error(code, message))

    async def frame(self, kind: str, **fields: Any) -> None:
        """Send one typed message to the learner."""
        await self.send(protocol.frame(kind, **fields))


class Background:
    """A session's fire-and-forget tasks, kept referenced until done and cancelled when it ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run a task kept alive until done, so it is not garbage-collected."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> None:
        """Cancel every background task at session end."""
        for task in list(self._tasks):
            task.cancel()
