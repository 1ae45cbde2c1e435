"""`kotoba eval answers`: learner questions through the gateway, scored by required facts.

The set (tests/eval/answers.jsonl) has one question per line:
    {"id", "category", "language", "question", "facts": [...], "user"?: learner id}
A fact is a string (case-insensitive substring), {"regex": ...}, {"any": [facts]} (one of them), or
{"dynamic": kind, ...}: a per-learner figure computed at run time from the tools service for that
learner (so it is never hard-coded): progress (entity_type, level, field), reviews_due, plan_total
(hours), learned_any (entity_type). Every fact must be found in the answer for the question to pass.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kotoba.v1 import tools_pb2, tools_pb2_grpc
from services.common.auth import auth_metadata
from services.common.config import REPO_ROOT
from services.common.grpc_server import channel
from services.common.jsonl import read_jsonl

DEFAULT_SET = REPO_ROOT / "tests" / "eval" / "answers.jsonl"


@dataclass
class Question:
    id: str
    category: str
    language: str
    question: str
    facts: list[Any]
    user: str = ""


@dataclass
class Outcome:
    id: str
    category: str
    question: str
    passed: bool
    missing: list[str] = field(default_factory=list)
    answer: str = ""
    error: str = ""
    seconds: float = 0.0


def load_set(path: Path = DEFAULT_SET) -> list[Question]:
    out = read_jsonl(path, lambda row: Question(row["id"], row["category"], row.get("language", "en"),
                                                row["question"], list(row["facts"]), row.get("user", "")),
                     "question line")
    ids = Counter(q.id for q in out)
    dupes = [i for i, c in ids.items() if c > 1]
    if dupes:
        raise ValueError(f"{path}: duplicate ids {dupes}")
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).casefold()


def fact_matches(fact: Any, answer: str) -> bool:
    if isinstance(fact, str):
        return _norm(fact) in _norm(answer)
    if isinstance(fact, dict) and "regex" in fact:
        return re.search(fact["regex"], answer, re.I | re.S) is not None
    if isinstance(fact, dict) and "any" in fact:
        return any(fact_matches(f, answer) for f in fact["any"])
    raise ValueError(f"unresolved fact {fact!r}")


def describe(fact: Any) -> str:
    if isinstance(fact, str):
        return fact
    if "regex" in fact:
        return f"/{fact['regex']}/"
    if "any" in fact:
        return "any(" + " | ".join(describe(f) for f in fact["any"]) + ")"
    return json.dumps(fact, ensure_ascii=False)


def score(answer: str, facts: list[Any]) -> list[str]:
    """The facts not found in the answer (empty: passed)."""
    return [describe(f) for f in facts if not fact_matches(f, answer)]


def _number(value: int) -> dict[str, Any]:
    # A count must stand alone (not "12" inside "120"); thousands separators allowed.
    text = f"{value:,}" if value >= 1000 else str(value)
    alts = {re.escape(str(value)), re.escape(text)}
    return {"regex": r"(?<![\d,.])(" + "|".join(sorted(alts)) + r")(?![\d])"}


class DynamicFacts:
    """Per-learner facts from the tools service, with the learner's own token."""

    def __init__(self, tools_addr: str, token: str) -> None:
        self.channel = channel(tools_addr)
        self.stub = tools_pb2_grpc.ToolsStub(self.channel)
        self.md = auth_metadata(token)

    async def close(self) -> None:
        await self.channel.close()

    async def resolve(self, fact: Any) -> Any:
        if not (isinstance(fact, dict) and "dynamic" in fact):
            if isinstance(fact, dict) and "any" in fact:
                return {"any": [await self.resolve(f) for f in fact["any"]]}
            return fact
        kind = fact["dynamic"]
        if kind == "progress":
            r = await self.stub.GetUserProgress(tools_pb2.GetUserProgressRequest(
                entity_type=fact.get("entity_type", "words"), group=fact.get("level", "all")), timeout=5,
                metadata=self.md)
            row = next(lv for lv in r.levels if lv.level == fact.get("level", "N5"))
            return _number(int(getattr(row, fact.get("field", "learned"))))
        if kind == "reviews_due":
            r = await self.stub.GetUserReviewableItems(tools_pb2.GetUserReviewableItemsRequest(limit=1), timeout=5,
                                                       metadata=self.md)
            return _number(int(r.total))
        if kind == "plan_total":
            r = await self.stub.GetUserPlan(tools_pb2.GetUserPlanRequest(hours=int(fact.get("hours", 24))),
                                            timeout=5, metadata=self.md)
            return _number(int(r.total))
        if kind == "learned_any":
            r = await self.stub.GetUserLearnedItems(tools_pb2.GetUserLearnedItemsRequest(
                entity_type=fact.get("entity_type", ""), limit=int(fact.get("limit", 20))), timeout=5,
                metadata=self.md)
            written = [li.item.written for li in r.items if li.item.written]
            return {"any": written or ["(no learned items)"]}
        raise ValueError(f"unknown dynamic fact {kind!r}")


