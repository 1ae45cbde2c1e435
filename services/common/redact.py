"""PII redaction applied to every stored or logged turn: e-mail addresses, phone numbers,
card-like numbers (Luhn-valid), passwords, street addresses and names a learner gives about themself.

Redaction is deliberately eager: a false positive costs an admin a little
context, a false negative leaks a learner's data into 90 days of logs.

The text is a learner's, so every pattern must stay fast on hostile input:
- each pattern is written so the engine never tries exponentially many ways
  (no nested quantifiers over overlapping characters; starts pinned by a
  look-behind so a long run is scanned once, not once per position);
- input is cut to MAX_INPUT characters before any pattern sees it (the store
  keeps less than that anyway);
- patterns run on the `regex` engine, which takes a time limit per call and
  releases the GIL while matching (the stdlib `re` holds it, so a slow match
  in a worker thread would still stall the event loop). When the limit is hit
  the text is masked whole (`redact_text_bounded`): never stored raw.
tests/fuzz/test_fuzz_redact.py times every pattern on adversarial input.
"""

from __future__ import annotations

import json
import time
from typing import Any

import regex

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
NAME = "[name]"
PASSWORD = "[password]"
ADDRESS = "[address]"
MASKED = "[redacted: text could not be checked in time]"

# Larger than anything the conversations store keeps (20 000 characters of text, 16 000 of a tool payload).
MAX_INPUT = 32_000
# At most this many names from one turn are searched for in every field of it.
MAX_NAMES = 16
# Per pattern call; generous (linear patterns take well under a millisecond per kB), it only stops a
# pattern that has gone quadratic or worse on some input nobody thought of.
PATTERN_TIMEOUT_S = 0.25


class RedactionTimeout(TimeoutError):
    """A pattern ran past its time limit: the caller must not keep the raw text."""


_DIGIT = "[0-9０-９]"
# Look-behind pins the start to the beginning of a run of address characters, so a long run without
# an "@" costs one scan instead of one scan per position. The domain needs no dot ("taro@localhost").
_EMAIL_RE = regex.compile(r"(?<![\w.+%-])[\w.+%-]{1,256}@[\w-]{1,255}(?:\.[\w-]{1,63}){0,8}")
# Digit groups separated by 1-3 separator characters; whether it is a card or a phone is decided on the
# digit count and the Luhn check. Separators and digits are disjoint and every group but the first needs
# a separator, so a run of digits splits one way only (the old `(?:sep{0,2}digits)+` split 2^n ways).
_SEP = "[ \\-.‐－ー()（）/／]"
_NUMBER_RE = regex.compile(
    rf"(?<![A-Za-z0-9_０-９/.])[+＋]?\(?{_DIGIT}{{1,40}}(?:{_SEP}{{1,3}}{_DIGIT}{{1,40}}){{0,12}}\)?"
    r"(?![A-Za-z0-9_０-９:])"
)
_NAME_EN_RE = regex.compile(
    r"(?i)\b(my name is|my name's|i'm called|i am called|call me)(\s{1,8})"
    r"([^\s.,!?;:\"'()]{1,40}(?:\s{1,4}(?-i:[A-Z])[^\s.,!?;:\"'()]{0,40}){0,2})"
)
_NAME_JA_RE = regex.compile(
    r"((?:私|わたし|僕|ぼく|俺|おれ|あたし)の(?:名前|なまえ)は|(?:名前|なまえ)は)(\s{0,4})"
    r"([^\s、。！？!?,.「」]{1,40})"
)
# "my password is X", "password: X", "PIN = X"; the word after it is the secret.
_PASSWORD_EN_RE = regex.compile(
    r"(?i)\b(pass(?:word|code|phrase)|passwd|pin(?: code)?)"
    r"(\s{0,4}(?:(?:is|was)\b\s{0,4}[:=：]?|[:=：])\s{0,4})([^\s]{1,128})"
)
_PASSWORD_JA_RE = regex.compile(
    r"(パスワード|暗証番号|パスコード|ピン番号)(\s{0,4}(?:は|が|：|:|=)\s{0,4})"
    r"([^\s、。！？!?,」]{1,128})"
)
# Greedy above and in _NAME_JA_RE (a lazy name or secret with a look-ahead scanned 128 characters from every cue); the copula that
# ends the sentence is given back here.
_COPULA = regex.compile(r"(?:です|でした|だよ|だった|だ|って|と申します|といいます)")
_STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
           r"Crescent|Close|Square|Sq|Highway|Hwy)")
_ADDRESS_RES = (
    # 221B Baker Street, 1600 Pennsylvania Ave
    regex.compile(rf"\b[0-9]{{1,6}}[A-Za-z]?\s{{1,3}}(?:[A-Z][\w'-]{{0,30}}\.?\s{{1,3}}){{1,4}}{_STREET}\b\.?"),
    # Hauptstraße 5, Am Markt-weg 12a
    regex.compile(r"\b[A-ZÄÖÜ][\w-]{0,40}(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm)"
                  r"\s{1,3}[0-9]{1,4}[a-z]?\b"),
    # 西新宿2丁目8番1号, 東京都新宿区西新宿2-8-1 (a bare 2-8-1 could be a date or a score: needs the prefecture)
    regex.compile(rf"{_DIGIT}{{1,4}}丁目{_DIGIT}{{1,4}}(?:番地?|[-－ー‐]){_DIGIT}{{1,4}}号?"),
    # Anchored on the prefecture's last character (once per run of such characters); the run after it is
    # possessive (it cannot hold a digit, so giving characters back could never help) and bounded.
    regex.compile(rf"(?<![都道府県])[都道府県][^\s、。！？!?,.0-9０-９]{{1,30}}+"
                  rf"{_DIGIT}{{1,4}}(?:丁目|[-－ー‐]){_DIGIT}{{1,4}}(?:(?:番地?|[-－ー‐]){_DIGIT}{{1,4}}号?)?"),
    # 〒160-0023
    regex.compile(rf"〒\s{{0,2}}{_DIGIT}{{3}}[-－ー‐]?{_DIGIT}{{4}}"),
)
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
_NON_DIGIT = regex.compile(r"\D")

