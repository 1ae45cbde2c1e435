"""`kotoba seed load`: put the seed items into the `items` table, keep the catalog totals, add demo learners.

Idempotent and cheap to repeat: every stored item carries `content_hash` (sha256 of its seed JSON), and a
second run skips items whose hash is unchanged, so a second `make run` writes nothing. Items arrive with a
precomputed embedding when the retrieval package ships one for the seed corpus; otherwise they get
`dirty = "1"` and the indexer embeds them later.

Catalog totals (items per type and level) live in the `progress` table under the reserved pk `#catalog`
(sk `#total#<type>#<level>`, attribute `total`), so learner progress never counts the dictionary on a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from tqdm import tqdm

from services.common.config import REPO_ROOT
from services.common.tables import chunks
from services.embeddings import seed as shipped
from services.seed.reader import iter_items

log = logging.getLogger(__name__)

DEFAULT_SEED_DIR = REPO_ROOT / "data" / "seed"
FIXTURE_DIR = DEFAULT_SEED_DIR / "fixture"
ITEM_TYPES = ("word", "kanji", "sentence", "kana")
LEVELS = ("N5", "N4", "N3", "N2", "N1")
CATALOG_USER = "#catalog"
# Key attributes of GSIs: DynamoDB refuses an empty string there, so empty values are left out.
_GSI_KEYS = ("written", "reading", "romaji")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def catalog_key(item_type: str, level: str) -> str:
    """The catalog row key holding the number of items of one type and level."""
    return f"#total#{item_type}#{level}"


def level_of(item: dict[str, Any]) -> str:
    """An item's level, "none" for items without one."""
    return item.get("level") or "none"


def content_hash(item: dict[str, Any]) -> str:
    """A digest of an item's content, so a reload writes only what changed."""
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def to_attributes(item: dict[str, Any]) -> dict[str, dict]:
    """A seed/JSON item → DynamoDB attribute map (None and empty GSI keys left out)."""
    out: dict[str, dict] = {}
    for key, value in item.items():
        if value is None or (key in _GSI_KEYS and value == ""):
            continue
        out[key] = _serializer.serialize(value)
    return out


