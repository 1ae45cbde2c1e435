"""Turn log hand-off: turn records go to Conversations.AppendTurn through a bounded queue.

The learner never waits on it: `submit` is non-blocking (when full, the oldest
record is dropped and counted), a worker sends with retries and jittered
backoff, and `close` flushes what is left within a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from kotoba.v1 import conversations_pb2, conversations_pb2_grpc
from services.common import metrics
from services.common.auth import auth_metadata
from services.common.telemetry import tracer

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass
class Pending:
    turn: conversations_pb2.Turn
    token: str
    parent: trace.SpanContext | None


class TurnLog:
    def __init__(self, stub: conversations_pb2_grpc.ConversationsStub, *, maxsize: int, attempts: int,
                 base_delay_s: float = 0.2, timeout_s: float = 3.0) -> None:
        self.stub = stub
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=maxsize)
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="turnlog")

    def submit(self, turn: conversations_pb2.Turn, token: str) -> None:
        span = trace.get_current_span().get_span_context()
        item = Pending(turn, token, span if span.is_valid else None)
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    self.dropped += 1
                except asyncio.QueueEmpty:
                    pass

    async def _send(self, item: Pending) -> None:
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(item.parent)) if item.parent else None
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            with _tracer.start_as_current_span(metrics.SPAN_TURN_LOG):
                for attempt in range(1, self.attempts + 1):
                    try:
                        await self.stub.AppendTurn(conversations_pb2.AppendTurnRequest(turn=item.turn),
                                                   timeout=self.timeout_s, metadata=auth_metadata(item.token))
                        self.sent += 1
                        return
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() not in RETRYABLE or attempt == self.attempts:
                            self.failed += 1
                            log.warning("turn not logged", extra={"turn_id": item.turn.turn_id,
                                                                  "code": exc.code().name, "attempts": attempt})
                            return
                    await asyncio.sleep(self.base_delay_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self._send(item)
            except Exception:  # noqa: BLE001 - the worker must outlive any one record
                self.failed += 1
                log.exception("turn log worker error")
            finally:
                self.queue.task_done()

    async def close(self, deadline_s: float) -> None:
        """Flush: wait for the queue to drain (bounded), then stop the worker."""
        try:
            await asyncio.wait_for(self.queue.join(), deadline_s)
        except TimeoutError:
            log.warning("turn log not fully flushed", extra={"left": self.queue.qsize()})
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
