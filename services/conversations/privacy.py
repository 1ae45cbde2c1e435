"""Learner privacy: keyed pseudonyms and redaction of a whole turn."""

from __future__ import annotations

import hashlib
import hmac

from kotoba.v1 import conversations_pb2 as pb
from services.common.redact import find_names, redact_json, redact_text

PSEUDONYM_PREFIX = "p_"


def pseudonym(key: bytes, user_id: str) -> str:
    """Stable keyed hash: the same learner always maps to the same pseudonym, and without
    the key nobody can check a guessed id against it (unlike a plain hash)."""
    return PSEUDONYM_PREFIX + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def is_pseudonym(user_id: str) -> bool:
    return user_id.startswith(PSEUDONYM_PREFIX) and len(user_id) == len(PSEUDONYM_PREFIX) + 32


def redacted_turn(turn: pb.Turn) -> pb.Turn:
    clean = pb.Turn()
    clean.CopyFrom(turn)
    names = tuple(find_names(turn.question) + find_names(turn.answer)
                  + [n for c in turn.tool_calls for n in find_names(c.args_json)])
    clean.question = redact_text(turn.question, names)
    clean.answer = redact_text(turn.answer, names)
    for call in clean.tool_calls:
        call.args_json = redact_json(call.args_json, names)
        call.result_json = redact_json(call.result_json, names)
        call.error = redact_text(call.error, names)
    return clean
