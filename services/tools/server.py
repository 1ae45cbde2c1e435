"""Tools gRPC service: wires the domain modules (dictionary, learner, admin) to the Tools RPCs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

import grpc

from kotoba.v1 import retrieval_pb2_grpc, tools_pb2, tools_pb2_grpc
from services.common.auth import ADMIN, Identity, TokenVerifier, authenticate
from services.common.files import write_atomic
from services.common.grpc_server import GrpcService, bootstrap, channel, run_until_signalled
from services.common.rpc_errors import store_errors
from services.tools.admin import ItemWriter
from services.tools.config import ToolsConfig
from services.tools.dictionary import Dictionary
from services.tools.learner import Catalog, Learner
from services.tools.pagetoken import PageTokens
from services.tools.prefix import PrefixIndex
from services.tools.store import Store, plain

log = logging.getLogger(__name__)
Resp = TypeVar("Resp")
SERVICE_NAME = tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name


# Domain errors (ToolError) → status with their message; store failures → UNAVAILABLE.
_handler = store_errors("the dictionary store is not answering right now; try again in a moment")


class ToolsServicer(tools_pb2_grpc.ToolsServicer):
    def __init__(self, config: ToolsConfig, store: Store, prefixes: PrefixIndex,
                 retrieval: retrieval_pb2_grpc.RetrievalStub | None) -> None:
        self.verifier = TokenVerifier(config.common.auth)
        self.store = store
        self.catalog = Catalog(store, config.catalog_cache_seconds)
        self.dictionary = Dictionary(store, prefixes, retrieval, config.retrieval_timeout_ms / 1000)
        self.learner = Learner(store, self.catalog, PageTokens(config.page_secret, config.page_token_ttl_seconds))
        self.writer = ItemWriter(store, self.catalog, prefixes)

    async def _learner(self, context: grpc.aio.ServicerContext) -> Identity:
        identity = await authenticate(context, self.verifier)
        if identity.user_id.startswith("#"):
            # "#…" partitions hold aggregates and catalog totals, never a learner.
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this account cannot use learner tools")
        return identity

    @_handler
    async def SearchWords(self, request, context):  # noqa: N802 - gRPC method names
        """Words matching a query (exact, prefix, then by meaning through retrieval)."""
        identity = await authenticate(context, self.verifier)
        return await self.dictionary.search_words(request, (("authorization", f"Bearer {identity.token}"),))

    @_handler
    async def GetWordDetails(self, request, context):  # noqa: N802
        """One word's details, homographs and examples."""
        await authenticate(context, self.verifier)
        return await self.dictionary.word_details(request)

    @_handler
    async def GetKanjiDetails(self, request, context):  # noqa: N802
        """One kanji's details and common words with it."""
        await authenticate(context, self.verifier)
        return await self.dictionary.kanji_details(request)

    @_handler
    async def GetSentenceDetails(self, request, context):  # noqa: N802
        """One sentence and the words in it."""
        await authenticate(context, self.verifier)
        return await self.dictionary.sentence_details(request)

    @_handler
    async def GetUserProgress(self, request, context):  # noqa: N802
        """The caller's progress per level of one item type."""
        return await self.learner.progress((await self._learner(context)).user_id, request)

    @_handler
    async def GetUserPlan(self, request, context):  # noqa: N802
        """The caller's upcoming reviews."""
        return await self.learner.plan((await self._learner(context)).user_id, request)

    @_handler
    async def GetUserLearnedItems(self, request, context):  # noqa: N802
        """The caller's learned items, a page at a time."""
        return await self.learner.learned_items((await self._learner(context)).user_id, request)

    @_handler
    async def GetUserReviewableItems(self, request, context):  # noqa: N802
        """The caller's items due for review."""
        return await self.learner.reviewable_items((await self._learner(context)).user_id, request)

    @_handler
    async def GetUserContext(self, request, context):  # noqa: N802
        """The caller's learner summary for the prompt."""
        return await self.learner.context((await self._learner(context)).user_id)

    @_handler
    async def UpsertItem(self, request, context):  # noqa: N802
        """Create or replace a dictionary item; admins only."""
        await authenticate(context, self.verifier, role=ADMIN)
        return await self.writer.upsert(request)

    @_handler
    async def DeleteItem(self, request, context):  # noqa: N802
        """Soft-delete a dictionary item; admins only."""
        await authenticate(context, self.verifier, role=ADMIN)
        return await self.writer.delete(request)


# ---- prefix index upkeep (off the request path) ---------------------------------------------

_WORD_FIELDS = "id, #t, #l, written, reading, romaji, meanings, deleted"
_WORD_NAMES = {"#t": "type", "#l": "level"}


def scan_words(store: Store) -> list[dict[str, Any]]:
    """Every word row with the fields the prefix index needs."""
    rows: list[dict[str, Any]] = []
    for page in store.client.get_paginator("scan").paginate(
            TableName=store.items, ProjectionExpression=_WORD_FIELDS, ExpressionAttributeNames=_WORD_NAMES,
            FilterExpression="#t = :w", ExpressionAttributeValues={":w": {"S": "word"}}):
        rows.extend(plain(r) for r in page.get("Items", []))
    return [r for r in rows if not r.get("deleted")]


def changed_since(store: Store, watermark: str) -> tuple[list[str], str]:
    """Ids waiting for the indexer (dirty) changed after `watermark`, and the new watermark."""
    rows = store.query_all(
        TableName=store.items, IndexName="dirty-index",
        KeyConditionExpression="dirty = :d AND updated_at > :w",
        ExpressionAttributeValues={":d": {"S": "1"}, ":w": {"S": watermark}})
    ids = [r["id"]["S"] for r in rows]
    newest = max((r["updated_at"]["S"] for r in rows), default=watermark)
    return ids, newest


