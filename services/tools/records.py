"""Item rows (DynamoDB) ↔ `kotoba.v1.Item`, and the validation of item writes."""

from __future__ import annotations

import re
from typing import Any

from kotoba.v1 import items_pb2
from services.tools.errors import invalid

LEVELS = ("N5", "N4", "N3", "N2", "N1")
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
ITEM_TYPES = ("word", "kanji", "sentence", "kana")
ENTITY_TYPES = {"words": "word", "word": "word", "kanji": "kanji", "sentences": "sentence",
                "sentence": "sentence", "kana": "kana"}
# Attributes an answer needs; the embedding (1.5 KB) never leaves the table on the request path.
ITEM_ATTRIBUTES = ("id", "type", "level", "written", "reading", "romaji", "meanings", "reading_source", "pos",
                   "kanji", "onyomi", "kunyomi", "strokes", "grade", "freq", "translation", "script", "examples",
                   "words", "updated_at", "deleted")
_STR_FIELDS = ("id", "type", "written", "reading", "romaji", "reading_source", "pos", "translation", "script",
               "updated_at")
_INT_FIELDS = ("strokes", "grade", "freq")
_KANA_RE = re.compile(r"[\u30a1-\u30f6]")


def projection() -> tuple[str, dict[str, str]]:
    """The DynamoDB projection of the item attributes and its attribute names."""
    names = {f"#a{i}": name for i, name in enumerate(ITEM_ATTRIBUTES)}
    return ", ".join(names), names


def level_rank(level: str | None) -> int:
    """A JLPT level's order (N5 first); unknown levels last."""
    return LEVEL_RANK.get(level or "", len(LEVELS))


def kata2hira(text: str) -> str:
    """Katakana in the text written as hiragana."""
    return _KANA_RE.sub(lambda m: chr(ord(m.group()) - 0x60), text)


def normalize_level(value: str, field: str = "level", allow_all: bool = False) -> str:
    """"" or a JLPT level "N5".."N1" (case-insensitive); "all" too when allowed (returned as "")."""
    level = (value or "").strip().upper()
    if level in ("", "ALL") and (allow_all or level == ""):
        return ""
    if level not in LEVEL_RANK:
        choices = "N5, N4, N3, N2, N1" + (" or all" if allow_all else "")
        raise invalid(f"{field} must be one of {choices}; got {value!r}")
    return level


def normalize_entity(value: str, default: str | None) -> str | None:
    """An entity type in its canonical name; INVALID_ARGUMENT for an unknown one."""
    key = (value or "").strip().lower()
    if not key:
        return default
    if key not in ENTITY_TYPES:
        raise invalid(f"entity_type must be one of words, kanji, sentences, kana; got {value!r}")
    return ENTITY_TYPES[key]


def clamp_limit(value: int, default: int, maximum: int, field: str = "limit") -> int:
    """A request's limit: the default for 0, capped at the maximum; INVALID_ARGUMENT when negative."""
    if value < 0:
        raise invalid(f"{field} must be between 1 and {maximum}; got {value}")
    return default if value == 0 else min(value, maximum)


def is_live(row: dict[str, Any] | None) -> bool:
    """True for a row that exists and is not soft-deleted."""
    return bool(row) and not row.get("deleted")


def item_from_row(row: dict[str, Any]) -> items_pb2.Item:
    """An items-table row as the Item message."""
    item = items_pb2.Item(
        id=row.get("id", ""), type=row.get("type", ""), level=row.get("level") or "",
        written=row.get("written", ""), reading=row.get("reading", ""), romaji=row.get("romaji", ""),
        reading_source=row.get("reading_source", ""), pos=row.get("pos", ""),
        translation=row.get("translation", ""), script=row.get("script", ""),
        updated_at=row.get("updated_at", ""),
        strokes=int(row.get("strokes") or 0), grade=int(row.get("grade") or 0), freq=int(row.get("freq") or 0),
    )
    item.meanings.extend(row.get("meanings") or [])
    item.kanji.extend(row.get("kanji") or [])
    item.onyomi.extend(row.get("onyomi") or [])
    item.kunyomi.extend(row.get("kunyomi") or [])
    item.example_ids.extend(row.get("examples") or [])
    item.word_ids.extend(row.get("words") or [])
    return item


def row_from_item(item: items_pb2.Item) -> dict[str, Any]:
    """The stored JSON shape (docs/data-model.md): example_ids → examples, word_ids → words."""
    row: dict[str, Any] = {}
    for name in _STR_FIELDS:
        value = getattr(item, name)
        if value:
            row[name] = value
    row["level"] = item.level or None
    for name in _INT_FIELDS:
        if getattr(item, name):
            row[name] = getattr(item, name)
    row["meanings"] = list(item.meanings)
    if item.type == "word":
        row["kanji"] = list(item.kanji)
        row["examples"] = list(item.example_ids)
    if item.type == "kanji":
        row["onyomi"] = list(item.onyomi)
        row["kunyomi"] = list(item.kunyomi)
    if item.type in ("kanji", "sentence"):
        row["words"] = list(item.word_ids)
    return row


def validate_item(item: items_pb2.Item) -> None:
    """Check an item an admin writes (type, id, level, fields); INVALID_ARGUMENT names what is wrong."""
    if item.type not in ITEM_TYPES:
        raise invalid(f"item.type must be one of {', '.join(ITEM_TYPES)}; got {item.type!r}")
    if not item.id or len(item.id) > 300 or not item.id.startswith(f"{item.type}:") or len(item.id) <= len(item.type) + 1:
        raise invalid(f"item.id must look like '{item.type}:…' (at most 300 characters); got {item.id!r}")
    if not item.written.strip() or len(item.written) > 1000:
        raise invalid("item.written is required (1 to 1000 characters)")
    if item.level and item.level not in LEVEL_RANK:
        raise invalid(f"item.level must be empty or one of N5, N4, N3, N2, N1; got {item.level!r}")
    if item.type == "kanji" and len(item.written) != 1:
        raise invalid(f"a kanji item's written form must be one character; got {item.written!r}")
    if len(item.meanings) > 50 or any(len(m) > 500 for m in item.meanings):
        raise invalid("item.meanings: at most 50 meanings of at most 500 characters each")
    for name in ("reading", "romaji", "translation", "pos"):
        if len(getattr(item, name)) > 2000:
            raise invalid(f"item.{name} is too long (at most 2000 characters)")
    for name in ("kanji", "onyomi", "kunyomi", "example_ids", "word_ids"):
        if len(getattr(item, name)) > 200:
            raise invalid(f"item.{name}: at most 200 entries")
    if min(item.strokes, item.grade, item.freq) < 0:
        raise invalid("item.strokes, grade and freq cannot be negative")
