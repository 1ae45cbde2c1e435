"""Learner privacy controls on the gateway's HTTP side (GET/PUT /api/v1/me/privacy, GET/DELETE /api/v1/me/data),
the `kotoba me …` CLI over them, and the WebSocket transport options (token as a subprotocol)."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from services.gateway.client import ChatClient


def _http(addr: str, method: str, path: str, token: str | None = None, body=None,
          raw: bytes | None = None) -> tuple[int, dict]:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        reply = conn.getresponse()
        payload = reply.read()
        assert b"Traceback" not in payload
        return reply.status, json.loads(payload or b"{}")
    finally:
        conn.close()


def test_privacy_settings_read_and_change_only_the_callers_own(stack, kit):
    a, b = kit.learner("priv-a"), kit.learner("priv-b")
    addr = stack.gateway_addr
    status, before = _http(addr, "GET", "/api/v1/me/privacy", stack.token(a))
    assert status == 200 and set(before) == {"logging_enabled", "pseudonymize"}
    status, after = _http(addr, "PUT", "/api/v1/me/privacy", stack.token(a), {"pseudonymize": True})
    assert status == 200 and after == {**before, "pseudonymize": True}  # a partial update keeps the rest
    status, after = _http(addr, "PUT", "/api/v1/me/privacy", stack.token(a), {"logging_enabled": False})
    assert after == {"logging_enabled": False, "pseudonymize": True}
    assert _http(addr, "GET", "/api/v1/me/privacy", stack.token(a))[1] == after
    assert _http(addr, "GET", "/api/v1/me/privacy", stack.token(b))[1] == before  # b untouched
    # A user id in the body or the query is not a way to reach someone else.
    assert _http(addr, "PUT", "/api/v1/me/privacy", stack.token(b), {"user_id": a, "pseudonymize": False})[0] == 400
    assert _http(addr, "GET", f"/api/v1/me/privacy?user_id={a}", stack.token(b))[1] == before


@pytest.mark.parametrize(("body", "code"), [
    (b"not json", "bad_json"), (b"[]", "bad_request"), (b"{}", "bad_request"),
    (b'{"logging_enabled": "no"}', "bad_request"), (b'{"logging_enabled": 1}', "bad_request"),
    (b'{"extra": true}', "bad_request"), (b'{"pseudonymize": true, "x": "' + b"y" * 5000 + b'"}', "too_large"),
])
def test_bad_privacy_updates_are_4xx_and_change_nothing(stack, kit, body, code):
    user = kit.learner("priv-bad")
    before = _http(stack.gateway_addr, "GET", "/api/v1/me/privacy", stack.token(user))[1]
    status, reply = _http(stack.gateway_addr, "PUT", "/api/v1/me/privacy", stack.token(user), raw=body)
    assert 400 <= status < 500 and reply["error"]["code"] == code, (status, reply)
    assert _http(stack.gateway_addr, "GET", "/api/v1/me/privacy", stack.token(user))[1] == before


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/me/privacy"), ("PUT", "/api/v1/me/privacy"),
                                              ("GET", "/api/v1/me/data"), ("DELETE", "/api/v1/me/data")])
def test_privacy_endpoints_need_a_valid_token_in_the_header(stack, method, path):
    assert _http(stack.gateway_addr, method, path)[0] == 401
    assert _http(stack.gateway_addr, method, path, "a.b.c")[0] == 401
    # Not from the URL: a token there ends up in logs and history.
    assert _http(stack.gateway_addr, method, f"{path}?token={stack.token('demo-n5')}")[0] == 401


async def test_erasure_deletes_the_callers_turns_and_export_shows_their_data(stack, kit):
    me, other = kit.learner("priv-erase"), kit.learner("priv-keep")
    for user in (me, other):
        async with await ChatClient.open(stack.url, stack.token(user)) as client:
            answer = await client.ask("What does 泳ぐ mean?")
            assert not answer.errors
        await kit.assert_all_turns_stored(stack, 1, user_id=user)
    for _ in range(300):  # the usage row is written in the background after the turn (slow under load)
        status, export = await asyncio.to_thread(_http, stack.gateway_addr, "GET", "/api/v1/me/data",
                                                 stack.token(me))
        assert status == 200 and export["user_id"] == me
        if sum(int(row.get("turns", 0)) for row in export["usage"]) >= 1:
            break
        await asyncio.sleep(0.2)
    assert set(export["privacy"]) == {"logging_enabled", "pseudonymize"}
    assert sum(int(row.get("turns", 0)) for row in export["usage"]) >= 1, export
    assert other not in json.dumps(export)
    # The stored turns, as Conversations keeps them (summarised in the background), and only the caller's.
    assert [t["question"] for t in export["turns"]] == ["What does 泳ぐ mean?"], export["turns"]
    assert {t["user_id"] for t in export["turns"]} == {me} and not export["turns_truncated"]
    assert export["sessions"] == [export["turns"][0]["session_id"]]
    theirs = (await asyncio.to_thread(_http, stack.gateway_addr, "GET", "/api/v1/me/data", stack.token(other)))[1]
    assert {t["user_id"] for t in theirs["turns"]} == {other} and me not in json.dumps(theirs)
    assert not set(export["sessions"]) & set(theirs["sessions"])
    status, erased = await asyncio.to_thread(_http, stack.gateway_addr, "DELETE", "/api/v1/me/data", stack.token(me))
    assert status == 200 and erased["deleted_turns"] >= 1, erased
    status, after = await asyncio.to_thread(_http, stack.gateway_addr, "GET", "/api/v1/me/data", stack.token(me))
    assert status == 200 and after["turns"] == [] and after["sessions"] == [], after
    assert await asyncio.to_thread(kit.count_stored, stack, user_id=me) == 0
    assert await asyncio.to_thread(kit.count_stored, stack, user_id=other) == 1  # nobody else's


async def test_erasure_drops_the_learners_queued_turn_logs():
    from kotoba.v1 import conversations_pb2 as pb
    from services.gateway.turnlog import TurnLog

    log = TurnLog(stub=None, maxsize=10)  # not started: records stay queued
    for user in ("a", "b", "a", "c"):
        log.submit(pb.Turn(turn_id=f"t-{user}", user_id=user), "tok", user_id=user)
    assert log.forget("a") == 2
    left = [log.queue.get_nowait().user_id for _ in range(log.queue.qsize())]
    assert left == ["b", "c"] and log.dropped == 0


def test_cli_me_privacy_export_delete(stack, kit):
    user = kit.learner("priv-cli")
    url = ["--url", f"http://{stack.gateway_addr}", "--token", stack.token(user), "--json"]
    shown = json.loads(stack.run_cli("me", "privacy", *url))
    assert set(shown) == {"logging_enabled", "pseudonymize"}
    changed = json.loads(stack.run_cli("me", "privacy", "--set", "pseudonymize=true", *url))
    assert changed["pseudonymize"] is True
    assert json.loads(stack.run_cli("me", "export", *url))["user_id"] == user
    assert json.loads(stack.run_cli("me", "delete", "--yes", *url))["deleted_turns"] == 0
    with pytest.raises(RuntimeError, match="--yes"):
        stack.run_cli("me", "delete", *url)
    with pytest.raises(RuntimeError, match="NAME=true"):
        stack.run_cli("me", "privacy", "--set", "user_id=x", *url)


# ---------------------------------------------------------------------- transport


async def test_token_as_websocket_subprotocol(stack, kit):
    token = stack.token(kit.learner("transport-sub"))
    async with aconnect(stack.url, subprotocols=["kotoba.v1", f"bearer.{token}"], open_timeout=10) as ws:
        assert ws.subprotocol == "kotoba.v1"  # the token is never echoed back
        await ws.send('{"type":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
    with pytest.raises(InvalidStatus) as refused:
        async with aconnect(stack.url, subprotocols=["kotoba.v1", "bearer.a.b.c"], open_timeout=10):
            pass
    assert refused.value.response.status_code == 401


def test_query_token_and_plain_clients_still_work(stack, kit):
    token = stack.token(kit.learner("transport-q"))
    with connect(f"{stack.url}?token={token}", open_timeout=10) as ws:
        assert ws.subprotocol is None  # no subprotocol asked, none answered: as before
        # permessage-deflate is offered by this client and declined (memory per connection; audio).
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(10)) == {"type": "pong"}


def test_non_upgrade_and_unauthenticated_chat_requests(stack):
    host, port = stack.gateway_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/v1/chat")
    reply = conn.getresponse()
    assert reply.status == 426 and reply.getheader("Upgrade") == "websocket" and reply.read() == b"use a WebSocket\n"
    conn.close()
    with pytest.raises(InvalidStatus) as refused:
        with connect(stack.url, open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body.startswith(b"not signed in:")


def test_ping_timeout_setting_reaches_aiohttp():
    """aiohttp waits heartbeat/2 for a pong unless told otherwise: the gateway sets its own timeout on a
    private attribute, so an aiohttp upgrade that renames it must fail here, not silently in production."""
    from dataclasses import replace

    from services.gateway.chat_endpoint import ChatEndpoint
    from services.gateway.config import GatewayConfig

    config = replace(GatewayConfig.from_env({"KOTOBA_ENV": "local"}), ping_interval_s=30.0, ping_timeout_s=90.0)

    class _App:
        pass

    app = _App()
    app.config = config
    ws = ChatEndpoint(app)._socket()
    assert ws._heartbeat == 30.0 and ws._pong_heartbeat == 90.0
    assert ws._max_msg_size == config.max_frame_bytes
