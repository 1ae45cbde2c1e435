"""PII redaction applied to every stored or logged turn: e-mail addresses, phone numbers,
card-like numbers (Luhn-valid) and names a learner gives about themself.

Redaction is deliberately eager: a false positive costs an admin a little
context, a false negative leaks a learner's data into 90 days of logs.
"""

from __future__ import annotations

import json
import re
from typing import Any

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
NAME = "[name]"

_DIGIT = "[0-9０-９]"
_EMAIL_RE = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# Digits in groups separated by one space, dash, dot or bracket; whether it is
# a card or a phone is decided on the digit count and the Luhn check.
_NUMBER_RE = re.compile(
    rf"(?<![A-Za-z0-9_０-９/.])(?:\+|＋)?\(?{_DIGIT}+\)?(?:[ \-.‐－ー()（）]{{0,2}}{_DIGIT}+\)?)+(?![A-Za-z0-9_０-９:/])"
)
_NAME_EN_RE = re.compile(
    r"(?i)\b(my name is|my name's|i'm called|i am called|call me)(\s+)"
    r"([^\s.,!?;:\"'()]+(?:\s+(?-i:[A-Z])[^\s.,!?;:\"'()]*){0,2})"
)
_NAME_JA_RE = re.compile(
    r"((?:私|わたし|僕|ぼく|俺|おれ|あたし)の(?:名前|なまえ)は|(?:名前|なまえ)は)(\s*)"
    r"([^\s、。！？!?,.「」]+?)(?=です|だよ|だ|と申します|といいます|って|[\s、。！？!?,.]|$)"
)
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


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


def _number(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text.translate(_FULLWIDTH))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return CARD
    if 10 <= len(digits) <= 15:
        return PHONE
    return text


def find_names(text: str) -> list[str]:
    """Names a learner gives about themself; the tutor tends to repeat them ("Nice to meet you, Hanako!"),
    so a turn's redaction removes them from every field, not just the one they were given in."""
    names = [m.group(3) for m in _NAME_EN_RE.finditer(text or "")]
    names += [m.group(3) for m in _NAME_JA_RE.finditer(text or "")]
    out: list[str] = []
    for name in names:
        out.append(name)
        out.extend(part for part in name.split() if len(part) > 1)
    return sorted({n for n in out if n and n != NAME}, key=len, reverse=True)


def _known_names(text: str, names: tuple[str, ...]) -> str:
    for name in names:
        if name.isascii():
            text = re.sub(rf"(?i)(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", NAME, text)
        else:
            text = text.replace(name, NAME)
    return text


def redact_text(text: str, names: tuple[str, ...] = ()) -> str:
    if not text:
        return text
    text = _EMAIL_RE.sub(EMAIL, text)
    text = _NUMBER_RE.sub(_number, text)
    text = _known_names(text, names)
    text = _NAME_EN_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{NAME}", text)
    text = _NAME_JA_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{NAME}", text)
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
    except ValueError:
        return redact_text(text, names)
    return json.dumps(_walk(value, names), ensure_ascii=False, separators=(",", ":"))
