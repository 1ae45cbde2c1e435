"""The gateway process: HTTP probes, the web client, the admin mount, and WebSockets on /v1/chat."""

from __future__ import annotations

import asyncio
import http
import importlib
import json
import logging
import mimetypes
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from services.common import metrics
from services.common.auth import AuthError, Identity, TokenVerifier, bearer_from_header
from services.common.aws import dynamodb_client, dynamodb_resource
from services.gateway.backends import Backends
from services.gateway.chat import ChatSession
from services.gateway.config import GatewayConfig
from services.gateway.connections import ConnectionStore
from services.gateway.live import make_client
from services.gateway.registry import SessionRegistry
from services.gateway.session_parts import SessionDeps
from services.gateway.tools_bridge import ToolBridge
from services.gateway.turnlog import ServiceToken, TurnLog
from services.gateway.usage import Limits, UsageStore

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat"
HANDSHAKE_GRACE_S = 30.0
BUSY_RETRY_AFTER_S = 5


class App:
    """Shared state of one gateway process."""

    def __init__(self, config: GatewayConfig, *, use_tables: bool = True) -> None:
        self.config = config
        self.verifier = TokenVerifier(config.common.auth)
        self.backends = Backends.connect(config.common)
        self.bridge = ToolBridge(self.backends, config.tool_deadline_s)
        self.live_client = make_client(config)
        common = config.common
        self.store: ConnectionStore | None = None
        usage_store: UsageStore | None = None
        if use_tables:
            self.store = ConnectionStore(dynamodb_resource(common.aws), common.table("connections"),
                                         resume_window_s=config.resume_window_s, idle_timeout_s=config.idle_timeout_s)
            usage_store = UsageStore(dynamodb_client(common.aws), common.table("usage"), common.table("settings"))
        self.limits = Limits(usage_store, config.messages_per_minute, config.audio_seconds_per_minute,
                             config.daily_budget_usd)
        self.turnlog = TurnLog(self.backends.conversations, maxsize=config.turnlog_queue_size,
                               max_delay_s=config.turnlog_max_backoff_s, timeout_s=config.turnlog_attempt_timeout_s,
                               service_token=ServiceToken(common.auth, config.service_token_file))
        self.sessions = SessionRegistry()
        self.session_deps = SessionDeps.build(
            config, sessions=self.sessions, limits=self.limits, store=self.store, backends=self.backends,
            bridge=self.bridge, turnlog=self.turnlog, live_client=self.live_client)
        self.ready = False
        # Handshakes accepted but not yet handled (they count against the cap), by connection.
        self._identities: dict[int, tuple[Identity, str, float]] = {}
        self.connections = 0  # WebSocket connections being handled
        self.refused_busy = 0
        self._static = self._load_static(config.static_dir)
        self._admin = None

    @staticmethod
    def _load_static(folder: Path) -> dict[str, tuple[bytes, str]]:
        files: dict[str, tuple[bytes, str]] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    if ctype.startswith("text/") or ctype.endswith("javascript"):
                        ctype += "; charset=utf-8"
                    files[path.name] = (path.read_bytes(), ctype)
        return files

    # ------------------------------------------------------------------ HTTP side of the server

    def _admin_handler(self):
        if self._admin is None:
            try:
                self._admin = importlib.import_module("services.gateway.admin").handle_admin
            except ModuleNotFoundError:
                return None
        return self._admin

    @staticmethod
    def _respond(status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
                 extra: dict[str, str] | None = None) -> Response:
        headers = Headers({"Content-Type": ctype, "Content-Length": str(len(body)), "Cache-Control": "no-store",
                           **(extra or {})})
        return Response(status, http.HTTPStatus(status).phrase, headers, body)

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if path == "/healthz":
            return self._respond(200, b"ok\n")
        if path == "/readyz":
            return self._respond(200 if self.ready else 503, b"ready\n" if self.ready else b"not ready\n")
        if path == CHAT_PATH:
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return self._respond(426, b"use a WebSocket\n", extra={"Upgrade": "websocket"})
            token = bearer_from_header(request.headers.get("Authorization")) or \
                (parse_qs(parts.query).get("token") or [""])[0]
            try:
                identity = self.verifier.verify(token)
            except AuthError as exc:
                return self._respond(401, f"not signed in: {exc}\n".encode())
            if not self.ready:
                return self._respond(503, b"not ready\n")
            if self._open_connections() >= self.config.max_connections:
                return self._busy()
            faults = request.headers.get("x-kotoba-faults", "") if self.config.allow_fault_header else ""
            self._identities[id(connection)] = (identity, faults, time.monotonic())
            return None
        if path.startswith("/api/v1/admin") or path == "/admin" or path.startswith("/admin/"):
            handler = self._admin_handler()
            if handler is None:
                return self._respond(404, b"admin is not installed\n")
            status, headers, body = await handler("GET", path, parse_qs(parts.query), dict(request.headers.raw_items()),
                                                  self.backends.conversations)
            body = body.encode() if isinstance(body, str) else body
            headers = dict(headers or {})
            return self._respond(status, body, headers.pop("Content-Type", "application/json"), headers)
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/").lstrip("/")
        if name in self._static and "/" not in name:
            body, ctype = self._static[name]
            return self._respond(200, body, ctype)
        return self._respond(404, b"not found\n")

    def _open_connections(self) -> int:
        # A handshake that failed after process_request never reaches `handle`: forget it after a while.
        stale = time.monotonic() - HANDSHAKE_GRACE_S
        for key in [k for k, v in self._identities.items() if v[2] < stale]:
            del self._identities[key]
        return self.connections + len(self._identities)

    def _busy(self) -> Response:
        self.refused_busy += 1
        metrics.errors.add(1, {"component": "gateway", "code": "server_busy"})
        log.warning("connection refused: server busy", extra={"open": self._open_connections(),
                                                              "max": self.config.max_connections})
        body = json.dumps({"error": {"code": "server_busy", "message": "the tutor is busy right now; try again in "
                                     f"{BUSY_RETRY_AFTER_S} seconds"}}).encode() + b"\n"
        return self._respond(503, body, "application/json", {"Retry-After": str(BUSY_RETRY_AFTER_S)})

    async def handle(self, connection: ServerConnection) -> None:
        identity, faults, _ = self._identities.pop(id(connection), (None, "", 0.0))
        if identity is None:
            await connection.close(1008, "not signed in")
            return
        self.connections += 1
        try:
            await ChatSession(self.session_deps, connection, identity, faults).run()
        finally:
            self.connections -= 1

    async def close(self, drain_s: float) -> None:
        self.ready = False
        for session in list(self.sessions.values()):
            await session.send_error("going_away", "the server is restarting; reconnect with resume")
            await session.ws.close(1001, "server restarting")
        await self.turnlog.close(drain_s)
        await self.backends.close()


