"""One text recipe per item type: what gets embedded for a passage.

The recipe says what the item *is* ("Japanese word", "Kanji character",
"Example sentence", "Hiragana kana") because a word and the kanji with the
same written form (木 the word, 木 the kanji) otherwise get nearly identical
passages and vectors cannot tell them apart.

Changing a recipe changes every vector: bump RECIPE_VERSION, which is part of
every embedder's `model` string, so stored vectors are re-made by the
indexer instead of silently mixing two recipes in one index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

RECIPE_VERSION = "p1"


def _join(values: Any, sep: str = "; ") -> str:
    if not values:
        return ""
    if isinstance(values, str):
        return values
    return sep.join(str(v) for v in values if v)


def _level(item: Mapping[str, Any]) -> str:
    level = item.get("level")
    return f" JLPT {level}." if level else ""


def _word(item: Mapping[str, Any]) -> str:
    written, reading, romaji = item.get("written", ""), item.get("reading", ""), item.get("romaji", "")
    form = written if not reading or reading == written else f"{written} ({reading})"
    return f"Japanese word {form}, romaji {romaji}: {_join(item.get('meanings'))}.{_level(item)}"


def _kanji(item: Mapping[str, Any]) -> str:
    on = _join(item.get("onyomi"), ", ")
    kun = _join(item.get("kunyomi"), ", ")
    readings = "; ".join(x for x in (f"on {on}" if on else "", f"kun {kun}" if kun else "") if x)
    return (f"Kanji character {item.get('written', '')}: {_join(item.get('meanings'))}."
            f"{' Readings ' + readings + '.' if readings else ''}{_level(item)}")


def _sentence(item: Mapping[str, Any]) -> str:
    translation = item.get("translation") or _join(item.get("meanings"), " ")
    return f"Example sentence: {item.get('written', '')} — {translation}"


def _kana(item: Mapping[str, Any]) -> str:
    script = (item.get("script") or "kana").capitalize()
    return f"{script} kana {item.get('written', '')}, read {item.get('romaji', '')}."


_RECIPES = {"word": _word, "kanji": _kanji, "sentence": _sentence, "kana": _kana}


def passage_text(item: Mapping[str, Any]) -> str:
    """The passage text embedded for an item (without the e5 "passage: " prefix: embedders add it)."""
    recipe = _RECIPES.get(item.get("type", ""))
    if recipe is None:
        raise ValueError(f"unknown item type {item.get('type')!r} for item {item.get('id')!r}")
    return recipe(item)


def text_digest(text: str) -> str:
    """Short stable digest of a passage text: tells whether a stored vector still matches its item."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
