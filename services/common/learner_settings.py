"""The learner's `settings` row as the services read it: what a field the row leaves out (or leaves empty)
means. Tools builds the learner's context from it; the gateway reads the language and level from the same
row when a session opens, before that context has arrived (docs/protocol.md, "Opening a session")."""

from __future__ import annotations

from typing import Any

DEFAULT_SETTINGS: dict[str, str] = {"baseLevel": "N5", "language": "en", "timezone": "UTC", "displayName": ""}


def with_defaults(row: dict[str, Any]) -> dict[str, Any]:
    """The row's plain values over the defaults; empty values count as unset."""
    return {**DEFAULT_SETTINGS, **{k: v for k, v in row.items() if v not in (None, "")}}
