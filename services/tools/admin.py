"""Item writes (admin role): validate, write, mark for re-indexing. Never waits on the indexer: the
"embedding update hook" is the `dirty = "1"` flag (sparse `dirty-index`) the indexer polls."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from kotoba.v1 import tools_pb2
from services.tools.errors import invalid, not_found
from services.tools.learner import CATALOG_USER, Catalog
from services.tools.prefix import PrefixIndex
from services.tools.records import is_live, item_from_row, row_from_item, validate_item
from services.tools.store import Store


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _catalog_key(row: dict[str, Any]) -> str:
    return f"#total#{row.get('type')}#{row.get('level') or 'none'}"


class ItemWriter:
    def __init__(self, store: Store, catalog: Catalog, prefixes: PrefixIndex) -> None:
        self.store = store
        self.catalog = catalog
        self.prefixes = prefixes

    async def upsert(self, request: tools_pb2.UpsertItemRequest) -> tools_pb2.UpsertItemResponse:
        """Create or replace a dictionary item (validated) and mark it for the indexer."""
        if not request.HasField("item"):
            raise invalid("item is required")
        item = request.item
        validate_item(item)
        row = row_from_item(item)
        # Same hash recipe as the seed loader (over the item's own fields), so a seed re-load can tell it changed.
        row["content_hash"] = hashlib.sha256(json.dumps(
            row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()[:32]
        row["updated_at"] = _now()
        row["dirty"] = "1"
        old = await self.store.run(self.store.put_item, row)
        created = not is_live(old)
        await self._count(old if not created else None, row)
        self.prefixes.update(row)
        return tools_pb2.UpsertItemResponse(item=item_from_row(row), created=created)

    async def delete(self, request: tools_pb2.DeleteItemRequest) -> tools_pb2.DeleteItemResponse:
        """Soft-delete a dictionary item (the indexer drops it from the next snapshot)."""
        item_id = request.id.strip()
        if not item_id or len(item_id) > 300:
            raise invalid("id is required (at most 300 characters)")
        old = await self.store.run(self.store.tombstone, item_id, _now())
        if old is None:
            raise not_found(f"There is no item with id {item_id!r} to delete.")
        await self._count(old, None)
        self.prefixes.update({"id": item_id, "deleted": True})
        return tools_pb2.DeleteItemResponse(id=item_id)

    async def _count(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        changes: dict[str, int] = {}
        if old:
            changes[_catalog_key(old)] = changes.get(_catalog_key(old), 0) - 1
        if new:
            changes[_catalog_key(new)] = changes.get(_catalog_key(new), 0) + 1
        await asyncio.gather(*(self.store.run(self.store.add_catalog, CATALOG_USER, key, delta)
                               for key, delta in changes.items() if delta))
        self.catalog.invalidate()
