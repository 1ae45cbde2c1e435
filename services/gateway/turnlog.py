"""Turn log hand-off: turn records go to Conversations.AppendTurn through a bounded queue.

The learner never waits on it: `submit` is non-blocking. Delivery is retried
until it succeeds, so an outage of Conversations (or of DynamoDB behind it)
only delays the log: capped exponential backoff with jitter and a deadline per
attempt, `wait_for_ready` so a restarted Conversations is picked up as soon as
the channel reconnects. AppendTurn is idempotent per turn_id and the record
keeps its own started_at, so a resend after a lost reply stores nothing twice.

Loss is possible in exactly three ways, all counted (`dropped`, metric
kotoba.errors{code="turn_log_dropped"}) and logged at ERROR:
- the queue is full (a long outage under load): the oldest record is dropped;
- the gateway stops and the flush deadline passes with records still queued;
- a record keeps timing out (DEADLINE_EXCEEDED) while other records get
  through: that is the record's fault, not an outage, so after
  `suspect_attempts` such timeouts it is dropped and one poisonous record
  cannot hold a sender, or the service it slows down, for good.
A record Conversations refuses outright (INVALID_ARGUMENT, PERMISSION_DENIED…)
is not retried: `failed`, code="turn_log_rejected".

Credentials: Conversations takes turn content from the service role only, so a
record is sent with the gateway's service-role token naming the learner in
turn.user_id. Without a service token (a gateway built without one, unit tests)
the learner's own token is used while it is valid.

The service token is minted from the dev secret in local mode (HS256) or read from
KOTOBA_GATEWAY_SERVICE_TOKEN_FILE (a mounted Secret, re-read as it rotates) in
production; without either, such a record is rejected and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from kotoba.v1 import conversations_pb2, conversations_pb2_grpc
from services.common import metrics
from services.common.auth import SERVICE, AuthError, auth_metadata, mint_token
from services.common.config import AuthConfig
from services.common.telemetry import tracer

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

# Signs of an outage (or of a channel being torn down under us): retried without limit.
OUTAGE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
          grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
# Could also be a record Conversations chokes on: retried a bounded number of times, so one bad record
# cannot hold a sender for good.
SUSPECT = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
SERVICE_SUBJECT = "kotoba-gateway"
HOLD_POLL_S = 0.05


class ServiceToken:
    """The gateway's own "service" token, for records whose learner token has expired."""

    def __init__(self, auth: AuthConfig | None, token_file: Path | None = None, ttl_s: int = 600) -> None:
        self.auth = auth
        self.token_file = token_file
        self.ttl_s = ttl_s
        self._token = ""
        self._expires = 0.0

    def get(self) -> str:
        """A valid service token, or "" when the gateway has none."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                log.error("service token file unreadable", extra={"path": str(self.token_file), "error": repr(exc)})
                return ""
        if self.auth is None or self.auth.algorithm != "HS256" or not self.auth.secret:
            return ""
        if time.time() > self._expires - 60:
            try:
                self._token = mint_token(self.auth, SERVICE_SUBJECT, (SERVICE,), ttl_seconds=self.ttl_s)
            except AuthError:
                return ""
            self._expires = time.time() + self.ttl_s
        return self._token


@dataclass
class Pending:
    turn: conversations_pb2.Turn
    token: str
    user_id: str
    expires_at: float  # of the learner's token; 0 = unknown
    parent: trace.SpanContext | None
    queued_at: float = field(default_factory=time.monotonic)


class TurnLog:
    def __init__(self, stub: conversations_pb2_grpc.ConversationsStub, *, maxsize: int, suspect_attempts: int = 10,
                 base_delay_s: float = 0.2, max_delay_s: float = 5.0, timeout_s: float = 3.0, senders: int = 4,
                 service_token: ServiceToken | None = None, hold: Callable[[], bool] = lambda: False,
                 max_hold_s: float = 30.0) -> None:
        self.stub = stub
        # While `hold()` says answers are waiting (a burst of opens queued), records wait: Conversations
        # writes ~9 rows per turn to the same DynamoDB the opens and answers read from. Bounded two ways,
        # so a long overload delays records but never loses them: a queue half full sends again (at full
        # rate), and no record waits past max_hold_s after its submission.
        self.hold = hold
        self.max_hold_s = max_hold_s
        self._closing = False
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=maxsize)
        self.suspect_attempts = suspect_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.senders = senders
        self.service_token = service_token
        self.sent = 0
        self.failed = 0  # refused by Conversations (not retryable)
        self.dropped = 0  # never handed over: queue overflow or flush deadline
        self.retries = 0
        self._workers: list[asyncio.Task] = []

    def start(self) -> None:
        """Start the workers that send turn records to the conversations service."""
        self._workers = [asyncio.create_task(self._run(), name=f"turnlog-{i}") for i in range(self.senders)]

    def submit(self, turn: conversations_pb2.Turn, token: str, *, user_id: str = "", expires_at: float = 0.0) -> None:
        """Queue a turn record for saving."""
        span = trace.get_current_span().get_span_context()
        item = Pending(turn, token, user_id, expires_at, span if span.is_valid else None)
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                try:
                    oldest = self.queue.get_nowait()
                    self.queue.task_done()
                    self._drop([oldest], "queue full")
                except asyncio.QueueEmpty:
                    pass

    def forget(self, user_id: str) -> int:
        """A learner erased their data: drop their queued records (not lost logs, so not counted as dropped)."""
        keep: list[Pending] = []
        gone = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.queue.task_done()
            if user_id in (item.user_id, item.turn.user_id):
                gone += 1
            else:
                keep.append(item)
        for item in keep:
            self.queue.put_nowait(item)
        return gone

    def _drop(self, items: list[Pending], why: str) -> None:
        if not items:
            return
        self.dropped += len(items)
        metrics.errors.add(len(items), {"component": "gateway", "code": "turn_log_dropped"})
        log.error("TURN LOGS LOST", extra={"why": why, "count": len(items), "dropped_total": self.dropped,
                                           "turn_ids": [i.turn.turn_id for i in items[:20]]})

    def _credentials(self, item: Pending, use_service: bool) -> tuple[conversations_pb2.Turn, str] | None:
        if not use_service:
            return item.turn, item.token
        token = self.service_token.get() if self.service_token is not None and item.user_id else ""
        if not token:
            return None
        turn = conversations_pb2.Turn()
        turn.CopyFrom(item.turn)
        turn.user_id = item.user_id
        return turn, token

    async def _send(self, item: Pending) -> None:
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(item.parent)) if item.parent else None
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            with _tracer.start_as_current_span(metrics.SPAN_TURN_LOG) as span:
                attempts = await self._deliver(item)
                span.set_attribute("attempts", attempts)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _deliver(self, item: Pending) -> int:
        use_service = (self.service_token is not None and bool(item.user_id)) or (
            bool(item.expires_at) and time.time() >= item.expires_at)
        attempt = suspect = 0
        while True:
            attempt += 1
            sent_before = self.sent
            creds = self._credentials(item, use_service)
            if creds is None:
                self._reject(item, "UNAUTHENTICATED", attempt, "learner token expired and no service token")
                return attempt
            turn, bearer = creds
            try:
                # wait_for_ready: while Conversations restarts, wait (up to the deadline) for the channel to
                # reconnect instead of failing at once.
                await self.stub.AppendTurn(conversations_pb2.AppendTurnRequest(turn=turn), timeout=self.timeout_s,
                                           metadata=auth_metadata(bearer), wait_for_ready=True)
                self.sent += 1
                if attempt > 1:
                    log.info("turn logged after retries", extra={"turn_id": item.turn.turn_id, "attempts": attempt})
                return attempt
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAUTHENTICATED and not use_service:
                    use_service = True  # the learner's token expired while the record waited
                    continue
                if code in SUSPECT or (code == grpc.StatusCode.DEADLINE_EXCEEDED and self.sent > sent_before):
                    suspect += 1
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and suspect >= self.suspect_attempts:
                    self._drop([item], f"timed out {suspect} times while other records were delivered")
                    return attempt
                if code not in OUTAGE and (code not in SUSPECT or suspect >= self.suspect_attempts):
                    self._reject(item, code.name, attempt, exc.details() or "")
                    return attempt
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("turn log delayed; retrying", extra={"turn_id": item.turn.turn_id,
                                                                     "code": code.name, "attempts": attempt})
            self.retries += 1
            await asyncio.sleep(self._delay(attempt))

    def _delay(self, attempt: int) -> float:
        """base·2^(n-1), capped, with jitter (half to full) so senders don't retry in lockstep."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** min(attempt - 1, 16)) * random.uniform(0.5, 1.0)

    def _reject(self, item: Pending, code: str, attempts: int, details: str) -> None:
        self.failed += 1
        metrics.errors.add(1, {"component": "gateway", "code": "turn_log_rejected"})
        log.error("turn not logged", extra={"turn_id": item.turn.turn_id, "code": code, "attempts": attempts,
                                            "details": details[:200]})

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self._wait_for_quiet(item)
                await self._send(item)
            except asyncio.CancelledError:
                self._drop([item], "gateway stopped before it was delivered")
                raise
            except Exception:  # noqa: BLE001 - a sender must outlive any one record
                self.failed += 1
                log.exception("turn log sender error")
            finally:
                self.queue.task_done()

    async def _wait_for_quiet(self, item: Pending) -> None:
        left = self.max_hold_s - (time.monotonic() - item.queued_at)
        for _ in range(max(0, math.ceil(left / HOLD_POLL_S))):  # polled: the end of a burst is not announced
            if (self._closing or not self.hold() or self.queue.qsize() * 2 >= self.queue.maxsize
                    or time.monotonic() - item.queued_at >= self.max_hold_s):
                return
            await asyncio.sleep(HOLD_POLL_S)

    async def close(self, deadline_s: float) -> None:
        """Flush: wait (bounded) until everything queued is delivered, then stop; what is left is counted lost."""
        self._closing = True
        try:
            await asyncio.wait_for(self.queue.join(), deadline_s)
        except TimeoutError:
            pass
        left: list[Pending] = []
        while True:
            try:
                left.append(self.queue.get_nowait())
                self.queue.task_done()
            except asyncio.QueueEmpty:
                break
        self._drop(left, "gateway stopped before it was delivered (flush deadline)")
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        log.info("turn log closed", extra={"sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                                           "retries": self.retries})