def newest_dirty(store: Store) -> str:
    """The newest "dirty" marker time, so the prefix index knows when to rebuild."""
    reply = store.client.query(
        TableName=store.items, IndexName="dirty-index", KeyConditionExpression="dirty = :d",
        ExpressionAttributeValues={":d": {"S": "1"}}, ScanIndexForward=False, Limit=1)
    rows = reply.get("Items", [])
    return rows[0]["updated_at"]["S"] if rows else ""


class PrefixKeeper:
    """Builds the prefix index and keeps it current. With a cache file it can start from the words of the
    last full build and rebuild at once in the background: `make run` restarts skip the ~2 s Scan before
    SERVING. Until that rebuild lands (seconds) a word changed since the cache may lack its prefix match;
    exact matches come from DynamoDB and every hit is read again, so nothing stale is ever returned."""

    def __init__(self, store: Store, index: PrefixIndex, full_every: float, poll_every: float,
                 cache: Path | None = None) -> None:
        self.store, self.index = store, index
        self.full_every, self.poll_every = full_every, poll_every
        self.cache = cache
        self.watermark = ""
        self._task: asyncio.Task | None = None

    async def build(self) -> None:
        """Build the prefix index from every word row (and save those rows to the cache file, if any)."""
        started = time.monotonic()
        self.watermark = await self.store.run(newest_dirty, self.store)
        rows = await self.store.run(scan_words, self.store)
        self.index.rebuild(rows)
        log.info("prefix index built", extra={"words": self.index.size,
                                              "seconds": round(time.monotonic() - started, 2)})
        if self.cache is not None:
            await asyncio.to_thread(_save_rows, self.cache, self.store.items, rows)

    async def start_from_cache(self) -> bool:
        """Fill the index from the cache file (False when there is none or it is unusable)."""
        if self.cache is None:
            return False
        rows = await asyncio.to_thread(_load_rows, self.cache, self.store.items)
        if rows is None:
            return False
        self.index.rebuild(rows)
        log.info("prefix index loaded from cache, rebuilding", extra={"words": self.index.size})
        return True

    async def poll(self) -> None:
        """Apply the word rows changed since the last poll to the prefix index."""
        ids, self.watermark = await self.store.run(changed_since, self.store, self.watermark)
        if ids:
            rows = await self.store.run(self.store.get_items, ids)
            for item_id in ids:
                self.index.update(rows.get(item_id) or {"id": item_id, "deleted": True})

    async def _loop(self, rebuild_now: bool) -> None:
        last_full = -self.full_every if rebuild_now else time.monotonic()
        while True:
            if not rebuild_now:
                await asyncio.sleep(self.poll_every)
            rebuild_now = False
            try:
                if time.monotonic() - last_full >= self.full_every:
                    await self.build()
                    last_full = time.monotonic()
                else:
                    await self.poll()
            except Exception as exc:  # noqa: BLE001 - keep serving from the last good index
                log.warning("prefix index refresh failed", extra={"error": str(exc)})

    def start(self, rebuild_now: bool = False) -> None:
        """Keep the prefix index current in the background (polls, and full rebuilds now and then)."""
        self._task = asyncio.create_task(self._loop(rebuild_now))

    async def stop(self) -> None:
        """Stop keeping the prefix index current."""
        if self._task:
            self._task.cancel()


_CACHE_VERSION = 1


def _save_rows(path: Path, table: str, rows: list[dict[str, Any]]) -> None:
    data = json.dumps({"version": _CACHE_VERSION, "table": table, "rows": rows}, ensure_ascii=False,
                      default=_plain_json).encode("utf-8")
    try:
        write_atomic(path, data)  # a half-written file (disk full) is not left behind either
    except OSError as exc:  # the cache only saves time: serving goes on without it
        log.warning("prefix cache not written", extra={"path": str(path), "error": str(exc)})


def _plain_json(value: Any) -> Any:
    return sorted(value) if isinstance(value, (set, frozenset)) else str(value)


def _load_rows(path: Path, table: str) -> list[dict[str, Any]] | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("prefix cache unreadable, scanning", extra={"path": str(path), "error": str(exc)})
        return None
    if not isinstance(saved, dict) or saved.get("version") != _CACHE_VERSION or saved.get("table") != table:
        return None  # another format or another stack's table
    rows = saved.get("rows")
    return rows if isinstance(rows, list) else None


async def serve(config: ToolsConfig | None = None) -> None:
    """Run the tools service until it is told to stop."""
    config = config or ToolsConfig.from_env()
    store = Store(config.common, threads=config.threads)
    prefixes = PrefixIndex()
    retrieval_channel = channel(config.retrieval_addr)
    servicer = ToolsServicer(config, store, prefixes, retrieval_pb2_grpc.RetrievalStub(retrieval_channel))
    service = GrpcService("tools", config.addr, [SERVICE_NAME], drain_seconds=config.common.drain_seconds)
    tools_pb2_grpc.add_ToolsServicer_to_server(servicer, service.server)
    keeper = PrefixKeeper(store, prefixes, config.prefix_refresh_seconds, config.prefix_poll_seconds,
                          config.prefix_cache)

    async def ready() -> None:
        cached = await keeper.start_from_cache()
        if not cached:
            await keeper.build()
        keeper.start(rebuild_now=cached)

    async def shutdown() -> None:
        await keeper.stop()
        await retrieval_channel.close()
        store.close()

    await run_until_signalled(service, ready=ready, shutdown=shutdown)


def main() -> None:
    """Entry point of the tools service process."""
    common = bootstrap("tools")
    asyncio.run(serve(ToolsConfig.from_env(common=common)))
