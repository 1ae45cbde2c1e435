"""Opaque page tokens: base64url JSON bound to the filters they were made for."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


class BadPageToken(ValueError):
    pass


def _fingerprint(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:12]


def encode(filters: dict[str, Any], cursor: dict[str, Any]) -> str:
    """An opaque page token: the cursor plus a fingerprint of the filters it belongs to."""
    raw = json.dumps({"f": _fingerprint(filters), **cursor}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, filters: dict[str, Any]) -> dict[str, Any]:
    """The cursor of a page token; ValueError when it is malformed or was issued for other filters."""
    if not token:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise BadPageToken("page_token is not a token this service issued") from None
    if not isinstance(data, dict) or data.pop("f", None) != _fingerprint(filters):
        raise BadPageToken("page_token belongs to a different query; start again without it")
    return data


def page_size(requested: int) -> int:
    """The page size to use (0 means 20); ValueError outside 1..100."""
    if requested < 0 or requested > 100:
        raise ValueError(f"page_size must be 1..100 (0 means 20), got {requested}")
    return requested or 20
