"""The gateway's HTTP routes on one aiohttp application: probes, the web client, the admin mount, learner
privacy endpoints and the `/v1/chat` WebSocket. A known path asked with another method answers 405 + Allow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from services.gateway import admin, dev_signin
from services.gateway.chat_endpoint import CHAT_PATH, ChatEndpoint
from services.gateway.httputil import make_middleware, respond
from services.gateway.privacy_http import PrivacyHandlers
from services.gateway.static_files import StaticFiles

if TYPE_CHECKING:
    from services.gateway.server import App

ADMIN_API_PREFIX = "/api/v1/admin"
ADMIN_API_METHODS = "GET"


def build(app: App) -> tuple[web.Application, ChatEndpoint]:
    """Build the gateway's web application and its routes."""
    config = app.config
    web_app = web.Application(middlewares=[make_middleware(config.allowed_origins,
                                                           config.common.environment == "local")],
                              client_max_size=64 * 1024)
    chat = ChatEndpoint(app)
    static = StaticFiles(config.static_dir)
    privacy = PrivacyHandlers(app)

    async def healthz(_: web.Request) -> web.Response:
        return respond(200, b"ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return respond(200, b"ready\n") if app.ready else respond(503, b"not ready\n")

    async def admin_mount(request: web.Request) -> web.Response:
        status, headers, body = await admin.handle_admin(request.method, request.path, dict(request.query),
                                                         request.headers, app.backends.conversations)
        headers = dict(headers or {})
        if status == 405:
            headers["Allow"] = "GET, HEAD" if request.path.startswith(admin.PAGE_PATH) else ADMIN_API_METHODS
        body = b"" if request.method == "HEAD" else body
        return respond(status, body, headers.pop("Content-Type", "application/json"), headers)

    r = web_app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_route("GET", CHAT_PATH, chat.handle)
    r.add_get("/api/v1/me/privacy", privacy.get_privacy, allow_head=False)
    r.add_put("/api/v1/me/privacy", privacy.put_privacy)
    r.add_get("/api/v1/me/data", privacy.export_data, allow_head=False)
    r.add_delete("/api/v1/me/data", privacy.delete_data)
    dev_signin.add_routes(r, config)  # local only: absent (404) in prod
    r.add_get(admin.PAGE_PATH, admin_mount)
    r.add_get(admin.PAGE_PATH + "/", admin_mount)
    r.add_route("*", ADMIN_API_PREFIX + "{tail:(/.*)?}", admin_mount)
    r.add_get("/", static.handle)
    for name in static.files:
        r.add_get(f"/{name}", static.handle)
        r.add_get(f"/static/{name}", static.handle)
    return web_app, chat
