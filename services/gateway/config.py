"""Gateway settings, read once from the environment (KOTOBA_GATEWAY_* and the Live backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common import live_models
from services.common.config import (
    REPO_ROOT,
    CommonConfig,
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens (Gemini Live list prices); configurable for price changes."""

    audio_in: float = 3.00
    audio_out: float = 12.00
    text_in: float = 0.50
    text_out: float = 2.00
    video_in: float = 3.00  # a video frame's tokens (usageMetadata modality VIDEO/IMAGE)


@dataclass(frozen=True)
class LiveBackend:
    kind: str  # local | gemini | vertex
    base_url: str  # empty = the SDK's default endpoint
    api_key: str
    ca_file: Path | None  # local engine's dev CA
    model: str
    project: str = ""
    location: str = ""

    @property
    def family(self) -> live_models.Family:
        """The registry entry of `model` (validated at start, so always found)."""
        return live_models.validate(self.model, self.kind)


@dataclass(frozen=True)
class GatewayConfig:
    common: CommonConfig
    addr: str
    live: LiveBackend
    prices: Prices
    daily_budget_usd: float
    usage_linger_s: float
    messages_per_minute: int
    audio_seconds_per_minute: float
    max_frame_bytes: int
    max_text_chars: int
    max_pending_turns: int
    idle_timeout_s: float
    resume_window_s: float
    max_sessions_per_learner: int
    max_connections: int
    store_deadline_s: float
    rag_deadline_s: float
    rag_top_k: int
    tool_deadline_s: float
    context_deadline_s: float
    ping_interval_s: float
    ping_timeout_s: float
    upstream_ping_interval_s: float
    upstream_ping_timeout_s: float
    reconnect_attempts: int
    reconnect_base_delay_s: float
    turnlog_queue_size: int
    turnlog_max_backoff_s: float
    turnlog_attempt_timeout_s: float
    service_token_file: Path | None
    allow_fault_header: bool
    compression_trigger_tokens: int
    compression_target_tokens: int
    static_dir: Path
    # Browser Origins allowed on this port (empty: the page's own origin, plus localhost in local mode).
    allowed_origins: tuple[str, ...] = ()
    max_pending_handshakes_per_learner: int = 4
    max_pending_handshakes_per_address: int = 32
    max_concurrent_opens: int = 4
    open_wait_s: float = 5.0
    open_turn_saturation: int = 16
    context_cache_s: float = 30.0
    stall_s: float = 8.0
    google_search: bool = False
    affective_dialog: bool = False
    proactive_audio: bool = False
    early_upstream: bool = True
    upstream_pool: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        """Read the gateway's settings from KOTOBA_* variables, with local-friendly defaults."""
        env = os.environ if env is None else env
        common = CommonConfig.from_env(env)
        kind = env_choice(env, "KOTOBA_LIVE_BACKEND", "local", ("local", "gemini", "vertex"))
        model = env_str(env, "KOTOBA_LIVE_MODEL", live_models.DEFAULT_MODELS[kind])
        try:
            family = live_models.validate(model, kind)
        except ValueError as exc:
            raise ConfigError("KOTOBA_LIVE_MODEL", str(exc)) from None
        if kind == "local":
            ca = Path(env_str(env, "KOTOBA_LIVE_CA_FILE", str(common.data_dir / "tls" / "ca.pem")))
            live = LiveBackend(kind, f"https://{common.addr('live')}", env_str(env, "KOTOBA_LIVE_API_KEY",
                               "local-dev-key"), ca, model)
        elif kind == "gemini":
            live = LiveBackend(kind, env.get("KOTOBA_LIVE_BASE_URL", ""), env_str(env, "GEMINI_API_KEY"), None, model)
        else:
            live = LiveBackend(kind, env.get("KOTOBA_LIVE_BASE_URL", ""), "", None, model,
                               project=env_str(env, "GOOGLE_CLOUD_PROJECT"),
                               location=env_str(env, "GOOGLE_CLOUD_LOCATION", "us-central1"))
        ping_interval = env_float(env, "KOTOBA_GATEWAY_PING_INTERVAL_S", 30.0, minimum=1.0)
        ping_timeout = env_float(env, "KOTOBA_GATEWAY_PING_TIMEOUT_S", 90.0, minimum=1.0)
        if ping_timeout < ping_interval:
            raise ConfigError("KOTOBA_GATEWAY_PING_TIMEOUT_S", "must be >= the ping interval (slow pongs are normal)")
        return cls(
            common=common,
            addr=common.addr("gateway"),
            live=live,
            # The model family's prices (services/common/live_models.py); env overrides for price changes.
            prices=Prices(
                audio_in=env_float(env, "KOTOBA_PRICE_AUDIO_IN_PER_M", family.prices.audio_in, minimum=0.0),
                audio_out=env_float(env, "KOTOBA_PRICE_AUDIO_OUT_PER_M", family.prices.audio_out, minimum=0.0),
                text_in=env_float(env, "KOTOBA_PRICE_TEXT_IN_PER_M", family.prices.text_in, minimum=0.0),
                text_out=env_float(env, "KOTOBA_PRICE_TEXT_OUT_PER_M", family.prices.text_out, minimum=0.0),
                video_in=env_float(env, "KOTOBA_PRICE_VIDEO_IN_PER_M", family.prices.video_in, minimum=0.0),
            ),
            ping_interval_s=ping_interval,
            ping_timeout_s=ping_timeout,
            **_learner_limits(env), **_deadlines(env), **_turn_log(env), **_web(env),
            **_live_session(env, kind),
        )


