"""Read the committed seed files (`data/seed/*.jsonl.gz`, one JSON item per line)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

# item type -> file name inside a seed directory (data/seed or data/seed/fixture)
FILES: dict[str, str] = {
    "word": "words.jsonl.gz",
    "kanji": "kanji.jsonl.gz",
    "sentence": "sentences.jsonl.gz",
    "kana": "kana.jsonl.gz",
}


def iter_items(seed_dir: Path, types: Iterable[str] | None = None) -> Iterator[dict]:
    """Yield every item of the given types (default: all four), file by file, in file order."""
    for item_type in FILES if types is None else types:
        if item_type not in FILES:
            raise ValueError(f"unknown item type {item_type!r}; expected one of {sorted(FILES)}")
        with gzip.open(Path(seed_dir) / FILES[item_type], "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
