"""Japanese scripts as Unicode ranges, and the romaji macron table: the one definition every service uses.

Ranges are strings for a regex character class (`f"[{JAPANESE}]"`), so callers can combine them.
"""

from __future__ import annotations

import re

# Hiragana and katakana blocks, prolonged sound mark ー (U+30FC) and small ヵ/ヶ included.
KANA = "\u3040-\u30ff"
HALFWIDTH_KANA = "\uff66-\uff9f"
# CJK unified ideographs: extension A, the main block, compatibility ideographs, extensions B to H.
KANJI = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# 々 (repeat the kanji), 〆, 〇: written inside words.
ITERATION_MARKS = "\u3005-\u3007"
JAPANESE = KANA + KANJI + ITERATION_MARKS + HALFWIDTH_KANA

JAPANESE_RUN = re.compile(f"[{JAPANESE}]+")
# One kanji (々 counts: it stands for the kanji before it).
KANJI_CHAR = re.compile(f"[{KANJI}\u3005]")

# Long vowels written with a macron or circumflex (Hepburn / Nihon-shiki) as two letters.
MACRONS = str.maketrans({"ā": "aa", "ī": "ii", "ū": "uu", "ē": "ee", "ō": "ou",
                         "â": "aa", "î": "ii", "û": "uu", "ê": "ee", "ô": "ou"})


def has_japanese(text: str) -> bool:
    """True when the text contains kana or kanji."""
    return JAPANESE_RUN.search(text) is not None


def fold_macrons(text: str) -> str:
    """tōkyō → toukyou: long vowels spelled out, so romaji compares letter by letter."""
    return text.translate(MACRONS)


# Katakana-only sounds that jaconv's Hepburn spells by their parts (ティ → "tei"): rewritten first.
_LOAN_SOUNDS = {"てぃ": "ti", "でぃ": "di", "とぅ": "tu", "どぅ": "du", "ふぁ": "fa", "ふぃ": "fi", "ふぇ": "fe",
                "ふぉ": "fo", "うぃ": "wi", "うぇ": "we", "うぉ": "wo", "ちぇ": "che", "しぇ": "she", "じぇ": "je",
                "ゔぁ": "va", "ゔぃ": "vi", "ゔぇ": "ve", "ゔぉ": "vo", "ゔ": "vu"}
_LOAN_RE = re.compile("|".join(sorted(_LOAN_SOUNDS, key=len, reverse=True)))


def kana_to_romaji(kana: str) -> str:
    """Hepburn for a kana string, long vowels spelt out (とうきょう → toukyou, ラーメン → raamen), ん before a
    vowel or y as n' (きんえん → kin'en): the readings a learner sees beside Japanese text at run time."""
    import jaconv  # MIT, a runtime dependency (pykakasi is GPL and used only to build the seed)

    # An apostrophe after ん where the next kana starts with a vowel or y (jaconv passes it through).
    hira = re.sub("ん(?=[あいうえおやゆよ])", "ん'", jaconv.kata2hira(kana))
    parts: list[str] = []
    last = 0
    for m in _LOAN_RE.finditer(hira):
        parts.append(jaconv.kana2alphabet(hira[last:m.start()]))
        parts.append(_LOAN_SOUNDS[m.group(0)])
        last = m.end()
    parts.append(jaconv.kana2alphabet(hira[last:]))
    text = "".join(parts)
    # ー lengthens the vowel before it.
    return re.sub(r"([aiueo])-", r"\1\1", text).replace("-", "")
