"""Lexical side of the index: BM25 postings over two fields, and exact-match maps.

Fields:
- `ja`: fugashi surface + lemma tokens of the written form and reading
  (sentences: of the Japanese sentence), hiragana-folded;
- `en`: English meanings / translation words (light stemming, stopwords out)
  plus a word's romaji.

Exact maps (key -> item positions): written form, reading, romaji (strict
and loose), first meaning and any meaning (whole-phrase keys, see
text.meaning_key), sentence translation.

Everything is precomputed at build time so loading is array reads plus one
JSON parse.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from services.snapshots.text import english_tokens, hira, japanese_tokens, meaning_key, normalise, romaji_key

K1, B = 1.2, 0.75
EXACT_KINDS = ("written", "reading", "romaji", "romaji_loose", "meaning_first", "meaning", "translation")


@dataclass
class Postings:
    terms: dict[str, int]
    indptr: np.ndarray  # (n_terms + 1,) int64
    docs: np.ndarray  # int32
    weights: np.ndarray  # float32, precomputed BM25 term weights

    @classmethod
    def build(cls, docs_tokens: Sequence[Sequence[str]]) -> Postings:
        """Postings of every token with its BM25 weight per document."""
        lengths = np.array([len(t) for t in docs_tokens], dtype=np.float64)
        n_docs = max(int((lengths > 0).sum()), 1)
        avgdl = float(lengths[lengths > 0].mean()) if (lengths > 0).any() else 1.0
        lists: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for doc, tokens in enumerate(docs_tokens):
            for term, tf in Counter(tokens).items():
                lists[term].append((doc, tf))
        terms = sorted(lists)
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        docs: list[int] = []
        weights: list[float] = []
        for i, term in enumerate(terms):
            postings = lists[term]
            idf = math.log(1 + (n_docs - len(postings) + 0.5) / (len(postings) + 0.5))
            for doc, tf in postings:
                norm = tf + K1 * (1 - B + B * lengths[doc] / avgdl)
                docs.append(doc)
                weights.append(idf * tf * (K1 + 1) / norm)
            indptr[i + 1] = len(docs)
        return cls({t: i for i, t in enumerate(terms)}, indptr, np.array(docs, dtype=np.int32),
                   np.array(weights, dtype=np.float32))

    def docs_for(self, term: str) -> np.ndarray:
        """The documents a term occurs in and their weights; None for an unknown term."""
        i = self.terms.get(term)
        if i is None:
            return self.docs[:0]
        return self.docs[self.indptr[i]:self.indptr[i + 1]]

    def scores(self, tokens: Iterable[str], n_docs: int) -> np.ndarray | None:
        """BM25 scores of every document for these tokens; None when no token is known."""
        out: np.ndarray | None = None
        for term in set(tokens):
            i = self.terms.get(term)
            if i is None:
                continue
            if out is None:
                out = np.zeros(n_docs, dtype=np.float32)
            sl = slice(self.indptr[i], self.indptr[i + 1])
            out[self.docs[sl]] += self.weights[sl]
        return out


def ja_doc_tokens(item: dict) -> list[str]:
    """The Japanese tokens an item is found by: its forms and their pieces."""
    tokens = list(japanese_tokens(item.get("written", "")))
    if item.get("type") != "sentence":
        for form in (item.get("written", ""), item.get("reading", "")):
            if form:
                tokens.append(hira(normalise(form)))
        if item.get("reading") and item.get("reading") != item.get("written"):
            tokens += japanese_tokens(item["reading"])
    return tokens


def en_doc_tokens(item: dict) -> list[str]:
    """The English tokens an item is found by: its meanings (a sentence's translation)."""
    if item.get("type") == "sentence":
        return english_tokens(item.get("translation") or " ".join(item.get("meanings") or []))
    tokens: list[str] = []
    for meaning in item.get("meanings") or []:
        tokens += english_tokens(meaning)
    if item.get("romaji"):
        tokens.append(romaji_key(item["romaji"]))
    return tokens


def exact_keys(item: dict) -> dict[str, list[str]]:
    """The exact-match keys of an item (written form, reading, romaji, meanings) per field."""
    keys: dict[str, list[str]] = defaultdict(list)
    written = normalise(item.get("written", ""))
    if written:
        keys["written"].append(written)
    if item.get("type") == "sentence":
        translation = item.get("translation") or " ".join(item.get("meanings") or [])
        if translation:
            keys["translation"].append(meaning_key(translation))
        return keys
    reading = hira(normalise(item.get("reading", "")))
    if reading:
        keys["reading"].append(reading)
    romaji = item.get("romaji", "")
    if romaji:
        keys["romaji"].append(normalise(romaji).replace(" ", "").replace("-", ""))
        keys["romaji_loose"].append(romaji_key(romaji))
    for n, meaning in enumerate(item.get("meanings") or []):
        for part in [meaning, *meaning.split(",")]:  # "fire, flame" also answers "flame"
            key = meaning_key(part)
            if key:
                keys["meaning_first" if n == 0 and part == meaning else "meaning"].append(key)
    return keys


@dataclass
class LexicalIndex:
    ja: Postings
    en: Postings
    exact: dict[str, dict[str, list[int]]]

    @classmethod
    def build(cls, items: Sequence[dict]) -> LexicalIndex:
        """The lexical index of a snapshot's items: Japanese and English postings and exact keys."""
        exact: dict[str, dict[str, list[int]]] = {k: defaultdict(list) for k in EXACT_KINDS}
        for pos, item in enumerate(items):
            if not item.get("type"):
                continue
            for kind, keys in exact_keys(item).items():
                for key in dict.fromkeys(keys):
                    exact[kind][key].append(pos)
        return cls(
            ja=Postings.build([ja_doc_tokens(it) if it.get("type") else [] for it in items]),
            en=Postings.build([en_doc_tokens(it) if it.get("type") else [] for it in items]),
            exact={k: dict(v) for k, v in exact.items()},
        )

    def to_files(self) -> dict[str, bytes]:
        """The index as snapshot files (arrays and a JSON part)."""
        buf = io.BytesIO()
        np.savez(buf, ja_indptr=self.ja.indptr, ja_docs=self.ja.docs, ja_weights=self.ja.weights,
                 en_indptr=self.en.indptr, en_docs=self.en.docs, en_weights=self.en.weights)
        meta = {"ja_terms": sorted(self.ja.terms, key=self.ja.terms.get),
                "en_terms": sorted(self.en.terms, key=self.en.terms.get), "exact": self.exact}
        return {"lexical.npz": buf.getvalue(),
                "lexical.json": json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()}

    @classmethod
    def from_files(cls, npz: bytes, meta_json: bytes) -> LexicalIndex:
        """The index read back from its snapshot files."""
        meta = json.loads(meta_json)
        with np.load(io.BytesIO(npz), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}

        def postings(field: str) -> Postings:
            terms = {t: i for i, t in enumerate(meta[f"{field}_terms"])}
            return Postings(terms, arrays[f"{field}_indptr"], arrays[f"{field}_docs"], arrays[f"{field}_weights"])

        return cls(ja=postings("ja"), en=postings("en"), exact=meta["exact"])
