"""DynamoDB access for the tools: GetItem / BatchGetItem / Query with projections, never a Scan on a request.

boto3 is blocking, so every call runs in a bounded thread pool off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from services.common.aws import dynamodb_client
from services.common.config import CommonConfig
from services.common.tables import batch_get, query_all
from services.tools.records import projection

T = TypeVar("T")
_des = TypeDeserializer()
_ser = TypeSerializer()
BATCH_GET_MAX = 100


def plain(row: dict[str, dict]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values."""
    return {k: _des.deserialize(v) for k, v in row.items()}


def attrs(row: dict[str, Any]) -> dict[str, dict]:
    """A row as DynamoDB attributes, leaving out None values."""
    return {k: _ser.serialize(v) for k, v in row.items() if v is not None}


class Store:
    def __init__(self, common: CommonConfig, threads: int = 16, client=None) -> None:
        self.client = client or dynamodb_client(common.aws)
        self.items = common.table("items")
        self.progress = common.table("progress")
        self.settings = common.table("settings")
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dynamodb")
        self._projection, self._names = projection()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking DynamoDB call in the store's thread pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the thread pool without waiting for calls in flight."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- items -------------------------------------------------------------------------

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        """An item row by id (the answer fields only); None when absent."""
        reply = self.client.get_item(TableName=self.items, Key={"id": {"S": item_id}},
                                     ProjectionExpression=self._projection, ExpressionAttributeNames=self._names)
        row = reply.get("Item")
        return plain(row) if row else None

    def get_items(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """BatchGetItem (100 keys a call), unprocessed keys retried; missing ids are simply absent."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(i for i in ids if i))
        for start in range(0, len(unique), BATCH_GET_MAX):
            keys = [{"id": {"S": i}} for i in unique[start:start + BATCH_GET_MAX]]
            rows, _left = batch_get(self.client, {self.items: {
                "Keys": keys, "ProjectionExpression": self._projection, "ExpressionAttributeNames": self._names}},
                attempts=6)
            for row in rows.get(self.items, []):
                item = plain(row)
                found[item["id"]] = item
        return found

    def by_index(self, index: str, attribute: str, value: str, limit: int = 25) -> list[dict[str, Any]]:
        """Exact match on a GSI key (written-index, reading-index, romaji-index)."""
        names = dict(self._names, **{"#k": attribute})
        reply = self.client.query(
            TableName=self.items, IndexName=index, KeyConditionExpression="#k = :v",
            ExpressionAttributeValues={":v": {"S": value}}, ExpressionAttributeNames=names,
            ProjectionExpression=self._projection, Limit=limit,
        )
        return [plain(r) for r in reply.get("Items", [])]

    def put_item(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Write an item row; the row it replaced, if any."""
        reply = self.client.put_item(TableName=self.items, Item=attrs(row), ReturnValues="ALL_OLD")
        old = reply.get("Attributes")
        return plain(old) if old else None

    def tombstone(self, item_id: str, now: str) -> dict[str, Any] | None:
        """Mark deleted (and dirty for the indexer); None when there is no live item with that id."""
        try:
            reply = self.client.update_item(
                TableName=self.items, Key={"id": {"S": item_id}},
                UpdateExpression="SET deleted = :t, dirty = :d, updated_at = :now REMOVE embedding, embedding_model",
                ConditionExpression="attribute_exists(id) AND (attribute_not_exists(deleted) OR deleted = :f)",
                ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}, ":d": {"S": "1"},
                                           ":now": {"S": now}},
                ReturnValues="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return plain(reply.get("Attributes", {}))

    # ---- progress ----------------------------------------------------------------------

    def query_all(self, **kwargs: Any) -> list[dict[str, dict]]:
        """Every row of a query, following pages."""
        return query_all(self.client.query, **kwargs)

    def count(self, **kwargs: Any) -> int:
        """The number of rows a query matches, following pages."""
        total = 0
        while True:
            reply = self.client.query(Select="COUNT", **kwargs)
            total += reply.get("Count", 0)
            if "LastEvaluatedKey" not in reply:
                return total
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def query_page(self, **kwargs: Any) -> dict[str, Any]:
        """One page of a query."""
        return self.client.query(**kwargs)

    def get_settings(self, user_id: str) -> dict[str, Any]:
        """The learner's settings row; empty when there is none."""
        row = self.client.get_item(TableName=self.settings, Key={"userId": {"S": user_id}}).get("Item")
        return plain(row) if row else {}

    def add_catalog(self, user: str, key: str, delta: int) -> None:
        """Add to a catalog count (items per type and level)."""
        self.client.update_item(
            TableName=self.progress, Key={"userId": {"S": user}, "itemId": {"S": key}},
            UpdateExpression="ADD #t :d", ExpressionAttributeNames={"#t": "total"},
            ExpressionAttributeValues={":d": {"N": str(delta)}},
        )
