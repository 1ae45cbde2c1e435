"""gRPC handlers of kotoba.v1.Conversations."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from kotoba.v1 import conversations_pb2 as pb
from kotoba.v1 import conversations_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, SERVICE, Identity, TokenVerifier, authenticate
from services.common.rpc_errors import store_errors
from services.conversations import pages, records
from services.conversations.config import ConversationsConfig
from services.conversations.owners import SessionOwners
from services.conversations.privacy import (
    REDACT_DEADLINE_S,
    is_pseudonym,
    masked_turn,
    pseudonym,
    redacted_turn,
)
from services.conversations.records import InvalidTurn, TurnKey
from services.conversations.search import ConversationPage
from services.conversations.stats import build_response
from services.conversations.store import ConversationStore
from services.conversations.worker import SummaryWorker

log = logging.getLogger(__name__)
turn_log = logging.getLogger("kotoba.turns")
T = TypeVar("T")
GSI = "userId-timestamp-index"
MAX_STATS_DAYS = 400
STATS_DAYS_PER_READ = 8


_store_errors = store_errors("the conversation store is unavailable; try again shortly")


class Conversations(pb_grpc.ConversationsServicer):
    def __init__(self, config: ConversationsConfig, store: ConversationStore, verifier: TokenVerifier,
                 executor: ThreadPoolExecutor, worker: SummaryWorker | None = None) -> None:
        self.config = config
        self.store = store
        self.verifier = verifier
        self.executor = executor
        self.worker = worker
        self.owners = SessionOwners(lambda session_id: self.io(self.store.session_owners, session_id))
        # Redaction gets its own threads: a slow turn must not hold a DynamoDB thread other calls wait for.
        self.redactor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="redact")

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call in the DynamoDB thread pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def _ids_for(self, user_id: str) -> list[str]:
        """A learner's rows carry either the id or its pseudonym, depending on the setting at the time."""
        return [user_id] if is_pseudonym(user_id) else [user_id, pseudonym(self.config.pseudonym_key, user_id)]

    # ---- logging ------------------------------------------------------------------------
    async def redact(self, turn: pb.Turn) -> pb.Turn:
        """The turn redacted in a worker thread (the event loop keeps answering health checks and other
        calls); past the deadline the text is masked whole, never stored raw."""
        deadline = time.monotonic() + REDACT_DEADLINE_S
        work = asyncio.get_running_loop().run_in_executor(self.redactor, redacted_turn, turn, deadline)
        try:
            return await asyncio.wait_for(work, REDACT_DEADLINE_S + 0.5)
        except TimeoutError:
            log.error("redaction timed out; turn text masked", extra={"turn_id": turn.turn_id})
            return masked_turn(turn)

    @_store_errors
    async def AppendTurn(self, request: pb.AppendTurnRequest, context: grpc.aio.ServicerContext) -> pb.AppendTurnResponse:
        """Log one turn (unless the learner opted out) and queue it for summarising; services only."""
        # Turn content (costs, latencies, tool names, session ids) is the gateway's to report, never a
        # learner's: a learner token could otherwise inflate costs or write into someone's session.
        await authenticate(context, self.verifier, role=SERVICE)
        turn = request.turn
        if not turn.user_id or len(turn.user_id) > 128 or turn.user_id.startswith("#"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "turn.user_id must name the learner (1-128 chars)")
        user_id = turn.user_id
        try:
            started = records.validate_turn(turn, datetime.now(UTC))
        except InvalidTurn as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        owners = await self.owners.of(turn.session_id)
        if not owners <= set(self._ids_for(user_id)):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "this session id belongs to another learner; start a new session")
        logging_enabled, pseudonymize = await self.io(self.store.get_privacy, user_id)
        day = records.fmt_time(started)[:10]
        if not logging_enabled:
            await self.io(self.store.count_opted_out, turn.turn_id, day)
            turn_log.info("turn not logged", extra={"event": "turn_opted_out", "day": day})
            return pb.AppendTurnResponse(stored=False, reason="the learner turned conversation logging off")
        clean = await self.redact(turn)
        stored_user = pseudonym(self.config.pseudonym_key, user_id) if pseudonymize else user_id
        ttl = int(time.time()) + self.config.ttl_days * 86400
        row = records.turn_row(clean, stored_user, started, ttl, pseudonymize)
        # The marker first (or alongside): a marker without a turn is dropped at recovery,
        # a turn without a marker would stay pending for good after a crash.
        new, _ = await asyncio.gather(self.io(self.store.put_turn, row), self.io(self.store.mark_pending, row))
        self.owners.note(turn.session_id, stored_user)
        if not new:
            return pb.AppendTurnResponse(stored=True, reason="already stored")
        await asyncio.gather(self.io(self.store.add_turn_counters, row), self.io(self.store.touch_session_day, row),
                             self.io(self.store.mark_day, day))
        if self.worker is not None:
            self.worker.offer(TurnKey(row["sessionId"], row["timestamp"]), row)
        turn_log.info("turn", extra={"event": "turn", "turn": _log_view(row, self.config.pseudonym_key)})
        return pb.AppendTurnResponse(stored=True)

    # ---- privacy -------------------------------------------------------------------------
    @_store_errors
    async def GetPrivacySettings(self, request: pb.GetPrivacySettingsRequest,
                                 context: grpc.aio.ServicerContext) -> pb.GetPrivacySettingsResponse:
        """The caller's own privacy settings."""
        identity = await authenticate(context, self.verifier)
        enabled, pseudo = await self.io(self.store.get_privacy, identity.user_id)
        return pb.GetPrivacySettingsResponse(settings=pb.PrivacySettings(logging_enabled=enabled, pseudonymize=pseudo))

    @_store_errors
    async def UpdatePrivacySettings(self, request: pb.UpdatePrivacySettingsRequest,
                                    context: grpc.aio.ServicerContext) -> pb.UpdatePrivacySettingsResponse:
        """Change the caller's privacy settings; they apply from the next turn."""
        identity = await authenticate(context, self.verifier)
        if not request.HasField("settings"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "settings is required (both fields are written)")
        s = request.settings
        await self.io(self.store.set_privacy, identity.user_id, s.logging_enabled, s.pseudonymize)
        return pb.UpdatePrivacySettingsResponse(settings=s)

    @_store_errors
    async def DeleteUserData(self, request: pb.DeleteUserDataRequest,
                             context: grpc.aio.ServicerContext) -> pb.DeleteUserDataResponse:
        """Erase the caller's logs (an admin may name another learner); the number of turns erased."""
        identity = await authenticate(context, self.verifier)
        target = request.user_id or identity.user_id
        if target != identity.user_id and not identity.is_admin:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only an admin may erase another learner's logs")
        deleted = await self.io(self.store.delete_user, self._ids_for(target))
        self.owners.forget(self._ids_for(target))
        log.info("user data erased", extra={"deleted_turns": deleted, "by_admin": target != identity.user_id})
        return pb.DeleteUserDataResponse(deleted_turns=deleted)

    @_store_errors
    async def ExportUserData(self, request: pb.ExportUserDataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ExportUserDataResponse:
        """The caller's own turns newest first, a page at a time, with their privacy settings."""
        identity = await authenticate(context, self.verifier)
        # A service token names no learner; the gateway passes the learner's own token on instead.
        if identity.is_service:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "export with the learner's own token")
        filters = {"export": identity.user_id}
        size, cursor = await self._page(context, request.page_size, request.page_token, filters)
        if not isinstance(cursor.get("k", ""), str):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not a token this service issued")
        rows, (enabled, pseudo) = await asyncio.gather(
            self.io(functools.partial(self.store.merged_desc, self._ids_for(identity.user_id), index=GSI,
                                      below=cursor.get("k"), want=size + 1)),
            self.io(self.store.get_privacy, identity.user_id))
        turns = [records.row_to_turn(r) for r in rows[:size]]
        reply = pb.ExportUserDataResponse(turns=turns, session_ids=list(dict.fromkeys(t.session_id for t in turns)),
                                          settings=pb.PrivacySettings(logging_enabled=enabled, pseudonymize=pseudo))
        if len(rows) > size:
            reply.next_page_token = pages.encode(filters, {"k": rows[size - 1]["timestamp"]})
        return reply

    # ---- admin ---------------------------------------------------------------------------
    async def _admin(self, context: grpc.aio.ServicerContext) -> Identity:
        return await authenticate(context, self.verifier, role=ADMIN)

    async def _range(self, context: grpc.aio.ServicerContext, start: str, end: str,
                     default_days: int) -> tuple[datetime, datetime]:
        try:
            end_t = records.parse_time(end, "end_time") if end else datetime.now(UTC) + timedelta(minutes=5)
            start_t = records.parse_time(start, "start_time") if start else end_t - timedelta(days=default_days)
        except InvalidTurn as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except OverflowError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start_time/end_time is out of range")
        if start_t >= end_t:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start_time must be before end_time")
        return start_t, end_t

    async def _page(self, context: grpc.aio.ServicerContext, size: int, token: str,
                    filters: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            return pages.page_size(size), pages.decode(token, filters)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    @_store_errors
    async def GetConversation(self, request: pb.GetConversationRequest,
                              context: grpc.aio.ServicerContext) -> pb.GetConversationResponse:
        """Every turn of one session, for admins."""
        await self._admin(context)
        if not request.session_id or request.session_id.startswith("#"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session_id is required")
        rows = await self.io(self.store.session_turns, request.session_id)
        if not rows:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no conversation {request.session_id!r}")
        return pb.GetConversationResponse(turns=[records.row_to_turn(r) for r in rows])

    @_store_errors
    async def ListUserConversations(self, request: pb.ListUserConversationsRequest,
                                    context: grpc.aio.ServicerContext) -> pb.ListUserConversationsResponse:
        """One learner's turns newest first, a page at a time, for admins."""
        await self._admin(context)
        if not request.user_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id is required")
        size, cursor = await self._page(context, request.page_size, request.page_token, {"u": request.user_id})
        rows = await self.io(functools.partial(self.store.merged_desc, self._ids_for(request.user_id), index=GSI,
                                               below=cursor.get("k"), want=size + 1))
        reply = pb.ListUserConversationsResponse(turns=[records.row_to_turn(r) for r in rows[:size]])
        if len(rows) > size:
            reply.next_page_token = pages.encode({"u": request.user_id}, {"k": rows[size - 1]["timestamp"]})
        return reply

    @_store_errors
    async def ListSummaries(self, request: pb.ListSummariesRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListSummariesResponse:
        """Turn summaries in a time range newest first, optionally of one category, for admins."""
        await self._admin(context)
        start, end = await self._range(context, request.start_time, request.end_time, self.config.ttl_days)
        filters = {"c": request.category, "s": request.start_time, "e": request.end_time}
        size, cursor = await self._page(context, request.page_size, request.page_token, filters)
        lo, hi = records.fmt_time(start), records.fmt_time(end)
        days = await self.io(self.store.days_with_data, lo[:10], hi[:10])
        category = request.category

        def keep(row: dict[str, Any]) -> bool:
            return not category or row.get("category") == category

        reply = pb.ListSummariesResponse()
        for day in days:
            if cursor.get("d") and day > cursor["d"]:
                continue
            below = cursor["k"] if cursor.get("d") == day else hi
            want = size - len(reply.summaries) + 1
            rows = await self.io(functools.partial(
                self.store.merged_desc, [f"#summaries#{day}#{n}" for n in range(records.SHARDS)],
                below=below, above=lo, want=want, keep=keep))
            for row in rows:
                if len(reply.summaries) == size:
                    last = reply.summaries[-1]
                    reply.next_page_token = pages.encode(filters, {"d": day, "k": f"{last.started_at}#{last.turn_id}"})
                    return reply
                reply.summaries.append(pb.TurnSummary(
                    turn_id=row["timestamp"].split("#", 1)[1], session_id=row.get("turnSessionId", ""),
                    started_at=row.get("startedAt", ""), summary=records.summary_message(row.get("summary") or {})))
        return reply

    @_store_errors
    async def ListConversations(self, request: pb.ListConversationsRequest,
                                context: grpc.aio.ServicerContext) -> pb.ListConversationsResponse:
        """Conversations in a time range newest first, filtered by category, learner or text, for admins."""
        await self._admin(context)
        start, end = await self._range(context, request.start_time, request.end_time, self.config.ttl_days)
        filters = {"c": request.category, "u": request.user_id, "s": request.start_time, "e": request.end_time,
                   "q": request.query}
        size, cursor = await self._page(context, request.page_size, request.page_token, filters)
        lo, hi = records.fmt_time(start), records.fmt_time(end)
        page = ConversationPage(request.category, request.query.strip().lower(), size, self._session_turns)
        after = tuple(cursor["k"]) if cursor.get("k") else None
        if request.user_id:
            sessions = await self._user_sessions(request.user_id, lo, hi)
            if await page.fill(sessions, after):
                page.reply.next_page_token = pages.encode(filters, {"k": list(page.after_key)})
            return page.reply
        days = await self.io(self.store.days_with_data, lo[:10], hi[:10])
        for day in days:
            if cursor.get("d") and day > cursor["d"]:
                continue
            rows = await self.io(self.store.session_day_rows, day)
            sessions = sorted((_session_summary(r) for r in rows if r.get("lastTurnAt", "") >= lo
                               and r.get("startedAt", "") < hi), key=lambda s: (s.started_at, s.session_id),
                              reverse=True)
            if await page.fill(sessions, after if cursor.get("d") == day else None):
                page.reply.next_page_token = pages.encode(filters, {"d": day, "k": list(page.after_key)})
                return page.reply
        return page.reply

    async def _session_turns(self, session_id: str) -> list[dict[str, Any]]:
        return await self.io(self.store.session_turns, session_id)

    async def _user_sessions(self, user_id: str, lo: str, hi: str) -> list[pb.ConversationSummary]:
        rows = await self.io(functools.partial(self.store.merged_desc, self._ids_for(user_id), index=GSI,
                                               below=hi, above=lo, want=5000))
        by_session: dict[str, pb.ConversationSummary] = {}
        for row in sorted(rows, key=lambda r: r["timestamp"]):
            s = by_session.get(row["sessionId"])
            if s is None:
                s = by_session[row["sessionId"]] = pb.ConversationSummary(
                    session_id=row["sessionId"], user_id=row.get("userId", ""), started_at=row.get("startedAt", ""),
                    first_question=row.get("question", "")[:300], mode=row.get("mode", ""))
            s.turn_count += 1
            s.last_turn_at = row.get("startedAt", "")
            category = (row.get("summary") or {}).get("category")
            if category and category not in s.categories:
                s.categories.append(category)
        return sorted(by_session.values(), key=lambda s: (s.started_at, s.session_id), reverse=True)

    @_store_errors
    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        """Turns, sessions, learners, categories, latency and cost per day in a range, for admins."""
        await self._admin(context)
        start, end = await self._range(context, request.start_time, request.end_time, 7)
        if not request.end_time:
            end = datetime.now(UTC)
        if end - start > timedelta(days=MAX_STATS_DAYS):  # before the day list is built, not after
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the range may span at most {MAX_STATS_DAYS} days")
        days = records.days_between(start, end)
        # SHARDS x (1 + STATS_ROWS) = 52 stats rows a day: groups of days are read side by side (a year of days
        # is ~190 BatchGetItem calls).
        rows: dict[str, list[dict[str, Any]]] = {}
        for part in await asyncio.gather(*(self.io(self.store.stats_rows, days[i:i + STATS_DAYS_PER_READ])
                                           for i in range(0, len(days), STATS_DAYS_PER_READ))):
            rows.update(part)
        with_data = await self.io(self.store.days_with_data, days[0], days[-1])
        lo, hi = records.fmt_time(start), records.fmt_time(end)
        session_rows = await asyncio.gather(*(self.io(self.store.session_day_rows, d,
                                                      "#sk, learnerId, startedAt, lastTurnAt, #ttl")
                                              for d in with_data))
        sessions: set[str] = set()
        learners: set[str] = set()
        for day_rows in session_rows:
            for r in day_rows:
                if r.get("lastTurnAt", "") >= lo and r.get("startedAt", "") < hi:
                    sessions.add(r["timestamp"])
                    learners.add(r.get("learnerId", ""))
        return build_response(rows, days, len(sessions), len(learners - {""}))


def _session_summary(row: dict[str, Any]) -> pb.ConversationSummary:
    return pb.ConversationSummary(
        session_id=row["timestamp"], user_id=row.get("learnerId", ""), started_at=row.get("startedAt", ""),
        last_turn_at=row.get("lastTurnAt", ""), turn_count=int(row.get("turnCount", 0)),
        first_question=row.get("firstQuestion", ""), categories=sorted(row.get("categories") or []),
        mode=row.get("mode", ""))


def _log_view(row: dict[str, Any], key: bytes) -> dict[str, Any]:
    """What goes to stdout: the stored row (already redacted), always under the learner's pseudonym: log
    pipelines keep lines longer and wider than the table, and an erase request cannot reach them."""
    view = json_format.MessageToDict(records.row_to_turn(row), preserving_proto_field_name=True)
    view.pop("summary_status", None)
    user = row.get("userId", "")
    view["user_id"] = user if is_pseudonym(user) else pseudonym(key, user)
    return view | {"pseudonymous": row["pseudonymous"]}
