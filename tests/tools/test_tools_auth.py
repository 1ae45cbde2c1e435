"""Tokens and roles: bad, expired, tampered and other learners' tokens fail cleanly; writes need admin."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest

from kotoba.v1 import items_pb2
from kotoba.v1 import tools_pb2 as t
from services.common.auth import auth_metadata
from services.tools.config import ToolsConfig
from services.tools.pagetoken import PageTokens


def _fails(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    return info.value.details()


def test_bad_tokens_are_unauthenticated(tools_env):
    stub, auth = tools_env.stub, tools_env.config.auth
    now = int(time.time())
    claims = {"sub": "demo-n4", "iss": auth.issuer, "aud": auth.audience, "iat": now, "exp": now + 600}
    bad = {
        "missing": (),
        "garbage": auth_metadata("not-a-jwt"),
        "wrong signature": auth_metadata(jwt.encode(claims, "another-secret-of-enough-length-000000", "HS256")),
        "wrong audience": auth_metadata(jwt.encode(dict(claims, aud="other"), auth.secret, "HS256")),
        "expired": auth_metadata(jwt.encode(dict(claims, iat=now - 900, exp=now - 600), auth.secret, "HS256")),
    }
    good = tools_env.md("demo-n4")[0][1].split(" ", 1)[1]
    head, body, sig = good.split(".")
    bad["tampered"] = auth_metadata(".".join([head, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig]))
    for name, md in bad.items():
        for call in (lambda m=md: stub.GetUserProgress(t.GetUserProgressRequest(), metadata=m),
                     lambda m=md: stub.GetUserContext(t.GetUserContextRequest(), metadata=m),
                     lambda m=md: stub.SearchWords(t.SearchWordsRequest(query="a"), metadata=m)):
            message = _fails(call, grpc.StatusCode.UNAUTHENTICATED)
            assert message.startswith("not signed in"), (name, message)


def test_page_tokens_bound_to_learner_query_and_time(tools_env):
    stub = tools_env.stub
    first = stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=2), metadata=tools_env.md("demo-n4"))
    token = first.next_page_token
    assert token
    msg = _fails(lambda: stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=2, page_token=token),
                                                  metadata=tools_env.md("demo-advanced")),
                 grpc.StatusCode.INVALID_ARGUMENT)
    assert "different learner" in msg
    msg = _fails(lambda: stub.GetUserLearnedItems(
        t.GetUserLearnedItemsRequest(limit=2, entity_type="kanji", page_token=token), metadata=tools_env.md("demo-n4")),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert "different entity_type" in msg
    body, mac = token.split(".")
    tampered = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac
    msg = _fails(lambda: stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=2, page_token=tampered),
                                                  metadata=tools_env.md("demo-n4")), grpc.StatusCode.INVALID_ARGUMENT)
    assert "not valid" in msg
    tokens = PageTokens(ToolsConfig.from_env(tools_env.env).page_secret, ttl_seconds=60)
    expired = tokens.issue("demo-n4", "*|*", "kana:あ", now=time.time() - 3600)
    msg = _fails(lambda: stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=2, page_token=expired),
                                                  metadata=tools_env.md("demo-n4")), grpc.StatusCode.INVALID_ARGUMENT)
    assert "expired" in msg
    # The same token still works for its owner.
    again = stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=2, page_token=token),
                                     metadata=tools_env.md("demo-n4"))
    assert {i.item.id for i in again.items}.isdisjoint({i.item.id for i in first.items})


def test_reserved_partitions_are_not_learners(tools_env):
    _fails(lambda: tools_env.stub.GetUserProgress(t.GetUserProgressRequest(), metadata=tools_env.md("#catalog")),
           grpc.StatusCode.PERMISSION_DENIED)


def _word(suffix: str, level: str = "N3") -> items_pb2.Item:
    return items_pb2.Item(id=f"word:試験語{suffix}:しけんご", type="word", level=level, written=f"試験語{suffix}",
                          reading="しけんご", romaji="shikengo", meanings=[f"test word {suffix}"])


def _total(tools_env, item_type: str, level: str) -> int:
    row = tools_env.client.get_item(TableName=tools_env.prefix + "progress",
                                    Key={"userId": {"S": "#catalog"}, "itemId": {"S": f"#total#{item_type}#{level}"}})
    return int(row.get("Item", {}).get("total", {}).get("N", "0"))


def test_writes_need_admin_and_mark_items_dirty(tools_env):
    stub = tools_env.stub
    item = _word("甲")
    for md in (tools_env.md("demo-n4"), tools_env.md("demo-n4", "service")):
        assert "admin" in _fails(lambda m=md: stub.UpsertItem(t.UpsertItemRequest(item=item), metadata=m),
                                 grpc.StatusCode.PERMISSION_DENIED)
        _fails(lambda m=md: stub.DeleteItem(t.DeleteItemRequest(id=item.id), metadata=m),
               grpc.StatusCode.PERMISSION_DENIED)
    assert "Item" not in tools_env.client.get_item(TableName=tools_env.prefix + "items", Key={"id": {"S": item.id}})

    admin = tools_env.md("ops", "admin")
    before = _total(tools_env, "word", "N3")
    created = stub.UpsertItem(t.UpsertItemRequest(item=item), metadata=admin)
    assert created.created and created.item.updated_at
    stored = tools_env.client.get_item(TableName=tools_env.prefix + "items", Key={"id": {"S": item.id}})["Item"]
    assert stored["dirty"]["S"] == "1" and "embedding" not in stored
    assert _total(tools_env, "word", "N3") == before + 1
    n2 = _total(tools_env, "word", "N2")
    again = stub.UpsertItem(t.UpsertItemRequest(item=_word("甲", level="N2")), metadata=admin)
    assert not again.created
    assert (_total(tools_env, "word", "N3"), _total(tools_env, "word", "N2")) == (before, n2 + 1)
    found = stub.SearchWords(t.SearchWordsRequest(query=item.written), metadata=tools_env.md("demo-n5"))
    assert [i.id for i in found.items] == [item.id] and found.items[0].level == "N2"
    prefixed = stub.SearchWords(t.SearchWordsRequest(query="試験"), metadata=tools_env.md("demo-n5"))
    assert item.id in [i.id for i in prefixed.items]

    stub.DeleteItem(t.DeleteItemRequest(id=item.id), metadata=admin)
    stored = tools_env.client.get_item(TableName=tools_env.prefix + "items", Key={"id": {"S": item.id}})["Item"]
    assert stored["deleted"]["BOOL"] is True and stored["dirty"]["S"] == "1"
    _fails(lambda: stub.GetWordDetails(t.GetWordDetailsRequest(id=item.id), metadata=tools_env.md("demo-n5")),
           grpc.StatusCode.NOT_FOUND)
    assert "試験語甲" in _fails(lambda: stub.DeleteItem(t.DeleteItemRequest(id=item.id), metadata=admin),
                              grpc.StatusCode.NOT_FOUND)
    assert not stub.SearchWords(t.SearchWordsRequest(query=item.written), metadata=tools_env.md("demo-n5")).items


@pytest.mark.parametrize("item, needle", [
    (items_pb2.Item(id="word:x", type="verb", written="x"), "item.type"),
    (items_pb2.Item(id="kanji:x", type="word", written="x"), "item.id"),
    (items_pb2.Item(id="word:x", type="word", written=""), "written"),
    (items_pb2.Item(id="word:x", type="word", written="x", level="N6"), "level"),
    (items_pb2.Item(id="kanji:ab", type="kanji", written="ab"), "one character"),
])
def test_invalid_items_are_refused_and_change_nothing(tools_env, item, needle):
    msg = _fails(lambda: tools_env.stub.UpsertItem(t.UpsertItemRequest(item=item),
                                                   metadata=tools_env.md("ops", "admin")),
                 grpc.StatusCode.INVALID_ARGUMENT)
    assert needle in msg
    assert "Item" not in tools_env.client.get_item(TableName=tools_env.prefix + "items", Key={"id": {"S": item.id}})
