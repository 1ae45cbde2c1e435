"""What the gateway writes to its own tables per session, against the stack's DynamoDB: a fresh session's
`connections` row is whole from its claim, a row write with nothing new to keep (the closing one, right after
a turn's) changes only the row's state and reads no privacy choice, and a learner's quick turns share one
`usage` write (issue 19: every request to the store counts while sessions open)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from services.common.auth import Identity
from services.common.aws import dynamodb_client, dynamodb_resource
from services.gateway.connections import ConnectionStore
from services.gateway.persistence import SessionPersistence
from services.gateway.resumption import ResumptionState
from services.gateway.session_parts import SessionInfo
from services.gateway.usage import Limits, TurnUsage, UsageStore, today

pytestmark = pytest.mark.timeout(60)


def _session(stack, keep: bool) -> tuple[SessionPersistence, ResumptionState, list[str], object]:
    uid = f"writes-{uuid.uuid4().hex[:8]}"
    info = SessionInfo(Identity(uid, frozenset(), "", 0.0), "c1", session_id=uuid.uuid4().hex, mode="audio",
                       language="ja")
    state = ResumptionState()
    privacy_reads: list[str] = []

    async def logging_enabled(user_id: str) -> bool:
        privacy_reads.append(user_id)
        return keep

    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("connections"))
    store = ConnectionStore(dynamodb_resource(stack.config.aws), stack.config.table("connections"),
                            resume_window_s=600, idle_timeout_s=60)
    return SessionPersistence(store, info, state, 2.0, logging_enabled), state, privacy_reads, table


def _row(table, persistence: SessionPersistence) -> dict:
    return table.get_item(Key={"sessionId": persistence.info.session_id}, ConsistentRead=True).get("Item") or {}


async def test_a_fresh_rows_claim_is_whole_and_a_write_with_nothing_new_reads_no_privacy_choice(stack):
    persistence, state, privacy_reads, table = _session(stack, keep=True)
    assert await persistence.attached_elsewhere(0, len) == 0
    row = _row(table, persistence)
    assert (row["state"], row.get("language"), row.get("mode")) == ("attached", "ja", "audio")  # the claim alone

    state.remember("What does 泳ぐ mean?", "It means to swim.")
    state.handle = "h1"
    await persistence.write_soon()
    assert len(privacy_reads) == 1  # new words: the learner's choice decides whether they are kept
    await persistence.write_last()
    assert len(privacy_reads) == 1  # nothing new since: the row's state changes, its turns stay
    row = _row(table, persistence)
    assert (row["state"], row["handle"], row["language"]) == ("detached", "h1", "ja")
    assert [t["text"] for t in json.loads(row["recent"])] == ["What does 泳ぐ mean?", "It means to swim."]
    assert int(row["ttl"]) > int(row["lastActivity"].split(".")[0]) + 300  # the detached row's resume window

    state.remember("And 走る?", "To run.")
    await persistence.write_soon()
    assert len(privacy_reads) == 2
    assert len(json.loads(_row(table, persistence)["recent"])) == 4


async def test_a_learner_who_opted_out_keeps_no_turns_in_the_row_through_the_closing_write(stack):
    persistence, state, privacy_reads, table = _session(stack, keep=False)
    await persistence.attached_elsewhere(0, len)
    state.remember("My name is Ken. What does 本 mean?", "Book.")
    state.handle = "h2"
    await persistence.write_soon()
    await persistence.write_last()
    row = _row(table, persistence)
    assert (row["state"], row["handle"], json.loads(row["recent"])) == ("detached", "h2", [])
    assert len(privacy_reads) == 1


async def test_a_learners_quick_turns_share_one_usage_write_counted_at_once(stack):
    store = UsageStore(dynamodb_client(stack.config.aws), stack.config.table("usage"), stack.config.table("settings"))
    writes: list[int] = []
    add = store.add

    async def counted(user_id, u, *, turns=1, day=None):
        writes.append(turns)
        await add(user_id, u, turns=turns, day=day)

    store.add = counted
    limits = Limits(store, 30, 60.0, daily_budget_usd=0.05, usage_linger_s=0.3)
    uid, other, erased = (f"usage-{uuid.uuid4().hex[:8]}" for _ in range(3))
    for _ in range(3):
        limits.record_soon(uid, TurnUsage(text_in_tokens=100, text_out_tokens=20, cost_usd=0.02))
    limits.record_soon(other, TurnUsage(text_in_tokens=5, cost_usd=0.001))
    limits.record_soon(erased, TurnUsage(text_in_tokens=5, cost_usd=0.001))
    assert limits.over_budget(uid)  # this gateway counts every turn before any is written
    limits.forget(erased)  # the learner erased their data meanwhile: nothing of theirs is written after
    await asyncio.sleep(0.6)
    await limits.drain(5)
    assert sorted(writes) == [1, 3]
    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("usage"))
    row = table.get_item(Key={"userId": uid, "day": today()}, ConsistentRead=True)["Item"]
    assert (int(row["turns"]), int(row["textInTokens"]), int(row["textOutTokens"])) == (3, 300, 60)
    assert float(row["costUsd"]) == pytest.approx(0.06)
    assert "Item" not in table.get_item(Key={"userId": erased, "day": today()}, ConsistentRead=True)


async def test_usage_owed_at_shutdown_is_written_without_waiting_out_the_linger(stack):
    store = UsageStore(dynamodb_client(stack.config.aws), stack.config.table("usage"), stack.config.table("settings"))
    limits = Limits(store, 30, 60.0, daily_budget_usd=1.0, usage_linger_s=30.0)
    uid = f"usage-{uuid.uuid4().hex[:8]}"
    limits.record_soon(uid, TurnUsage(text_in_tokens=7, cost_usd=0.001))
    await asyncio.wait_for(limits.drain(5), 5)
    row = dynamodb_resource(stack.config.aws).Table(stack.config.table("usage")).get_item(
        Key={"userId": uid, "day": today()}, ConsistentRead=True)["Item"]
    assert int(row["turns"]) == 1