def _learner_limits(env: Mapping[str, str]) -> dict[str, Any]:
    """Per-learner budgets and rate limits, message sizes and session caps."""
    return dict(
        daily_budget_usd=env_float(env, "KOTOBA_GATEWAY_DAILY_BUDGET_USD", 1.00, minimum=0.0),
        # A learner's turns within this long share one usage-row write (this gateway's budget check counts
        # every turn at once; other gateways see the spend up to this much later).
        usage_linger_s=env_float(env, "KOTOBA_GATEWAY_USAGE_LINGER_S", 1.0, minimum=0.0),
        messages_per_minute=env_int(env, "KOTOBA_GATEWAY_MESSAGES_PER_MINUTE", 30, minimum=1),
        audio_seconds_per_minute=env_float(env, "KOTOBA_GATEWAY_AUDIO_SECONDS_PER_MINUTE", 120.0, minimum=1.0),
        max_frame_bytes=env_int(env, "KOTOBA_GATEWAY_MAX_FRAME_BYTES", 256 * 1024, minimum=1024),
        max_text_chars=env_int(env, "KOTOBA_GATEWAY_MAX_TEXT_CHARS", 2000, minimum=16),
        max_pending_turns=env_int(env, "KOTOBA_GATEWAY_MAX_PENDING_TURNS", 3, minimum=1),
        idle_timeout_s=env_float(env, "KOTOBA_GATEWAY_IDLE_TIMEOUT_S", 600.0, minimum=1.0),
        resume_window_s=env_float(env, "KOTOBA_GATEWAY_RESUME_WINDOW_S", 2 * 3600.0, minimum=1.0),
        max_sessions_per_learner=env_int(env, "KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER", 3, minimum=1),
        # Global: WebSocket connections this process holds (each is at most one session). Beyond it a
        # new one gets HTTP 503 before the upgrade, so the learners already here keep their answers.
        max_connections=env_int(env, "KOTOBA_GATEWAY_MAX_CONNECTIONS", 1000, minimum=1),
    )

def _deadlines(env: Mapping[str, str]) -> dict[str, Any]:
    """How long a turn or session start waits on the backends before going on without them."""
    return dict(
        # Session start reads the connections/usage tables; past this it goes on without them (fail open).
        store_deadline_s=env_float(env, "KOTOBA_GATEWAY_STORE_DEADLINE_S", 1.0, minimum=0.05),
        rag_deadline_s=env_float(env, "KOTOBA_GATEWAY_RAG_DEADLINE_S", 0.15, minimum=0.01),
        rag_top_k=env_int(env, "KOTOBA_GATEWAY_RAG_TOP_K", 5, minimum=1, maximum=20),
        tool_deadline_s=env_float(env, "KOTOBA_GATEWAY_TOOL_DEADLINE_S", 3.0, minimum=0.05),
        context_deadline_s=env_float(env, "KOTOBA_GATEWAY_CONTEXT_DEADLINE_S", 2.0, minimum=0.05),
        # The learner's context (system instruction) is reused for this long by their next sessions.
        context_cache_s=env_float(env, "KOTOBA_GATEWAY_CONTEXT_CACHE_S", 30.0, minimum=0.0),
    )

def _turn_log(env: Mapping[str, str]) -> dict[str, Any]:
    """Queue and retry shape of the turn records sent to the conversations service."""
    return dict(
        turnlog_queue_size=env_int(env, "KOTOBA_GATEWAY_TURNLOG_QUEUE", 1000, minimum=1),
        # Turn logs are retried until delivered (turnlog.py): these shape the retries, not their number.
        turnlog_max_backoff_s=env_float(env, "KOTOBA_GATEWAY_TURNLOG_MAX_BACKOFF_S", 5.0, minimum=0.1),
        turnlog_attempt_timeout_s=env_float(env, "KOTOBA_GATEWAY_TURNLOG_ATTEMPT_TIMEOUT_S", 3.0, minimum=0.1),
        # Production: a mounted Secret holding a "service"-role token, for turn logs whose learner token
        # expired while queued. Local mode mints one from the dev secret instead.
        service_token_file=Path(env["KOTOBA_GATEWAY_SERVICE_TOKEN_FILE"])
        if env.get("KOTOBA_GATEWAY_SERVICE_TOKEN_FILE") else None,
    )

