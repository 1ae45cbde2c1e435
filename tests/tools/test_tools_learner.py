"""Learner tools for the three demo learners; expected figures computed independently from the stored rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from kotoba.v1 import tools_pb2 as t

LEARNERS = ("demo-n5", "demo-n4", "demo-advanced")
TYPES = {"words": "word", "kanji": "kanji", "sentences": "sentence", "kana": "kana"}


def _rows(client, table: str, user: str) -> list[dict]:
    rows: list[dict] = []
    for page in client.get_paginator("query").paginate(
            TableName=table, KeyConditionExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user}}):
        rows.extend(page["Items"])
    return [r for r in rows if not r["itemId"]["S"].startswith("#")]


def _items(client, table: str) -> list[dict]:
    rows: list[dict] = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        rows.extend(page["Items"])
    return [r for r in rows if not r.get("deleted", {}).get("BOOL")]


def _when(row: dict) -> datetime:
    return datetime.fromisoformat(row["nextReview"]["S"].replace("Z", "+00:00"))


def _settled(rows: list[dict], call):
    """(reply, now) for a call during which no review time crossed 'now' (else the expectation is ambiguous)."""
    times = sorted(_when(r) for r in rows)
    for _ in range(5):
        before = datetime.now(UTC)
        reply = call()
        after = datetime.now(UTC)
        crossed = any(before <= x <= after or before + timedelta(hours=24) <= x <= after + timedelta(hours=24)
                      for x in times)
        if not crossed:
            return reply, before
    pytest.fail("review times kept crossing the call window")


@pytest.mark.parametrize("user", LEARNERS)
@pytest.mark.parametrize("entity", list(TYPES))
def test_progress_matches_rows(tools_env, user, entity):
    item_type = TYPES[entity]
    items = _items(tools_env.client, tools_env.prefix + "items")
    totals = Counter(r.get("level", {}).get("S", "none") for r in items if r["type"]["S"] == item_type)
    rows = [r for r in _rows(tools_env.client, tools_env.prefix + "progress", user) if r["type"]["S"] == item_type]
    status = Counter((r["level"]["S"], r["status"]["S"]) for r in rows)
    reply, now = _settled(rows, lambda: tools_env.stub.GetUserProgress(t.GetUserProgressRequest(entity_type=entity),
                                                                        metadata=tools_env.md(user)))
    due = Counter(r["level"]["S"] for r in rows if _when(r) <= now)
    assert reply.entity_type == entity
    got = {lp.level: lp for lp in reply.levels}
    assert set(got) == {lv for lv in totals} | {lv for lv, _ in status}
    for level, lp in got.items():
        assert lp.total == totals[level]
        assert (lp.learned, lp.learning) == (status[(level, "learned")], status[(level, "learning")])
        assert lp.unlearned == lp.total - lp.learned - lp.learning
        assert lp.reviewable == due[level]
    one = tools_env.stub.GetUserProgress(t.GetUserProgressRequest(entity_type=entity, group="N5"),
                                         metadata=tools_env.md(user))
    assert [lp.level for lp in one.levels] == ["N5"]


@pytest.mark.parametrize("user", LEARNERS)
def test_plan_reviewable_and_context(tools_env, user):
    rows = _rows(tools_env.client, tools_env.prefix + "progress", user)
    plan, now = _settled(rows, lambda: tools_env.stub.GetUserPlan(t.GetUserPlanRequest(), metadata=tools_env.md(user)))
    overdue = sum(1 for r in rows if _when(r) <= now)
    upcoming = sum(1 for r in rows if now < _when(r) <= now + timedelta(hours=24))
    assert plan.overdue == overdue and plan.total == overdue + upcoming
    assert sum(s.count for s in plan.slots) == upcoming and upcoming > 0
    starts = [datetime.fromisoformat(s.start) for s in plan.slots]
    assert starts == sorted(starts) and all(x.minute == 0 for x in starts)
    settings = tools_env.client.get_item(TableName=tools_env.prefix + "settings",
                                         Key={"userId": {"S": user}})["Item"]
    assert plan.timezone == settings["timezone"]["S"]
    assert starts[0].utcoffset() == starts[0].astimezone(__import__("zoneinfo").ZoneInfo(plan.timezone)).utcoffset()

    due, now = _settled(rows, lambda: tools_env.stub.GetUserReviewableItems(
        t.GetUserReviewableItemsRequest(limit=500), metadata=tools_env.md(user)))
    overdue = sum(1 for r in rows if _when(r) <= now)
    assert due.total == overdue and len(due.items) == min(100, overdue)
    times = [i.next_review for i in due.items]
    assert times == sorted(times)  # most overdue first
    assert all(i.item.written for i in due.items)
    due_ids = {r["itemId"]["S"] for r in rows if _when(r) <= now}
    assert {i.item.id for i in due.items} <= due_ids

    context, now = _settled(rows, lambda: tools_env.stub.GetUserContext(t.GetUserContextRequest(),
                                                                         metadata=tools_env.md(user)))
    overdue = sum(1 for r in rows if _when(r) <= now)
    upcoming = sum(1 for r in rows if now < _when(r) <= now + timedelta(hours=24))
    assert context.user_id == user and context.reviews_due == overdue and context.reviews_next_24h == upcoming
    assert context.settings.base_level == settings["baseLevel"]["S"]
    assert context.settings.display_name in context.summary and f"{overdue} due now" in context.summary
    learned_words = sum(1 for r in rows if r["type"]["S"] == "word" and r["status"]["S"] == "learned")
    assert sum(lp.learned for lp in context.word_progress) == learned_words
    assert context.focus
    assert "demo" not in context.summary  # never the user id in the summary text
    MessageToDict(context, preserving_proto_field_name=True)


@pytest.mark.parametrize("user", LEARNERS)
def test_learned_items_pages_cover_exactly_the_learned_rows(tools_env, user):
    rows = _rows(tools_env.client, tools_env.prefix + "progress", user)
    for entity, level in ((None, ""), ("words", ""), ("kanji", "N5")):
        expected = {r["itemId"]["S"] for r in rows if r["status"]["S"] == "learned"
                    and (entity is None or r["type"]["S"] == TYPES[entity])
                    and (not level or r["level"]["S"] == level)}
        seen: list[str] = []
        token = ""
        for _ in range(200):
            reply = tools_env.stub.GetUserLearnedItems(
                t.GetUserLearnedItemsRequest(entity_type=entity or "", level=level, limit=7, page_token=token),
                metadata=tools_env.md(user))
            assert len(reply.items) <= 7
            seen.extend(i.item.id for i in reply.items)
            assert all(0 <= i.proficiency <= 100 and i.learned_at for i in reply.items)
            token = reply.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) and set(seen) == expected, (entity, level)


def test_bad_arguments_are_clear(tools_env):
    md = tools_env.md("demo-n4")
    for call, needle in (
        (lambda: tools_env.stub.GetUserProgress(t.GetUserProgressRequest(entity_type="verbs"), metadata=md),
         "entity_type"),
        (lambda: tools_env.stub.GetUserProgress(t.GetUserProgressRequest(group="N9"), metadata=md), "group"),
        (lambda: tools_env.stub.GetUserPlan(t.GetUserPlanRequest(hours=-3), metadata=md), "hours"),
        (lambda: tools_env.stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=-1), metadata=md), "limit"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in info.value.details()
    capped = tools_env.stub.GetUserPlan(t.GetUserPlanRequest(hours=100000), metadata=md)
    assert capped.total >= capped.overdue


def test_new_learner_gets_empty_progress_not_an_error(tools_env):
    md = tools_env.md("someone-new")
    reply = tools_env.stub.GetUserProgress(t.GetUserProgressRequest(), metadata=md)
    assert reply.levels and all(lp.learned == 0 and lp.unlearned == lp.total for lp in reply.levels)
    context = tools_env.stub.GetUserContext(t.GetUserContextRequest(), metadata=md)
    assert context.reviews_due == 0 and context.settings.base_level == "N5"
