"""Learner tools: progress, plan, learned and reviewable items, user context. The user id always comes
from the verified token (the servicer passes it in); nothing in a request can name another learner.

Counts per level come from the per-learner aggregate rows (`#agg#<type>#<level>`) and the catalog totals
(`#catalog` / `#total#<type>#<level>`), so progress never reads every progress row; only rows already due
are read (from the `userId-nextReview-index`, projected to type and level) to count reviewable items.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kotoba.v1 import items_pb2, tools_pb2
from services.common.learner_settings import with_defaults
from services.tools.errors import invalid
from services.tools.pagetoken import PageTokens
from services.tools.records import (
    LEVELS,
    clamp_limit,
    item_from_row,
    normalize_entity,
    normalize_level,
)
from services.tools.store import Store

CATALOG_USER = "#catalog"
NEXT_REVIEW_INDEX = "userId-nextReview-index"
LEVEL_ROWS = (*LEVELS, "none")
PLURAL = {"word": "words", "kanji": "kanji", "sentence": "sentences", "kana": "kana"}


def iso(moment: datetime) -> str:
    """A moment as the UTC ISO 8601 string the tools return."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 string (with Z or an offset) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def zone(name: str) -> ZoneInfo:
    """The learner's time zone; UTC when the name is unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass
class Catalog:
    """Items per (type, level), cached briefly: it changes only on seed loads and admin writes."""

    store: Store
    ttl: float
    _totals: dict[tuple[str, str], int] | None = None
    _at: float = 0.0

    async def totals(self) -> dict[tuple[str, str], int]:
        """The catalog counts (items per type and level), cached for a while."""
        if self._totals is None or time.monotonic() - self._at > self.ttl:
            rows = await self.store.run(
                self.store.query_all, TableName=self.store.progress, KeyConditionExpression="userId = :u",
                ExpressionAttributeValues={":u": {"S": CATALOG_USER}})
            totals: dict[tuple[str, str], int] = {}
            for row in rows:
                _, _, item_type, level = row["itemId"]["S"].split("#", 3)
                totals[(item_type, level)] = int(row.get("total", {}).get("N", "0"))
            self._totals, self._at = totals, time.monotonic()
        return self._totals

    def invalidate(self) -> None:
        """Forget the cached catalog counts."""
        self._totals = None


class Learner:
    def __init__(self, store: Store, catalog: Catalog, tokens: PageTokens) -> None:
        self.store = store
        self.catalog = catalog
        self.tokens = tokens

    # ---- reads shared by several tools --------------------------------------------------

    async def settings(self, user_id: str) -> dict[str, Any]:
        """The learner's settings over the defaults."""
        row = await self.store.run(self.store.get_settings, user_id)
        return with_defaults(row)

    async def aggregates(self, user_id: str, item_type: str | None = None) -> dict[tuple[str, str], tuple[int, int]]:
        """(type, level) → (learned, learning) from the learner's aggregate rows."""
        rows = await self.store.run(
            self.store.query_all, TableName=self.store.progress,
            KeyConditionExpression="userId = :u AND begins_with(itemId, :p)",
            ExpressionAttributeValues={":u": {"S": user_id}, ":p": {"S": f"#agg#{item_type or ''}"}})
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for row in rows:
            _, _, t, level = row["itemId"]["S"].split("#", 3)
            out[(t, level)] = (int(row.get("learned", {}).get("N", "0")), int(row.get("learning", {}).get("N", "0")))
        return out

    async def due_groups(self, user_id: str, now: datetime, item_type: str | None = None) -> Counter:
        """(type, level) → reviews due now, from the nextReview index, projected to two attributes."""
        kwargs: dict[str, Any] = {
            "TableName": self.store.progress, "IndexName": NEXT_REVIEW_INDEX,
            "KeyConditionExpression": "userId = :u AND nextReview <= :now",
            "ProjectionExpression": "#t, #l", "ExpressionAttributeNames": {"#t": "type", "#l": "level"},
            "ExpressionAttributeValues": {":u": {"S": user_id}, ":now": {"S": iso(now)}},
        }
        if item_type:
            kwargs["FilterExpression"] = "#t = :type"
            kwargs["ExpressionAttributeValues"][":type"] = {"S": item_type}
        rows = await self.store.run(self.store.query_all, **kwargs)
        return Counter((r.get("type", {}).get("S", ""), r.get("level", {}).get("S", "none")) for r in rows)

    async def upcoming(self, user_id: str, now: datetime, hours: int) -> list[datetime]:
        """The learner's review times in the coming window."""
        rows = await self.store.run(
            self.store.query_all, TableName=self.store.progress, IndexName=NEXT_REVIEW_INDEX,
            KeyConditionExpression="userId = :u AND nextReview BETWEEN :a AND :b",
            ProjectionExpression="nextReview",
            ExpressionAttributeValues={":u": {"S": user_id}, ":a": {"S": iso(now + timedelta(seconds=1))},
                                       ":b": {"S": iso(now + timedelta(hours=hours))}})
        return [parse_iso(r["nextReview"]["S"]) for r in rows]

    async def review_window(self, user_id: str, now: datetime, hours: int) -> tuple[Counter, list[datetime]]:
        """`due_groups(now)` and `upcoming(now, hours)` from one query of the nextReview index (every session
        open asks for both: one read instead of two)."""
        rows = await self.store.run(
            self.store.query_all, TableName=self.store.progress, IndexName=NEXT_REVIEW_INDEX,
            KeyConditionExpression="userId = :u AND nextReview <= :b",
            ProjectionExpression="#t, #l, nextReview", ExpressionAttributeNames={"#t": "type", "#l": "level"},
            ExpressionAttributeValues={":u": {"S": user_id}, ":b": {"S": iso(now + timedelta(hours=hours))}})
        due_by, soon_from = iso(now), iso(now + timedelta(seconds=1))
        due: Counter = Counter()
        upcoming: list[datetime] = []
        for r in rows:
            at = r["nextReview"]["S"]
            if at <= due_by:
                due[(r.get("type", {}).get("S", ""), r.get("level", {}).get("S", "none"))] += 1
            elif at >= soon_from:
                upcoming.append(parse_iso(at))
        return due, upcoming

    # ---- get_user_progress --------------------------------------------------------------

    async def progress(self, user_id: str, request: tools_pb2.GetUserProgressRequest,
                       now: datetime | None = None) -> tools_pb2.GetUserProgressResponse:
        """Learned, learning and due counts per level of one item type, against the catalog totals."""
        item_type = normalize_entity(request.entity_type, "word")
        group = normalize_level(request.group, field="group", allow_all=True)
        now = now or datetime.now(UTC)
        totals, aggs, due = await asyncio.gather(
            self.catalog.totals(), self.aggregates(user_id, item_type), self.due_groups(user_id, now, item_type))
        return tools_pb2.GetUserProgressResponse(
            entity_type=PLURAL[item_type], levels=self._levels(item_type, group, totals, aggs, due))

    @staticmethod
    def _levels(item_type: str, group: str, totals, aggs, due) -> list[tools_pb2.LevelProgress]:
        levels = [group] if group else [
            lv for lv in LEVEL_ROWS
            if totals.get((item_type, lv), 0) or aggs.get((item_type, lv), (0, 0)) != (0, 0)]
        out = []
        for level in levels:
            learned, learning = aggs.get((item_type, level), (0, 0))
            total = totals.get((item_type, level), 0)
            out.append(tools_pb2.LevelProgress(
                level=level, total=total, learned=learned, learning=learning,
                unlearned=max(0, total - learned - learning), reviewable=due.get((item_type, level), 0)))
        return out

    # ---- get_user_plan ------------------------------------------------------------------

    async def plan(self, user_id: str, request: tools_pb2.GetUserPlanRequest,
                   now: datetime | None = None) -> tools_pb2.GetUserPlanResponse:
        """The reviews due in the coming hours, in slots in the learner's time zone, and how many are overdue."""
        if request.hours < 0:
            raise invalid(f"hours must be between 1 and 168; got {request.hours}")
        hours = min(request.hours or 24, 168)
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        settings, upcoming, overdue = await asyncio.gather(
            self.settings(user_id), self.upcoming(user_id, now, hours), self.overdue_count(user_id, now))
        return self._plan(settings["timezone"], now, upcoming, overdue)

    async def overdue_count(self, user_id: str, now: datetime) -> int:
        """How many of the learner's reviews are overdue now."""
        return await self.store.run(
            self.store.count, TableName=self.store.progress, IndexName=NEXT_REVIEW_INDEX,
            KeyConditionExpression="userId = :u AND nextReview <= :now",
            ExpressionAttributeValues={":u": {"S": user_id}, ":now": {"S": iso(now)}})

    @staticmethod
    def _plan(timezone: str, now: datetime, upcoming: list[datetime], overdue: int) -> tools_pb2.GetUserPlanResponse:
        tz = zone(timezone)
        slots: Counter = Counter()
        for moment in upcoming:
            slots[moment.astimezone(tz).replace(minute=0, second=0, microsecond=0)] += 1
        response = tools_pb2.GetUserPlanResponse(timezone=tz.key, overdue=overdue,
                                                 total=overdue + sum(slots.values()))
        today = now.astimezone(tz).date()
        for start in sorted(slots):
            label = start.strftime("%H:%M") if start.date() == today else start.strftime("%a %H:%M")
            response.slots.append(tools_pb2.PlanSlot(start=start.isoformat(), label=label, count=slots[start]))
        return response

    # ---- get_user_learned_items ---------------------------------------------------------

    async def learned_items(self, user_id: str, request: tools_pb2.GetUserLearnedItemsRequest
                            ) -> tools_pb2.GetUserLearnedItemsResponse:
        """The learner's learned items, by type and level, a page at a time."""
        item_type = normalize_entity(request.entity_type, None)
        level = normalize_level(request.level)
        limit = clamp_limit(request.limit, 20, 100)
        scope = f"{item_type or '*'}|{level or '*'}"
        start = self.tokens.open(request.page_token, user_id, scope) if request.page_token else None
        values: dict[str, dict] = {":u": {"S": user_id}, ":learned": {"S": "learned"}}
        if item_type:
            key_condition = "userId = :u AND begins_with(itemId, :p)"
            values[":p"] = {"S": f"{item_type}:"}
        else:
            # Item ids start with a letter; "$" sorts after every "#..." aggregate row.
            key_condition = "userId = :u AND itemId > :lo"
            values[":lo"] = {"S": "$"}
        filters = ["#s = :learned"]
        if level:
            filters.append("#l = :level")
            values[":level"] = {"S": level}
        kwargs: dict[str, Any] = {
            "TableName": self.store.progress, "KeyConditionExpression": key_condition,
            "FilterExpression": " AND ".join(filters), "ExpressionAttributeValues": values,
            "ExpressionAttributeNames": {"#s": "status", **({"#l": "level"} if level else {})},
            "ProjectionExpression": "itemId, proficiency, learnedAt, nextReview, #s",
            "Limit": max(50, limit * 2),
        }
        if start:
            kwargs["ExclusiveStartKey"] = {"userId": {"S": user_id}, "itemId": {"S": start.last_item_id}}
        rows: list[dict] = []
        more = False
        while True:
            reply = await self.store.run(self.store.query_page, **kwargs)
            batch = reply.get("Items", [])
            take = batch[: limit - len(rows)]
            rows.extend(take)
            if len(rows) >= limit:
                more = len(batch) > len(take) or "LastEvaluatedKey" in reply
                break
            if "LastEvaluatedKey" not in reply:
                break
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        items = await self.store.run(self.store.get_items, [r["itemId"]["S"] for r in rows])
        response = tools_pb2.GetUserLearnedItemsResponse()
        for row in rows:
            item_id = row["itemId"]["S"]
            response.items.append(tools_pb2.LearnedItem(
                item=_item_or_stub(items.get(item_id), item_id),
                proficiency=int(row.get("proficiency", {}).get("N", "0")),
                learned_at=row.get("learnedAt", {}).get("S", ""),
                next_review=row.get("nextReview", {}).get("S", "")))
        if more and rows:
            response.next_page_token = self.tokens.issue(user_id, scope, rows[-1]["itemId"]["S"])
        return response

    # ---- get_user_reviewable_items ------------------------------------------------------

    async def reviewable_items(self, user_id: str, request: tools_pb2.GetUserReviewableItemsRequest,
                               now: datetime | None = None) -> tools_pb2.GetUserReviewableItemsResponse:
        """The items due for review now, most overdue first."""
        limit = clamp_limit(request.limit, 20, 100)
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        page, total = await asyncio.gather(
            self.store.run(
                self.store.query_page, TableName=self.store.progress, IndexName=NEXT_REVIEW_INDEX,
                KeyConditionExpression="userId = :u AND nextReview <= :now", ScanIndexForward=True, Limit=limit,
                ProjectionExpression="itemId, proficiency, nextReview",
                ExpressionAttributeValues={":u": {"S": user_id}, ":now": {"S": iso(now)}}),
            self.overdue_count(user_id, now))
        rows = page.get("Items", [])
        items = await self.store.run(self.store.get_items, [r["itemId"]["S"] for r in rows])
        response = tools_pb2.GetUserReviewableItemsResponse(total=total)
        for row in rows:
            item_id, due = row["itemId"]["S"], row["nextReview"]["S"]
            response.items.append(tools_pb2.ReviewableItem(
                item=_item_or_stub(items.get(item_id), item_id),
                proficiency=int(row.get("proficiency", {}).get("N", "0")), next_review=due,
                overdue_seconds=max(0, int((now - parse_iso(due)).total_seconds()))))
        return response

    # ---- get_user_context ---------------------------------------------------------------

    async def context(self, user_id: str, now: datetime | None = None) -> tools_pb2.GetUserContextResponse:
        """The learner summary the gateway puts in the prompt: settings, progress, what is due."""
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        settings, totals, aggs, (due, upcoming) = await asyncio.gather(
            self.settings(user_id), self.catalog.totals(), self.aggregates(user_id),
            self.review_window(user_id, now, 24))
        words = self._levels("word", "", totals, aggs, due)
        kanji = self._levels("kanji", "", totals, aggs, due)
        reviews_due = sum(due.values())
        plan = self._plan(settings["timezone"], now, upcoming, reviews_due)
        focus = _focus(settings["baseLevel"], words, kanji, reviews_due)
        response = tools_pb2.GetUserContextResponse(
            user_id=user_id,
            settings=tools_pb2.LearnerSettings(base_level=settings["baseLevel"], language=settings["language"],
                                               timezone=plan.timezone, display_name=settings["displayName"]),
            word_progress=words, kanji_progress=kanji, reviews_due=reviews_due,
            reviews_next_24h=len(upcoming), focus=focus)
        response.summary = _summary(settings, aggs, words, kanji, plan, focus)
        return response


