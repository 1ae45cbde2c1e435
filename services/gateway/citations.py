"""Citations as data: the model cites items in its text ("[word:泳ぐ:およぐ, kanji:泳]"); the learner
reads the text without them and the turn carries them as a `sources` list.

Pure and incremental: `CitationStream.feed(delta)` returns the text that is safe to show now and
holds back only what could still turn into a citation (a "[" whose contents so far read as item
ids, and the whitespace before it), because a citation may be split across streamed deltas
("… swim”. [wo" + "rd:泳ぐ:およぐ]"). Brackets that are not citations ("[sic]", "[1]") pass through.

    stream = CitationStream()
    for delta in deltas:
        show(stream.feed(delta))
    show(stream.close())
    stream.sources  # [Source("word:泳ぐ:およぐ", "word"), ...] in order of first citation, no repeats

`strip_citations(text)` does the same for a whole text at once. `tool_status(name, args)` is the
status line a learner reads while a function runs ("looking up 水…").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("word", "kanji", "kana", "sentence")
_ID = re.compile(r"(word|kanji|kana|sentence):[^\s,\[\]]+")
# A citation longer than this is not one (and holding text back longer would stall the stream).
MAX_CITATION = 400


@dataclass(frozen=True)
class Source:
    id: str
    kind: str

    def as_dict(self) -> dict[str, str]:
        """The source as it appears in the learner-facing message."""
        return {"id": self.id, "kind": self.kind}


def _parse(body: str) -> tuple[str, list[str]]:
    """State of a bracket's contents (without the "["): ("full", ids) when it ends with "]" and is
    a citation, ("partial", []) when it could still become one, ("no", []) when it cannot."""
    closed = body.endswith("]")
    inner = body[:-1] if closed else body
    if "[" in inner or "\n" in inner or len(body) > MAX_CITATION:
        return "no", []
    parts = [p.strip() for p in inner.split(",")]
    ids: list[str] = []
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if _ID.fullmatch(part):
            ids.append(part)
            continue
        if last and not closed:
            # still being written: "", "wo", "word", "word:", "word:泳ぐ" (checked above)
            if part == "" or any(k.startswith(part) or (part.startswith(k + ":") and " " not in part)
                                 for k in KINDS) or part.rstrip(":") in KINDS:
                return "partial", []
        return "no", []
    if closed:
        return ("full", ids) if ids else ("no", [])
    return "partial", []


class CitationStream:
    """Removes citations from streamed text and collects them as sources."""

    def __init__(self) -> None:
        self._held = ""  # whitespace, then possibly "[" and what follows
        self._seen: dict[str, Source] = {}

    @property
    def sources(self) -> list[Source]:
        """Sources cited so far, in first-seen order."""
        return list(self._seen.values())

    def _cite(self, ids: list[str]) -> None:
        for item_id in ids:
            if item_id not in self._seen:
                self._seen[item_id] = Source(item_id, item_id.split(":", 1)[0])

    def feed(self, delta: str) -> str:
        """Return the displayable part of a chunk of model text, holding back a possible citation."""
        out: list[str] = []
        for ch in delta:
            out.append(self._step(ch))
        return "".join(out)

    def _step(self, ch: str) -> str:
        held = self._held
        bracket = held.find("[")
        if bracket < 0:
            if ch.isspace() and ch != "\n":
                self._held = held + ch
                return ""
            if ch == "[":
                self._held = held + ch
                return ""
            self._held = ""
            return held + ch
        space, body = held[:bracket], held[bracket + 1:] + ch
        state, ids = _parse(body)
        if state == "partial":
            self._held = held + ch
            return ""
        if state == "full":
            self._cite(ids)
            self._held = ""
            return ""  # the citation and the space before it
        # not a citation: show it, but a "[" in it may start a real one
        self._held = ""
        text = space + "[" + body
        restart = text.rfind("[")
        if restart > 0:
            self._held = text[restart:]
            return text[:restart]
        return text

    def close(self) -> str:
        """The rest of the text at the end of the turn (an unfinished bracket is shown as written)."""
        held, self._held = self._held, ""
        return held


def strip_citations(text: str) -> tuple[str, list[Source]]:
    """(clean text, sources) for a whole text."""
    stream = CitationStream()
    clean = stream.feed(text) + stream.close()
    return clean, stream.sources


# ---- tool status lines ------------------------------------------------------------------------

_STATUS = {
    "search_dictionary": ("looking up {q}…", "「{q}」を調べています…", "searching the dictionary…", "辞書を調べています…"),
    "search_words": ("looking up {q}…", "「{q}」を調べています…", "searching the dictionary…", "辞書を調べています…"),
    "get_word_details": ("looking up {q}…", "「{q}」を調べています…", "looking up the word…", "言葉を調べています…"),
    "get_kanji_details": ("looking up the kanji {q}…", "漢字「{q}」を調べています…", "looking up the kanji…",
                          "漢字を調べています…"),
    "get_user_progress": ("checking your progress…", "学習の進み具合を確認しています…"),
    "get_user_reviewable_items": ("checking what's due for review…", "復習する項目を確認しています…"),
    "get_user_plan": ("checking your review schedule…", "復習の予定を確認しています…"),
    "get_user_learned_items": ("checking what you've learned…", "覚えた項目を確認しています…"),
}
_ARG_KEYS = ("written", "character", "query")


def tool_status(name: str, args: dict[str, Any] | None = None, language: str = "en") -> str:
    """The line a learner reads while the tutor calls `name` ("looking up 水…"), never the
    function's name. Unknown functions get a neutral line."""
    ja = language == "ja"
    lines = _STATUS.get(name)
    if lines is None:
        return "確認しています…" if ja else "checking…"
    query = ""
    for key in _ARG_KEYS:
        value = (args or {}).get(key)
        if isinstance(value, str) and value.strip():
            query = value.strip()[:40]
            break
    if len(lines) == 4:
        if query:
            return (lines[1] if ja else lines[0]).format(q=query)
        return lines[3] if ja else lines[2]
    return lines[1] if ja else lines[0]
