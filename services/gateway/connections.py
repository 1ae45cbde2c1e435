"""The `connections` table: one row per learner session, so a learner can come back and continue.

Row: sessionId (pk), userId (GSI userId-index), handle (latest Live resumption
handle), lastActivity, state (attached | detached), language, mode, recent
(the last few turns, to prime a fresh upstream session when the handle is no
longer accepted), ttl. dynalite never expires rows: reads filter on ttl.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from services.common.redact import find_names, redact_text
from services.common.tables import is_expired, query_all

RECENT_TURNS = 6
# A row is written only by its own learner's sessions: a write never takes over someone else's session id.
_OWN_ROW = "attribute_not_exists(sessionId) OR userId = :uid"


def _refused(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass
class SessionRow:
    session_id: str
    user_id: str
    handle: str = ""
    state: str = "attached"
    language: str = "en"
    mode: str = "text"
    last_activity: float = field(default_factory=time.time)
    recent: list[dict[str, str]] = field(default_factory=list)
    ttl: int = 0


def stored_recent(history: list[dict[str, str]], logging_enabled: bool) -> list[dict[str, str]]:
    """The recent turns as they may be stored beside the learner id: redacted like a turn log, and none at
    all for a learner who opted out of logging (the row then keeps only the resumption handle)."""
    if not logging_enabled:
        return []
    names = tuple(sorted({n for h in history if h.get("role") == "user" for n in find_names(h.get("text", ""))},
                         key=len, reverse=True))
    return [{**h, "text": redact_text(h.get("text", ""), names)} for h in history[-RECENT_TURNS:]]


class ConnectionStore:
    def __init__(self, resource, table: str, *, resume_window_s: float, idle_timeout_s: float) -> None:
        self.table = resource.Table(table)
        self.resume_window_s = resume_window_s
        self.idle_timeout_s = idle_timeout_s

    def _ttl(self, state: str) -> int:
        # An attached row that stops being refreshed (crashed gateway) stops counting against the cap.
        window = self.idle_timeout_s + 60 if state == "attached" else self.resume_window_s
        return int(time.time() + window)

    async def put(self, row: SessionRow) -> None:
        """Save the session's row, refreshing its activity time and expiry."""
        row.last_activity = time.time()
        row.ttl = self._ttl(row.state)
        item: dict[str, Any] = {
            "sessionId": row.session_id, "userId": row.user_id, "handle": row.handle, "state": row.state,
            "language": row.language, "mode": row.mode, "lastActivity": str(round(row.last_activity, 3)),
            "recent": json.dumps(row.recent[-RECENT_TURNS:], ensure_ascii=False), "ttl": row.ttl,
        }
        try:
            await asyncio.to_thread(self.table.put_item, Item=item, ConditionExpression=_OWN_ROW,
                                    ExpressionAttributeValues={":uid": row.user_id})
        except ClientError as exc:
            if not _refused(exc):
                raise
            raise PermissionError(f"session {row.session_id} belongs to another learner") from None

    async def set_state(self, session_id: str, user_id: str, state: str) -> bool:
        """Refresh an existing row's state, activity time and expiry, leaving its handle and turns as they
        are: no privacy read needed, as no words are written. False when the row is gone."""
        return await self._set(session_id, user_id, "userId = :uid", state=state)

    async def claim(self, session_id: str, user_id: str, *, language: str, mode: str) -> bool:
        """Mark the row attached for this learner, in one conditional write (False: another learner's row).
        Written before the cap is counted, so two gateways starting sessions at once see each other. It
        also names the session's language and mode, so a fresh session's row is whole without another
        write until its first turn (handle and turns are left as they are: a turn's write may be newer)."""
        return await self._set(session_id, user_id, _OWN_ROW, state="attached", userId=user_id, language=language,
                               mode=mode)

    async def _set(self, session_id: str, user_id: str, condition: str, *, state: str, **fields: str) -> bool:
        """SET the row's state, activity time, expiry and `fields` under `condition` (`:uid` is the learner);
        False when the condition refuses."""
        values = {"state": state, "lastActivity": str(round(time.time(), 3)), "ttl": self._ttl(state), **fields}
        try:
            await asyncio.to_thread(
                self.table.update_item, Key={"sessionId": session_id}, ConditionExpression=condition,
                UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values))),
                ExpressionAttributeNames={f"#a{i}": name for i, name in enumerate(values)},
                ExpressionAttributeValues={":uid": user_id, **{f":a{i}": v for i, v in enumerate(values.values())}})
        except ClientError as exc:
            if _refused(exc):
                return False
            raise
        return True

    async def unclaim(self, session_id: str, user_id: str, *, fresh: bool) -> None:
        """Undo `claim` for a refused start: a fresh row goes, a resumed one is detached again."""
        values = {":uid": user_id}
        if fresh:
            await asyncio.to_thread(self.table.delete_item, Key={"sessionId": session_id},
                                    ConditionExpression="userId = :uid", ExpressionAttributeValues=values)
            return
        await asyncio.to_thread(
            self.table.update_item, Key={"sessionId": session_id}, ConditionExpression="userId = :uid",
            UpdateExpression="SET #state = :detached, #ttl = :ttl", ExpressionAttributeNames={"#state": "state",
                                                                                            "#ttl": "ttl"},
            ExpressionAttributeValues={**values, ":detached": "detached", ":ttl": self._ttl("detached")})

    async def get(self, session_id: str) -> SessionRow | None:
        """Read a live session row, or None if it is missing or expired."""
        item = (await asyncio.to_thread(self.table.get_item, Key={"sessionId": session_id},
                                        ConsistentRead=True)).get("Item")
        if not item or is_expired(item):
            return None
        return SessionRow(
            session_id=item["sessionId"], user_id=item["userId"], handle=item.get("handle", ""),
            state=item.get("state", "detached"), language=item.get("language", "en"), mode=item.get("mode", "text"),
            last_activity=float(item.get("lastActivity", 0)), recent=json.loads(item.get("recent") or "[]"),
            ttl=int(item.get("ttl", 0)),
        )

    async def attached_sessions(self, user_id: str, exclude: str = "") -> set[str]:
        """Ids of the learner's sessions whose rows say attached (on any gateway), `exclude` left out."""
        def query() -> list[dict[str, Any]]:
            return query_all(self.table.query, IndexName="userId-index", KeyConditionExpression=Key("userId").eq(user_id))

        now = time.time()
        return {r["sessionId"] for r in await asyncio.to_thread(query)
                if r.get("state") == "attached" and not is_expired(r, now) and r.get("sessionId") != exclude}
