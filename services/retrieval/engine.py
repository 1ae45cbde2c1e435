"""Hybrid search over one snapshot.

Score of an item = exact-match bonus (decisive) + weighted reciprocal-rank
fusion of BM25 (Japanese field, English field) and vector ranks + small
priors (intent type, learner level / easier level as tie-breakers).

Why not plain fusion: an exact match on written form, reading or romaji must
win outright (fusion lets near-misses outvote it), and the query's intent
(kanji / sentence / reading / word) filters or boosts item types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from services.retrieval.intent import ParsedQuery, parse_query
from services.snapshots.files import LEVELS, Snapshot
from services.snapshots.text import hira, japanese_tokens, meaning_key, normalise, romaji_key

RRF_K = 60
CANDIDATES = 50

# Exact-match bonuses: larger than anything fusion can add (max ≈ 0.05), ordered by how sure a match is.
EXACT = {"written": 3.0, "reading": 2.6, "romaji": 2.5, "romaji_loose": 2.3, "meaning_first": 2.0,
         "meaning": 1.95, "translation": 2.0}
WEIGHTS = {"ja": 1.0, "en": 1.0, "vector": 1.0}
# With no intent, a bare meaning is most often asked about a word, then a kanji.
TYPE_PRIOR = {"word": 0.006, "kanji": 0.003, "kana": 0.002, "sentence": 0.0}
INTENT_TYPES = {"kanji": ("kanji",), "sentence": ("sentence",), "kana": ("kana",),
                "reading": ("word", "kanji", "kana"), "word": ("word", "kana")}
HARD_FILTER = {"kanji", "sentence", "kana"}
LEVEL_WEIGHT_EXACT = 0.02  # among exact matches, easier/learner-level items first
LEVEL_WEIGHT = 0.0001


@dataclass
class Hit:
    pos: int
    score: float
    matched_by: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """The vector-free part of a search: parsed query, candidate pool, exact and lexical contributions."""

    pq: ParsedQuery
    pool: np.ndarray
    exact: dict[int, tuple[float, str]]
    intent_types: tuple[str, ...]
    learner_level: str
    fused: dict[int, float] = field(default_factory=dict)
    matched: dict[int, set[str]] = field(default_factory=dict)

    def merge(self, contrib: dict[int, float], label: str) -> None:
        """Add one ranker's reciprocal-rank scores to the fused scores, noting what matched each item."""
        for p, s in contrib.items():
            self.fused[p] = self.fused.get(p, 0.0) + s
            self.matched.setdefault(p, set()).add(label)


@dataclass
class SearchResult:
    hits: list[Hit]
    intent: str
    version: str


def _rrf(order: Sequence[int], weight: float) -> dict[int, float]:
    return {int(p): weight / (RRF_K + r + 1) for r, p in enumerate(order)}


def _top(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    scores = np.where(allowed & (scores > 0), scores, 0)
    nonzero = int((scores > 0).sum())
    if nonzero == 0:
        return np.zeros(0, dtype=np.int64)
    n = min(n, nonzero)
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.argsort(-scores[part], kind="stable")]


