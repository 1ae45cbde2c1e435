"""One trace per learner turn with a span per stage, and gRPC client spans under them (in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.procs import free_port
from services.common import metrics, telemetry
from services.gateway import server
from services.gateway.client import ChatClient
from services.gateway.config import GatewayConfig


async def test_one_trace_per_turn_with_stage_spans(stack):
    telemetry.setup_telemetry("gateway", "memory")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = GatewayConfig.from_env(stack.env(KOTOBA_GATEWAY_ADDR=f"127.0.0.1:{free_port()}"))
    stop = asyncio.Event()
    started = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(server.run(config, stop, started))
    _, port = await asyncio.wait_for(started, 30)
    try:
        client = await ChatClient.open(f"ws://127.0.0.1:{port}/v1/chat", stack.token("demo-n5"))
        async with client:
            a = await client.ask("What does 泳ぐ mean?")
            b = await client.ask("how is my N5 progress?")
        assert not a.errors and not b.errors and "get_user_progress" in b.tools
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # shutdown flushes the turn log, so the turn_log spans exist
    spans = exporter.get_finished_spans()
    turns = [s for s in spans if s.name == metrics.SPAN_TURN]
    assert len(turns) == 2 and len({t.context.trace_id for t in turns}) == 2
    by_trace = defaultdict(list)
    for s in spans:
        by_trace[s.context.trace_id].append(s)
    for turn in turns:
        mine = by_trace[turn.context.trace_id]
        names = [s.name for s in mine]
        for stage in (metrics.SPAN_RAG, metrics.SPAN_LIVE_SEND, metrics.SPAN_TURN_LOG):
            assert names.count(stage) == 1, names
            assert next(s for s in mine if s.name == stage).parent.span_id == turn.context.span_id
        by_id = {s.context.span_id: s for s in mine}
        rag = next(s for s in mine if s.name == metrics.SPAN_RAG)
        assert any(s.name.endswith("Retrieval/Search") and s.parent.span_id == rag.context.span_id for s in mine)
        log = next(s for s in mine if s.name == metrics.SPAN_TURN_LOG)
        assert any(s.name.endswith("AppendTurn") and s.parent.span_id == log.context.span_id for s in mine)
        assert all(s.parent is None or s.parent.span_id in by_id for s in mine)
    progress_trace = by_trace[turns[1].context.trace_id]
    tool = next(s for s in progress_trace if s.name == metrics.SPAN_TOOL)
    assert tool.attributes["tool"] == "get_user_progress" and tool.parent.span_id == turns[1].context.span_id
    assert any(s.name.endswith("Tools/GetUserProgress") and s.parent.span_id == tool.context.span_id
               for s in progress_trace)
    assert sum(1 for s in spans if s.name == metrics.SPAN_SESSION_START) == 1
