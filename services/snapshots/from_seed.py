"""Build a snapshot straight from the seed files and the shipped vectors (no DynamoDB).

For evaluation, benchmarks and tests over the full corpus; `make run` goes
through DynamoDB (`kotoba index build`) like production.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.embeddings.passages import passage_text
from services.embeddings.seed import load_seed_embeddings, seed_embeddings_model
from services.snapshots.files import Snapshot, build_files, load_files
from services.snapshots.store import Manifest, now_rfc3339


def seed_items_and_vectors(seed_dir: Path, embedder=None) -> tuple[list[dict], np.ndarray, str]:
    """The seed items in id order and their vectors (from the seed file, else embedded now)."""
    from services.seed.reader import iter_items

    items = sorted(iter_items(seed_dir), key=lambda it: it["id"])
    model = seed_embeddings_model(seed_dir)
    vectors = load_seed_embeddings(seed_dir, model, items=items) if model else {}
    missing = [it for it in items if it["id"] not in vectors]
    if missing:
        if embedder is None:
            raise RuntimeError(f"{len(missing)} seed items have no shipped vector; pass an embedder")
        out = embedder.embed_passages([passage_text(it) for it in missing])
        vectors.update({it["id"]: v for it, v in zip(missing, out, strict=True)})
        model = embedder.model
    return items, np.stack([vectors[it["id"]] for it in items]).astype(np.float32), model or ""


def seed_snapshot(seed_dir: Path, embedder=None) -> tuple[Snapshot, dict[str, bytes]]:
    """A snapshot built from the seed data alone, for a first start with an empty store."""
    items, matrix, model = seed_items_and_vectors(seed_dir, embedder)
    files = build_files(items, matrix)
    manifest = Manifest(version="seed", model=model, dim=int(matrix.shape[1]), count=len(items),
                        created=now_rfc3339(), files={})
    return load_files(manifest, files), files