@dataclass
class Report:
    total: int
    passed: int
    seconds: float
    by_category: dict[str, dict[str, int]]
    outcomes: list[Outcome]

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "passed": self.passed, "pass_rate": round(self.pass_rate, 4),
                "seconds": round(self.seconds, 2), "by_category": self.by_category,
                "outcomes": [asdict(o) for o in self.outcomes]}


async def _ask(client, q: Question, retries: int = 5):
    from services.gateway.client import TurnResult

    result = TurnResult()
    for attempt in range(retries):
        result = await client.ask(q.question)
        if not any(e.get("code") in ("rate_limited", "busy") for e in result.errors):
            return result
        await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))  # a default gateway paces learners
    return result


async def run(url: str, token_for, tools_addr: str, questions: list[Question], default_user: str,
              concurrency: int = 2, progress=None) -> Report:
    """Ask every question (one connection per worker and learner), resolve per-learner facts, score."""
    from services.gateway.client import ChatClient

    started = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    queue: asyncio.Queue[Question] = asyncio.Queue()
    for q in questions:
        queue.put_nowait(q)
    facts_by_user: dict[str, DynamicFacts] = {}

    async def worker() -> None:
        clients: dict[str, ChatClient] = {}
        try:
            while not queue.empty():
                q = queue.get_nowait()
                user = q.user or default_user
                t0 = time.perf_counter()
                try:
                    if user not in facts_by_user:
                        facts_by_user[user] = DynamicFacts(tools_addr, token_for(user))
                    facts = [await facts_by_user[user].resolve(f) for f in q.facts]
                    if user not in clients:
                        clients[user] = await ChatClient.open(url, token_for(user))
                        await clients[user].start("text")  # the learner's own language
                    result = await _ask(clients[user], q)
                    answer = result.answer
                    missing = score(answer, facts)
                    error = "; ".join(f"{e['code']}: {e['message']}" for e in result.errors)
                    outcomes[q.id] = Outcome(q.id, q.category, q.question, not missing and not error, missing,
                                             answer, error, time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - one failure is one failed question, not a dead run
                    outcomes[q.id] = Outcome(q.id, q.category, q.question, False, [], "",
                                             f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
                    stale = clients.pop(user, None)
                    if stale is not None:
                        await _quietly(stale.close())
                if progress is not None:
                    progress(outcomes[q.id])
        finally:
            for c in clients.values():
                await _quietly(c.close())

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        for f in facts_by_user.values():
            await f.close()
    ordered = [outcomes[q.id] for q in questions]
    by_cat: dict[str, dict[str, int]] = {}
    for o in ordered:
        c = by_cat.setdefault(o.category, {"total": 0, "passed": 0})
        c["total"] += 1
        c["passed"] += int(o.passed)
    return Report(len(ordered), sum(o.passed for o in ordered), time.perf_counter() - started, by_cat, ordered)


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001
        pass
