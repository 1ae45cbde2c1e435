"""Hand-written JSON Lines files (evaluation sets): one object a line, blank lines and # comments skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[dict], T], what: str = "line") -> list[T]:
    """`parse(row)` for every line; a bad line raises ValueError naming the file, the line and why."""
    out: list[T] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a {what} ({exc})") from None
    return out
