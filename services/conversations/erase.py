"""Erasing a learner's logs: their turns, summaries, markers and session rows in the conversations
table, and their rows in the gateway's connections and usage tables (blocking boto3 calls)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from services.common.tables import chunks, query_all
from services.conversations import records
from services.conversations.records import TurnKey


class Erasure:
    """Deletes every row that carries one of a learner's ids, in batches."""

    def __init__(self, client: Any, table: str, connections_table: str = "", usage_table: str = "") -> None:
        self.client = client
        self.table = table
        # The gateway's tables: erased with the learner's logs (resumption rows hold recent turns).
        self.connections_table = connections_table
        self.usage_table = usage_table

    def delete_user(self, user_ids: Iterable[str]) -> int:
        """Erase every row that carries one of these ids: turns, summaries, pending markers and session rows
        here, the learner's rows in connections (resumption handle and recent turns) and usage (daily counts
        and costs). Settings stay: they hold the privacy choice (an opted-out learner must stay opted out
        after erasing) and study preferences, which are not logs. Returns the number of turn rows."""
        deleted = 0
        for user_id in list(user_ids):
            self._delete_gateway_rows(user_id)
            # A second pass catches turns appended while the first one ran; bounded
            # because a GSI read may still show rows that were just deleted.
            for _pass in range(3):
                turns = query_all(
                    self.client.query, TableName=self.table, IndexName="userId-timestamp-index",
                    KeyConditionExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user_id}},
                    ProjectionExpression="sessionId, #sk", ExpressionAttributeNames={"#sk": "timestamp"})
                if not turns:
                    break
                self._batch_delete(list(_row_keys(turns).values()))
                deleted += len(turns)
        return deleted

    def _delete_gateway_rows(self, user_id: str) -> None:
        if self.connections_table:
            rows = query_all(self.client.query, TableName=self.connections_table, IndexName="userId-index",
                             KeyConditionExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user_id}},
                             ProjectionExpression="sessionId")
            self._batch_delete([{"sessionId": r["sessionId"]} for r in rows], self.connections_table)
        if self.usage_table:
            rows = query_all(self.client.query, TableName=self.usage_table, KeyConditionExpression="userId = :u",
                             ExpressionAttributeValues={":u": {"S": user_id}}, ProjectionExpression="userId, #d",
                             ExpressionAttributeNames={"#d": "day"})
            self._batch_delete([{"userId": r["userId"], "day": r["day"]} for r in rows], self.usage_table)

    def _batch_delete(self, keys: list[dict[str, Any]], table: str | None = None) -> None:
        batch_write(self.client, table or self.table, [{"DeleteRequest": {"Key": k}} for k in keys])


def _row_keys(turns: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row a turn left behind: the turn, its summary, its pending marker, its session-day row."""
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for item in turns:
        sid, sk = item["sessionId"]["S"], item["timestamp"]["S"]
        for key in (TurnKey(sid, sk).item_key(), records.summary_key(sk), records.pending_key(sk),
                    records.session_day_key(records.day_of(sk), sid)):
            keys[(key["sessionId"]["S"], key["timestamp"]["S"])] = key
    return keys


def batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """BatchWriteItem in batches of 25, retrying what DynamoDB leaves unprocessed (throttling)."""
    for batch in chunks(requests, 25):
        request = {table: batch}
        for attempt in range(10):
            reply = client.batch_write_item(RequestItems=request)
            request = reply.get("UnprocessedItems") or {}
            if not request:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError("DynamoDB kept throttling a batch write; try again")
