"""ExportUserData: a learner reads back their own stored turns, and nobody else's."""

from __future__ import annotations

import base64
import hashlib
import json

import grpc
import pytest

from kotoba.v1 import conversations_pb2 as pb


async def _export_all(conv, user: str, page_size: int) -> list[pb.ExportUserDataResponse]:
    replies, token = [], ""
    while True:
        reply = await conv.stub.ExportUserData(pb.ExportUserDataRequest(page_size=page_size, page_token=token),
                                               metadata=conv.md(user), timeout=10)
        replies.append(reply)
        token = reply.next_page_token
        if not token:
            return replies


async def test_export_holds_own_turns_only_across_pages(conv, new_turn):
    mine = [new_turn(question=f"mine {i}: my mail is hana@example.com") for i in range(3)]
    theirs = [new_turn(question=f"theirs {i}") for i in range(2)]
    for turn in mine:
        await conv.append("learner-a", turn)
    for turn in theirs:
        await conv.append("learner-b", turn)
    # A learner who turned pseudonyms on still gets the rows stored under the pseudonym.
    await conv.stub.UpdatePrivacySettings(pb.UpdatePrivacySettingsRequest(
        settings=pb.PrivacySettings(logging_enabled=True, pseudonymize=True)), metadata=conv.md("learner-a"))
    later = new_turn(question="mine, pseudonymous")
    await conv.append("learner-a", later)
    await conv.settle()

    replies = await _export_all(conv, "learner-a", page_size=2)
    assert len(replies) == 2
    turns = [t for r in replies for t in r.turns]
    assert {t.turn_id for t in turns} == {t.turn_id for t in [*mine, later]}
    assert all("hana@example.com" not in t.question for t in turns)  # as stored: redacted
    assert all(t.summary_status in ("done", "failed") for t in turns)
    assert replies[0].settings.pseudonymize and replies[0].settings.logging_enabled
    assert set(replies[0].session_ids) == {t.session_id for t in replies[0].turns}

    other = [t for r in await _export_all(conv, "learner-b", page_size=0) for t in r.turns]
    assert {t.turn_id for t in other} == {t.turn_id for t in theirs}


async def test_export_rejects_bad_page_tokens_and_sizes(conv, new_turn):
    for i in range(3):
        await conv.append("learner-a", new_turn(question=f"q{i}"))
    first = await conv.stub.ExportUserData(pb.ExportUserDataRequest(page_size=1), metadata=conv.md("learner-a"))
    assert first.next_page_token
    fingerprint = hashlib.sha256(json.dumps({"export": "learner-a"}).encode()).hexdigest()[:12]
    forged = base64.urlsafe_b64encode(json.dumps({"f": fingerprint, "k": {"S": "x"}}).encode()).decode()
    bad = [
        pb.ExportUserDataRequest(page_token="not-a-token!"),
        pb.ExportUserDataRequest(page_token=forged),
        pb.ExportUserDataRequest(page_size=101),
        pb.ExportUserDataRequest(page_size=-1),
    ]
    for request in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await conv.stub.ExportUserData(request, metadata=conv.md("learner-a"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    # Another learner cannot page on with learner-a's token.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.ExportUserData(pb.ExportUserDataRequest(page_token=first.next_page_token),
                                       metadata=conv.md("learner-b"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_export_needs_a_learner_token(conv):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.ExportUserData(pb.ExportUserDataRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.stub.ExportUserData(pb.ExportUserDataRequest(), metadata=conv.service_md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_export_is_empty_after_erase(conv, new_turn):
    await conv.append("learner-a", new_turn())
    await conv.settle()
    await conv.stub.DeleteUserData(pb.DeleteUserDataRequest(), metadata=conv.md("learner-a"))
    reply = await conv.stub.ExportUserData(pb.ExportUserDataRequest(), metadata=conv.md("learner-a"))
    assert not reply.turns and not reply.next_page_token
