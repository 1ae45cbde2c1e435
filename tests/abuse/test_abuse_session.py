"""The learner session's own state: the per-learner cap under simultaneous starts, what the `connections`
table keeps for resumption (no raw PII, nothing but the handle for learners who opted out), and a session
that must end when its token expires."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from websockets.exceptions import ConnectionClosed

from services.common.auth import mint_token
from services.common.aws import dynamodb_client, dynamodb_resource
from services.gateway.client import ChatClient

CARD = "4111 1111 1111 1111"
EMAIL = "hanako.tanaka@example.com"
PHONE = "090-1234-5678"


async def test_simultaneous_starts_of_one_learner_respect_the_session_cap(stack, kit):
    cap = int(stack.base_env["KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER"])
    flooder = kit.learner("abuse-race")
    results = await asyncio.gather(*(kit.open_session(stack.url, stack.token(flooder)) for _ in range(2 * cap)))
    accepted = [c for c, _ in results if c is not None]
    try:
        assert len(accepted) <= cap, f"{len(accepted)} sessions of one learner started at once (cap {cap})"
        for client, frame in results:
            if client is None:
                assert frame.get("code") == "too_many_sessions" and frame.get("close") == 1008, frame
    finally:
        for c in accepted:
            await c.close()


def _connection_rows(stack, user_id: str) -> list[dict]:
    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("connections"))
    return [r for r in table.scan(ConsistentRead=True)["Items"] if r.get("userId") == user_id]


def _rows_with_turns(stack, user_id: str) -> list[dict]:
    return [r for r in _connection_rows(stack, user_id) if json.loads(r.get("recent") or "[]")]


async def _tell_pii(stack, user: str) -> str:
    async with await ChatClient.open(stack.url, stack.token(user)) as client:
        session = await client.start()
        answer = await client.ask(f"My card is {CARD}, mail me at {EMAIL} or call {PHONE}. What does 泳ぐ mean?")
        assert not answer.errors, answer.errors
    return session["session_id"]


async def test_resumption_turns_in_the_connections_table_are_redacted(stack, kit):
    user = kit.learner("abuse-pii")
    session_id = await _tell_pii(stack, user)
    rows = await asyncio.to_thread(kit.wait_for, lambda: _rows_with_turns(stack, user), 20, "a row with turns")
    assert [r["sessionId"] for r in rows] == [session_id]
    stored = json.dumps(rows[0], default=str, ensure_ascii=False)
    for raw in (CARD, CARD.replace(" ", ""), EMAIL, PHONE):
        assert raw not in stored, f"{raw!r} stored in clear in kotoba-connections"
    assert "泳ぐ" in stored  # the learner's words are kept, minus the PII


async def test_opted_out_learner_keeps_only_the_resumption_handle(stack, kit):
    user = kit.learner("abuse-optout")
    dynamodb_client(stack.config.aws).update_item(
        TableName=stack.config.table("settings"), Key={"userId": {"S": user}},
        UpdateExpression="SET loggingEnabled = :l, pseudonymize = :p",
        ExpressionAttributeValues={":l": {"BOOL": False}, ":p": {"BOOL": False}})
    session_id = await _tell_pii(stack, user)

    def detached() -> list[dict]:
        return [r for r in _connection_rows(stack, user) if r.get("state") == "detached"]

    rows = await asyncio.to_thread(kit.wait_for, lambda: detached(), 20, "the detached row")
    assert [r["sessionId"] for r in rows] == [session_id]
    assert json.loads(rows[0].get("recent") or "[]") == []
    assert "泳ぐ" not in json.dumps(rows[0], default=str, ensure_ascii=False)


async def test_a_session_ends_when_its_token_expires_and_resumes_with_a_fresh_one(stack, kit):
    user = kit.learner("abuse-expiry")
    short = mint_token(stack.config.auth, user, (), ttl_seconds=6)
    expires = time.time() + 6
    client = await ChatClient.open(stack.url, short)
    session = await client.start()
    answer = await client.ask("What does 泳ぐ mean?")
    assert not answer.errors and "swim" in answer.text.lower()
    frames: list[dict] = []
    code = None
    try:
        while True:
            frames.append(await client.recv_json(wait_s=max(1.0, expires - time.time() + 15)))
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        raise AssertionError(f"the session outlived its token: {frames}") from None
    assert any(f.get("type") == "error" and f.get("code") == "token_expired" for f in frames), frames
    assert code == 4001, code
    async with await ChatClient.open(stack.url, stack.token(user)) as again:
        resumed = await again.start(resume=session["session_id"])
        assert resumed["resumed"] is True and resumed["session_id"] == session["session_id"]
        answer = await again.ask("And 食べる?")
        assert not answer.errors and answer.text


async def test_sessions_attached_on_other_gateways_count_against_the_cap(stack, kit):
    """The cap holds across gateways: with the learner's other sessions attached elsewhere (their rows), a new
    session is closed with too_many_sessions / 1008 once the count comes back (it is checked beside the open,
    docs/protocol.md), and its row does not stay attached to count against the learner."""
    cap = int(stack.base_env["KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER"])
    user = kit.learner("abuse-elsewhere")
    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("connections"))
    for n in range(cap):
        table.put_item(Item={"sessionId": f"elsewhere-{user}-{n}", "userId": user, "state": "attached",
                             "lastActivity": str(time.time()), "ttl": int(time.time()) + 600})
    client = await ChatClient.open(stack.url, stack.token(user))
    frames = []
    await client.send(type="start")
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.append(await client.recv_json(wait_s=15))
    closed = client.ws.close_code
    await client.close()
    errors = [f for f in frames if f.get("type") == "error"]
    assert [e["code"] for e in errors] == ["too_many_sessions"], frames
    assert closed == 1008
    refused = [r for r in _connection_rows(stack, user) if not r["sessionId"].startswith("elsewhere-")]
    assert all(r.get("state") != "attached" for r in refused), refused
    # One of the others ends: the learner may open a session again.
    table.update_item(Key={"sessionId": f"elsewhere-{user}-0"}, UpdateExpression="SET #s = :d",
                      ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues={":d": "detached"})
    async with await ChatClient.open(stack.url, stack.token(user)) as again:
        await again.start()
        answer = await again.ask("What does 泳ぐ mean?")
    assert not answer.errors and "swim" in answer.text.lower()