def serve_kwargs(config: GatewayConfig) -> dict:
    return {
        # Pongs can be slow on busy phones and networks: a generous timeout keeps healthy sessions.
        "ping_interval": config.ping_interval_s,
        "ping_timeout": config.ping_timeout_s,
        "max_size": config.max_frame_bytes,  # bigger frames close with 1009, cleanly
        "max_queue": 64,
        "close_timeout": 5,
    }


async def run(config: GatewayConfig, stop: asyncio.Event, started: asyncio.Future | None = None,
              use_tables: bool = True) -> None:
    app = App(config, use_tables=use_tables)
    app.turnlog.start()
    host, port = config.addr.rsplit(":", 1)
    async with serve(app.handle, host, int(port), process_request=app.process_request,
                     **serve_kwargs(config)) as server:
        app.ready = True
        bound = server.sockets[0].getsockname()[1]
        log.info("listening", extra={"addr": f"{host}:{bound}"})
        if started is not None and not started.done():
            started.set_result((app, bound))
        await stop.wait()
        log.info("draining", extra={"seconds": config.common.drain_seconds})
        server.close(close_connections=False)
        await app.close(config.common.drain_seconds)


def main() -> None:
    from services.common.grpc_server import bootstrap

    bootstrap("gateway")
    config = GatewayConfig.from_env()

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(config, stop)

    asyncio.run(amain())