def _item_or_stub(row: dict[str, Any] | None, item_id: str) -> items_pb2.Item:
    # A progress row can outlive its item (deleted by an admin): say which one it was.
    if row and not row.get("deleted"):
        return item_from_row(row)
    return items_pb2.Item(id=item_id, type=item_id.split(":", 1)[0])


def _share(row: tools_pb2.LevelProgress) -> float:
    return row.learned / row.total if row.total else 1.0


def _focus(base_level: str, words, kanji, reviews_due: int) -> list[str]:
    focus = []
    if reviews_due:
        focus.append(f"{reviews_due} overdue reviews")
    for label, rows in (("words", words), ("kanji", kanji)):
        started = [r for r in rows if r.level in LEVELS]
        # The easiest level not yet 80 % learned, never below the learner's base level's predecessors.
        for row in started:
            if _share(row) < 0.8:
                focus.append(f"{row.level} {label}")
                break
    if not any(f.endswith(("words", "kanji")) for f in focus):
        focus.append(f"{base_level} words")
    return focus


def _summary(settings, aggs, words, kanji, plan: tools_pb2.GetUserPlanResponse, focus: list[str]) -> str:
    name = settings.get("displayName") or "The learner"
    language = "Japanese" if settings.get("language") == "ja" else "English"
    lines = [f"{name}: base level {settings['baseLevel']}, prefers explanations in {language}, "
             f"time zone {plan.timezone}."]
    for label, rows in (("Words", words), ("Kanji", kanji)):
        parts = [f"{r.level} {r.learned}/{r.total} learned" + (f", {r.learning} learning" if r.learning else "")
                 for r in rows if r.learned or r.learning]
        lines.append(f"{label}: " + ("; ".join(parts) if parts else "none learned yet") + ".")
    kana = aggs.get(("kana", "none"), (0, 0))
    if kana != (0, 0):
        lines.append(f"Kana: {kana[0]} learned, {kana[1]} learning.")
    upcoming = plan.total - plan.overdue
    busiest = max(plan.slots, key=lambda s: s.count, default=None)
    lines.append(f"Reviews: {plan.overdue} due now, {upcoming} more in the next 24 hours"
                 + (f" (busiest hour {busiest.label}, {busiest.count})." if busiest else "."))
    lines.append("Focus: " + ", ".join(focus) + ".")
    return "\n".join(lines)
