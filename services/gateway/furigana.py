"""Readings for the web client, from the project's own dictionary and Japanese pipeline, never from the model.

`display(text)` gives, for an answer's text, furigana for every kanji span and romaji for every Japanese
span. Readings come from the dictionary's words first (the committed seed, `data/seed/words.jsonl.gz`: a
run of up to four analyser tokens spelling a headword takes its reading, so 日本語 reads にほんご), then from
the same fugashi/unidic-lite tokens and word grouping that built the dictionary's readings and romaji
(services/seed/build.py; particles は/へ/を as wa/e/o, endings glued to their stem), with Hepburn from
services.common.japanese.kana_to_romaji (pykakasi, which built the seed, is GPL and not installed at run time). Both lists
cover the whole text in order, so the client can draw either view from them and copy the plain text.

    {"furigana": [["泳", "およ"], ["ぐ", ""], [" means swim", ""]],
     "romaji":   [["泳ぐ", "oyogu"], [" means swim", ""]]}
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from services.common.japanese import ITERATION_MARKS, KANA, KANJI, KANJI_CHAR
from services.gateway.citations import strip_citations

log = logging.getLogger(__name__)

# A Japanese span: kana and kanji, with the Japanese punctuation between them (not across latin text).
_JA = KANA + KANJI + ITERATION_MARKS
JAPANESE_SPAN = re.compile(f"[{_JA}](?:[{_JA}。、「」『』・！？～]*[{_JA}])?[。！？]?")
HAS_KANJI = KANJI_CHAR
MAX_CHARS = 8000

_analyser: Any = None
_words: dict[str, set[str]] | None = None
_lock = threading.Lock()
MAX_MERGE = 4


def _dictionary() -> dict[str, set[str]]:
    """Written form (with kanji) → the dictionary's readings for it."""
    global _words
    if _words is None:
        words: dict[str, set[str]] = {}
        try:
            from services.seed.load import DEFAULT_SEED_DIR
            from services.seed.reader import iter_items

            for item in iter_items(DEFAULT_SEED_DIR, ["word"]):
                written, reading = item.get("written", ""), item.get("reading", "")
                if reading and HAS_KANJI.search(written):
                    words.setdefault(written, set()).add(reading)
        except Exception:  # noqa: BLE001 - the analyser alone still gives readings
            log.warning("dictionary words unavailable for readings; using the analyser only", exc_info=True)
        _words = words
    return _words


def _japanese():
    """The analyser, made once (a few seconds cold: call `warm()` at start-up, off the event loop)."""
    global _analyser
    with _lock:
        if _analyser is None:
            from services.seed.build import Japanese

            _analyser = Japanese(kakasi=False)  # no GPL code at run time
            _dictionary()
        return _analyser


def warm() -> None:
    """Load the analyser and dictionary ahead of the first answer (run off the event loop at start)."""
    try:
        _japanese().tokens("日本語")
    except Exception:  # noqa: BLE001 - without the analyser answers go out without readings
        log.warning("Japanese analyser unavailable; answers go out without furigana/romaji", exc_info=True)


def _ruby(surface: str, reading: str) -> list[list[str]]:
    """One token as ruby pieces: kana around the kanji keep no reading (泳ぐ/およぐ → 泳/およ + ぐ)."""
    if not reading or not HAS_KANJI.search(surface):
        return [[surface, ""]]
    from services.seed.build import kata2hira  # loaded with the analyser: not at the gateway's start

    s, r = kata2hira(surface), reading
    head = 0
    while head < len(s) - 1 and head < len(r) and s[head] == r[head] and not HAS_KANJI.match(s[head]):
        head += 1
    tail = 0
    while (tail < len(s) - head - 1 and tail < len(r) - head and s[-1 - tail] == r[-1 - tail]
           and not HAS_KANJI.match(s[-1 - tail])):
        tail += 1
    core, core_reading = surface[head:len(surface) - tail], r[head:len(r) - tail]
    if not core_reading:
        return [[surface, reading]]
    out = [[surface[:head], ""]] if head else []
    out.append([core, core_reading])
    if tail:
        out.append([surface[len(surface) - tail:], ""])
    return out


def _with_dictionary(toks: list[dict]) -> list[dict]:
    """Tokens re-read from the dictionary: the longest run of tokens spelling a headword becomes one token
    with the headword's reading (the analyser's own reading when it is one of the headword's)."""
    words = _dictionary()
    out: list[dict] = []
    i = 0
    while i < len(toks):
        for n in range(min(MAX_MERGE, len(toks) - i), 0, -1):
            run = toks[i:i + n]
            written = "".join(t["surface"] for t in run)
            readings = words.get(written)
            if readings:
                own = "".join(t["reading"] for t in run)
                reading = own if own in readings else sorted(readings)[0]
                out.append({**run[0], "surface": written, "reading": reading, "inflected": run[-1]["inflected"]})
                i += n
                break
        else:
            out.append(toks[i])
            i += 1
    return out


def _merge(pieces: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    for surface, reading in pieces:
        if out and not reading and not out[-1][1]:
            out[-1][0] += surface
        elif surface:
            out.append([surface, reading])
    return out


def display_if_ready(text: str) -> dict[str, list[list[str]]] | None:
    """`display`, or None while the analyser is still loading: an answer is never held for the warm-up."""
    return display(text) if _analyser is not None and _words is not None else None


def display(text: str) -> dict[str, list[list[str]]] | None:
    """Furigana and romaji for `text` (citations left out); None when it has no Japanese (or the analyser is
    unavailable)."""
    # Citations are the sources list's business (turn_complete.sources), never part of what is read.
    text = strip_citations(text)[0]
    if not text or len(text) > MAX_CHARS or not JAPANESE_SPAN.search(text):
        return None
    try:
        ja = _japanese()
    except Exception:  # noqa: BLE001
        return None
    furigana: list[list[str]] = []
    romaji: list[list[str]] = []
    pos = 0
    for m in JAPANESE_SPAN.finditer(text):
        if m.start() > pos:
            furigana.append([text[pos:m.start()], ""])
            romaji.append([text[pos:m.start()], ""])
        span = m.group()
        toks = _with_dictionary(ja.tokens(span))
        if "".join(t["surface"] for t in toks) == span:
            for t in toks:
                furigana.extend(_ruby(t["surface"], t["reading"]))
            romaji.append([span, ja.sentence_romaji(toks)])
        else:  # the analyser normalised something: keep the span whole rather than misalign it
            furigana.append([span, ""])
            romaji.append([span, ""])
        pos = m.end()
    if pos < len(text):
        furigana.append([text[pos:], ""])
        romaji.append([text[pos:], ""])
    return {"furigana": _merge(furigana), "romaji": romaji}
