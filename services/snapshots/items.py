"""Items as the indexer sees them in DynamoDB: scan, batch-get, store embeddings, clear `dirty`."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import numpy as np
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.exceptions import ClientError

_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value.value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_dynamo(row: dict) -> dict:
    """A DynamoDB item as plain Python values."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in row.items()}


def scan_items(client, table: str, segments: int = 2) -> Iterator[dict]:
    """Every row of the items table, deserialised (embedding as bytes). Parallel segments, pages streamed."""

    def segment(n: int) -> list[dict]:
        rows: list[dict] = []
        for page in client.get_paginator("scan").paginate(TableName=table, Segment=n, TotalSegments=segments):
            rows.extend(from_dynamo(r) for r in page.get("Items", []))
        return rows

    with cf.ThreadPoolExecutor(segments) as pool:
        for rows in pool.map(segment, range(segments)):
            yield from rows


def dirty_keys(client, table: str) -> list[dict]:
    """(id, updated_at) of items waiting for the indexer (sparse GSI dirty-index)."""
    out: list[dict] = []
    for page in client.get_paginator("query").paginate(
            TableName=table, IndexName="dirty-index", KeyConditionExpression="dirty = :d",
            ExpressionAttributeValues={":d": {"S": "1"}}):
        out.extend(from_dynamo(r) for r in page.get("Items", []))
    return out


def batch_get(client, table: str, ids: Iterable[str]) -> list[dict]:
    """Items by id, in batches of 100, retrying what DynamoDB leaves unprocessed."""
    ids = list(dict.fromkeys(ids))
    out: list[dict] = []
    for start in range(0, len(ids), 100):
        request = {table: {"Keys": [{"id": {"S": i}} for i in ids[start:start + 100]]}}
        while request:
            reply = client.batch_get_item(RequestItems=request)
            out.extend(from_dynamo(r) for r in reply.get("Responses", {}).get(table, []))
            request = reply.get("UnprocessedKeys") or {}
    return out


def count_items(client, table: str) -> int:
    """The number of live (not deleted) items in the table."""
    total = 0
    for page in client.get_paginator("scan").paginate(
            TableName=table, Select="COUNT", FilterExpression="attribute_not_exists(deleted) OR deleted = :f",
            ExpressionAttributeValues={":f": {"BOOL": False}}):
        total += page["Count"]
    return total


def vector_of(item: dict, model: str, dim: int) -> np.ndarray | None:
    """An item's stored vector for this model and dimension; None when it must be embedded again."""
    raw = item.get("embedding")
    if not raw or item.get("embedding_model") != model or len(raw) != dim * 4:
        return None
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def store_embedding(client, table: str, item: dict, vector: np.ndarray, model: str, digest: str) -> None:
    """Attach a vector to an item unless the item changed since we read it (then it is dirty anyway)."""
    condition = "updated_at = :u" if item.get("updated_at") else "attribute_not_exists(updated_at)"
    values = {":e": {"B": np.asarray(vector, dtype="<f4").tobytes()}, ":m": {"S": model}, ":g": {"S": digest}}
    if item.get("updated_at"):
        values[":u"] = {"S": item["updated_at"]}
    client.update_item(
        TableName=table, Key={"id": {"S": item["id"]}},
        UpdateExpression="SET embedding = :e, embedding_model = :m, embedding_digest = :g",
        ConditionExpression=condition, ExpressionAttributeValues=values,
    )


def clear_dirty(client, table: str, item_id: str, updated_at: str | None) -> bool:
    """Remove `dirty` if the item is unchanged since indexed; False when it changed again (stays dirty)."""
    try:
        kwargs: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(updated_at)"}
        if updated_at:
            kwargs = {"ConditionExpression": "updated_at = :u", "ExpressionAttributeValues": {":u": {"S": updated_at}}}
        client.update_item(TableName=table, Key={"id": {"S": item_id}}, UpdateExpression="REMOVE dirty", **kwargs)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
