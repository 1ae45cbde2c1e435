"""Turns appended as the gateway would, then found through the admin API with their summaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from kotoba.v1 import conversations_pb2 as pb


def iso(days_ago: float = 0, minutes: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago, minutes=minutes)).isoformat()


async def test_turn_appears_with_summary(conv, new_turn):
    tools = [pb.ToolCall(name="get_word_details", args_json=json.dumps({"word": "食べる"}),
                         result_json='{"result": {"id": "word:食べる:たべる"}}', latency_ms=12)]
    turn = new_turn(tools=tools, items=["word:食べる:たべる"])
    reply = await conv.append("learner-1", turn)
    assert reply.stored
    await conv.settle()

    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    assert len(got.turns) == 1
    stored = got.turns[0]
    assert stored.user_id == "learner-1" and stored.summary_status == "done"
    assert stored.summary.category == "vocabulary" and stored.summary.response_type == "definition"
    assert "食べる" in stored.summary.topics and stored.summary.key_points == ["食べる means to eat."]
    assert stored.tool_calls[0].name == "get_word_details" and stored.usage.text_in_tokens == 120

    listed = await conv.stub.ListConversations(pb.ListConversationsRequest(), metadata=conv.admin_md)
    assert [c.session_id for c in listed.conversations] == [turn.session_id]
    assert listed.conversations[0].categories == ["vocabulary"] and listed.conversations[0].turn_count == 1

    summaries = await conv.stub.ListSummaries(pb.ListSummariesRequest(category="vocabulary"), metadata=conv.admin_md)
    assert [s.turn_id for s in summaries.summaries] == [turn.turn_id]

    user = await conv.stub.ListUserConversations(pb.ListUserConversationsRequest(user_id="learner-1"),
                                                 metadata=conv.admin_md)
    assert [t.turn_id for t in user.turns] == [turn.turn_id]

    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert (stats.turns, stats.sessions, stats.learners) == (1, 1, 1)
    assert stats.by_category["vocabulary"] == 1 and stats.by_mode["text"] == 1
    assert stats.tool_calls["get_word_details"] == 1
    assert stats.summary_pending == 0 and stats.summary_failures == 0
    assert stats.total_ms.p50 == 900 and stats.cost_usd == pytest.approx(0.001)  # the turn's own, not a bucket
    assert stats.daily[-1].turns == 1 and len(stats.daily) >= 7


async def test_stats_give_true_percentiles_not_bucket_bounds(conv, new_turn):
    """Issue 17: turns of 27–3805 ms showed as "75 / 750" (bucket bounds) on the admin page."""
    for ms in (27.0, 41.5, 100.0, 130.0, 3805.0, 27.0):  # equal latencies count twice
        turn = new_turn(total_ms=ms)
        assert (await conv.append("learner-p", turn)).stored
        assert (await conv.append("learner-p", turn)).reason == "already stored"  # no second sample
    await conv.settle()
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert stats.turns == 6
    assert (stats.total_ms.p50, stats.total_ms.p95, stats.total_ms.p99) == (41.5, 3805.0, 3805.0)
    assert stats.first_text_ms.p50 == pytest.approx(41.5 / 3, abs=0.1)


async def test_append_is_idempotent(conv, new_turn):
    turn = new_turn()
    assert (await conv.append("learner-1", turn)).stored
    again = await conv.append("learner-1", turn)
    assert again.stored and again.reason == "already stored"
    await conv.settle()
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    assert len(got.turns) == 1
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert stats.turns == 1


async def test_filters_and_pagination(conv, new_turn):
    sessions = []
    for i in range(23):
        user = "alice" if i % 2 else "bob"
        intent = "kanji_lookup" if i % 3 == 0 else "grammar_question"
        turn = new_turn(started_at=iso(minutes=100 - i), intent=intent,
                        question=f"question number {i}" + (" about particles" if i == 7 else ""))
        sessions.append((turn.session_id, user, intent))
        await conv.append(user, turn)
    old = new_turn(started_at=iso(days_ago=3), intent="greeting")
    await conv.append("bob", old)
    await conv.settle()

    got, token, pages = [], "", 0
    while True:
        page = await conv.stub.ListConversations(pb.ListConversationsRequest(page_size=10, page_token=token),
                                                 metadata=conv.admin_md)
        got += [c.session_id for c in page.conversations]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    expected = [s for s, _, _ in reversed(sessions)] + [old.session_id]
    assert got == expected and pages == 3  # newest first, no duplicates, nothing lost

    kanji = await conv.stub.ListConversations(pb.ListConversationsRequest(category="kanji", page_size=100),
                                              metadata=conv.admin_md)
    assert {c.session_id for c in kanji.conversations} == {s for s, _, i in sessions if i == "kanji_lookup"}

    alice = await conv.stub.ListConversations(pb.ListConversationsRequest(user_id="alice", page_size=5),
                                              metadata=conv.admin_md)
    assert len(alice.conversations) == 5 and alice.next_page_token
    more = await conv.stub.ListConversations(
        pb.ListConversationsRequest(user_id="alice", page_size=100, page_token=alice.next_page_token),
        metadata=conv.admin_md)
    alice_all = [c.session_id for c in alice.conversations] + [c.session_id for c in more.conversations]
    assert alice_all == [s for s, u, _ in reversed(sessions) if u == "alice"]

    recent = await conv.stub.ListConversations(pb.ListConversationsRequest(start_time=iso(days_ago=1), page_size=100),
                                               metadata=conv.admin_md)
    assert old.session_id not in {c.session_id for c in recent.conversations} and len(recent.conversations) == 23
    older = await conv.stub.ListConversations(pb.ListConversationsRequest(end_time=iso(days_ago=1)),
                                              metadata=conv.admin_md)
    assert [c.session_id for c in older.conversations] == [old.session_id]

    text = await conv.stub.ListConversations(pb.ListConversationsRequest(query="PARTICLES"), metadata=conv.admin_md)
    assert [c.session_id for c in text.conversations] == [sessions[7][0]]

    summaries, token = [], ""
    while True:
        page = await conv.stub.ListSummaries(pb.ListSummariesRequest(category="grammar", page_size=4, page_token=token),
                                             metadata=conv.admin_md)
        summaries += [s.session_id for s in page.summaries]
        token = page.next_page_token
        if not token:
            break
    assert summaries == [s for s, _, i in reversed(sessions) if i == "grammar_question"]

    user_turns, token = [], ""
    while True:
        page = await conv.stub.ListUserConversations(
            pb.ListUserConversationsRequest(user_id="bob", page_size=4, page_token=token), metadata=conv.admin_md)
        user_turns += [t.session_id for t in page.turns]
        token = page.next_page_token
        if not token:
            break
    assert user_turns == [s for s, u, _ in reversed(sessions) if u == "bob"] + [old.session_id]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.ListConversations(pb.ListConversationsRequest(category="kanji", page_token=token or "bm9wZQ"),
                                          metadata=conv.admin_md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.ListConversations(pb.ListConversationsRequest(page_size=1000), metadata=conv.admin_md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_admin_calls_need_admin_role(conv, new_turn):
    await conv.append("learner-1", new_turn())
    learner = conv.md("learner-1")
    calls = [
        (conv.stub.ListConversations, pb.ListConversationsRequest()),
        (conv.stub.GetConversation, pb.GetConversationRequest(session_id="s-1")),
        (conv.stub.ListUserConversations, pb.ListUserConversationsRequest(user_id="learner-1")),
        (conv.stub.ListSummaries, pb.ListSummariesRequest()),
        (conv.stub.GetStats, pb.GetStatsRequest()),
        (conv.stub.DeleteUserData, pb.DeleteUserDataRequest(user_id="someone-else")),
    ]
    for call, request in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=learner)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, call
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_only_service_role_may_name_the_learner(conv, new_turn):
    turn = new_turn()
    turn.user_id = "victim"
    for learner_record in (turn, new_turn()):  # naming someone else, or only themself: both refused
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await conv.append("mallory", learner_record, "learner")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await conv.append("gateway", turn, "service")).stored
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    assert got.turns[0].user_id == "victim"
    bad = new_turn(mode="video")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.append("learner-1", bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mode" in err.value.details()


async def test_expired_rows_are_not_returned(conv, new_turn):
    keep, expire = new_turn(), new_turn()
    await conv.append("learner-1", keep)
    await conv.append("learner-1", expire)
    await conv.settle()
    # AWS deletes expired rows late and dynalite never does: age every row of one session.
    for item in conv.scan():
        if expire.session_id in (item["sessionId"]["S"], item["timestamp"]["S"],
                                 item.get("turnSessionId", {}).get("S")) and "ttl" in item:
            conv.ddb.update_item(TableName=conv.config.table,
                                 Key={"sessionId": item["sessionId"], "timestamp": item["timestamp"]},
                                 UpdateExpression="SET #t = :t", ExpressionAttributeNames={"#t": "ttl"},
                                 ExpressionAttributeValues={":t": {"N": "1000"}})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.GetConversation(pb.GetConversationRequest(session_id=expire.session_id), metadata=conv.admin_md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await conv.stub.ListConversations(pb.ListConversationsRequest(), metadata=conv.admin_md)
    assert [c.session_id for c in listed.conversations] == [keep.session_id]
    user = await conv.stub.ListUserConversations(pb.ListUserConversationsRequest(user_id="learner-1"),
                                                 metadata=conv.admin_md)
    assert [t.turn_id for t in user.turns] == [keep.turn_id]
    summaries = await conv.stub.ListSummaries(pb.ListSummariesRequest(), metadata=conv.admin_md)
    assert [s.turn_id for s in summaries.summaries] == [keep.turn_id]
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert stats.sessions == 1
