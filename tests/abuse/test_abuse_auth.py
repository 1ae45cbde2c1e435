"""Token forgery, replay after expiry, and admin endpoints without the role — on the WebSocket, the admin HTTP
API and every gRPC service. All refused with a clean 401/403 or UNAUTHENTICATED/PERMISSION_DENIED."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import replace

import grpc
import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kotoba.v1 import conversations_pb2 as cpb
from kotoba.v1 import (
    conversations_pb2_grpc,
    items_pb2,
    tools_pb2,
    tools_pb2_grpc,
)
from services.common.auth import auth_metadata, mint_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(stack, user: str, **over) -> dict:
    auth = stack.config.auth
    now = int(time.time())
    return {"sub": user, "iss": auth.issuer, "aud": auth.audience, "iat": now, "exp": now + 600, "jti": "x",
            "roles": [], **over}


def forged_tokens(stack) -> dict[str, str]:
    auth = stack.config.auth
    good = stack.token("demo-n4")
    head, body, sig = good.split(".")
    edited = json.loads(base64.urlsafe_b64decode(body + "=="))
    edited["sub"] = "demo-n5"
    edited_admin = {**edited, "sub": "demo-n4", "roles": ["admin"]}
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "wrong key": jwt.encode(_claims(stack, "demo-n4"), "not-the-secret", algorithm="HS256"),
        "alg none": f"{none_header}.{_b64(json.dumps(_claims(stack, 'demo-n4', roles=['admin'])).encode())}.",
        "edited payload (sub)": f"{head}.{_b64(json.dumps(edited).encode())}.{sig}",
        "edited payload (roles)": f"{head}.{_b64(json.dumps(edited_admin).encode())}.{sig}",
        "expired": mint_token(auth, "demo-n4", ttl_seconds=-60),
        "wrong audience": jwt.encode(_claims(stack, "demo-n4", aud="someone-else"), auth.secret, algorithm="HS256"),
        "wrong issuer": jwt.encode(_claims(stack, "demo-n4", iss="evil"), auth.secret, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in _claims(stack, "demo-n4").items() if k != "exp"}, auth.secret,
                             algorithm="HS256"),
        "garbage": "a.b.c",
        "empty": "",
    }


def _ws_status(stack, token: str) -> int:
    try:
        with connect(f"{stack.url}?token={token}", open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def _http(stack, path: str, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://{stack.gateway_addr}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_forged_tokens_are_refused_at_the_websocket(stack):
    for name, token in forged_tokens(stack).items():
        assert _ws_status(stack, token) == 401, name
    assert _ws_status(stack, stack.token("demo-n4")) == 101  # the control


def test_replay_after_expiry_is_refused(stack):
    token = mint_token(stack.config.auth, "demo-n4", ttl_seconds=1)
    assert _ws_status(stack, token) == 101
    time.sleep(7)  # past exp plus the 5 s leeway
    assert _ws_status(stack, token) == 401
    with grpc.insecure_channel(stack.addr("tools")) as ch:
        with pytest.raises(grpc.RpcError) as err:
            tools_pb2_grpc.ToolsStub(ch).GetUserProgress(tools_pb2.GetUserProgressRequest(entity_type="word"),
                                                         metadata=auth_metadata(token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


ADMIN_PATHS = ["/api/v1/admin/chat/conversations", "/api/v1/admin/chat/stats", "/api/v1/admin/chat/summaries",
               "/api/v1/admin/chat/conversations/user/demo-n5", "/api/v1/admin/chat/conversations/some-session"]


def test_admin_http_needs_the_admin_role(stack):
    learner = stack.token("demo-n4")
    forged = forged_tokens(stack)
    for path in ADMIN_PATHS:
        assert _http(stack, path, None)[0] == 401, path
        status, body = _http(stack, path, learner)
        assert status == 403 and body["error"]["code"] == "PERMISSION_DENIED", (path, status, body)
        for name in ("alg none", "edited payload (roles)", "wrong key", "expired"):
            assert _http(stack, path, forged[name])[0] == 401, (path, name)
    assert _http(stack, ADMIN_PATHS[1], stack.token("ops", "admin"))[0] == 200  # the control


def _grpc_calls(stack):
    """(name, callable(metadata)) for every admin-only or identity-bearing gRPC method."""
    def tools(ch):
        return tools_pb2_grpc.ToolsStub(ch)

    def conv(ch):
        return conversations_pb2_grpc.ConversationsStub(ch)

    return [
        ("tools", "UpsertItem", lambda ch, md: tools(ch).UpsertItem(tools_pb2.UpsertItemRequest(
            item=items_pb2.Item(id="word:悪:わる", type="word", written="悪")), metadata=md, timeout=10)),
        ("tools", "DeleteItem", lambda ch, md: tools(ch).DeleteItem(tools_pb2.DeleteItemRequest(id="word:泳ぐ:およぐ"),
                                                                    metadata=md, timeout=10)),
        ("conversations", "ListConversations",
         lambda ch, md: conv(ch).ListConversations(cpb.ListConversationsRequest(), metadata=md, timeout=10)),
        ("conversations", "GetConversation",
         lambda ch, md: conv(ch).GetConversation(cpb.GetConversationRequest(session_id="x"), metadata=md, timeout=10)),
        ("conversations", "ListUserConversations", lambda ch, md: conv(ch).ListUserConversations(
            cpb.ListUserConversationsRequest(user_id="demo-n5"), metadata=md, timeout=10)),
        ("conversations", "ListSummaries",
         lambda ch, md: conv(ch).ListSummaries(cpb.ListSummariesRequest(), metadata=md, timeout=10)),
        ("conversations", "GetStats", lambda ch, md: conv(ch).GetStats(cpb.GetStatsRequest(), metadata=md, timeout=10)),
        ("conversations", "DeleteUserData (another learner)", lambda ch, md: conv(ch).DeleteUserData(
            cpb.DeleteUserDataRequest(user_id="demo-n5"), metadata=md, timeout=10)),
    ]


def test_admin_grpc_needs_the_admin_role(stack):
    learner = auth_metadata(stack.token("demo-n4"))
    for svc, name, call in _grpc_calls(stack):
        with grpc.insecure_channel(stack.addr(svc)) as ch:
            with pytest.raises(grpc.RpcError) as err:
                call(ch, learner)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, (name, err.value.code())
            for forged_name, token in forged_tokens(stack).items():
                with pytest.raises(grpc.RpcError) as err:
                    call(ch, auth_metadata(token) if token else ())
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, forged_name, err.value.code())


def test_every_user_scoped_grpc_refuses_forged_tokens(stack):
    calls = [
        ("tools", lambda ch, md: tools_pb2_grpc.ToolsStub(ch).GetUserProgress(
            tools_pb2.GetUserProgressRequest(entity_type="word"), metadata=md, timeout=10)),
        ("tools", lambda ch, md: tools_pb2_grpc.ToolsStub(ch).GetUserContext(
            tools_pb2.GetUserContextRequest(), metadata=md, timeout=10)),
        ("conversations", lambda ch, md: conversations_pb2_grpc.ConversationsStub(ch).AppendTurn(
            cpb.AppendTurnRequest(turn=cpb.Turn(turn_id="forged", session_id="s", user_id="demo-n5", question="q")),
            metadata=md, timeout=10)),
        ("conversations", lambda ch, md: conversations_pb2_grpc.ConversationsStub(ch).GetPrivacySettings(
            cpb.GetPrivacySettingsRequest(), metadata=md, timeout=10)),
    ]
    for svc, call in calls:
        with grpc.insecure_channel(stack.addr(svc)) as ch:
            for forged_name, token in forged_tokens(stack).items():
                with pytest.raises(grpc.RpcError) as err:
                    call(ch, auth_metadata(token) if token else ())
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (svc, forged_name, err.value.code())


def test_learner_cannot_write_a_turn_as_someone_else(stack, kit):
    """AppendTurn with a learner token and turn.user_id naming another learner stores it under the caller."""
    intruder = kit.learner("abuse-turn")
    turn = cpb.Turn(turn_id=f"t-{intruder}", session_id=f"s-{intruder}", user_id="demo-n5", mode="text",
                    question="hello", answer="hi", started_at="2026-01-01T00:00:00Z")
    with grpc.insecure_channel(stack.addr("conversations")) as ch:
        stub = conversations_pb2_grpc.ConversationsStub(ch)
        try:
            stub.AppendTurn(cpb.AppendTurnRequest(turn=turn), metadata=auth_metadata(stack.token(intruder)), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT), exc
            return
    stored = kit.session_turns(stack, f"s-{intruder}")
    assert stored and all(t.user_id != "demo-n5" for t in stored), [t.user_id for t in stored]


def test_the_admin_role_cannot_be_self_minted_by_a_learner_token_edit(stack):
    """Sanity for the forgery table: editing roles in a signed token breaks its signature."""
    token = forged_tokens(stack)["edited payload (roles)"]
    auth = replace(stack.config.auth)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, auth.secret, algorithms=["HS256"], audience=auth.audience, issuer=auth.issuer)
