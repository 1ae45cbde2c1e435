"""The facts the brain may use: items from the turn's context and from tool results.

Items are dicts with proto field names (MessageToDict(preserving_proto_field_name=True)), so
zero values are absent and int64 counts arrive as strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from services.local_live.brain.lexicon import has_japanese, romaji_key, romaji_to_hiragana, to_hiragana


def as_int(value: Any) -> int:
    """An int from a tool result field; 0 when it is missing or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def walk_items(value: Any) -> Iterator[dict[str, Any]]:
    """Every item dict nested anywhere in a tool result (words inside details, items inside
    LearnedItem wrappers, search hits)."""
    if isinstance(value, dict):
        if isinstance(value.get("id"), str) and isinstance(value.get("type"), str):
            yield value
        for child in value.values():
            if isinstance(child, dict | list):
                yield from walk_items(child)
    elif isinstance(value, list):
        for child in value:
            yield from walk_items(child)


def meanings(item: dict[str, Any]) -> list[str]:
    """An item's meanings; a sentence's translation when it has none."""
    found = [m for m in item.get("meanings") or [] if isinstance(m, str) and m]
    if not found and item.get("translation"):
        found = [item["translation"]]
    return found


def example_ids(item: dict[str, Any]) -> list[str]:
    """The ids of a word's example sentences, under either field name."""
    return list(item.get("example_ids") or item.get("examples") or [])


class ItemPool:
    """Items by id, in the order they were first seen (context first, then tool results)."""

    def __init__(self, items: Iterable[dict[str, Any]] = ()) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self.add(items)

    def add(self, items: Iterable[dict[str, Any]]) -> None:
        """Add items found in context or tool results (soft-deleted ones left out)."""
        for item in items:
            if item.get("deleted"):
                continue
            known = self._items.get(item["id"])
            # Tool results carry more fields than a search hit; keep the fuller record.
            if known is None or len(item) > len(known):
                self._items[item["id"]] = item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> dict[str, Any] | None:
        """An item by id; None when the turn has not seen it."""
        return self._items.get(item_id)

    def find(self, term: str, types: tuple[str, ...] = ("word", "kanji", "kana")) -> list[dict[str, Any]]:
        """Items that ARE the term: same written form, else same kana reading, else same romaji."""
        term = term.strip()
        if not term:
            return []
        candidates = [i for i in self._items.values() if i.get("type") in types]
        written = [i for i in candidates if i.get("written") == term]
        if written:
            return _words_first(written)
        if has_japanese(term):
            kana = to_hiragana(term)
            by_reading = [i for i in candidates if i.get("type") in ("word", "kana")
                          and to_hiragana(i.get("reading") or "") == kana]
            return _words_first(by_reading)
        key, kana = romaji_key(term), romaji_to_hiragana(term)
        by_romaji = [i for i in candidates if i.get("type") in ("word", "kana")
                     and (romaji_key(i.get("romaji") or "") == key
                          or (kana and to_hiragana(i.get("reading") or "") == kana)
                          or (kana and i.get("written") == kana))]
        return _words_first(by_romaji)

    def by_meaning(self, english: str, types: tuple[str, ...] = ("word",)) -> list[dict[str, Any]]:
        """Items whose English meanings contain the word(s), exact meanings first."""
        wanted = english.strip().lower()
        if not wanted:
            return []
        pattern = re.compile(rf"(?<![a-z]){re.escape(wanted)}(?![a-z])")
        exact, partial = [], []
        for item in self._items.values():
            if item.get("type") not in types:
                continue
            lowered = [m.lower().removeprefix("to ").strip() for m in meanings(item)]
            if wanted in lowered or wanted.removeprefix("to ") in lowered:
                exact.append(item)
            elif any(pattern.search(m) for m in lowered):
                partial.append(item)
        return _basic_first(exact) + _basic_first(partial)

    def sentences_with(self, forms: Iterable[str]) -> list[dict[str, Any]]:
        """The sentences containing any of these forms."""
        forms = [f for f in forms if f]
        return [i for i in self._items.values() if i.get("type") == "sentence"
                and any(f in (i.get("written") or "") for f in forms)]


_LEVEL_ORDER = {"N5": 0, "N4": 1, "N3": 2, "N2": 3, "N1": 4}


def _basic_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda i: _LEVEL_ORDER.get(i.get("level") or "", 9))


def _words_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"word": 0, "kanji": 1, "kana": 2}
    return sorted(items, key=lambda i: (order.get(i.get("type", ""), 3), _LEVEL_ORDER.get(i.get("level") or "", 9)))


def stems(term: str) -> list[str]:
    """Forms to look for in sentences: the term, and a verb or adjective stem so 食べる finds 食べた."""
    forms = [term]
    if len(term) >= 2 and re.search("[\u3040-\u309f]$", term) and re.search("[\u4e00-\u9fff]", term):
        forms.append(term[:-1])
    return forms
