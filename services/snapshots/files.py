"""Snapshot contents: build the files from (items, vectors), and load them back into memory.

Files (all listed with sha256 in the manifest):
  index.faiss   IndexIDMap2 over IndexFlatIP (vectors are normalised: inner product = cosine);
                the int64 id of an item is its position in ids.npy
  ids.npy       item ids (unicode array), position = FAISS id
  items.jsonl   the fields an answer needs, one JSON line per position (parsed on demand)
  columns.npz   per-position type/level/script codes, line offsets, word → sentence links
  lexical.npz / lexical.json   BM25 postings and exact-match maps (see lexical.py)
"""

from __future__ import annotations

import gc
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from services.snapshots.lexical import LexicalIndex
from services.snapshots.store import Manifest, SnapshotError, SnapshotStore

# What the service keeps of an item: enough to answer, nothing else (no embedding, no bookkeeping).
ANSWER_FIELDS = ("id", "type", "level", "written", "reading", "romaji", "meanings", "reading_source", "pos",
                 "kanji", "onyomi", "kunyomi", "strokes", "grade", "freq", "translation", "script", "words",
                 "updated_at")
LEVELS = ("N5", "N4", "N3", "N2", "N1")
TYPES = ("word", "kanji", "sentence", "kana")
SCRIPTS = ("hiragana", "katakana")


def answer_fields(item: Mapping) -> dict:
    """The item fields an answer may use, stored in the snapshot beside the vectors."""
    out = {k: item[k] for k in ANSWER_FIELDS if item.get(k) not in (None, "", [])}
    for k in ("strokes", "grade", "freq"):
        if k in out:
            out[k] = int(out[k])
    return out


def build_index(vectors: np.ndarray) -> faiss.Index:
    """An exact inner-product FAISS index over the vectors, ids being row numbers."""
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
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in records]
    files = {
        "index.faiss": bytes(faiss.serialize_index(build_index(vectors))),
        "ids.npy": ids_buf.getvalue(),
        "items.jsonl": b"\n".join(lines) + b"\n",
        "columns.npz": _columns(records, lines),
    }
    files.update(LexicalIndex.build(records).to_files())
    return files


def _columns(records: Sequence[Mapping], lines: Sequence[bytes]) -> bytes:
    """Per-position arrays the search needs without parsing items: type, level, script, offsets, links."""
    n = len(records)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(line) + 1 for line in lines], out=offsets[1:])
    position = {r["id"]: p for p, r in enumerate(records)}
    links: list[list[int]] = [[] for _ in range(n)]
    for p, r in enumerate(records):
        if r.get("type") == "sentence":
            for word_id in r.get("words") or ():
                w = position.get(word_id)
                if w is not None:
                    links[w].append(p)
    link_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(x) for x in links], out=link_ptr[1:])
    sentence_text = "\x00".join(r.get("written", "") if r.get("type") == "sentence" else "" for r in records)
    text_starts = np.zeros(n, dtype=np.int64)
    pos = 0
    for p, r in enumerate(records):
        text_starts[p] = pos
        pos += len(r.get("written", "") if r.get("type") == "sentence" else "") + 1
    buf = io.BytesIO()
    np.savez(buf, type=np.array([TYPES.index(r["type"]) if r.get("type") in TYPES else -1 for r in records],
                                dtype=np.int8),
             level=np.array([LEVELS.index(r["level"]) if r.get("level") in LEVELS else -1 for r in records],
                            dtype=np.int8),
             script=np.array([SCRIPTS.index(r["script"]) if r.get("script") in SCRIPTS else -1 for r in records],
                             dtype=np.int8),
             offsets=offsets, link_ptr=link_ptr,
             links=np.array([x for row in links for x in row], dtype=np.int32),
             sentence_text=np.array(sentence_text), text_starts=text_starts)
    return buf.getvalue()


class ItemTable:
    """Items by position, parsed from items.jsonl only when asked for (loading stays fast)."""

    def __init__(self, blob: bytes, offsets: np.ndarray) -> None:
        self._blob = blob
        self._offsets = offsets
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, pos: int) -> dict:
        pos = int(pos)
        item = self._cache.get(pos)
        if item is None:
            if not 0 <= pos < len(self):
                raise IndexError(pos)
            item = json.loads(self._blob[self._offsets[pos]:self._offsets[pos + 1] - 1])
            if len(self._cache) < 200_000:
                self._cache[pos] = item
        return item

    def __iter__(self):
        return (self[p] for p in range(len(self)))


