"""The Live engine's WebSocket server: TLS, paths, API key, debug endpoint, one Connection each."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from services.common.signals import stop_on_signals
from services.common.tls import server_context
from services.local_live import protocol as p
from services.local_live.clock import ModelClock
from services.local_live.config import LiveConfig
from services.local_live.connection import Connection
from services.local_live.faults import HEADER, Faults, FaultSpecError, FrameLog
from services.local_live.resumption import ResumptionStore

log = logging.getLogger(__name__)
DEBUG_PREFIX = "/debug/frames/"


@dataclass
class Engine:
    """State shared by all connections of one server."""

    config: LiveConfig
    faults: Faults
    resumption: ResumptionStore
    frames: FrameLog
    clock: ModelClock = field(default_factory=ModelClock)
    connections: set[Connection] = field(default_factory=set)

    @classmethod
    def from_config(cls, config: LiveConfig) -> Engine:
        """The engine for this configuration: its clock, default faults, frames recorder and handles."""
        clock = ModelClock(config.clock_speed)
        return cls(config=config, faults=Faults.parse(config.faults),
                   resumption=ResumptionStore(config.resumption_ttl_seconds, clock=clock.now),
                   frames=FrameLog(config.frames_dir), clock=clock)

    def is_open(self, lineage: str) -> bool:
        """Whether a connection of the conversation `lineage` still has an open socket (a resume of
        it is then refused)."""
        return any(c.session is not None and (c.session.lineage or c.conn_id) == lineage and c.is_open
                   for c in self.connections)

    def key_ok(self, request: Request) -> bool:
        """True when the request carries the configured API key (header or ?key=)."""
        query = parse_qs(urlsplit(request.path).query)
        given = request.headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        bearer = request.headers.get("authorization", "")
        if not given and bearer.lower().startswith(("bearer ", "token ")):
            given = bearer.split(" ", 1)[1]
        return hmac.compare_digest(given.encode(), self.config.api_key.encode())

    # ---- HTTP side of the handshake ---------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP requests (the debug frames endpoint, bad paths or keys) before the WebSocket upgrade."""
        path = urlsplit(request.path).path
        if path.startswith(DEBUG_PREFIX):
            return self._debug_frames(connection, request, path[len(DEBUG_PREFIX):])
        if path not in p.PATHS:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no Live endpoint at {path}\n")
        return None

    def _debug_frames(self, connection: ServerConnection, request: Request, conn_id: str) -> Response:
        if not self.key_ok(request):
            return connection.respond(HTTPStatus.FORBIDDEN, "API key not valid\n")
        frames = self.frames.frames(conn_id)
        if frames is None:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no recorded frames for {conn_id}\n")
        response = connection.respond(HTTPStatus.OK, json.dumps({"frames": frames}, ensure_ascii=False))
        response.headers["Content-Type"] = "application/json"
        return response

    # ---- WebSocket side -----------------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one WebSocket connection as a Live session."""
        if not self.key_ok(ws.request):
            # Read the setup first: the SDK sends it straight after the handshake, and closing
            # before it arrives would surface as a send error instead of this reason.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.recv(), 5)
            await ws.close(p.CLOSE_POLICY, "API key not valid. Please pass a valid API key.")
            return
        try:
            faults = Faults.parse(ws.request.headers.get(HEADER, ""), self.faults)
        except FaultSpecError as exc:
            await ws.close(p.CLOSE_POLICY, f"bad {HEADER} header: {exc}"[:120])
            return
        conn = Connection(ws, self, faults)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)


async def start(config: LiveConfig, engine: Engine | None = None) -> tuple[Server, Engine]:
    """Start the engine's WebSocket server (TLS with the dev certificate); the server and its engine."""
    engine = engine or Engine.from_config(config)
    ssl_ctx = await asyncio.to_thread(server_context, config.tls_dir)
    server = await serve(
        engine.handle, config.host, config.port, ssl=ssl_ctx,
        process_request=engine.process_request,
        max_size=config.max_frame_bytes,  # bigger frames close the connection with 1009
        ping_interval=20, ping_timeout=60,
        server_header="kotoba-local-live",
    )
    return server, engine


def bound_port(server: Server) -> int:
    """The port the server actually listens on (the config may ask for 0: any free port)."""
    return next(iter(server.sockets)).getsockname()[1]


async def serve_forever(config: LiveConfig) -> None:
    """Serve until the process is told to stop."""
    server, _ = await start(config)
    log.info("local Live engine listening", extra={"addr": f"{config.host}:{bound_port(server)}",
                                                   "tls_dir": str(config.tls_dir)})
    await stop_on_signals().wait()
    server.close()
    await server.wait_closed()
