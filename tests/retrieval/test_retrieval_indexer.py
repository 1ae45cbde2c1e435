"""Indexer build/update/verify/rollback against moto DynamoDB with the fixture corpus and real FAISS."""

from __future__ import annotations

import pytest

from services.common.aws import dynamodb_client
from services.retrieval.canary import canary_check
from services.retrieval.engine import SearchEngine
from services.snapshots import items as ddb
from services.snapshots.files import load_version
from services.snapshots.store import SnapshotError


class CountingEmbedder:
    """The real embedder, counting what it embeds; optionally interrupted after `fail_after` batches."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.fail_after = inner, fail_after
        self.model, self.dim = inner.model, inner.dim
        self.passages = 0
        self.batches = 0

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.batches += 1
        self.passages += len(texts)
        return self.inner.embed_passages(texts)


def test_build_reuses_stored_vectors(loaded, make_indexer, fixture_items, embedder):
    counting = CountingEmbedder(embedder)
    indexer = make_indexer(loaded, counting)
    report = indexer.build()
    assert report.count == len(fixture_items)
    assert report.embedded == 0 and counting.passages == 0
    assert report.reused == len(fixture_items)
    snap = load_version(indexer.store, report.version)
    assert snap.manifest.model == embedder.model and snap.index.ntotal == len(fixture_items)
    assert canary_check(snap, lambda t: embedder.embed_queries([t])[0])["ok"]
    verify = indexer.verify(canary=lambda s: canary_check(s, lambda t: embedder.embed_queries([t])[0]))
    assert verify["ok"], verify


def test_build_takes_shipped_seed_vectors(tables, put_items, make_indexer, fixture_items, embedder):
    put_items(tables, fixture_items, None, embedder.model)  # no stored vectors: the shipped ones are used
    counting = CountingEmbedder(embedder)
    report = make_indexer(tables, counting).build()
    assert report.count == len(fixture_items)
    assert report.from_seed + report.embedded == len(fixture_items)
    assert counting.passages == report.embedded


def test_interrupted_build_resumes_without_reembedding(tables, put_items, make_indexer, fixture_items, embedder,
                                                       tmp_path):
    sample = fixture_items[:24]
    put_items(tables, sample, None, embedder.model, dirty=True)
    no_seed = tmp_path / "no-seed"
    no_seed.mkdir()
    first = CountingEmbedder(embedder, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        make_indexer(tables, first, seed_dir=no_seed, batch_size=8).build()
    assert first.passages == 16
    second = CountingEmbedder(embedder)
    report = make_indexer(tables, second, seed_dir=no_seed, batch_size=8).build()
    assert report.count == 24 and second.passages == 8 and report.reused == 16
    client = dynamodb_client(tables.aws)
    assert ddb.dirty_keys(client, tables.table("items")) == []  # indexed items are no longer dirty
    third = CountingEmbedder(embedder)
    again = make_indexer(tables, third, seed_dir=no_seed).build()
    assert third.passages == 0 and again.reused == 24


def test_update_adds_replaces_removes(loaded, put_items, make_indexer, fixture_items, embedder):
    indexer = make_indexer(loaded)
    base = indexer.build()
    new = {"id": "word:試験語:しけんご", "type": "word", "level": "N5", "written": "試験語", "reading": "しけんご",
           "romaji": "shikengo", "meanings": ["zebra crossing tester"], "updated_at": "2026-11-24T10:00:00Z"}
    changed = dict(fixture_items[0], meanings=["purple elephant"], updated_at="2026-11-24T10:00:01Z")
    gone = fixture_items[1]
    put_items(loaded, [new, changed], None, embedder.model, dirty=True)
    client = dynamodb_client(loaded.aws)
    client.update_item(TableName=loaded.table("items"), Key={"id": {"S": gone["id"]}},
                       UpdateExpression="SET deleted = :t, dirty = :d",
                       ExpressionAttributeValues={":t": {"BOOL": True}, ":d": {"S": "1"}})
    counting = CountingEmbedder(embedder)
    report = make_indexer(loaded, counting).update()
    assert report.parent == base.version and report.changed == 2 and report.removed == 1
    assert counting.passages == 2  # only the changed items are embedded
    assert report.count == base.count  # +1 new, -1 removed
    snap = load_version(indexer.store, report.version)
    engine = SearchEngine(snap, lambda t: embedder.embed_queries([t])[0])
    top = engine.search("zebra crossing tester", 1).hits[0]
    assert snap.items[top.pos]["id"] == new["id"]
    top = engine.search("purple elephant", 1).hits[0]
    assert snap.items[top.pos]["id"] == changed["id"]
    assert gone["id"] not in snap.position
    assert ddb.dirty_keys(client, loaded.table("items")) == []
    # nothing dirty: update publishes nothing new
    assert make_indexer(loaded).update().version == report.version
    # rollback points LATEST at the previous version
    assert indexer.rollback() == {"from": report.version, "to": base.version}
    assert indexer.store.latest() == base.version


def test_rollback_without_history_is_an_error(loaded, make_indexer):
    indexer = make_indexer(loaded)
    with pytest.raises(SnapshotError):
        indexer.rollback()
    indexer.build()
    with pytest.raises(SnapshotError, match="no version older"):
        indexer.rollback()
