"""The gateway process: shared state (`App`) and the aiohttp server on the gateway port.

What each path does lives in routes.py (and chat_endpoint.py, privacy_http.py, static_files.py, admin.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from services.common.auth import TokenVerifier
from services.common.aws import dynamodb_client, dynamodb_resource
from services.gateway import furigana, routes
from services.gateway.admission import Admission
from services.gateway.backends import Backends
from services.gateway.config import GatewayConfig
from services.gateway.connections import ConnectionStore
from services.gateway.context_cache import ContextCache
from services.gateway.live import make_client
from services.gateway.registry import SessionRegistry
from services.gateway.session_parts import LinkSettings, SessionDeps
from services.gateway.tools_bridge import ToolBridge
from services.gateway.turnlog import ServiceToken, TurnLog
from services.gateway.upstream_pool import UpstreamPool
from services.gateway.usage import Limits, UsageStore

log = logging.getLogger(__name__)


class App:
    """Shared state of one gateway process."""

    def __init__(self, config: GatewayConfig, *, use_tables: bool = True) -> None:
        self.config = config
        self.verifier = TokenVerifier(config.common.auth)
        self.backends = Backends.connect(config.common)
        self.bridge = ToolBridge(self.backends, config.tool_deadline_s)
        self.live_client = make_client(config)
        self.upstreams: UpstreamPool | None = None
        common = config.common
        self.store: ConnectionStore | None = None
        self.usage_store: UsageStore | None = None
        if use_tables:
            self.store = ConnectionStore(dynamodb_resource(common.aws), common.table("connections"),
                                         resume_window_s=config.resume_window_s, idle_timeout_s=config.idle_timeout_s)
            self.usage_store = UsageStore(dynamodb_client(common.aws), common.table("usage"), common.table("settings"))
        self.limits = Limits(self.usage_store, config.messages_per_minute, config.audio_seconds_per_minute,
                             config.daily_budget_usd, usage_linger_s=config.usage_linger_s)
        self.sessions = SessionRegistry()
        self.admission = Admission(config.max_concurrent_opens, config.open_wait_s, config.open_turn_saturation,
                                   self.sessions.turns_in_flight)
        if config.early_upstream and config.upstream_pool:
            self.upstreams = UpstreamPool(self.live_client, LinkSettings.from_config(config), config.upstream_pool,
                                          busy=self.admission.queueing)
        self.turnlog = TurnLog(self.backends.conversations, maxsize=config.turnlog_queue_size,
                               max_delay_s=config.turnlog_max_backoff_s, timeout_s=config.turnlog_attempt_timeout_s,
                               service_token=ServiceToken(common.auth, config.service_token_file),
                               hold=self.admission.queueing)
        self.session_deps = SessionDeps.build(
            config, sessions=self.sessions, limits=self.limits, store=self.store, backends=self.backends,
            bridge=self.bridge, turnlog=self.turnlog, live_client=self.live_client, admission=self.admission,
            contexts=ContextCache(config.context_cache_s), upstreams=self.upstreams)
        self.ready = False

    async def close(self, drain_s: float) -> None:
        """Warn learners, close their sockets, and drain pending writes before exit."""
        self.ready = False
        for session in list(self.sessions.values()):
            await session.send_error("going_away", "the server is restarting; reconnect with resume")
            await session.ws.close(1001, "server restarting")
        await self.limits.drain(drain_s)
        if self.upstreams is not None:
            await self.upstreams.close()
        await self.turnlog.close(drain_s)
        await self.backends.close()


async def run(config: GatewayConfig, stop: asyncio.Event, started: asyncio.Future | None = None,
              use_tables: bool = True) -> None:
    """Serve the gateway until stop is set."""
    app = App(config, use_tables=use_tables)
    app.turnlog.start()
    if app.upstreams is not None:
        app.upstreams.start()
    # The reading analyser loads in a few seconds: in the background, so the first answer need not wait.
    warming = asyncio.create_task(asyncio.to_thread(furigana.warm))
    host, port = config.addr.rsplit(":", 1)
    web_app, _ = routes.build(app)
    # No access log: request lines can carry `?token=`.
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=config.common.drain_seconds,
                           handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port), backlog=1024)
    try:
        await site.start()
        app.ready = True
        bound = runner.addresses[0][1]
        log.info("listening", extra={"addr": f"{host}:{bound}"})
        if started is not None and not started.done():
            started.set_result((app, bound))
        await stop.wait()
        log.info("draining", extra={"seconds": config.common.drain_seconds})
        await site.stop()  # no new connections; the open ones get `going_away` below
        await app.close(config.common.drain_seconds)
    finally:
        warming.cancel()  # a thread cannot be stopped; this only drops the wait for it
        await runner.cleanup()


def main() -> None:
    """Run the gateway process."""
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
