"""Retrieval evaluation: recall@1, recall@5 and MRR, overall and per query kind.

Query file: JSON lines {"query": …, "kind": …, "expect": …} where expect is
{"id": …}, {"type": …, "text": <written form>} or {"type": "sentence", "contains": …}.
Optional per-query "types"/"levels"/"learner_level" are passed as filters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.jsonl import read_jsonl


@dataclass
class EvalQuery:
    query: str
    kind: str
    expect: dict
    types: list[str]
    levels: list[str]
    learner_level: str


def read_queries(path: Path) -> list[EvalQuery]:
    """The labelled retrieval queries of a JSONL file."""
    return read_jsonl(path, lambda row: EvalQuery(row["query"], row.get("kind", "other"), row["expect"],
                                                  row.get("types", []), row.get("levels", []),
                                                  row.get("learner_level", "")), "query line")


def matches(expect: dict, item: dict) -> bool:
    """True when a search result is the item the query expects."""
    if "id" in expect:
        return item.get("id") == expect["id"]
    if expect.get("type") and item.get("type") != expect["type"]:
        return False
    if "text" in expect:
        return item.get("written") == expect["text"]
    if "contains" in expect:
        return expect["contains"] in item.get("written", "")
    return False


def evaluate(queries: Iterable[EvalQuery], search: Callable[[EvalQuery], list[dict]], depth: int = 10) -> dict:
    """`search` returns hit items (dicts with id/type/written), best first."""
    per_kind: dict[str, list[float]] = defaultdict(list)
    rows = []
    for q in queries:
        items = search(q)[:depth]
        rank = next((i + 1 for i, it in enumerate(items) if matches(q.expect, it)), 0)
        per_kind[q.kind].append(rank)
        rows.append({"query": q.query, "kind": q.kind, "rank": rank, "top": [it.get("id") for it in items[:3]]})

    def summary(ranks: list[float]) -> dict:
        n = len(ranks) or 1
        return {"n": len(ranks), "recall_at_1": round(sum(r == 1 for r in ranks) / n, 4),
                "recall_at_5": round(sum(0 < r <= 5 for r in ranks) / n, 4),
                "mrr": round(sum(1 / r for r in ranks if r) / n, 4)}

    everything = [r for ranks in per_kind.values() for r in ranks]
    out = summary(everything)
    out["by_kind"] = {kind: summary(ranks) for kind, ranks in sorted(per_kind.items())}
    out["misses"] = [r for r in rows if r["rank"] != 1]
    return out
