"""Learner privacy controls over HTTP: `/api/v1/me/privacy` (GET, PUT), `/api/v1/me/data` (GET export, DELETE).

The learner id comes from the verified token only; the same token goes on to Conversations, which applies
the settings and erases the learner's data. Nothing here takes a user id from the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from google.protobuf import json_format

from kotoba.v1 import conversations_pb2 as pb
from services.common.auth import AuthError, Identity, auth_metadata, bearer_from_header
from services.common.tables import query_all
from services.gateway.admin import GRPC_HTTP_STATUS
from services.gateway.httputil import json_error, json_response

if TYPE_CHECKING:
    from services.gateway.server import App

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 4096
SETTINGS = ("logging_enabled", "pseudonymize")
# Bounds one export's work and size; retention (ttl_days) keeps real learners far below it.
MAX_EXPORT_TURNS = 10_000
EXPORT_PAGE_SIZE = 100


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = json_error(status, code, message)


def _settings(s: pb.PrivacySettings) -> dict[str, bool]:
    return {"logging_enabled": s.logging_enabled, "pseudonymize": s.pseudonymize}


class PrivacyHandlers:
    def __init__(self, app: App) -> None:
        self.app = app

    def _identity(self, request: web.Request) -> Identity:
        # Header only: a token in a URL ends up in logs and browser history.
        token = bearer_from_header(request.headers.get("Authorization"))
        if not token:
            raise HttpError(401, "unauthenticated", "sign in: send your token as 'Authorization: Bearer …'")
        try:
            return self.app.verifier.verify(token)
        except AuthError as exc:
            raise HttpError(401, "unauthenticated", f"not signed in: {exc}") from None

    async def _rpc(self, name: str, request: Any, identity: Identity) -> Any:
        try:
            return await getattr(self.app.backends.conversations, name)(
                request, metadata=auth_metadata(identity.token), timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise HttpError(GRPC_HTTP_STATUS.get(exc.code(), 502), exc.code().name.lower(),
                            exc.details() or "conversations service error") from None

    async def _wrap(self, request: web.Request, work) -> web.Response:
        try:
            return await work(self._identity(request))
        except HttpError as exc:
            return exc.response

    async def get_privacy(self, request: web.Request) -> web.Response:
        """Return the learner's privacy settings."""
        async def work(identity: Identity) -> web.Response:
            reply = await self._rpc("GetPrivacySettings", pb.GetPrivacySettingsRequest(), identity)
            return json_response(200, _settings(reply.settings))
        return await self._wrap(request, work)

    async def put_privacy(self, request: web.Request) -> web.Response:
        """Change some of the learner's privacy settings, keeping the rest."""
        async def work(identity: Identity) -> web.Response:
            body = await self._json_body(request)
            current = (await self._rpc("GetPrivacySettings", pb.GetPrivacySettingsRequest(), identity)).settings
            merged = {**_settings(current), **body}
            reply = await self._rpc("UpdatePrivacySettings", pb.UpdatePrivacySettingsRequest(
                settings=pb.PrivacySettings(**merged)), identity)
            log.info("privacy settings changed", extra={"fields": sorted(body)})
            return json_response(200, _settings(reply.settings))
        return await self._wrap(request, work)

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, bool]:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise HttpError(413, "too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise HttpError(413, "too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(raw or b"null")
        except (ValueError, RecursionError):
            raise HttpError(400, "bad_json", "body is not valid JSON") from None
        if not isinstance(data, dict) or not data:
            raise HttpError(400, "bad_request", f"send a JSON object with any of {', '.join(SETTINGS)}")
        unknown = [k for k in data if k not in SETTINGS]
        if unknown:
            raise HttpError(400, "bad_request", f"unknown setting {str(unknown[0])[:40]!r}; known: {', '.join(SETTINGS)}")
        wrong = [k for k, v in data.items() if not isinstance(v, bool)]
        if wrong:
            raise HttpError(400, "bad_request", f"{wrong[0]} must be true or false")
        return data

    async def delete_data(self, request: web.Request) -> web.Response:
        """Erase everything stored about the learner."""
        async def work(identity: Identity) -> web.Response:
            # Queued turn records first, so none is written after the erase.
            dropped = self.app.turnlog.forget(identity.user_id)
            self.app.limits.forget(identity.user_id)  # and usage not yet written
            self.app.session_deps.contexts.invalidate(identity.user_id)
            reply = await self._rpc("DeleteUserData", pb.DeleteUserDataRequest(), identity)
            log.info("learner erased their data", extra={"deleted_turns": reply.deleted_turns,
                                                          "queued_dropped": dropped})
            return json_response(200, {"deleted_turns": reply.deleted_turns, "queued_turn_logs_dropped": dropped})
        return await self._wrap(request, work)

    async def export_data(self, request: web.Request) -> web.Response:
        """Return everything stored about the learner as one JSON document."""
        async def work(identity: Identity) -> web.Response:
            settings = await self._rpc("GetPrivacySettings", pb.GetPrivacySettingsRequest(), identity)
            usage = await self._usage_rows(identity.user_id)
            turns, stored_sessions, truncated = await self._stored_turns(identity)
            sessions = sorted(s.session_id for s in self.app.sessions.values()
                              if s.identity.user_id == identity.user_id and s.session_id)
            return json_response(200, {
                "user_id": identity.user_id,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "privacy": _settings(settings.settings),
                "usage": usage,
                "open_sessions": sessions,
                "sessions": stored_sessions,
                "turns": turns,
                "turns_truncated": truncated,
            }, {"Content-Disposition": 'attachment; filename="kotoba-export.json"'})
        return await self._wrap(request, work)

    async def _stored_turns(self, identity: Identity) -> tuple[list[dict[str, Any]], list[str], bool]:
        """The learner's stored turns newest first (every page, up to MAX_EXPORT_TURNS), their session ids,
        and whether more turns were left out."""
        turns: list[dict[str, Any]] = []
        sessions: dict[str, None] = {}
        token = ""
        while len(turns) < MAX_EXPORT_TURNS:
            reply = await self._rpc("ExportUserData", pb.ExportUserDataRequest(
                page_size=min(EXPORT_PAGE_SIZE, MAX_EXPORT_TURNS - len(turns)), page_token=token), identity)
            turns.extend(json_format.MessageToDict(t, preserving_proto_field_name=True,
                                                    always_print_fields_with_no_presence=True,
                                                    unquote_int64_if_possible=True) for t in reply.turns)
            sessions.update(dict.fromkeys(reply.session_ids))
            token = reply.next_page_token
            if not token:
                break
        return turns, list(sessions), bool(token)

    async def _usage_rows(self, user_id: str) -> list[dict[str, Any]]:
        store = self.app.usage_store
        if store is None:
            return []

        def read() -> list[dict[str, Any]]:
            items = query_all(store.client.query, TableName=store.table,
                              KeyConditionExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user_id}})
            return [{k: next(iter(v.values())) for k, v in item.items() if k != "userId"} for item in items]

        try:
            return await asyncio.wait_for(asyncio.to_thread(read), RPC_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the export says so instead of failing as a whole
            log.warning("usage table unreadable for export", extra={"error": repr(exc)})
            raise HttpError(503, "store_unavailable", "usage records are unreachable right now; try again") from None
