"""Table definitions (keys and GSIs) and idempotent creation. See docs/data-model.md.

Every GSI is declared here at CreateTable time: dynalite silently ignores a
GSI added later with UpdateTable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Index:
    name: str
    pk: str
    sk: str | None = None
    projection: str = "ALL"  # ALL | KEYS_ONLY


@dataclass(frozen=True)
class Table:
    name: str
    pk: str
    sk: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    attribute_types: Mapping[str, str] = field(default_factory=dict)  # non-string key attributes


TABLES: tuple[Table, ...] = (
    Table("items", pk="id", indexes=(
        Index("written-index", pk="written", sk="id"),
        Index("reading-index", pk="reading", sk="id"),
        Index("romaji-index", pk="romaji", sk="id"),
        Index("dirty-index", pk="dirty", sk="updated_at", projection="KEYS_ONLY"),
    )),
    Table("progress", pk="userId", sk="itemId", indexes=(
        Index("userId-nextReview-index", pk="userId", sk="nextReview"),
    )),
    Table("settings", pk="userId"),
    Table("conversations", pk="sessionId", sk="timestamp", ttl_attribute="ttl", indexes=(
        Index("userId-timestamp-index", pk="userId", sk="timestamp"),
    )),
    Table("connections", pk="sessionId", ttl_attribute="ttl", indexes=(
        Index("userId-index", pk="userId", sk="sessionId"),
    )),
    Table("usage", pk="userId", sk="day", ttl_attribute="ttl"),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}


def _create_args(table: Table, full_name: str) -> dict[str, Any]:
    keys = {table.pk, *(k for k in [table.sk] if k)}
    for index in table.indexes:
        keys.add(index.pk)
        if index.sk:
            keys.add(index.sk)

    def schema(pk: str, sk: str | None) -> list[dict[str, str]]:
        return [{"AttributeName": pk, "KeyType": "HASH"}] + ([{"AttributeName": sk, "KeyType": "RANGE"}] if sk else [])

    args: dict[str, Any] = {
        "TableName": full_name,
        "KeySchema": schema(table.pk, table.sk),
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": table.attribute_types.get(k, "S")} for k in sorted(keys)
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.indexes:
        args["GlobalSecondaryIndexes"] = [
            {"IndexName": i.name, "KeySchema": schema(i.pk, i.sk), "Projection": {"ProjectionType": i.projection}}
            for i in table.indexes
        ]
    return args


def create_tables(client, prefix: str, names: Iterable[str] | None = None, wait: bool = True) -> dict[str, str]:
    """Create missing tables; leave existing ones alone. Returns {name: "created" | "exists"}."""
    wanted = [TABLES_BY_NAME[n] for n in names] if names else list(TABLES)
    existing: set[str] = set()
    for page in client.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    result: dict[str, str] = {}
    # Listed tables are left alone; only the ones created here (or by someone else meanwhile) may still be
    # CREATING. Describing every table on every `make run` cost a round trip each.
    pending: list[str] = []
    for table in wanted:
        full = prefix + table.name
        if full in existing:
            result[table.name] = "exists"
            continue
        pending.append(full)
        try:
            client.create_table(**_create_args(table, full))
            result[table.name] = "created"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
            result[table.name] = "exists"
    if wait:
        waiter = client.get_waiter("table_exists")
        for full in pending:
            waiter.wait(TableName=full, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    for table in wanted:
        if table.ttl_attribute and result[table.name] == "created":
            _enable_ttl(client, prefix + table.name, table.ttl_attribute)
    return result


def _enable_ttl(client, full_name: str, attribute: str) -> None:
    try:
        client.update_time_to_live(
            TableName=full_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    except ClientError as exc:
        # dynalite has no UpdateTimeToLive; reads filter expired rows anyway.
        log.info("ttl not enabled on %s: %s", full_name, exc.response["Error"].get("Code"))


def is_expired(row: Mapping[str, Any], now: float | None = None, attribute: str = "ttl") -> bool:
    """True when the row's TTL has passed. Works on resource-style (numbers) and client-style ({"N": ...}) rows."""
    value = row.get(attribute)
    if value is None:
        return False
    if isinstance(value, Mapping):
        value = value.get("N")
    try:
        return float(value) <= (time.time() if now is None else now)
    except (TypeError, ValueError):
        return False


def live_rows(rows: Iterable[Mapping[str, Any]], attribute: str = "ttl") -> list[Mapping[str, Any]]:
    """The rows whose TTL has not passed (DynamoDB deletes expired rows only eventually)."""
    now = time.time()
    return [r for r in rows if not is_expired(r, now, attribute)]


def query_all(query: Callable[..., Mapping[str, Any]], **kwargs: Any) -> list[Any]:
    """Every item of a Query (or Scan), following LastEvaluatedKey page by page.

    `query` is a client's or a resource Table's `query`/`scan`: both page the same way.
    """
    rows: list[Any] = []
    while True:
        page = query(**kwargs)
        rows.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return rows
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_get(client, request_items: Mapping[str, Any], attempts: int) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """One BatchGetItem request (at most 100 keys), asking again with a short growing pause for the keys
    DynamoDB leaves unprocessed (throttling): the rows found per table, and what was still unprocessed
    after `attempts` calls (empty when everything was read). Missing keys are simply absent."""
    found: dict[str, list[Any]] = {}
    request: Mapping[str, Any] = request_items
    for attempt in range(attempts):
        reply = client.batch_get_item(RequestItems=request)
        for table, rows in reply.get("Responses", {}).items():
            found.setdefault(table, []).extend(rows)
        request = reply.get("UnprocessedKeys") or {}
        if not request:
            return found, {}
        if attempt + 1 < attempts:
            time.sleep(min(0.5, 0.02 * 2 ** attempt) * random.uniform(0.5, 1.5))
    return found, dict(request)


def chunks(seq: list, size: int = 25) -> Iterable[list]:
    """BatchWriteItem takes at most 25 items (moto does not enforce it; AWS and dynalite do)."""
    for start in range(0, len(seq), size):
        yield seq[start:start + size]
