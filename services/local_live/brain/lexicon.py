"""Small Japanese text helpers: scripts, romaji, levels and entity types named in a question."""

from __future__ import annotations

import re
import unicodedata

import jaconv

from services.common.japanese import JAPANESE
from services.common.japanese import KANJI_CHAR as KANJI
from services.common.japanese import MACRONS as _MACRONS

JP_CHARS = JAPANESE + "〜"
JP_RUN = re.compile(f"[{JP_CHARS}]+")
_LEVEL = re.compile(r"(?<![A-Za-z0-9])[Nn]\s?([1-5])(?![0-9])")


def normalise(text: str) -> str:
    """NFKC (full-width letters and digits to ASCII), trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def has_japanese(text: str) -> bool:
    """True when the text contains kana or kanji."""
    return bool(JP_RUN.search(text))


def is_single_kanji(term: str) -> bool:
    """True when the term is exactly one kanji."""
    return len(term) == 1 and bool(KANJI.match(term))


def romaji_key(text: str) -> str:
    """Comparable romaji: lower case, macrons spelt out, no spaces, hyphens or apostrophes."""
    return re.sub(r"[\s'’\-.]", "", text.lower().translate(_MACRONS))


def romaji_to_hiragana(text: str) -> str | None:
    """Hiragana for a romaji word, or None when it does not read as romaji."""
    key = romaji_key(text)
    if not key or not key.isascii() or not key.isalpha():
        return None
    # "nn" before a vowel is ん and a syllable starting with n (konnichiwa → こんにちは, onna → おんな);
    # jaconv would read it as ん and a bare vowel (こんいちわ)
    key = re.sub(r"nn(?=[aiueoy])", "ん" + "n", key)
    kana = jaconv.alphabet2kana(key)
    if re.search("[a-z]", kana):
        return None
    return kana


def to_hiragana(text: str) -> str:
    """Katakana in the text written as hiragana."""
    return jaconv.kata2hira(text)


def level_in(text: str) -> str:
    """The JLPT level (N5..N1) the text names; empty when none."""
    match = _LEVEL.search(normalise(text))
    return f"N{match.group(1)}" if match else ""


_ENTITY_WORDS = (
    ("kanji", ("kanji", "漢字", "かんじ")),
    ("sentences", ("sentence", "例文")),
    ("kana", ("kana", "hiragana", "katakana", "ひらがな", "カタカナ", "仮名", "かな")),
    ("words", ("word", "vocab", "単語", "語彙", "言葉", "ことば")),
)


def entity_type_in(text: str) -> str:
    """The item type the text asks about (words, kanji, sentences, kana); empty when none."""
    lowered = text.lower()
    for entity, words in _ENTITY_WORDS:
        if any(word in lowered for word in words):
            return entity
    return ""
