"""Snapshot contents: build the files from (items, vectors), and load them back into memory.

Files (all listed with sha256 in the manifest):
  index.faiss   IndexIDMap2 over IndexFlatIP (vectors are normalised: inner product = cosine);
                the int64 id of an item is its position in ids.npy
  ids.npy       item ids (unicode array), position = FAISS id
  items.json    the fields an answer needs, one dict per position
  lexical.npz / lexical.json   BM25 postings and exact-match maps (see lexical.py)
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from services.indexer.store import Manifest, SnapshotError, SnapshotStore
from services.retrieval.lexical import LexicalIndex

# What the service keeps of an item: enough to answer, nothing else (no embedding, no bookkeeping).
ANSWER_FIELDS = ("id", "type", "level", "written", "reading", "romaji", "meanings", "reading_source", "pos",
                 "kanji", "onyomi", "kunyomi", "strokes", "grade", "freq", "translation", "script", "words",
                 "updated_at")
LEVELS = ("N5", "N4", "N3", "N2", "N1")
TYPES = ("word", "kanji", "sentence", "kana")


def answer_fields(item: Mapping) -> dict:
    out = {k: item[k] for k in ANSWER_FIELDS if item.get(k) not in (None, "", [])}
    for k in ("strokes", "grade", "freq"):
        if k in out:
            out[k] = int(out[k])
    return out


def build_index(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.arange(len(vectors), dtype=np.int64))
    return index


def build_files(items: Sequence[Mapping], vectors: np.ndarray) -> dict[str, bytes]:
    """Snapshot files for items (in position order) and their (n, dim) float32 vectors."""
    if len(items) != len(vectors):
        raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
    records = [answer_fields(it) for it in items]
    ids_buf = io.BytesIO()
    np.save(ids_buf, np.array([r["id"] for r in records], dtype=str), allow_pickle=False)
    files = {
        "index.faiss": bytes(faiss.serialize_index(build_index(vectors))),
        "ids.npy": ids_buf.getvalue(),
        "items.json": json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode(),
    }
    files.update(LexicalIndex.build(records).to_files())
    return files


@dataclass
class Snapshot:
    """One loaded, verified snapshot: everything a search needs, in memory, read-only."""

    manifest: Manifest
    index: faiss.Index
    ids: np.ndarray
    items: list[dict]
    lexical: LexicalIndex
    store_uri: str = ""
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    # Precomputed filter masks (position -> bool) and the word -> example sentences links.
    type_mask: dict[str, np.ndarray] = field(default_factory=dict)
    level_mask: dict[str, np.ndarray] = field(default_factory=dict)
    level_rank: np.ndarray | None = None
    sentences_for_word: dict[int, list[int]] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def count(self) -> int:
        return len(self.items)

    def vector(self, pos: int) -> np.ndarray:
        return self.index.reconstruct(int(pos))

    def all_vectors(self) -> np.ndarray:
        n = self.index.ntotal
        if n == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.arange(len(self.items), dtype=np.int64)) if n == len(
            self.items) else np.stack([self.vector(p) for p in range(len(self.items))])


def load_files(manifest: Manifest, files: Mapping[str, bytes], store_uri: str = "") -> Snapshot:
    started = time.perf_counter()
    for name in ("index.faiss", "ids.npy", "items.json", "lexical.npz", "lexical.json"):
        if name not in files:
            raise SnapshotError(f"snapshot {manifest.version} lacks {name}")
    index = faiss.deserialize_index(np.frombuffer(files["index.faiss"], dtype=np.uint8))
    ids = np.load(io.BytesIO(files["ids.npy"]), allow_pickle=False)
    items = json.loads(files["items.json"])
    if index.d != manifest.dim:
        raise SnapshotError(f"snapshot {manifest.version}: index dimension {index.d} != manifest {manifest.dim}")
    if not (index.ntotal == len(ids) == len(items) == manifest.count):
        raise SnapshotError(f"snapshot {manifest.version}: counts disagree (index {index.ntotal}, "
                            f"ids {len(ids)}, items {len(items)}, manifest {manifest.count})")
    lexical = LexicalIndex.from_files(files["lexical.npz"], files["lexical.json"])
    snap = Snapshot(manifest=manifest, index=index, ids=ids, items=items, lexical=lexical, store_uri=store_uri)
    types = np.array([it.get("type", "") for it in items])
    levels = np.array([it.get("level") or "" for it in items])
    snap.type_mask = {t: types == t for t in TYPES}
    snap.level_mask = {lv: levels == lv for lv in LEVELS}
    rank = {lv: 5 - i for i, lv in enumerate(LEVELS)}  # N5 → 5 … N1 → 1, none → 0
    snap.level_rank = np.array([rank.get(lv, 0) for lv in levels], dtype=np.float32)
    snap.position = {it["id"]: p for p, it in enumerate(items)}
    links: dict[int, list[int]] = {}
    for p, it in enumerate(items):
        if it.get("type") == "sentence":
            for word_id in it.get("words") or ():
                w = snap.position.get(word_id)
                if w is not None:
                    links.setdefault(w, []).append(p)
    snap.sentences_for_word = links
    snap.load_seconds = time.perf_counter() - started
    return snap


def load_version(store: SnapshotStore, version: str) -> Snapshot:
    manifest, files = store.read_verified(version)
    return load_files(manifest, files, store.uri)
