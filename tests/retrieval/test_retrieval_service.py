"""The Retrieval gRPC server, in-process on a free port: search, errors, health, hot swap, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kotoba.v1 import retrieval_pb2
from services.common.auth import auth_metadata, mint_token
from services.snapshots.store import FileStore

from .conftest import wait_for  # noqa: TID252 - area helper


def _store(uri: str) -> FileStore:
    return FileStore(Path(urlparse(uri).path))


async def _search(server, query: str, **kw) -> retrieval_pb2.SearchResponse:
    return await server.stub().Search(retrieval_pb2.SearchRequest(query=query, **kw), timeout=30)


async def test_search_health_info_and_cache(loaded, make_indexer, start_server, snapshot_uri, fixture_items):
    report = make_indexer(loaded).build()
    server = await start_server(loaded, snapshot_uri)
    health = await health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    info = await server.stub().GetIndexInfo(retrieval_pb2.GetIndexInfoRequest(), timeout=5)
    assert info.version == report.version and info.count == len(fixture_items) and info.dimension == 384

    reply = await _search(server, "kanji for one")
    assert reply.intent == "kanji" and reply.hits[0].item.id == "kanji:一"
    assert reply.hits[0].item.meanings and "exact" in reply.hits[0].matched_by
    reply = await _search(server, "asatte")
    assert reply.hits[0].item.written == "あさって" and reply.hits[0].item.reading == "あさって"
    reply = await _search(server, "example sentence with あさって")
    assert reply.intent == "sentence" and reply.hits and all(h.item.type == "sentence" for h in reply.hits)
    assert "あさって" in reply.hits[0].item.written and reply.hits[0].item.translation
    assert not reply.cached
    again = await _search(server, "example sentence with あさって")
    assert again.cached and [h.item.id for h in again.hits] == [h.item.id for h in reply.hits]
    filtered = await _search(server, "one", types=["kanji"], levels=["N5"], top_k=3)
    assert filtered.hits and all(h.item.type == "kanji" and h.item.level == "N5" for h in filtered.hits)


@pytest.mark.parametrize("request_kw, message", [
    ({"query": ""}, "query is empty"),
    ({"query": "   "}, "query is empty"),
    ({"query": "あ" * 513}, "limit is 512"),
    ({"query": "dog", "top_k": 51}, "top_k must be between"),
    ({"query": "dog", "types": ["verb"]}, "unknown type"),
    ({"query": "dog", "levels": ["N6"]}, "unknown level"),
    ({"query": "dog", "learner_level": "beginner"}, "unknown learner_level"),
])
async def test_bad_queries_get_clear_errors(loaded, make_indexer, start_server, snapshot_uri, request_kw, message):
    make_indexer(loaded).build()
    server = await start_server(loaded, snapshot_uri)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.stub().Search(retrieval_pb2.SearchRequest(**request_kw), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


async def test_upserted_item_searchable_after_update_while_serving(loaded, put_items, make_indexer, start_server,
                                                                 snapshot_uri, embedder):
    first = make_indexer(loaded).build()
    server = await start_server(loaded, snapshot_uri)
    new = {"id": "word:雪だるま:ゆきだるま", "type": "word", "level": "N3", "written": "雪だるま",
           "reading": "ゆきだるま", "romaji": "yukidaruma", "meanings": ["snowman"],
           "updated_at": "2026-11-24T12:00:00Z"}
    before = await _search(server, "yukidaruma")
    assert all(h.item.id != new["id"] for h in before.hits)
    put_items(loaded, [new], None, embedder.model, dirty=True)  # as the tools service writes it
    stop = asyncio.Event()
    answered: list[str] = []

    async def keep_searching():  # requests in flight across the swap must all succeed
        n = 0
        while not stop.is_set():
            n += 1
            reply = await _search(server, f"kanji for one {n}")
            answered.append(reply.snapshot_version)

    searching = asyncio.create_task(keep_searching())
    report = await asyncio.to_thread(make_indexer(loaded).update)
    assert report.parent == first.version and report.embedded == 1

    async def swapped():
        info = await server.stub().GetIndexInfo(retrieval_pb2.GetIndexInfoRequest(), timeout=5)
        return info.version == report.version

    await wait_for(swapped)
    await asyncio.sleep(0.2)
    stop.set()
    await searching  # raises if any search failed
    assert first.version in answered and report.version in answered
    for query in ("yukidaruma", "雪だるま", "snowman"):
        reply = await _search(server, query)
        assert reply.hits[0].item.id == new["id"], query
        assert reply.snapshot_version == report.version


def _corrupt_copy(store: FileStore, version: str, how: str) -> str:
    """Publish a damaged copy of `version` as a new version and point LATEST at it."""
    manifest, files = store.read_verified(version)
    if how == "dimension":
        import faiss
        import numpy as np

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
        index.add_with_ids(np.eye(8, dtype=np.float32)[np.arange(manifest.count) % 8],
                           np.arange(manifest.count, dtype=np.int64))
        files["index.faiss"] = bytes(faiss.serialize_index(index))
        bad = store.publish(files, model=manifest.model, dim=8, count=manifest.count)
        return bad.version
    bad = store.publish(files, model=manifest.model, dim=manifest.dim, count=manifest.count)
    path = store.root / bad.version / "items.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"meanings":[', b'"meanings":["tampered",', 1))
    return bad.version


@pytest.mark.parametrize("how", ["checksum", "dimension"])
async def test_corrupted_snapshot_refused_old_keeps_serving(loaded, make_indexer, start_server, snapshot_uri, how):
    good = make_indexer(loaded).build()
    server = await start_server(loaded, snapshot_uri)
    store = _store(snapshot_uri)
    bad = _corrupt_copy(store, good.version, how)
    assert store.latest() == bad

    async def refused():
        return bad in server.servicer.refused

    await wait_for(refused)
    assert ("checksum" if how == "checksum" else "dimension") in server.servicer.refused[bad]
    info = await server.stub().GetIndexInfo(retrieval_pb2.GetIndexInfoRequest(), timeout=5)
    assert info.version == good.version
    reply = await _search(server, "kanji for one")
    assert reply.hits[0].item.id == "kanji:一" and reply.snapshot_version == good.version


async def test_no_snapshot_builds_from_dynamodb(loaded, start_server, snapshot_uri, fixture_items, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    server = await start_server(loaded, snapshot_uri)
    assert "building one from DynamoDB" in caplog.text
    info = await server.stub().GetIndexInfo(retrieval_pb2.GetIndexInfoRequest(), timeout=5)
    assert info.count == len(fixture_items)


class FlakyEmbedder:
    def __init__(self, inner) -> None:
        self.inner, self.model, self.dim = inner, inner.model, inner.dim
        self.fail = False

    def embed_queries(self, texts):
        if self.fail:
            raise RuntimeError("embedder down")
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts):
        return self.inner.embed_passages(texts)


async def test_embedder_outage_degrades_to_lexical(loaded, make_indexer, snapshot_uri, embedder):
    from devtools.procs import free_port
    from services.retrieval.config import RetrievalConfig
    from services.retrieval.server import create

    make_indexer(loaded).build()
    flaky = FlakyEmbedder(embedder)
    flaky.fail = True  # down from the start: the service still loads and answers
    addr = f"127.0.0.1:{free_port()}"
    grpc_service, servicer = create(loaded, RetrievalConfig.from_env(
        {"KOTOBA_RETRIEVAL_ADDR": addr, "KOTOBA_SNAPSHOT_URI": snapshot_uri}), embedder=flaky)
    await grpc_service.start()
    try:
        await servicer.start(build_if_missing=False)
        async with grpc.aio.insecure_channel(addr) as channel:
            from kotoba.v1 import retrieval_pb2_grpc

            stub = retrieval_pb2_grpc.RetrievalStub(channel)
            md = auth_metadata(mint_token(loaded.auth, "learner-1"))
            reply = await stub.Search(retrieval_pb2.SearchRequest(query="asatte"), timeout=10, metadata=md)
            assert reply.hits[0].item.written == "あさって" and "vector" not in reply.hits[0].matched_by
            flaky.fail = False
            reply = await stub.Search(retrieval_pb2.SearchRequest(query="asatte"), timeout=10, metadata=md)
            assert not reply.cached and "vector" in reply.hits[0].matched_by
    finally:
        await servicer.stop()
        await grpc_service.stop(0)
