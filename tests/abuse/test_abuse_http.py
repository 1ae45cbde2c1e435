"""The gateway's HTTP side under an outside review's findings (issue 15): failed handshakes must not hold
connection slots, every method is not GET (405 + Allow), every HTML page carries its CSP and frame headers,
bad admin parameters are a 4xx without a traceback, and browsers from other origins are refused."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from services.gateway.client import ChatClient


def _http(addr: str, method: str, path: str, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def _upgrade_without_key(addr: str, token: str) -> int:
    status, _, _ = _http(addr, "GET", "/v1/chat", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                    "Sec-WebSocket-Version": "13",
                                                    "Authorization": f"Bearer {token}"})
    return status


async def test_failed_handshakes_do_not_hold_connection_slots(stack, kit):
    """Finding 2: a slot was counted before the handshake and kept 30 s when it failed (426 without
    Sec-WebSocket-Key), so a burst of bad upgrades from one account locked everyone out."""
    cap = 3
    side = kit.derived_stack(stack, "handshake-slots")
    side.gateway_addr = await asyncio.to_thread(side.start_gateway, KOTOBA_GATEWAY_MAX_CONNECTIONS=str(cap))
    opened: list[ChatClient] = []
    try:
        flooder = side.token(kit.learner("abuse-handshakes"))
        statuses = await asyncio.gather(*(asyncio.to_thread(_upgrade_without_key, side.gateway_addr, flooder)
                                          for _ in range(3 * cap)))
        assert all(400 <= s < 500 for s in statuses), statuses
        for i in range(cap):  # every slot is still free for real learners
            client = await ChatClient.open(side.url, side.token(kit.learner(f"abuse-hs{i}")))
            opened.append(client)
            await client.send(type="ping")
            assert (await client.recv_json(wait_s=10))["type"] == "pong"
        with pytest.raises(InvalidStatus) as refused:  # and the cap itself still holds
            await ChatClient.open(side.url, side.token(kit.learner("abuse-hs-over")))
        assert refused.value.response.status_code == 503
        assert json.loads(refused.value.response.body)["error"]["code"] == "server_busy"
        assert refused.value.response.headers["Retry-After"] == "5"
    finally:
        for c in opened:
            await c.close()
        await asyncio.to_thread(side.stop_all)


def test_pending_handshakes_are_capped_per_learner_and_per_address():
    from services.gateway.chat_endpoint import HandshakeGate

    gate = HandshakeGate(max_connections=100, per_learner=2, per_address=3)
    assert gate.reserve("a", "1.1.1.1") == "" and gate.reserve("a", "1.1.1.1") == ""
    assert gate.reserve("a", "2.2.2.2") == "too_many_handshakes"  # per learner, from anywhere
    assert gate.reserve("b", "1.1.1.1") == ""
    assert gate.reserve("c", "1.1.1.1") == "too_many_handshakes"  # per address, any learner
    gate.settle("a", "1.1.1.1", completed=False)  # a failed handshake frees its slot at once
    assert gate.in_use() == 2 and gate.reserve("a", "2.2.2.2") == ""
    gate.settle("a", "1.1.1.1", completed=True)
    assert gate.open == 1 and gate.in_use() == 3
    gate.release()
    assert gate.in_use() == 2


KNOWN = [("/", "GET, HEAD"), ("/healthz", "GET, HEAD"), ("/readyz", "GET, HEAD"), ("/v1/chat", "GET"),
         ("/static/app.js", "GET, HEAD"), ("/admin", "GET, HEAD"), ("/api/v1/admin/chat/stats", "GET"),
         ("/api/v1/me/privacy", "GET, PUT"), ("/api/v1/me/data", "DELETE, GET")]


@pytest.mark.parametrize(("path", "allow"), KNOWN)
@pytest.mark.parametrize("method", ["POST", "PATCH", "OPTIONS"])
def test_other_methods_get_405_with_allow(stack, path, allow, method):
    status, headers, body = _http(stack.gateway_addr, method, path, {"Content-Type": "application/json"}, b"{}")
    assert status == 405, (path, method, status, body[:200])
    assert sorted(a.strip() for a in headers["allow"].split(",")) == sorted(allow.split(", "))
    assert b"Traceback" not in body


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
def test_demo_sign_in_other_methods_get_405_with_allow(stack, method):
    status, headers, _ = _http(stack.gateway_addr, method, "/api/v1/dev/token", {"Content-Type": "application/json"},
                               b"{}")
    assert status == 405 and sorted(a.strip() for a in headers["allow"].split(",")) == ["GET", "POST"]


def test_unknown_paths_are_404_for_any_method(stack):
    for method in ("GET", "POST", "DELETE"):
        assert _http(stack.gateway_addr, method, "/nope")[0] == 404


@pytest.mark.parametrize("path", ["/", "/index.html", "/static/index.html", "/admin", "/admin.html",
                                  "/static/admin.html"])
def test_every_html_page_has_csp_and_frame_headers(stack, path):
    status, headers, body = _http(stack.gateway_addr, "GET", path)
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    if "admin" in path:  # the admin page keeps its own policy (inline script), wherever it is reached
        assert "script-src 'unsafe-inline'" in csp


@pytest.mark.parametrize("page_size", ["99999999999999999999", "1" * 5000, "-1", "101", "abc"])
@pytest.mark.parametrize("token", [None, "admin"])
def test_admin_bad_page_size_is_400_without_traceback(stack, page_size, token):
    headers = {"Authorization": f"Bearer {stack.token('abuse-admin', 'admin')}"} if token else {}
    status, _, body = _http(stack.gateway_addr, "GET", f"/api/v1/admin/chat/conversations?page_size={page_size}",
                            headers)
    assert status == 400, (status, body[:300])
    assert json.loads(body)["error"]["code"] == "INVALID_ARGUMENT"
    assert b"Traceback" not in body and b"File \"" not in body


def _ws_status(url: str, **kw) -> int:
    try:
        with connect(url, open_timeout=10, **kw):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_browser_origins_outside_the_allow_list_are_refused(stack, kit):
    addr = stack.gateway_addr
    token = stack.token(kit.learner("abuse-origin"))
    url = f"ws://{addr}/v1/chat?token={token}"
    port = addr.rsplit(":", 1)[1]
    assert _ws_status(url, origin="https://evil.example") == 403
    assert _http(addr, "GET", "/api/v1/me/privacy", {"Origin": "https://evil.example",
                                                     "Authorization": f"Bearer {token}"})[0] == 403
    assert _http(addr, "GET", "/", {"Origin": "null"})[0] == 403
    assert _ws_status(url) == 101  # no Origin: not a browser
    assert _ws_status(url, origin=f"http://{addr}") == 101  # the page's own origin
    assert _ws_status(url, origin=f"http://localhost:{port}") == 101  # local mode: localhost pages


def test_allowed_origins_setting_replaces_the_default(stack, kit):
    side = kit.derived_stack(stack, "origins")
    side.gateway_addr = side.start_gateway(KOTOBA_GATEWAY_ALLOWED_ORIGINS="https://app.example, https://b.example")
    try:
        url = f"ws://{side.gateway_addr}/v1/chat?token={side.token(kit.learner('abuse-origin2'))}"
        assert _ws_status(url, origin="https://app.example") == 101
        assert _ws_status(url, origin="https://b.example:443") == 101
        assert _ws_status(url, origin="http://localhost:8080") == 403
        assert _ws_status(url, origin="https://app.example.evil.com") == 403
    finally:
        side.stop_all()


async def test_huge_integer_in_a_frame_is_a_clean_error_and_the_session_goes_on(stack, kit):
    """A 5000-digit integer escaped the JSON parser (int conversion limit) and closed the session with 1011."""
    async with await ChatClient.open(stack.url, stack.token(kit.learner("abuse-bigint"))) as client:
        await client.ws.send('{"type":"text","text":"hi","n":' + "9" * 5000 + "}")
        frame = await client.recv_json(wait_s=10)
        assert frame["type"] == "error" and frame["code"] == "bad_json" and "digits" in frame["message"]
        await client.ws.send('{"type":"ping","n":' + "-" + "1" * 4400 + "}")
        assert (await client.recv_json(wait_s=10))["code"] == "bad_json"
        answer = await client.ask("What does 泳ぐ mean?")
        assert not answer.errors and "swim" in answer.text.lower()
