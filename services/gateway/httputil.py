"""Small HTTP pieces shared by the gateway's handlers: plain and JSON responses, browser hardening headers,
the Origin allow-list, and where a caller's token may come from."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.common.auth import bearer_from_header

log = logging.getLogger(__name__)

SUBPROTOCOL = "kotoba.v1"
BEARER_PROTOCOL_PREFIX = "bearer."

# The web client loads only its own files and talks only to this origin (WebSocket included: CSP 'self'
# covers ws:/wss: of the same host).
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HTML_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": PAGE_CSP}


def respond(status: int, body: bytes | str, ctype: str = "text/plain; charset=utf-8",
            extra: dict[str, str] | None = None) -> web.Response:
    """A response that is never cached."""
    body = body.encode() if isinstance(body, str) else body
    return web.Response(status=status, body=body, headers={"Content-Type": ctype, "Cache-Control": "no-store",
                                                           **(extra or {})})


def json_response(status: int, data: Any, extra: dict[str, str] | None = None) -> web.Response:
    """A JSON response that browsers must not sniff as another type."""
    return respond(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8",
                   {"X-Content-Type-Options": "nosniff", **(extra or {})})


def json_error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> web.Response:
    """A JSON error body with a machine-readable code."""
    return json_response(status, {"error": {"code": code, "message": message}}, extra)


def request_token(request: web.Request) -> str:
    """Authorization header, then a `bearer.<token>` WebSocket subprotocol (browsers cannot set headers on a
    WebSocket), then `?token=` for simple clients."""
    token = bearer_from_header(request.headers.get("Authorization"))
    if token:
        return token
    for proto in request.headers.getall("Sec-WebSocket-Protocol", []):
        for item in proto.split(","):
            item = item.strip()
            if item.startswith(BEARER_PROTOCOL_PREFIX):
                return item[len(BEARER_PROTOCOL_PREFIX):]
    return request.query.get("token", "")


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _norm(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin)
        return parts.scheme, (parts.hostname or ""), parts.port or _default_port(parts.scheme)
    except ValueError:
        return None


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...], local: bool) -> bool:
    """No Origin (a non-browser client) passes; a browser's must be this page's own origin, on the list, or
    (local mode, when no list is set) a localhost page."""
    if origin is None:
        return True
    got = _norm(origin.strip().rstrip("/"))
    if got is None or not got[1]:
        return False
    if allowed:
        return "*" in allowed or any(_norm(a) == got for a in allowed)
    hostname, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    same_host = got[1] == (hostname or host).lower()
    same_port = got[2] == (int(port) if port.isdigit() else _default_port(got[0]))
    if same_host and same_port and got[0] in ("http", "https"):
        return True
    return local and got[1] in ("localhost", "127.0.0.1", "::1")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_middleware(allowed_origins: tuple[str, ...], local: bool):
    """Middleware that refuses foreign origins and adds security headers."""
    @web.middleware
    async def hardening(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not origin_allowed(request.headers.get("Origin"), request.host, allowed_origins, local):
            return json_error(403, "origin_not_allowed", "this origin may not use the tutor")
        try:
            response = await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            allow = ", ".join(sorted(exc.allowed_methods))
            return json_error(405, "method_not_allowed", f"{request.method} is not served here; use {allow}",
                              {"Allow": allow})
        except web.HTTPNotFound:
            return respond(404, b"not found\n")
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - a bug must not show a traceback to a caller
            log.exception("http handler failed", extra={"path": request.path, "method": request.method})
            return json_error(500, "internal", "internal error")
        if response.content_type == "text/html":
            for name, value in HTML_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    return hardening
