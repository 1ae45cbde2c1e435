"""Text preparation for speech: numbers and romaji to kana, script spans, sentences.

Kokoro reads Latin text letter by letter (neko → エヌイーケーオー) and misreads
Arabic numerals next to counters (10月 → じゅうつき), while OpenJTalk, which
Kokoro uses for readings, reads kanji numerals with counters correctly
(十月 → じゅうがつ, 四日 → よっか). So Japanese text gets digits rewritten as
kanji numerals and romaji words as hiragana; English words inside Japanese text
and Japanese words inside English text become separate spans for the other voice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jaconv

from services.common.japanese import JAPANESE, MACRONS

_JA = JAPANESE
_JA_PUNCT = r"\u3000-\u3004\u3008-\u303f\uff01\uff08\uff09\uff0c\uff0e\uff1a\uff1b\uff1f\uff5e"
# A Japanese run: Japanese letters, with Japanese punctuation and digits glued to them (10月, 三、四).
_JA_RUN = re.compile(f"[0-9]*[{_JA}](?:[{_JA}{_JA_PUNCT}0-9.]*[{_JA}{_JA_PUNCT}])?")
_FULLWIDTH = str.maketrans({chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF5B)
                            if chr(c - 0xFEE0).isalnum()})

_DIGITS = "〇一二三四五六七八九"
_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
_BIG_UNITS = ((10**16, "京"), (10**12, "兆"), (10**8, "億"), (10**4, "万"))
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")

_LETTER_NAMES = dict(zip(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    ("エー", "ビー", "シー", "ディー", "イー", "エフ", "ジー", "エイチ", "アイ", "ジェー", "ケー", "エル", "エム",
     "エヌ", "オー", "ピー", "キュー", "アール", "エス", "ティー", "ユー", "ブイ", "ダブリュー", "エックス",
     "ワイ", "ゼット"), strict=True))

# Hepburn/kunrei syllables, a doubled consonant (small っ) or a syllabic n; nothing else.
_ROMAJI = re.compile(
    r"(?:(?:([kgsztdhbpfjcmr])(?=\1)|t(?=ch))?"
    r"(?:(?:[kgnhbpmr]y?|sh?y?|ch|ts|j|zy?|dy?|t|f|w|y|v)?[aiueo]|n'?))+")
# Starts with a letter so plain numbers (23.5度, 1,000円) stay inside the Japanese text.
_LATIN_RUN = re.compile(r"[A-Za-zāīūēōâîûêô][A-Za-zāīūēōâîûêô'0-9 \-]*")
_SENTENCE_JA = re.compile(r"(?<=[。！？!?\n])")
_SENTENCE_EN = re.compile(r"(?<=[.!?])\s+|\n+")
_SPEAKABLE = re.compile(rf"[A-Za-z0-9{_JA}]")


@dataclass(frozen=True)
class Span:
    language: str  # "ja" or "en"
    text: str


def int_to_kanji(n: int) -> str:
    """123456 → 十二万三千四百五十六 (the form OpenJTalk reads with correct counters)."""
    if n == 0:
        return "〇"
    out = []
    for unit, name in _BIG_UNITS:
        if n >= unit:
            out.append(_group(n // unit) + name)
            n %= unit
    if n:
        out.append(_group(n))
    return "".join(out)


def _group(n: int) -> str:
    out = []
    for unit, name in _SMALL_UNITS:
        digit, n = divmod(n, unit)
        if digit:
            out.append(("" if digit == 1 else _DIGITS[digit]) + name)
    if n:
        out.append(_DIGITS[n])
    return "".join(out)


def number_to_kanji(text: str) -> str:
    """"23.5" → 二十三点五, "1,000" → 千; digits after a decimal point are read one by one."""
    whole, _, frac = text.replace(",", "").partition(".")
    out = int_to_kanji(int(whole))
    if frac:
        out += "点" + "".join(_DIGITS[int(d)] for d in frac)
    return out


def numbers_to_kanji(text: str) -> str:
    return _NUMBER.sub(lambda m: number_to_kanji(m.group()), text.translate(_FULLWIDTH))


def romaji_to_kana(word: str) -> str | None:
    """Hiragana for a word that is plausible romaji (neko, gakkō, shinbun), else None.

    jaconv alone turns any letters into kana (cat → かっ), so the word must first
    parse as a sequence of romaji syllables; one-letter words are too ambiguous.
    """
    lowered = word.lower().translate(MACRONS)
    if len(lowered) < 2 or not _ROMAJI.fullmatch(lowered):
        return None
    # jaconv reads "nn" as ん, which breaks konnichiwa/onna; an explicit ん keeps n + na apart.
    lowered = re.sub(r"n'|nn(?=[aiueoy])", lambda m: "ん" if m.group() == "n'" else "んn", lowered)
    kana = jaconv.alphabet2kana(lowered)
    return None if re.search(r"[a-z]", kana) else kana


def spell_letters(word: str) -> str:
    """JLPT → ジェーエルピーティー; how Japanese speakers say acronyms."""
    return "".join(_LETTER_NAMES.get(ch, ch) for ch in word.upper())


def _is_acronym(word: str) -> bool:
    letters = re.sub(r"[0-9]", "", word)
    return bool(letters) and letters.isupper() and len(letters) <= 5 and (len(letters) > 1 or word != letters)


def _latin_in_japanese(run: str) -> Span:
    """A Latin run inside Japanese text: romaji → kana, acronyms → letter names, else English."""
    words = run.split()
    converted = []
    if not words:
        return Span("ja", run)
    for word in words:
        bare = word.strip("-'")
        if _is_acronym(bare):
            converted.append(re.sub(r"[A-Za-z]+", lambda m: spell_letters(m.group()), bare))
        elif bare.isdigit():
            converted.append(bare)
        elif (kana := romaji_to_kana(bare)) is not None:
            converted.append(kana)
        else:
            return Span("en", run.strip())
    return Span("ja", "".join(converted))


def prepare_japanese(text: str) -> str:
    """Japanese text Kokoro can read: romaji and acronyms as kana, numbers as kanji numerals.

    English words are left as they are; split_spans routes them to the English voice.
    """
    return "".join(span.text for span in _japanese_spans(text))


def _japanese_spans(text: str) -> list[Span]:
    text = text.translate(_FULLWIDTH).translate(MACRONS)
    spans: list[Span] = []
    pos = 0
    for match in _LATIN_RUN.finditer(text):
        spans.append(Span("ja", text[pos:match.start()]))
        spans.append(_latin_in_japanese(match.group()))
        pos = match.end()
    spans.append(Span("ja", text[pos:]))
    return [Span(s.language, numbers_to_kanji(s.text) if s.language == "ja" else s.text)
            for s in _merge(spans)]


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in spans:
        if merged and merged[-1].language == span.language:
            merged[-1] = Span(span.language, merged[-1].text + span.text)
        elif span.text:
            merged.append(span)
    return merged


def split_spans(text: str, language: str) -> list[Span]:
    """Cut text into runs for one voice each, in order.

    language is the answer's main language: in a Japanese answer Latin words
    that are not romaji go to the English voice; in an English answer runs of
    Japanese script go to the Japanese voice. Runs with nothing to say
    (punctuation, brackets) are dropped.
    """
    if language == "ja":
        raw = _japanese_spans(text)
    else:
        raw = []
        pos = 0
        for match in _JA_RUN.finditer(text):
            if match.start() > pos:
                raw.append(Span("en", text[pos:match.start()]))
            raw.append(Span("ja", numbers_to_kanji(match.group())))
            pos = match.end()
        if pos < len(text):
            raw.append(Span("en", text[pos:]))
    return [Span(s.language, s.text.strip()) for s in _merge(raw) if _SPEAKABLE.search(s.text)]


def split_sentences(text: str, language: str, max_chars: int = 60) -> list[str]:
    """Sentences, with long Japanese ones cut at 、 so the first audio comes sooner
    and no piece nears Kokoro's 500-phoneme limit (beyond it audio is silently cut)."""
    pattern = _SENTENCE_JA if language == "ja" else _SENTENCE_EN
    out: list[str] = []
    for sentence in (s.strip() for s in pattern.split(text)):
        if not sentence:
            continue
        if language == "ja" and len(sentence) > max_chars:
            out.extend(_cut_long(sentence, max_chars))
        else:
            out.append(sentence)
    return [s for s in out if _SPEAKABLE.search(s)]


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    pieces, current = [], ""
    for clause in re.split(r"(?<=[、，,])", sentence):
        if current and len(current) + len(clause) > max_chars:
            pieces.append(current)
            current = clause
        else:
            current += clause
    if current:
        pieces.append(current)
    return [p[i:i + 200] for p in pieces for i in range(0, len(p), 200)]


def reading(text: str) -> str:
    """Katakana pronunciation, to compare what was heard with what was expected
    regardless of script (猫はかわいい, ねこはかわいい and 猫は可愛い all read ネコワカワイイ).

    Sudachi's kanji readings are off: they need sudachidict-core, which the voice
    extra deliberately leaves out (193 MB, and Kokoro does not use it).
    """
    import pyopenjtalk

    nodes = pyopenjtalk.run_frontend(text, use_sudachi_kanji_yomi=False)
    return "".join(n["pron"].replace("’", "") for n in nodes if n["pos"] != "記号")
