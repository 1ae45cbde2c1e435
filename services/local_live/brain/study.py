"""Answers about the learner's own study data: progress, the review plan, items due, items learned.
Each needs a learner function the client declared; without it the tutor says it has no access."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.local_live.brain.compose import Composer
from services.local_live.brain.facts import ItemPool, as_int
from services.local_live.brain.functions import Call, Functions, Results
from services.local_live.brain.intent import Intent

Answer = Generator[list[Call], Results, tuple[list[str], str]]


class StudyAnswers:
    """The study-data intents of one turn, answered from the learner functions."""

    def __init__(self, say: Composer, functions: Functions) -> None:
        self.say = say
        self.fn = functions

    def progress(self, intent: Intent, pool: ItemPool) -> Answer:
        """Learned / in progress / due counts per level, for words and kanji or the type asked."""
        if not self.fn.declares("get_user_progress"):
            return self.say.not_available_tool(), ""
        entities = [intent.entity_type] if intent.entity_type else ["words", "kanji"]
        group = intent.level or "all"
        calls = [Call("get_user_progress", {"entity_type": e, "group": group}) for e in entities]
        responses = yield from self.fn.call(calls)
        rows: list[tuple[str, dict[str, Any]]] = []
        for entity, response in zip(entities, responses, strict=True):
            result = self.fn.result(response)
            if result is None:
                continue
            for row in result.get("levels") or []:
                if isinstance(row, dict) and (group == "all" or row.get("level") == group):
                    rows.append((result.get("entity_type") or entity, row))
        if not rows:
            if self.fn.errors:
                return self.say.data_unavailable(), ""
            return self.say.progress([], group), ""
        return self.say.progress(rows, group), ""

    def plan(self, intent: Intent, pool: ItemPool) -> Answer:
        """The reviews scheduled in the period asked about (the due items when no plan function)."""
        if not self.fn.declares("get_user_plan"):
            return (yield from self.review(intent, pool))
        (response,) = yield from self.fn.call([Call("get_user_plan", {"hours": intent.hours or 24})])
        result = self.fn.result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        timezone = result.get("timezone") or ""
        slots = [s for s in result.get("slots") or [] if isinstance(s, dict)]
        slots = slots_in(slots, intent.period, timezone)
        return self.say.plan(as_int(result.get("overdue")), slots, intent.period, timezone,
                             as_int(result.get("total")), intent.hours or 24), ""

    def review(self, intent: Intent, pool: ItemPool) -> Answer:
        """The items due for review now, the first of them becoming the topic."""
        if not self.fn.declares("get_user_reviewable_items"):
            return self.say.not_available_tool(), ""
        (response,) = yield from self.fn.call([Call("get_user_reviewable_items", {"limit": 10})])
        result = self.fn.result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        items = [i for i in result.get("items") or [] if isinstance(i, dict)]
        first = (items[0].get("item") or {}).get("written", "") if items else ""
        return self.say.review(items, as_int(result.get("total"))), first

    def learned(self, intent: Intent, pool: ItemPool) -> Answer:
        """Items the learner has learned, narrowed by type and level when asked."""
        if not self.fn.declares("get_user_learned_items"):
            return self.say.not_available_tool(), ""
        args: dict[str, Any] = {"limit": 10}
        if intent.entity_type:
            args["entity_type"] = intent.entity_type
        if intent.level:
            args["level"] = intent.level
        (response,) = yield from self.fn.call([Call("get_user_learned_items", args)])
        result = self.fn.result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        items = [i for i in result.get("items") or [] if isinstance(i, dict)]
        return self.say.learned(items, bool(result.get("next_page_token"))), ""


def slots_in(slots: list[dict[str, Any]], period: str, timezone: str) -> list[dict[str, Any]]:
    """The plan slots that fall in the period the learner asked about, in their time zone."""
    if period in ("", "hours", "week"):
        return slots
    try:
        tz = ZoneInfo(timezone) if timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    today = datetime.now(tz).date()
    picked = []
    for slot in slots:
        try:
            start = datetime.fromisoformat(str(slot.get("start", "")).replace("Z", "+00:00"))
        except ValueError:
            continue
        if tz is not None:
            start = start.astimezone(tz)
        if period == "today" and start.date() == today:
            picked.append(slot)
        elif period == "evening" and start.date() == today and start.hour >= 17:
            picked.append(slot)
        elif period == "tomorrow" and start.date() == today + timedelta(days=1):
            picked.append(slot)
    return picked
