"""Admin HTTP layer the gateway mounts: JSON over the Conversations admin API, and the /admin page.

The gateway's HTTP layer (services/gateway/routes.py) calls `handle_admin` for
paths starting with /api/v1/admin or equal to /admin. The caller's bearer
token (Authorization header or ?token=) is forwarded to gRPC unchanged: the
Conversations service is the one that checks the admin role.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf import json_format

from kotoba.v1 import conversations_pb2 as pb
from services.common.auth import auth_metadata, bearer_from_header

API_PREFIX = "/api/v1/admin/chat"
PAGE_PATH = "/admin"
PAGE_FILE = Path(__file__).with_name("static") / "admin.html"
RPC_TIMEOUT_SECONDS = 10.0
MAX_PAGE_SIZE = 100  # what Conversations serves; larger would not fit an int32 field anyway
MAX_PARAM_CHARS = 512

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store",
                 "X-Content-Type-Options": "nosniff"}
# The page is self-contained (inline script and style, charts as inline SVG) and talks only to us.
PAGE_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                 "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                                            "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
                                            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
GRPC_HTTP_STATUS = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

Response = tuple[int, dict[str, str], bytes]


class BadParam(ValueError):
    pass


def _json(status: int, body: Any) -> Response:
    return status, dict(_JSON_HEADERS), json.dumps(body, ensure_ascii=False).encode()


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is None:  # a plain dict is case-sensitive; websockets' Headers is not
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value or ""


def _int(query: Mapping[str, str], name: str, maximum: int = MAX_PAGE_SIZE) -> int:
    raw = query.get(name, "")
    if not raw:
        return 0
    # Checked as text first: int() of a huge digit string is slow and the proto field is int32.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) > maximum:
        raise BadParam(f"{name} must be a whole number from 0 to {maximum}, got {raw[:20]!r}")
    return int(raw)


def _first(query: Mapping[str, str], *names: str) -> str:
    return next((query[n] for n in names if query.get(n)), "")


def _route(path: str, query: Mapping[str, str]) -> tuple[str, Any] | None:
    rest = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else None
    if rest is None:
        return None
    rest = rest.rstrip("/")
    if rest == "/conversations":
        return "ListConversations", pb.ListConversationsRequest(
            category=query.get("category", ""), user_id=_first(query, "user_id", "user"),
            start_time=_first(query, "start_time", "start"), end_time=_first(query, "end_time", "end"),
            query=_first(query, "query", "q"), page_size=_int(query, "page_size"),
            page_token=query.get("page_token", ""))
    if rest.startswith("/conversations/user/") and rest.count("/") == 3:
        return "ListUserConversations", pb.ListUserConversationsRequest(
            user_id=unquote(rest.rsplit("/", 1)[1]), page_size=_int(query, "page_size"),
            page_token=query.get("page_token", ""))
    if rest.startswith("/conversations/") and rest.count("/") == 2:
        return "GetConversation", pb.GetConversationRequest(session_id=unquote(rest.rsplit("/", 1)[1]))
    if rest == "/summaries":
        return "ListSummaries", pb.ListSummariesRequest(
            category=query.get("category", ""), start_time=_first(query, "start_time", "start"),
            end_time=_first(query, "end_time", "end"), page_size=_int(query, "page_size"),
            page_token=query.get("page_token", ""))
    if rest == "/stats":
        return "GetStats", pb.GetStatsRequest(start_time=_first(query, "start_time", "start"),
                                              end_time=_first(query, "end_time", "end"))
    return None


async def handle_admin(method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
                       conversations_stub) -> Response:
    """(status, headers, body) for an admin request; never raises for bad input or a failed RPC.

    `query` may map to strings or, as urllib's parse_qs makes it, to lists of strings (first one wins).
    """
    path = path.split("?", 1)[0]
    query = {k: (v[0] if v else "") if isinstance(v, (list, tuple)) else str(v) for k, v in query.items()}
    long = next((k for k, v in query.items() if len(v) > MAX_PARAM_CHARS), None)
    if long is not None:
        return _error(400, "INVALID_ARGUMENT", f"{long[:40]} is longer than {MAX_PARAM_CHARS} characters")
    if path in (PAGE_PATH, PAGE_PATH + "/"):
        if method not in ("GET", "HEAD"):
            return _error(405, "METHOD_NOT_ALLOWED", "use GET")
        return 200, dict(PAGE_HEADERS), PAGE_FILE.read_bytes()
    try:
        route = _route(path, query)
    except BadParam as exc:
        return _error(400, "INVALID_ARGUMENT", str(exc))
    if route is None:
        return _error(404, "NOT_FOUND", f"no admin endpoint at {path}")
    if method != "GET":
        return _error(405, "METHOD_NOT_ALLOWED", "admin endpoints are read-only: use GET")
    token = bearer_from_header(_header(headers, "authorization")) or query.get("token", "")
    if not token:
        return _error(401, "UNAUTHENTICATED", "sign in: send an admin token as 'Authorization: Bearer …'")
    rpc_name, request = route
    rpc: Callable[..., Awaitable[Any]] = getattr(conversations_stub, rpc_name)
    try:
        reply = await rpc(request, metadata=auth_metadata(token), timeout=RPC_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as exc:
        status = GRPC_HTTP_STATUS.get(exc.code(), 502)
        return _error(status, exc.code().name, exc.details() or "conversations service error")
    return _json(200, json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                                always_print_fields_with_no_presence=True,
                                                unquote_int64_if_possible=True))
