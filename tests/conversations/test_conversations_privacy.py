"""Opt-out, pseudonyms, redaction and erase, verified by reading the table directly."""

from __future__ import annotations

import json

import grpc
import pytest

from kotoba.v1 import conversations_pb2 as pb
from services.conversations.privacy import pseudonym

PII = {
    "email": "taro.yamada@example.com",
    "phone": "090-1234-5678",
    "card": "4111 1111 1111 1111",
    "name_en": "Hanako",
    "name_ja": "山田太郎",
}


def planted_turn(new_turn):
    return new_turn(
        question=f"My name is {PII['name_en']}. Mail {PII['email']} or call {PII['phone']}. 私の名前は{PII['name_ja']}です。",
        answer=f"Nice to meet you, {PII['name_en']}! I won't keep your card {PII['card']}.",
        tools=[pb.ToolCall(name="search_words", args_json=json.dumps({"query": f"my name is {PII['name_en']}"}),
                           result_json=json.dumps({"result": {"note": f"contact {PII['email']} / {PII['phone']}",
                                                               "card": PII["card"]}}),
                           error="")],
    )


def assert_clean(blob: str) -> None:
    for kind, value in PII.items():
        assert value not in blob, f"{kind} leaked: {value}"
    assert "4111" not in blob.replace("[card]", "")


async def test_redaction_before_storage(conv, new_turn):
    turn = planted_turn(new_turn)
    await conv.append("learner-1", turn)
    await conv.settle()
    rows = conv.scan()
    assert_clean(json.dumps(rows, ensure_ascii=False))
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    stored = got.turns[0]
    assert "[email]" in stored.question and "[phone]" in stored.question and "[name]" in stored.question
    assert "私の名前は[name]です" in stored.question and "[card]" in stored.answer
    assert json.loads(stored.tool_calls[0].args_json) == {"query": "my name is [name]"}
    assert json.loads(stored.tool_calls[0].result_json)["result"]["card"] == "[card]"


async def test_opt_out_stores_nothing_but_counts(conv, new_turn):
    learner = conv.md("shy")
    settings = await conv.stub.GetPrivacySettings(pb.GetPrivacySettingsRequest(), metadata=learner)
    assert settings.settings.logging_enabled and not settings.settings.pseudonymize
    first = new_turn(question="first, still logged")
    await conv.append("shy", first)
    await conv.stub.UpdatePrivacySettings(
        pb.UpdatePrivacySettingsRequest(settings=pb.PrivacySettings(logging_enabled=False)), metadata=learner)
    hidden = new_turn(session=first.session_id, question="a secret question")
    reply = await conv.append("shy", hidden)
    assert not reply.stored and "off" in reply.reason
    assert not (await conv.append("shy", hidden)).stored  # a retry is not counted twice
    await conv.settle()
    blob = json.dumps(conv.scan(), ensure_ascii=False)
    assert "secret" not in blob and hidden.turn_id in blob  # only the anonymous dedupe marker carries the turn id
    marker = [i for i in conv.scan() if hidden.turn_id in i["sessionId"]["S"]][0]
    assert set(marker) == {"sessionId", "timestamp", "ttl"}
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert stats.opted_out_turns == 1 and stats.turns == 2 and stats.learners == 1


async def test_pseudonymised_turns_and_lookup(conv, new_turn):
    learner = conv.md("masked")
    await conv.stub.UpdatePrivacySettings(
        pb.UpdatePrivacySettingsRequest(settings=pb.PrivacySettings(logging_enabled=True, pseudonymize=True)),
        metadata=learner)
    turn = new_turn()
    await conv.append("masked", turn)
    await conv.settle()
    alias = pseudonym(conv.config.pseudonym_key, "masked")
    assert "masked" not in json.dumps(conv.scan())
    got = await conv.stub.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=conv.admin_md)
    assert got.turns[0].user_id == alias
    for who in ("masked", alias):
        user = await conv.stub.ListUserConversations(pb.ListUserConversationsRequest(user_id=who),
                                                     metadata=conv.admin_md)
        assert [t.turn_id for t in user.turns] == [turn.turn_id]


async def test_delete_user_data_erases_everything(conv, new_turn):
    mine = [new_turn(question="hello there", intent="greeting"), new_turn()]
    for turn in mine:
        await conv.append("leaver", turn)
    await conv.stub.UpdatePrivacySettings(
        pb.UpdatePrivacySettingsRequest(settings=pb.PrivacySettings(logging_enabled=True, pseudonymize=True)),
        metadata=conv.md("leaver"))
    later = new_turn(session=mine[0].session_id, question="and a pseudonymous one")
    await conv.append("leaver", later)
    other = new_turn(question="someone else")
    await conv.append("stayer", other)
    await conv.settle()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(user_id="stayer"), metadata=conv.md("leaver"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(), metadata=conv.md("leaver"))
    assert reply.deleted_turns == 3

    alias = pseudonym(conv.config.pseudonym_key, "leaver")
    rows = conv.scan()
    blob = json.dumps(rows, ensure_ascii=False)
    for needle in ["leaver", alias, "hello there", "pseudonymous one", mine[0].session_id, mine[1].session_id,
                   *(t.turn_id for t in [*mine, later])]:
        assert needle not in blob, needle
    assert other.turn_id in blob and "stayer" in blob
    # Only anonymous counters and the day index remain besides the other learner's rows.
    leftovers = {i["sessionId"]["S"].split("#")[1] for i in rows if i["sessionId"]["S"].startswith("#")}
    assert leftovers <= {"stats", "days", "sessions", "summaries"}

    admin = await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(user_id="stayer"), metadata=conv.admin_md)
    assert admin.deleted_turns == 1
    stats = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert stats.turns == 4 and stats.sessions == 0