@dataclass
class Snapshot:
    """One loaded, verified snapshot: everything a search needs, in memory, read-only."""

    manifest: Manifest
    index: faiss.Index
    ids: np.ndarray
    items: ItemTable
    lexical: LexicalIndex
    store_uri: str = ""
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    # Precomputed filter masks (position -> bool) and the word -> example sentences links.
    type_mask: dict[str, np.ndarray] = field(default_factory=dict)
    level_mask: dict[str, np.ndarray] = field(default_factory=dict)
    script_mask: dict[str, np.ndarray] = field(default_factory=dict)
    level_rank: np.ndarray | None = None
    link_ptr: np.ndarray | None = None
    links: np.ndarray | None = None
    sentence_text: str = ""
    text_starts: np.ndarray | None = None
    position: dict[str, int] = field(default_factory=dict)

    type_codes: np.ndarray | None = None

    def type_of(self, pos: int) -> str:
        """The item type at a position."""
        code = int(self.type_codes[pos])
        return TYPES[code] if code >= 0 else ""

    def sentences_for_word(self, pos: int) -> np.ndarray:
        """The positions of the sentences linked to the word at a position."""
        return self.links[self.link_ptr[pos]:self.link_ptr[pos + 1]]

    def sentences_containing(self, text: str) -> set[int]:
        """Positions of sentences whose Japanese text contains `text` (one C-speed scan, no item parsing)."""
        if not text:
            return set()
        out: set[int] = set()
        start = self.sentence_text.find(text)
        while start != -1:
            out.add(int(np.searchsorted(self.text_starts, start, side="right") - 1))
            start = self.sentence_text.find(text, start + 1)
        return out

    @property
    def version(self) -> str:
        """The snapshot's version name."""
        return self.manifest.version

    @property
    def count(self) -> int:
        """The number of items in the snapshot."""
        return len(self.items)

    def vector(self, pos: int) -> np.ndarray:
        """The stored vector of the item at a position."""
        return self.index.reconstruct(int(pos))

    def all_vectors(self) -> np.ndarray:
        """Every stored vector, one row per item."""
        n = self.index.ntotal
        if n == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.arange(len(self.items), dtype=np.int64)) if n == len(
            self.items) else np.stack([self.vector(p) for p in range(len(self.items))])


def load_files(manifest: Manifest, files: Mapping[str, bytes], store_uri: str = "") -> Snapshot:
    """A loaded snapshot from its files (cyclic garbage collection paused while it parses)."""
    # Parsing allocates ~10^5 small objects; cyclic GC passes over a large heap would triple the load time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_files(manifest, files, store_uri)
    finally:
        if enabled:
            gc.enable()


def _load_files(manifest: Manifest, files: Mapping[str, bytes], store_uri: str = "") -> Snapshot:
    started = time.perf_counter()
    for name in ("index.faiss", "ids.npy", "items.jsonl", "columns.npz", "lexical.npz", "lexical.json"):
        if name not in files:
            raise SnapshotError(f"snapshot {manifest.version} lacks {name}")
    index = faiss.deserialize_index(np.frombuffer(files["index.faiss"], dtype=np.uint8))
    ids = np.load(io.BytesIO(files["ids.npy"]), allow_pickle=False)
    with np.load(io.BytesIO(files["columns.npz"]), allow_pickle=False) as data:
        cols = {k: data[k] for k in data.files}
    items = ItemTable(files["items.jsonl"], cols["offsets"])
    if index.d != manifest.dim:
        raise SnapshotError(f"snapshot {manifest.version}: index dimension {index.d} != manifest {manifest.dim}")
    if not (index.ntotal == len(ids) == len(items) == len(cols["type"]) == manifest.count):
        raise SnapshotError(f"snapshot {manifest.version}: counts disagree (index {index.ntotal}, "
                            f"ids {len(ids)}, items {len(items)}, manifest {manifest.count})")
    lexical = LexicalIndex.from_files(files["lexical.npz"], files["lexical.json"])
    snap = Snapshot(manifest=manifest, index=index, ids=ids, items=items, lexical=lexical, store_uri=store_uri)
    snap.type_codes = cols["type"]
    snap.type_mask = {t: cols["type"] == i for i, t in enumerate(TYPES)}
    snap.level_mask = {lv: cols["level"] == i for i, lv in enumerate(LEVELS)}
    snap.script_mask = {sc: cols["script"] == i for i, sc in enumerate(SCRIPTS)}
    # N5 → 5 … N1 → 1, none → 0
    snap.level_rank = np.where(cols["level"] >= 0, 5 - cols["level"].astype(np.float32), 0).astype(np.float32)
    snap.link_ptr, snap.links = cols["link_ptr"], cols["links"]
    snap.sentence_text, snap.text_starts = str(cols["sentence_text"]), cols["text_starts"]
    snap.position = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    snap.load_seconds = time.perf_counter() - started
    return snap


def load_version(store: SnapshotStore, version: str) -> Snapshot:
    """A snapshot version read from the store, checksums verified, then loaded."""
    manifest, files = store.read_verified(version)
    return load_files(manifest, files, store.uri)