class SearchEngine:
    """Stateless over one snapshot; `embed_query` maps text → (dim,) float32 normalised vector."""

    def __init__(self, snapshot: Snapshot, embed_query: Callable[[str], np.ndarray]) -> None:
        self.snap = snapshot
        self.embed_query = embed_query
        self._selectors: dict[bytes, faiss.IDSelector] = {}

    # -- filters
    def _allowed(self, types: Sequence[str], levels: Sequence[str]) -> np.ndarray:
        snap = self.snap
        allowed = np.ones(snap.count, dtype=bool)
        if types:
            allowed &= np.logical_or.reduce([snap.type_mask[t] for t in types])
        if levels:
            allowed &= np.logical_or.reduce([snap.level_mask[lv] for lv in levels])
        return allowed

    def _vector_top(self, vector: np.ndarray | None, allowed: np.ndarray, n: int) -> list[int]:
        if vector is None or self.snap.count == 0:
            return []
        params = None
        if not allowed.all():
            # faiss checks the selector against the external ids, which are positions here.
            bitmap = np.packbits(allowed, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            params = faiss.SearchParameters(sel=sel)
            params._keep = (bitmap, sel)  # the selector reads the bitmap's memory during search
        k = min(n, int(allowed.sum()))
        if k == 0:
            return []
        _, ids = self.snap.index.search(vector.reshape(1, -1), k, params=params)
        return [int(i) for i in ids[0] if i >= 0]

    # -- pieces
    def _exact(self, pq: ParsedQuery) -> dict[int, tuple[float, str]]:
        exact = self.snap.lexical.exact
        found: dict[int, tuple[float, str]] = {}

        def add(kind: str, key: str) -> None:
            for pos in exact[kind].get(key, ()):
                if found.get(pos, (0.0, ""))[0] < EXACT[kind]:
                    found[pos] = (EXACT[kind], kind)

        for span in pq.ja_spans:
            add("written", normalise(span))
            add("reading", hira(normalise(span)))
        if pq.latin:
            add("romaji", pq.latin.replace(" ", "").replace("-", ""))
            key = meaning_key(pq.latin)
            if key:
                add("meaning_first", key)
                add("meaning", key)
                add("translation", key)
            # Loose romaji ("moon" folds to "mon") only when the Latin text is not an English meaning.
            if not any(kind.startswith("meaning") for _, kind in found.values()):
                add("romaji_loose", romaji_key(pq.latin))
        if not found and pq.text and not pq.ja_spans and not pq.latin:
            add("written", pq.text)
        return found

    def _sentences_with(self, pq: ParsedQuery, exact: dict[int, tuple[float, str]]) -> set[int]:
        """Sentences that contain the asked-about word: by token, by substring, or by the word's links."""
        snap = self.snap
        out: set[int] = set()
        for span in pq.ja_spans:
            for token in {hira(normalise(span)), *japanese_tokens(span)} if len(japanese_tokens(span)) == 1 \
                    else {hira(normalise(span))}:
                out.update(int(p) for p in snap.lexical.ja.docs_for(token))
        words = [(bonus + LEVEL_WEIGHT_EXACT * float(snap.level_rank[pos]), pos)
                 for pos, (bonus, kind) in exact.items()
                 if snap.type_of(pos) == "word" and kind != "translation"]
        if words:
            # The word the learner most likely means (best match, then easiest), not every homonym.
            best = max(words)[0]
            for score, pos in words:
                if score >= best - 1e-9:
                    out.update(int(p) for p in snap.sentences_for_word(pos))
        for span in pq.ja_spans:
            out.update(snap.sentences_containing(span))
        return out

    # -- search: `prepare` (lexical + exact, no vector) can run while the query is being embedded
    def search(self, query: str, top_k: int = 5, types: Sequence[str] = (), levels: Sequence[str] = (),
               learner_level: str = "", parsed: ParsedQuery | None = None,
               vector: np.ndarray | None = None, use_vectors: bool = True) -> SearchResult:
        """The top items for a query: exact, lexical and vector matches fused, filtered and re-ranked."""
        prepared = self.prepare(query, types, levels, learner_level, parsed)
        if vector is None and use_vectors:
            vector = self.embed_query(prepared.pq.content)
        return self.finish(prepared, vector, top_k)

    def prepare(self, query: str, types: Sequence[str] = (), levels: Sequence[str] = (),
                learner_level: str = "", parsed: ParsedQuery | None = None) -> Prepared:
        """Everything but the vector search (exact and lexical matches), so it can run while the query is embedded."""
        snap = self.snap
        pq = parsed or parse_query(query)
        allowed = self._allowed(types, levels)
        intent_types = INTENT_TYPES.get(pq.intent, ())
        if pq.intent == "kana" and pq.kana_script:
            intent_allowed = allowed & snap.type_mask["kana"] & snap.script_mask[pq.kana_script]
        else:
            intent_allowed = allowed & np.logical_or.reduce(
                [snap.type_mask[t] for t in intent_types]) if intent_types else allowed
        hard = pq.intent in HARD_FILTER and intent_allowed.any()
        pool = intent_allowed if hard else allowed

        all_exact = self._exact(pq)
        exact = {p: v for p, v in all_exact.items() if pool[p]}
        if pq.intent == "sentence":
            with_word = self._sentences_with(pq, all_exact)
            required = np.zeros(snap.count, dtype=bool)
            required[list(with_word)] = True
            if (required & pool).any():
                pool = pool & required
            exact = {p: v for p, v in exact.items() if pool[p]}

        prepared = Prepared(pq=pq, pool=pool, exact=exact, intent_types=intent_types, learner_level=learner_level)
        ja_tokens = [t for s in pq.ja_spans for t in japanese_tokens(s)] + [hira(normalise(s)) for s in pq.ja_spans]
        if ja_tokens:
            scores = snap.lexical.ja.scores(ja_tokens, snap.count)
            if scores is not None:
                prepared.merge(_rrf(_top(scores, pool, CANDIDATES), WEIGHTS["ja"]), "lexical")
        en_tokens = list(pq.latin_tokens)
        if pq.latin:
            en_tokens.append(romaji_key(pq.latin))
        if en_tokens:
            scores = snap.lexical.en.scores(en_tokens, snap.count)
            if scores is not None:
                prepared.merge(_rrf(_top(scores, pool, CANDIDATES), WEIGHTS["en"]), "lexical")
        return prepared

    def finish(self, prepared: Prepared, vector: np.ndarray | None, top_k: int = 5) -> SearchResult:
        """Add the vector matches to prepared scores, filter, re-rank and cut to top_k."""
        snap, pq, pool, exact = self.snap, prepared.pq, prepared.pool, prepared.exact
        fused, matched = dict(prepared.fused), {p: set(m) for p, m in prepared.matched.items()}
        for p, s in _rrf(self._vector_top(vector, pool, CANDIDATES), WEIGHTS["vector"]).items():
            fused[p] = fused.get(p, 0.0) + s
            matched.setdefault(p, set()).add("vector")

        learner_level = prepared.learner_level
        learner_rank = 5 - LEVELS.index(learner_level) if learner_level in LEVELS else 0
        for pos, (bonus, _) in exact.items():
            fused[pos] = fused.get(pos, 0.0) + bonus
            matched.setdefault(pos, set()).add("exact")
        hits: list[Hit] = []
        for pos, score in fused.items():
            if not pool[pos]:
                continue
            itype = snap.type_of(pos)
            score += TYPE_PRIOR.get(itype, 0.0) if pq.intent == "any" else (
                0.01 if itype in prepared.intent_types else 0.0)
            if pq.intent == "kana" or (len(pq.ja_spans) == 1 and len(pq.ja_spans[0]) == 1
                                       and itype == "kana" and pq.intent in ("any", "reading")):
                score += 0.05 if itype == "kana" else 0.0
            rank = float(snap.level_rank[pos])
            # Learner level breaks ties: at or below the learner's level first, then easier first.
            tie = rank + (2.0 if learner_rank and rank >= learner_rank else 0.0)
            score += tie * (LEVEL_WEIGHT_EXACT if pos in exact else LEVEL_WEIGHT)
            hits.append(Hit(pos, float(score), sorted(matched.get(pos, ()), key=("exact", "lexical",
                                                                                  "vector").index)))
        hits.sort(key=lambda h: (-h.score, h.pos))
        return SearchResult(hits=hits[:top_k], intent=pq.public_intent, version=snap.version)
