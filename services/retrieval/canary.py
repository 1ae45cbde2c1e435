"""Canary query: a snapshot must find one of its own items by written form before it is served."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from services.retrieval.engine import SearchEngine
from services.snapshots.files import Snapshot


def canary_check(snap: Snapshot, embed_query: Callable[[str], np.ndarray]) -> dict:
    """Search the snapshot for one of its own items: a new snapshot must find it before it is served."""
    if snap.count == 0:
        return {"ok": True, "query": "", "note": "empty snapshot"}
    # A deterministic, ordinary item: the first word (else the first item) in id order.
    words = np.flatnonzero(snap.type_mask["word"])
    pos = int(words[0]) if len(words) else 0
    item = snap.items[pos]
    try:
        vector = embed_query(item["written"])
    except Exception as exc:  # noqa: BLE001 - an embedder outage is not the snapshot's fault
        vector, note = None, f"embedder unavailable ({exc}); lexical canary only"
    else:
        note = ""
        if vector.shape[-1] != snap.index.d:
            return {"ok": False, "query": item["written"],
                    "error": f"query vectors have {vector.shape[-1]} dimensions, index has {snap.index.d}"}
    result = SearchEngine(snap, embed_query).search(item["written"], top_k=5, vector=vector,
                                                    use_vectors=vector is not None)
    ids = [snap.items[h.pos]["id"] for h in result.hits]
    out = {"ok": item["id"] in ids, "query": item["written"], "expect": item["id"], "got": ids}
    if note:
        out["note"] = note
    return out