def _web(env: Mapping[str, str]) -> dict[str, Any]:
    """The browser-facing side: static files, allowed origins, handshake and session-open admission."""
    return dict(
        static_dir=Path(env.get("KOTOBA_GATEWAY_STATIC_DIR") or REPO_ROOT / "services" / "gateway" / "static"),
        allowed_origins=tuple(o.strip().rstrip("/") for o in env.get("KOTOBA_GATEWAY_ALLOWED_ORIGINS", "").split(",")
                              if o.strip()),
        # Upgrades between "token checked" and "handshake done": bounded so a flood cannot hold the cap.
        max_pending_handshakes_per_learner=env_int(env, "KOTOBA_GATEWAY_MAX_PENDING_HANDSHAKES_PER_LEARNER", 4,
                                                   minimum=1),
        max_pending_handshakes_per_address=env_int(env, "KOTOBA_GATEWAY_MAX_PENDING_HANDSHAKES_PER_ADDRESS", 32,
                                                   minimum=1),
        # Session opens (admission.py): this many at once, first come first served, held back while this
        # many turns are in flight; a learner who would wait longer than the promise gets server_busy.
        max_concurrent_opens=env_int(env, "KOTOBA_GATEWAY_MAX_CONCURRENT_OPENS", 2 * (os.cpu_count() or 1),
                                     minimum=1),
        open_wait_s=env_float(env, "KOTOBA_GATEWAY_OPEN_WAIT_S", 5.0, minimum=0.0),
        open_turn_saturation=env_int(env, "KOTOBA_GATEWAY_OPEN_TURN_SATURATION", 8 * (os.cpu_count() or 1),
                                     minimum=1),
    )

def _live_session(env: Mapping[str, str], kind: str) -> dict[str, Any]:
    """Upstream model connection: keepalive, reconnects, context compression, stall watchdog, features."""
    return dict(
        upstream_ping_interval_s=env_float(env, "KOTOBA_LIVE_PING_INTERVAL_S", 30.0, minimum=1.0),
        upstream_ping_timeout_s=env_float(env, "KOTOBA_LIVE_PING_TIMEOUT_S", 60.0, minimum=1.0),
        reconnect_attempts=env_int(env, "KOTOBA_GATEWAY_RECONNECT_ATTEMPTS", 5, minimum=1),
        reconnect_base_delay_s=env_float(env, "KOTOBA_GATEWAY_RECONNECT_BASE_DELAY_S", 0.2, minimum=0.0),
        # Lets a test pass the local engine's fault controls through; never honoured for real backends.
        allow_fault_header=env_bool(env, "KOTOBA_GATEWAY_ALLOW_FAULTS", False) and kind == "local",
        compression_trigger_tokens=env_int(env, "KOTOBA_LIVE_COMPRESSION_TRIGGER_TOKENS", 25_600, minimum=1000),
        compression_target_tokens=env_int(env, "KOTOBA_LIVE_COMPRESSION_TARGET_TOKENS", 12_800, minimum=500),
        # The stall watchdog (watchdog.py): no model output this long after a learner turn, a tool
        # response or an interruption → nudge; as long again → reconnect and ask again.
        stall_s=env_float(env, "KOTOBA_GATEWAY_STALL_S", 8.0, minimum=0.1),
        google_search=env_bool(env, "KOTOBA_GATEWAY_GOOGLE_SEARCH", False),
        # Asked for only where the family has them (live_models.live_connect_config leaves them out
        # elsewhere); affective dialog makes the Gemini API client v1alpha.
        affective_dialog=env_bool(env, "KOTOBA_GATEWAY_AFFECTIVE_DIALOG", False),
        proactive_audio=env_bool(env, "KOTOBA_GATEWAY_PROACTIVE_AUDIO", False),
        # Open the upstream beside the learner's context read and send the learner's instruction in a
        # contextUpdate (link.py); off: open it with the whole instruction once the context is read.
        early_upstream=env_bool(env, "KOTOBA_GATEWAY_EARLY_UPSTREAM", True),
        # Upstreams kept connected per mode for sessions to take (upstream_pool.py); 0: none. Needs the above.
        upstream_pool=env_int(env, "KOTOBA_GATEWAY_UPSTREAM_POOL", 2, minimum=0),
    )