def from_attributes(row: dict[str, dict]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values."""
    return {k: _deserializer.deserialize(v) for k, v in row.items()}


# --------------------------------------------------------------------------------------
# Precomputed embeddings (shipped by the retrieval/indexer package when available)
# --------------------------------------------------------------------------------------

@dataclass
class SeedEmbeddings:
    model: str
    vectors: dict[str, bytes]  # item id -> float32 little-endian bytes


def load_seed_embeddings(seed_dir: Path, items: list[dict[str, Any]]) -> SeedEmbeddings | None:
    """The shipped vectors for the seed corpus (services.embeddings.seed), or None when there are none."""
    model = shipped.seed_embeddings_model(seed_dir)
    if not model:
        return None
    # Only vectors whose text digest still matches the item come back; the rest are left to the indexer.
    vectors = shipped.load_seed_embeddings(seed_dir, model, items=items)
    if not vectors:
        return None
    return SeedEmbeddings(model=model, vectors={i: np.asarray(v, dtype="<f4").tobytes() for i, v in vectors.items()})


# --------------------------------------------------------------------------------------
# Batch writes
# --------------------------------------------------------------------------------------

@dataclass
class WriteResult:
    written: int = 0
    errors: list[str] = field(default_factory=list)


def batch_write(client, table: str, requests: list[dict], *, threads: int = 4,
                on_done: Callable[[int], None] | None = None, label: Callable[[dict], str] = str) -> WriteResult:
    """BatchWriteItem in chunks of 25 from a few threads; unprocessed items are retried with jittered backoff.

    A chunk that keeps failing is reported (by `label`) in `errors` and does not stop the others.
    """
    result = WriteResult()
    lock = threading.Lock()

    def write(chunk: list[dict]) -> None:
        pending = chunk
        for attempt in range(8):
            try:
                reply = client.batch_write_item(RequestItems={table: pending})
            except ClientError as exc:
                code = exc.response["Error"].get("Code", "")
                if code in ("ValidationException", "ResourceNotFoundException"):
                    with lock:
                        result.errors.extend(f"{label(r)}: {code}: {exc}" for r in pending)
                    return
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.5))
                continue
            left = reply.get("UnprocessedItems", {}).get(table, [])
            done = len(pending) - len(left)
            with lock:
                result.written += done
            if on_done and done:
                on_done(done)
            if not left:
                return
            pending = left
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.5))
        with lock:
            result.errors.extend(f"{label(r)}: still unprocessed after retries" for r in pending)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(write, chunks(requests, 25)))
    return result


def _put_label(request: dict) -> str:
    item = request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key") or {}
    for key in ("id", "itemId"):
        if key in item:
            return next(iter(item[key].values()))
    return "?"


# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------

@dataclass
class ExistingItem:
    content_hash: str
    embedding_model: str
    item_type: str
    level: str
    deleted: bool


def scan_existing(client, table: str) -> dict[str, ExistingItem]:
    """What is stored now, projected to the few attributes idempotence needs (a job, not a request path)."""
    existing: dict[str, ExistingItem] = {}
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(
        TableName=table,
        ProjectionExpression="#i, content_hash, embedding_model, #t, #l, deleted",
        ExpressionAttributeNames={"#i": "id", "#t": "type", "#l": "level"},
    ):
        for row in page.get("Items", []):
            existing[row["id"]["S"]] = ExistingItem(
                content_hash=row.get("content_hash", {}).get("S", ""),
                embedding_model=row.get("embedding_model", {}).get("S", ""),
                item_type=row.get("type", {}).get("S", ""),
                level=row.get("level", {}).get("S", "none"),
                deleted=bool(row.get("deleted", {}).get("BOOL", False)),
            )
    return existing


def item_row(item: dict[str, Any], digest: str, embeddings: SeedEmbeddings | None) -> dict[str, dict]:
    """An item as its items-table row: attributes, content hash and (when known) its vector."""
    row = to_attributes(item)
    row["content_hash"] = {"S": digest}
    vector = embeddings.vectors.get(item["id"]) if embeddings else None
    if vector is not None:
        row["embedding"] = {"B": vector}
        row["embedding_model"] = {"S": embeddings.model}
    else:
        row["dirty"] = {"S": "1"}
        row.setdefault("updated_at", {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return row


def catalog_totals(items: Iterable[dict[str, Any]], existing: dict[str, ExistingItem]) -> Counter:
    """Items per (type, level) after the load: stored rows not in the seed keep counting as they are."""
    totals: Counter = Counter()
    seen: set[str] = set()
    for item in items:
        seen.add(item["id"])
        totals[(item["type"], level_of(item))] += 1
    for item_id, row in existing.items():
        if item_id not in seen and not row.deleted and row.item_type:
            totals[(row.item_type, row.level)] += 1
    return totals


def write_catalog(client, progress_table: str, totals: Counter) -> None:
    """Write the catalog counts (items per type and level) the progress figures divide by."""
    requests = []
    for item_type in ITEM_TYPES:
        for level in (*LEVELS, "none"):
            requests.append({"PutRequest": {"Item": {
                "userId": {"S": CATALOG_USER}, "itemId": {"S": catalog_key(item_type, level)},
                "total": {"N": str(totals.get((item_type, level), 0))},
            }}})
    result = batch_write(client, progress_table, requests, threads=1)
    if result.errors:
        raise RuntimeError(f"catalog totals not written: {result.errors[:3]}")


def catalog_present(client, progress_table: str) -> bool:
    """True when the catalog counts are already in the progress table."""
    reply = client.query(
        TableName=progress_table, KeyConditionExpression="userId = :u", Limit=1,
        ExpressionAttributeValues={":u": {"S": CATALOG_USER}}, ProjectionExpression="itemId",
    )
    return bool(reply.get("Items"))


@dataclass
class LoadReport:
    seed_dir: str
    items: int = 0
    written: int = 0
    unchanged: int = 0
    with_embedding: int = 0
    embedding_model: str = ""
    seconds: float = 0.0
    items_per_second: float = 0.0
    errors: list[str] = field(default_factory=list)
    learners: list[dict] = field(default_factory=list)


def load_items(client, prefix: str, seed_dir: Path, *, items: list[dict[str, Any]] | None = None,
               threads: int = 4, progress: bool = True, stream=None) -> LoadReport:
    """Load the seed items into the items table (only what changed) and the catalog counts."""
    report = LoadReport(seed_dir=str(seed_dir))
    items_table, progress_table = prefix + "items", prefix + "progress"
    started = time.monotonic()
    items = list(iter_items(seed_dir)) if items is None else items
    report.items = len(items)
    embeddings = load_seed_embeddings(seed_dir, items)
    if embeddings:
        report.embedding_model = embeddings.model
    existing = scan_existing(client, items_table)

    requests = []
    for item in items:
        digest = content_hash(item)
        has_vector = embeddings is not None and item["id"] in embeddings.vectors
        report.with_embedding += has_vector
        old = existing.get(item["id"])
        if old and old.content_hash == digest and not old.deleted and (
                not has_vector or old.embedding_model == embeddings.model):
            report.unchanged += 1
            continue
        requests.append({"PutRequest": {"Item": item_row(item, digest, embeddings)}})

    bar = tqdm(total=len(requests), unit="item", desc="seed items", file=stream or sys.stderr,
               disable=not progress or not requests, mininterval=0.3, dynamic_ncols=True)
    write_started = time.monotonic()
    with bar:
        result = batch_write(client, items_table, requests, threads=threads, on_done=bar.update, label=_put_label)
    write_seconds = time.monotonic() - write_started
    report.written = result.written
    report.errors.extend(result.errors)
    if report.written or not catalog_present(client, progress_table):
        write_catalog(client, progress_table, catalog_totals(items, existing))
    report.seconds = round(time.monotonic() - started, 3)
    report.items_per_second = round(report.written / write_seconds, 1) if report.written and write_seconds else 0.0
    return report
