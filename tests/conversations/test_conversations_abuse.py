"""Issue 15 (security and privacy), the Conversations side: each test reproduces one finding of the outside
review against a real Conversations gRPC server over the test moto server, and reads tables directly."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from kotoba.v1 import conversations_pb2 as pb
from services.common import redact
from services.conversations.privacy import pseudonym


def _blob(items) -> str:
    return json.dumps(items, ensure_ascii=False)


async def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


# ---- finding 5: AppendTurn ---------------------------------------------------------------------------
async def test_append_turn_refuses_learner_tokens(conv, new_turn):
    own = new_turn(cost=123456.78)
    assert await _code(conv.append("mallory", own, "learner")) == grpc.StatusCode.PERMISSION_DENIED
    admin = new_turn()
    admin.user_id = "mallory"
    assert await _code(conv.append("root", admin, "admin")) == grpc.StatusCode.PERMISSION_DENIED
    assert own.turn_id not in _blob(conv.scan()) and admin.turn_id not in _blob(conv.scan())


@pytest.mark.parametrize(("change", "field"), [
    (lambda t: setattr(t.usage, "cost_usd", -1e9), "usage.cost_usd"),
    (lambda t: setattr(t.usage, "cost_usd", 123456.78), "usage.cost_usd"),
    (lambda t: setattr(t.usage, "cost_usd", math.nan), "usage.cost_usd"),
    (lambda t: setattr(t.latencies, "total_ms", math.inf), "latencies.total_ms"),
    (lambda t: setattr(t.latencies, "first_text_ms", -5), "latencies.first_text_ms"),
    (lambda t: setattr(t.usage, "text_in_tokens", -1), "usage.text_in_tokens"),
    (lambda t: t.tool_calls.add(name="get_word_details", latency_ms=-1), "tool_calls.latency_ms"),
    (lambda t: t.tool_calls.add(name="DROP TABLE users;"), "tool_calls.name"),
    (lambda t: setattr(t, "started_at", (datetime.now(UTC) + timedelta(days=2)).isoformat()), "started_at"),
    (lambda t: setattr(t, "started_at", (datetime.now(UTC) - timedelta(days=30)).isoformat()), "started_at"),
    (lambda t: setattr(t, "started_at", "0001-01-02T00:00:00Z"), "started_at"),
])
async def test_append_turn_validates_numbers_times_and_tool_names(conv, new_turn, change, field):
    turn = new_turn()
    change(turn)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.append("learner-1", turn)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details(), err.value.details()
    assert turn.turn_id not in _blob(conv.scan())


async def test_an_invented_tool_name_is_counted_as_unknown(conv, new_turn):
    turn = new_turn(tools=[pb.ToolCall(name="steal_all_progress", args_json="{}")])
    assert (await conv.append("learner-1", turn)).stored
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert dict(stats.tool_calls) == {"unknown_function": 1}
    assert "steal_all_progress" not in _blob(conv.scan())


async def test_a_session_is_never_re_owned(conv, new_turn):
    victim = new_turn(question="the victim's question")
    assert (await conv.append("victim", victim)).stored
    intruder = new_turn(session=victim.session_id, question="written into someone else's session")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.append("intruder", intruder)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    blob = _blob(conv.scan())
    assert intruder.turn_id not in blob and "intruder" not in blob
    listed = await conv.stub.ListUserConversations(pb.ListUserConversationsRequest(user_id="intruder"),
                                                   metadata=conv.admin_md)
    assert not listed.turns
    # The owner carries on, also after turning pseudonyms on mid-session.
    await conv.stub.UpdatePrivacySettings(pb.UpdatePrivacySettingsRequest(
        settings=pb.PrivacySettings(logging_enabled=True, pseudonymize=True)), metadata=conv.md("victim"))
    assert (await conv.append("victim", new_turn(session=victim.session_id))).stored


# ---- finding 5: admin reads ----------------------------------------------------------------------------
@pytest.mark.parametrize("request_", [
    pb.GetStatsRequest(start_time="0001-01-02T00:00:00Z"),
    pb.GetStatsRequest(end_time="0001-01-02T00:00:00Z"),
    pb.GetStatsRequest(start_time="9999-12-30T00:00:00Z", end_time="9999-12-31T00:00:00Z"),
    pb.GetStatsRequest(start_time="2000-01-01T00:00:00Z", end_time="2999-01-01T00:00:00Z"),
])
async def test_stats_ranges_are_checked_before_any_work(conv, request_):
    started = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.GetStats(request_, metadata=conv.admin_md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "Overflow" not in err.value.details() and "Traceback" not in err.value.details()
    # A thousand-year day list used to be built before the check; 5 s is a guard, not a performance claim.
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("size", [2**31 - 1, 101, -1])
async def test_a_huge_page_size_is_invalid_argument(conv, size):
    for call, request in (
        (conv.stub.ListConversations, pb.ListConversationsRequest(page_size=size)),
        (conv.stub.ListSummaries, pb.ListSummariesRequest(page_size=size)),
        (conv.stub.ListUserConversations, pb.ListUserConversationsRequest(user_id="x", page_size=size)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=conv.admin_md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in err.value.details()


# ---- finding 6: redaction gaps -------------------------------------------------------------------------
GAPS = {
    "password": ("my password is hunter2-secret", "hunter2-secret"),
    "password_ja": ("パスワードはsakura1234です", "sakura1234"),
    "street": ("I live at 221B Baker Street, come by", "Baker Street"),
    "strasse": ("Meine Adresse: Hauptstraße 5a, Berlin", "Hauptstraße 5a"),
    "banchi": ("住所は東京都新宿区西新宿2-8-1です", "西新宿2-8-1"),
    "email_no_dot": ("write to taro@localhost please", "taro@localhost"),
    "slash_number": ("ruf mich an: 0170/5551234", "0170/5551234"),
}


async def test_redaction_gaps_are_closed(conv, new_turn):
    turn = new_turn(question=" / ".join(q for q, _ in GAPS.values()), answer="noted: " + GAPS["password"][0])
    assert (await conv.append("learner-1", turn)).stored
    await conv.settle()
    blob = _blob(conv.scan())
    for kind, (_, secret) in GAPS.items():
        assert secret not in blob, f"{kind} leaked: {secret}"
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    question = got.turns[0].question
    for marker in ("[password]", "[address]", "[email]", "[phone]"):
        assert marker in question, question


async def test_a_redaction_timeout_stores_masked_text_never_raw(conv, new_turn, monkeypatch):
    monkeypatch.setattr(redact, "PATTERN_TIMEOUT_S", 1e-9)
    turn = new_turn(question="call 090-1234-5678 " * 500, answer="mail taro@example.com")
    assert (await conv.append("learner-1", turn)).stored
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    assert got.turns[0].question == redact.MASKED and got.turns[0].answer == redact.MASKED
    blob = _blob(conv.scan())
    assert "090-1234-5678" not in blob and "taro@example.com" not in blob


# ---- finding 4: erase every table ----------------------------------------------------------------------
def _all_items(conv, name: str) -> list[dict]:
    table, items, args = conv.config.common.table(name), [], {}
    while True:
        page = conv.ddb.scan(TableName=table, **args)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        args = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def _gateway_rows(conv, user: str) -> None:
    """Rows as the gateway writes them: a resumption row with recent turns, daily usage."""
    ttl = str(int(time.time()) + 3600)
    conv.ddb.put_item(TableName=conv.config.common.table("connections"), Item={
        "sessionId": {"S": f"s-{user}-{uuid.uuid4().hex[:6]}"}, "userId": {"S": user}, "handle": {"S": "h-1"},
        "state": {"S": "detached"}, "recent": {"S": json.dumps([{"q": f"{user} asked about 猫", "a": "cat"}])},
        "ttl": {"N": ttl}})
    for day in ("2026-11-30", "2026-12-01"):
        conv.ddb.put_item(TableName=conv.config.common.table("usage"), Item={
            "userId": {"S": user}, "day": {"S": day}, "turns": {"N": "3"}, "costUsd": {"N": "0.01"},
            "ttl": {"N": ttl}})


async def test_delete_user_data_erases_every_table(conv, new_turn):
    for user in ("leaver", "stayer"):
        _gateway_rows(conv, user)
        await conv.append(user, new_turn(question=f"question from {user}"))
    await conv.stub.UpdatePrivacySettings(pb.UpdatePrivacySettingsRequest(
        settings=pb.PrivacySettings(logging_enabled=False, pseudonymize=True)), metadata=conv.md("leaver"))
    await conv.settle()

    reply = await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(), metadata=conv.md("leaver"))
    assert reply.deleted_turns == 1

    alias = pseudonym(conv.config.pseudonym_key, "leaver")
    for name in ("conversations", "connections", "usage"):
        blob = _blob(_all_items(conv, name))
        assert "leaver" not in blob and alias not in blob, name
        assert "stayer" in blob, name  # another learner's rows stay
    # Settings keep the privacy choice (and only settings do): an opted-out learner stays opted out.
    settings = {i["userId"]["S"]: i for i in _all_items(conv, "settings")}
    assert settings["leaver"]["loggingEnabled"] == {"BOOL": False}
    assert not (await conv.append("leaver", new_turn())).stored


# ---- retention -----------------------------------------------------------------------------------------
async def test_every_row_written_has_a_ttl(conv, new_turn):
    """Every row of conversations (turns, summaries, counters, listings, markers) and usage expires."""
    from services.common.tables import TABLES_BY_NAME
    from services.gateway.usage import TurnUsage, UsageStore

    await conv.append("learner-1", new_turn())
    await conv.stub.UpdatePrivacySettings(pb.UpdatePrivacySettingsRequest(
        settings=pb.PrivacySettings(logging_enabled=False)), metadata=conv.md("learner-2"))
    await conv.append("learner-2", new_turn())  # the anonymous opted-out counter and its marker
    await conv.settle()
    rows = conv.scan()
    assert {r["sessionId"]["S"].split("#")[1] for r in rows if r["sessionId"]["S"].startswith("#")} >= {
        "stats", "days", "sessions", "summaries", "optout"}
    missing = [(r["sessionId"]["S"], r["timestamp"]["S"]) for r in rows if "ttl" not in r]
    assert not missing, missing

    usage = UsageStore(conv.ddb, conv.config.common.table("usage"), conv.config.settings_table)
    await usage.add("learner-1", TurnUsage(text_in_tokens=10, cost_usd=0.001))
    item = _all_items(conv, "usage")[0]
    assert 300 * 86400 < int(item["ttl"]["N"]) - time.time() < 500 * 86400
    assert TABLES_BY_NAME["usage"].ttl_attribute == "ttl"
    spec = conv.ddb.describe_time_to_live(TableName=conv.config.common.table("usage"))["TimeToLiveDescription"]
    assert spec.get("AttributeName") == "ttl" and spec.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")


async def test_a_learners_later_turns_skip_the_owner_read_and_stay_refused_to_others(conv, new_turn):
    """The session's owner is remembered from its first stored turn: the learner's next turns do not read the
    session's rows again, and another learner is still refused (from memory); erasing the owner's data
    forgets it, as the rows are gone."""
    reads: list[str] = []
    read = conv.app.servicer.owners.read

    async def counted(session_id: str) -> set[str]:
        reads.append(session_id)
        return await read(session_id)

    conv.app.servicer.owners.read = counted
    first = new_turn(question="first")
    assert (await conv.append("owner", first)).stored
    for i in range(3):
        assert (await conv.append("owner", new_turn(session=first.session_id, question=f"again {i}"))).stored
    assert reads == [first.session_id]  # only the new session's first turn read its rows
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.append("intruder", new_turn(session=first.session_id, question="not mine"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await conv.settle()
    await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(), metadata=conv.md("owner"))
    assert first.session_id not in conv.app.servicer.owners


async def test_a_full_sample_set_stops_taking_samples_but_not_counting(conv, new_turn, monkeypatch):
    """Counters and latency samples go in one update; once a stats row holds its share of SAMPLE_CAP samples
    the turn is still counted (the update is retried without them) and later turns skip the samples."""
    from services.conversations import stats

    monkeypatch.setattr(stats, "SAMPLE_CAP", 1)  # one sample per row
    for i in range(30):
        assert (await conv.append(f"learner-{i}", new_turn(total_ms=500.0 + i))).stored
    rows = [item for item in conv.scan()
            if item["sessionId"]["S"].startswith("#stats#") and item["timestamp"]["S"].startswith("agg#")]
    assert sum(int(item["turns"]["N"]) for item in rows) == 30
    assert any(int(item["turns"]["N"]) > 1 for item in rows)  # some row was full when a turn came
    assert all(len(item[stats.TOTAL_SAMPLES]["NS"]) == 1 for item in rows)  # one each, the first turn's
    reply = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert reply.turns == 30


async def test_turns_of_a_new_session_arriving_together_share_one_owner_read(conv, new_turn):
    """A learner's quick turns (or the gateway's turn log catching up after an outage) reach AppendTurn before
    the first is stored: they read the session's rows once between them, and are all stored; another learner's
    turn for the session is still refused."""
    reads: list[str] = []
    read = conv.app.servicer.owners.read

    async def slow(session_id: str) -> set[str]:
        reads.append(session_id)
        await asyncio.sleep(0.2)  # the rows are slow to read: the other turns arrive meanwhile
        return await read(session_id)

    conv.app.servicer.owners.read = slow
    first = new_turn(question="first")
    turns = [first] + [new_turn(session=first.session_id, question=f"quick {i}") for i in range(3)]
    replies = await asyncio.gather(*(conv.append("quick", t) for t in turns))
    assert all(r.stored for r in replies)
    assert reads == [first.session_id]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.append("intruder", new_turn(session=first.session_id, question="not mine"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