# Every pattern applied to user text, by name: the fuzz test and bench/redact.py time each one.
PATTERNS: dict[str, regex.Pattern[str]] = {
    "email": _EMAIL_RE, "number": _NUMBER_RE, "name_en": _NAME_EN_RE, "name_ja": _NAME_JA_RE,
    "password_en": _PASSWORD_EN_RE, "password_ja": _PASSWORD_JA_RE,
    "address_en": _ADDRESS_RES[0], "address_de": _ADDRESS_RES[1], "address_ja_chome": _ADDRESS_RES[2],
    "address_ja": _ADDRESS_RES[3], "postcode_ja": _ADDRESS_RES[4],
}


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _number(match: regex.Match[str]) -> str:
    text = match.group(0)
    digits = _NON_DIGIT.sub("", text.translate(_FULLWIDTH))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return CARD
    if 10 <= len(digits) <= 15:
        return PHONE
    return text


def _split_copula(value: str) -> tuple[str, str]:
    """("山田", "です") from "山田です": the sentence's ending is not part of the name or secret."""
    copula = _COPULA.search(value, 1)
    return (value[:copula.start()], value[copula.start():]) if copula else (value, "")


def _password_ja(match: regex.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{PASSWORD}{_split_copula(match.group(3))[1]}"


def _name_ja(match: regex.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{NAME}{_split_copula(match.group(3))[1]}"


def _bound(text: str) -> str:
    return text if len(text) <= MAX_INPUT else text[:MAX_INPUT] + "…[truncated]"


def _sub(pattern: regex.Pattern[str], repl: Any, text: str) -> str:
    try:
        return pattern.sub(repl, text, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        raise RedactionTimeout(f"redaction pattern {pattern.pattern[:40]!r} timed out") from None


def find_names(text: str) -> list[str]:
    """Names a learner gives about themself; the tutor tends to repeat them ("Nice to meet you, Hanako!"),
    so a turn's redaction removes them from every field, not just the one they were given in."""
    text = _bound(text or "")
    try:
        names = [m.group(3) for m in _NAME_EN_RE.finditer(text, timeout=PATTERN_TIMEOUT_S)]
        names += [_split_copula(m.group(3))[0] for m in _NAME_JA_RE.finditer(text, timeout=PATTERN_TIMEOUT_S)]
    except TimeoutError:
        raise RedactionTimeout("name pattern timed out") from None
    out: list[str] = []
    for name in names:
        out.append(name)
        out.extend(part for part in name.split() if len(part) > 1)
    return sorted({n for n in out if n and n != NAME}, key=len, reverse=True)[:MAX_NAMES]


def _known_names(text: str, names: tuple[str, ...]) -> str:
    for name in names[:MAX_NAMES]:
        if name.isascii():
            text = _sub(regex.compile(rf"(?i)(?<![A-Za-z0-9]){regex.escape(name)}(?![A-Za-z0-9])"), NAME, text)
        else:
            text = text.replace(name, NAME)
    return text


def redact_text(text: str, names: tuple[str, ...] = ()) -> str:
    """Redacted text; raises RedactionTimeout if a pattern ran past its limit (see redact_text_bounded)."""
    if not text:
        return text
    text = _bound(text)
    text = _sub(_EMAIL_RE, EMAIL, text)
    text = _sub(_PASSWORD_EN_RE, lambda m: f"{m.group(1)}{m.group(2)}{PASSWORD}", text)
    text = _sub(_PASSWORD_JA_RE, _password_ja, text)
    for pattern in _ADDRESS_RES:
        text = _sub(pattern, ADDRESS, text)
    text = _sub(_NUMBER_RE, _number, text)
    text = _known_names(text, names)
    text = _sub(_NAME_EN_RE, lambda m: f"{m.group(1)}{m.group(2)}{NAME}", text)
    text = _sub(_NAME_JA_RE, _name_ja, text)
    return text


def _walk(value: Any, names: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, names)
    if isinstance(value, list):
        return [_walk(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, names) for k, v in value.items()}
    return value


def redact_json(text: str, names: tuple[str, ...] = ()) -> str:
    """Redact every string inside a JSON document (keys kept); non-JSON is redacted as text."""
    if not text:
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return redact_text(text, names)
    try:
        return json.dumps(_walk(value, names), ensure_ascii=False, separators=(",", ":"))
    except RecursionError:  # nesting json.loads accepted but walking it does not: keep nothing of it
        return MASKED


def redact_text_bounded(text: str, names: tuple[str, ...] = (), deadline: float | None = None) -> str:
    """redact_text that never fails open: past the deadline (time.monotonic()) or on a pattern timeout the
    whole text is masked."""
    if not text:
        return text
    if deadline is not None and time.monotonic() > deadline:
        return MASKED
    try:
        return redact_text(text, names)
    except RedactionTimeout:
        return MASKED
