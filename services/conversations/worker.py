"""Background summaries: a bounded queue drained in batches, retried with backoff, never in AppendTurn's way.

A turn is stored with summaryStatus "pending" plus a pending marker row. The
worker summarises it, writes the summary, updates the counters and removes
the marker. Markers left by a crash (or by a full queue) are picked up at the
next start, and again whenever the queue had to drop work, by `recover()`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.common.waits import wait_event
from services.conversations.records import TurnKey
from services.conversations.store import ConversationStore
from services.conversations.summarise import Summariser

log = logging.getLogger(__name__)
T = TypeVar("T")


class SummaryWorker:
    def __init__(self, store: ConversationStore, summariser: Summariser, io: Callable[..., Awaitable[Any]], *,
                 queue_size: int, batch_size: int, retries: int, backoff_seconds: float,
                 linger_seconds: float = 0.0) -> None:
        self.store = store
        self.summariser = summariser
        self.io = io
        # (key, row): a fresh turn comes with its row, a recovered one is read back first.
        self.queue: asyncio.Queue[tuple[TurnKey, dict[str, Any] | None]] = asyncio.Queue(maxsize=queue_size)
        self.batch_size = batch_size
        # A batch waits this long for more turns after its first: one summary call, one counter update per
        # stats shard and one BatchWriteItem then serve several turns instead of one each (docs/conversations.md).
        self.linger_seconds = linger_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.dropped = 0  # turns left for recover() because the queue was full
        self.done = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._queued: set[str] = set()
        self._draining = asyncio.Event()  # shutdown: batches stop lingering for more turns

    def offer(self, key: TurnKey, row: dict[str, Any] | None = None) -> bool:
        """Queue a turn without waiting; a full queue leaves it to recover()."""
        if key.sk in self._queued:
            return True
        try:
            self.queue.put_nowait((key, row))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        self._queued.add(key.sk)
        return True

    async def recover(self) -> int:
        """Queue the turns left pending by an earlier process; how many were queued."""
        keys = await self.io(self.store.pending_keys)
        queued = sum(1 for key in keys if self.offer(key))
        if keys:
            log.info("pending summaries recovered", extra={"pending": len(keys), "queued": queued})
        return queued

    def start(self) -> None:
        """Start summarising queued turns in the background."""
        self._task = asyncio.create_task(self._run(), name="summary-worker")

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop, summarising what is queued for up to `drain_seconds` first (the rest stays pending)."""
        self._draining.set()
        if drain_seconds > 0:
            try:
                await asyncio.wait_for(self.queue.join(), drain_seconds)
            except TimeoutError:
                log.warning("summaries left pending at shutdown", extra={"pending": self.queue.qsize()})
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def idle(self) -> None:
        """Wait until everything queued so far has been summarised (tests, benchmarks)."""
        await self.queue.join()

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.linger_seconds > 0 and self.queue.qsize() < self.batch_size - 1:
                # Woken by stop(), which also cancels the worker: wait_event keeps that cancel (services/common/waits.py).
                await wait_event(self._draining, self.linger_seconds)
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self._process(batch)
            except Exception:  # noqa: BLE001 - the worker must outlive any one bad batch
                log.exception("summary batch failed; its turns stay pending until the next recovery")
            finally:
                for key, _ in batch:
                    self._queued.discard(key.sk)
                    self.queue.task_done()
            if self.dropped and self.queue.empty():
                self.dropped = 0
                await self._safe_recover()

    async def _safe_recover(self) -> None:
        try:
            await self.recover()
        except Exception:  # noqa: BLE001
            log.exception("pending summary recovery failed")

    async def _process(self, batch: list[tuple[TurnKey, dict[str, Any] | None]]) -> None:
        async def load(key: TurnKey, row: dict[str, Any] | None) -> dict[str, Any] | None:
            return row if row is not None else await self.io(self.store.get_turn, key)

        rows = await asyncio.gather(*(load(key, row) for key, row in batch))
        live: list[dict[str, Any]] = []
        for (key, _), row in zip(batch, rows, strict=True):
            if row is None or row.get("summaryStatus") != "pending":
                await self.io(self.store.drop_pending, key)  # erased, expired or already done
            else:
                live.append(row)
        if not live:
            return
        summaries: list[dict[str, Any]] | None = None
        for attempt in range(self.retries + 1):
            try:
                summaries = await self.summariser.summarise(live)
                break
            except Exception as exc:  # noqa: BLE001 - any backend failure is retried, then counted
                if attempt == self.retries:
                    log.warning("summary failed after retries", extra={"turns": len(live), "error": str(exc)})
                    break
                delay = self.backoff_seconds * (2 ** attempt) * (0.5 + random.random())
                log.info("summary retry", extra={"attempt": attempt + 1, "delay_s": round(delay, 2), "error": str(exc)})
                await asyncio.sleep(delay)
        results = [summaries[i] if summaries else None for i in range(len(live))]
        saved = await asyncio.gather(*(
            self.io(self.store.save_summary, TurnKey(row["sessionId"], row["timestamp"]), summary,
                    "done" if summary else "failed")
            for row, summary in zip(live, results, strict=True)))
        # A turn erased meanwhile (or summarised by another replica) is not counted again.
        done = [(row, summary) for row, summary, ok in zip(live, results, saved, strict=True) if ok]
        gone = [row for row, ok in zip(live, saved, strict=True) if not ok]
        for row in gone:
            await self.io(self.store.drop_pending, TurnKey(row["sessionId"], row["timestamp"]))
        if done:
            await self.io(self.store.after_summaries, done)
            self.done += sum(1 for _, s in done if s)
            self.failed += sum(1 for _, s in done if not s)
