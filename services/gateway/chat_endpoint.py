"""`/v1/chat`: checks before the upgrade, the connection cap, and handing the socket to a ChatSession.

The cap (`KOTOBA_GATEWAY_MAX_CONNECTIONS`) counts completed handshakes plus the few in progress. A slot is
reserved synchronously after the checks and released the moment a handshake fails, so failed upgrades
(e.g. without `Sec-WebSocket-Key`) cannot fill it; handshakes in progress are also capped per learner and
per address.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import TYPE_CHECKING

from aiohttp import web

from services.common import metrics
from services.common.auth import AuthError
from services.gateway.chat import ChatSession
from services.gateway.httputil import SUBPROTOCOL, json_error, request_token, respond
from services.gateway.wsadapter import SocketAdapter

if TYPE_CHECKING:
    from services.gateway.server import App

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat"
BUSY_RETRY_AFTER_S = 5
CLOSE_TIMEOUT_S = 5.0
LINGER_S = 2.0
LINGER_POLL_S = 0.05


class _LingeringSocket(web.WebSocketResponse):
    """Closes TCP the way RFC 6455 §7.1.1 asks: after our close frame the server half-closes and keeps
    reading (and dropping) until the client closes, instead of closing at once.

    aiohttp closes the transport right after sending its close frame. When the client is still sending
    (a 2 MB frame refused with 1009), closing a socket with unread data makes the kernel send a reset,
    and the client can lose the close frame and its code ("stream ended" in a loaded test run)."""

    def _close_transport(self) -> None:
        request = self._req
        transport = request.transport if request is not None else None
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            super()._close_transport()
            return
        transport.write_eof()  # after the buffered close frame; reading goes on, and linger() closes


async def linger(request: web.Request) -> None:
    """Wait (at most LINGER_S) for the client to close a half-closed connection; aiohttp then closes it."""
    transport = request.transport
    # Polled: aiohttp has no event for its transport closing (the client's FIN closes it).
    for _ in range(round(LINGER_S / LINGER_POLL_S)):
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(LINGER_POLL_S)


class HandshakeGate:
    """Connection accounting: `open` completed handshakes, plus pending ones by learner and by address."""

    def __init__(self, max_connections: int, per_learner: int, per_address: int) -> None:
        self.max_connections = max_connections
        self.per_learner = per_learner
        self.per_address = per_address
        self.open = 0
        self.pending = 0
        self.by_learner: Counter[str] = Counter()
        self.by_address: Counter[str] = Counter()

    def in_use(self) -> int:
        """Sockets open plus handshakes still in progress."""
        return self.open + self.pending

    def reserve(self, learner: str, address: str) -> str:
        """'' when a pending slot was reserved (no await in between), else why not."""
        if self.in_use() >= self.max_connections:
            return "server_busy"
        if self.by_learner[learner] >= self.per_learner or self.by_address[address] >= self.per_address:
            return "too_many_handshakes"
        self.pending += 1
        self.by_learner[learner] += 1
        self.by_address[address] += 1
        return ""

    def settle(self, learner: str, address: str, completed: bool) -> None:
        """End a handshake: drop its per-learner and per-address counts, keep the socket if it completed."""
        self.pending -= 1
        for counter, key in ((self.by_learner, learner), (self.by_address, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if completed:
            self.open += 1

    def release(self) -> None:
        """Forget a socket that has closed."""
        self.open -= 1


def _busy(gate: HandshakeGate) -> web.Response:
    metrics.errors.add(1, {"component": "gateway", "code": "server_busy"})
    log.warning("connection refused: server busy", extra={"open": gate.in_use(), "max": gate.max_connections})
    body = json.dumps({"error": {"code": "server_busy", "message": "the tutor is busy right now; try again in "
                                 f"{BUSY_RETRY_AFTER_S} seconds"}}).encode() + b"\n"
    return respond(503, body, "application/json", {"Retry-After": str(BUSY_RETRY_AFTER_S)})


class ChatEndpoint:
    def __init__(self, app: App) -> None:
        self.app = app
        c = app.config
        self.gate = HandshakeGate(c.max_connections, c.max_pending_handshakes_per_learner,
                                  c.max_pending_handshakes_per_address)

    def _socket(self) -> web.WebSocketResponse:
        c = self.app.config
        ws = _LingeringSocket(
            protocols=(SUBPROTOCOL,),
            # Pongs can be slow on busy phones and networks: a generous timeout keeps healthy sessions.
            heartbeat=c.ping_interval_s,
            max_msg_size=c.max_frame_bytes,  # bigger frames close with 1009, cleanly
            timeout=CLOSE_TIMEOUT_S,
            # No permessage-deflate: aiohttp's compressor (zlib memLevel 8, not configurable) costs ~90 KiB
            # of resident memory per connection, and the bulk of the traffic, PCM audio, barely compresses.
            compress=False,
        )
        # aiohttp waits heartbeat/2 for the pong; ours is its own setting (a test pins this attribute).
        ws._pong_heartbeat = c.ping_timeout_s
        return ws

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Authenticate and admit a WebSocket upgrade, then run a chat session on it."""
        app = self.app
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return respond(426, b"use a WebSocket\n", extra={"Upgrade": "websocket"})
        try:
            identity = app.verifier.verify(request_token(request))
        except AuthError as exc:
            return respond(401, f"not signed in: {exc}\n".encode())
        if not app.ready:
            return respond(503, b"not ready\n")
        address = request.remote or ""
        refused = self.gate.reserve(identity.user_id, address)
        if refused == "server_busy":
            return _busy(self.gate)
        if refused:
            metrics.errors.add(1, {"component": "gateway", "code": refused})
            return json_error(429, refused, "too many WebSocket handshakes in progress; retry in a second",
                              {"Retry-After": "1"})
        ws = self._socket()
        try:
            await ws.prepare(request)
        except web.HTTPException as exc:
            self.gate.settle(identity.user_id, address, completed=False)
            return respond(400, f"bad WebSocket handshake: {exc.text or exc.reason}\n".encode())
        except BaseException:
            self.gate.settle(identity.user_id, address, completed=False)
            raise
        self.gate.settle(identity.user_id, address, completed=True)
        faults = request.headers.get("x-kotoba-faults", "") if app.config.allow_fault_header else ""
        try:
            await ChatSession(app.session_deps, SocketAdapter(ws, request), identity, faults).run()
        finally:
            self.gate.release()
            await linger(request)
            if not ws.closed:
                await ws.close()
        return ws
