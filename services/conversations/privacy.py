"""Learner privacy: keyed pseudonyms and redaction of a whole turn."""

from __future__ import annotations

import hashlib
import hmac
import time

from kotoba.v1 import conversations_pb2 as pb
from services.common.redact import MASKED, RedactionTimeout, find_names, redact_json, redact_text_bounded

# Whole-turn budget for redaction; linear patterns need milliseconds (bench/redact.py).
REDACT_DEADLINE_S = 1.0

PSEUDONYM_PREFIX = "p_"


def pseudonym(key: bytes, user_id: str) -> str:
    """Stable keyed hash: the same learner always maps to the same pseudonym, and without
    the key nobody can check a guessed id against it (unlike a plain hash)."""
    return PSEUDONYM_PREFIX + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def is_pseudonym(user_id: str) -> bool:
    """True for an id that is a pseudonym (the prefix and a 32-hex digest), not a learner id."""
    return user_id.startswith(PSEUDONYM_PREFIX) and len(user_id) == len(PSEUDONYM_PREFIX) + 32


def redacted_turn(turn: pb.Turn, deadline: float | None = None) -> pb.Turn:
    """The turn with PII redacted; a field whose patterns ran past their limit (or the deadline,
    time.monotonic()) is masked whole."""
    clean = pb.Turn()
    clean.CopyFrom(turn)
    try:
        names = tuple(find_names(turn.question) + find_names(turn.answer)
                      + [n for c in turn.tool_calls for n in find_names(c.args_json)])
    except RedactionTimeout:
        return masked_turn(turn)
    clean.question = redact_text_bounded(turn.question, names, deadline)
    clean.answer = redact_text_bounded(turn.answer, names, deadline)
    for call in clean.tool_calls:
        call.args_json = _json_bounded(call.args_json, names, deadline)
        call.result_json = _json_bounded(call.result_json, names, deadline)
        call.error = redact_text_bounded(call.error, names, deadline)
    return clean


def _json_bounded(text: str, names: tuple[str, ...], deadline: float | None) -> str:
    if not text or deadline is not None and time.monotonic() > deadline:
        return MASKED if text else text
    try:
        return redact_json(text, names)
    except RedactionTimeout:
        return MASKED


def masked_turn(turn: pb.Turn) -> pb.Turn:
    """Every free-text field masked: what is stored when redaction could not finish in time."""
    clean = pb.Turn()
    clean.CopyFrom(turn)
    clean.question = MASKED if turn.question else ""
    clean.answer = MASKED if turn.answer else ""
    for call in clean.tool_calls:
        call.args_json = MASKED if call.args_json else ""
        call.result_json = MASKED if call.result_json else ""
        call.error = MASKED if call.error else ""
    return clean
