"""In-memory prefix index over word forms, readings, romaji and English meanings.

Why in memory: DynamoDB answers exact matches through the written/reading/romaji GSIs, but a prefix
("たべ", "tabe", "eat") needs a sort key shared by all words, which the items table has no index for,
and English meanings have no index at all. The words' keys are small (~10k words, a few MB), so the
service builds sorted key lists at start from one projected Scan (off the request path) and keeps them
fresh: its own writes update the lists at once, a poll of the sparse `dirty-index` every few seconds
picks up other writers, and a full rebuild every few minutes catches anything else. The index only
*proposes* ids; every hit is then read with BatchGetItem, so a stale entry can never return a deleted
or changed word.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from services.tools.records import kata2hira, level_rank

log = logging.getLogger(__name__)

FIELDS = ("written", "reading", "romaji", "meaning")
_NOTE_RE = re.compile(r"\s*[(（][^)）]*[)）]\s*")
_SPACE_RE = re.compile(r"\s+")


def norm_latin(text: str) -> str:
    """Latin text as the prefix index keys it: lower case, single spaces."""
    return _SPACE_RE.sub(" ", text.strip().lower())


def meaning_keys(meaning: str) -> set[str]:
    """'to eat (food)' → {'to eat (food)', 'to eat', 'eat'}: learners ask 'eat', the dictionary says 'to eat'."""
    full = norm_latin(meaning)
    bare = norm_latin(_NOTE_RE.sub(" ", full))
    keys = {k for k in (full, bare) if k}
    for key in list(keys):
        for article in ("to ", "a ", "an ", "the "):
            if key.startswith(article) and len(key) > len(article):
                keys.add(key[len(article):])
    return keys


def keys_for(row: dict[str, Any]) -> dict[str, set[str]]:
    """The prefix keys of an item row per field (written, reading, romaji, meaning)."""
    keys: dict[str, set[str]] = {f: set() for f in FIELDS}
    if row.get("written"):
        keys["written"].add(row["written"])
    if row.get("reading"):
        keys["reading"].add(kata2hira(row["reading"]))
    if row.get("romaji"):
        keys["romaji"].add(norm_latin(row["romaji"]))
        keys["romaji"].add(norm_latin(row["romaji"]).replace(" ", ""))
    for meaning in row.get("meanings") or []:
        keys["meaning"].update(meaning_keys(meaning))
    return keys


class PrefixIndex:
    """Sorted (key, id) lists per field; thread-safe swaps and point updates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sorted: dict[str, list[tuple[str, str]]] = {f: [] for f in FIELDS}
        self._keys_of: dict[str, dict[str, set[str]]] = {}
        self._meaning: dict[str, set[str]] = defaultdict(set)
        self._level: dict[str, str] = {}
        self.size = 0

    def rebuild(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the index with one built from these rows."""
        fresh = PrefixIndex()
        for row in rows:
            fresh._add(row)
        for field in FIELDS:
            fresh._sorted[field].sort()
        with self._lock:
            self._sorted, self._keys_of = fresh._sorted, fresh._keys_of
            self._meaning, self._level, self.size = fresh._meaning, fresh._level, len(fresh._keys_of)

    def _add(self, row: dict[str, Any], insort: bool = False) -> None:
        item_id = row["id"]
        keys = keys_for(row)
        self._keys_of[item_id] = keys
        self._level[item_id] = row.get("level") or ""
        for field, values in keys.items():
            for key in values:
                if insort:
                    bisect.insort(self._sorted[field], (key, item_id))
                else:
                    self._sorted[field].append((key, item_id))
        for key in keys["meaning"]:
            self._meaning[key].add(item_id)

    def _remove(self, item_id: str) -> None:
        keys = self._keys_of.pop(item_id, None)
        self._level.pop(item_id, None)
        if not keys:
            return
        for field, values in keys.items():
            entries = self._sorted[field]
            for key in values:
                at = bisect.bisect_left(entries, (key, item_id))
                if at < len(entries) and entries[at] == (key, item_id):
                    del entries[at]
        for key in keys["meaning"]:
            self._meaning[key].discard(item_id)

    def update(self, row: dict[str, Any]) -> None:
        """Apply one changed item (a word added, edited or deleted)."""
        with self._lock:
            self._remove(row["id"])
            if row.get("type") == "word" and not row.get("deleted"):
                self._add(row, insort=True)
            self.size = len(self._keys_of)

    def exact_meaning(self, query: str, level: str = "") -> list[str]:
        """Ids of words with exactly this meaning, at the level when one is given."""
        with self._lock:
            ids = set()
            for key in meaning_keys(query):
                ids |= self._meaning.get(key, set())
            return self._order(ids, level)

    def prefix(self, field: str, query: str, level: str = "", limit: int = 50, scan_cap: int = 2000) -> list[str]:
        """Ids whose key in `field` starts with `query` (and is longer), shortest keys first."""
        with self._lock:
            entries = self._sorted[field]
            at = bisect.bisect_left(entries, (query, ""))
            found: dict[str, int] = {}
            for key, item_id in entries[at:at + scan_cap]:
                if not key.startswith(query):
                    break
                if key == query or (level and self._level.get(item_id) != level):
                    continue
                found[item_id] = min(found.get(item_id, 1 << 30), len(key))
            ranked = sorted(found, key=lambda i: (found[i], level_rank(self._level.get(i)), i))
            return ranked[:limit]

    def _order(self, ids: set[str], level: str) -> list[str]:
        if level:
            ids = {i for i in ids if self._level.get(i) == level}
        return sorted(ids, key=lambda i: (level_rank(self._level.get(i)), i))
