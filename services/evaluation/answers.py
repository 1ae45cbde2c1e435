"""`kotoba eval answers`: learner questions through the gateway, scored by required facts.

The sets (tests/eval/answers.jsonl, the project's own; tests/eval/learner_questions.jsonl, written
before tuning, issue 16) have one question per line:
    {"id", "category", "language", "question", "facts": [...], "user"?: learner id,
     "turns"?: [earlier questions asked first on the same session], "resume"?: true (reconnect and
     resume the session before the scored question), "forbid"?: [facts that must be absent],
     "spoken"?: true (a question as speech recognition writes it; asked as text in a session started
     in the question's language, so the answer must come back in that language)}
A fact is a string (case-insensitive substring), {"regex": ...}, {"any": [facts]} (one of them), or
{"dynamic": kind, ...}: a per-learner figure computed at run time from the tools service for that
learner (so it is never hard-coded): progress (entity_type, level, field), reviews_due, plan_total
(hours), learned_any (entity_type). Every fact must be found in the answer, and no forbidden fact, for the question to pass. Every
answer is also checked for what a learner must never read (ALWAYS_FORBIDDEN: raw item ids, a
meaning starting with "(").

Each question belongs to the dev half or the held-out half by a fixed hash of its id (`half_of`):
tune on dev, report both.
"""

from __future__ import annotations

import asyncio
import hashlib
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
    turns: list[str] = field(default_factory=list)
    resume: bool = False
    forbid: list[Any] = field(default_factory=list)
    spoken: bool = False

    @property
    def half(self) -> str:
        """The question's half (dev or held-out), fixed by a hash of its id."""
        return half_of(self.id)


def half_of(question_id: str) -> str:
    """"dev" or "held-out", fixed by the id alone (so adding questions never moves old ones)."""
    return "dev" if hashlib.sha256(question_id.encode("utf-8")).digest()[0] % 2 == 0 else "held-out"


# What a learner must never read, whatever the question: an item id ([word:泳ぐ:およぐ]), and a
# dictionary meaning that starts inside parentheses ("(conj", "(abbr) Good morning").
ALWAYS_FORBIDDEN: list[Any] = [
    {"regex": r"\[(?:word|kanji|kana|sentence):", "why": "raw item id"},
    {"regex": r"[“「『]\(|means \(|：\(|(?<![A-Za-z])\((?:conj|exp|int|abbr|n|adj-\w+|v\w+)\b[^)]*$",
     "why": "meaning starting with '('"},
    {"regex": r"\b(?:conj|exp|int)\)", "why": "meaning fragment split inside parentheses"},
]


@dataclass
class Outcome:
    id: str
    category: str
    question: str
    passed: bool
    missing: list[str] = field(default_factory=list)
    answer: str = ""
    half: str = ""
    present: list[str] = field(default_factory=list)  # forbidden content found
    sources: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def load_set(path: Path = DEFAULT_SET) -> list[Question]:
    """The labelled questions of a JSONL question set."""
    out = read_jsonl(path, lambda row: Question(
        row["id"], row["category"], row.get("language", "en"), row["question"], list(row["facts"]),
        row.get("user", ""), list(row.get("turns") or []), bool(row.get("resume")), list(row.get("forbid") or []),
        bool(row.get("spoken"))), "question line")
    ids = Counter(q.id for q in out)
    dupes = [i for i, c in ids.items() if c > 1]
    if dupes:
        raise ValueError(f"{path}: duplicate ids {dupes}")
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).casefold()


def fact_matches(fact: Any, answer: str) -> bool:
    """True when the answer states the fact (a phrase, a regex, or any of several)."""
    if isinstance(fact, str):
        return _norm(fact) in _norm(answer)
    if isinstance(fact, dict) and "regex" in fact:
        return re.search(fact["regex"], answer, re.I | re.S) is not None
    if isinstance(fact, dict) and "any" in fact:
        return any(fact_matches(f, answer) for f in fact["any"])
    raise ValueError(f"unresolved fact {fact!r}")


def describe(fact: Any) -> str:
    """A fact as a reader would say it, for failure reports."""
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


def forbidden(answer: str, forbid: list[Any]) -> list[str]:
    """The forbidden facts (the question's own and ALWAYS_FORBIDDEN) found in the answer."""
    found = [describe(f) for f in forbid if fact_matches(f, answer)]
    found += [f["why"] for f in ALWAYS_FORBIDDEN if fact_matches({"regex": f["regex"]}, answer)]
    return found


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
        """Close the channel to the tools service."""
        await self.channel.close()

    async def resolve(self, fact: Any) -> Any:
        """A fact with its per-learner value filled in from the tools (other facts unchanged)."""
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
        """The share of questions that passed (0 for an empty run)."""
        return self.passed / self.total if self.total else 0.0

    def by_half(self) -> dict[str, dict[str, Any]]:
        """{half: {"total", "passed", "pass_rate", "by_category": {cat: {"total", "passed"}}}}."""
        out: dict[str, dict[str, Any]] = {}
        for o in self.outcomes:
            h = out.setdefault(o.half, {"total": 0, "passed": 0, "by_category": {}})
            c = h["by_category"].setdefault(o.category, {"total": 0, "passed": 0})
            for row in (h, c):
                row["total"] += 1
                row["passed"] += int(o.passed)
        for h in out.values():
            h["pass_rate"] = round(h["passed"] / h["total"], 4) if h["total"] else 0.0
        return out

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON: totals, per category and per half, and every outcome."""
        return {"total": self.total, "passed": self.passed, "pass_rate": round(self.pass_rate, 4),
                "seconds": round(self.seconds, 2), "by_category": self.by_category, "by_half": self.by_half(),
                "outcomes": [asdict(o) for o in self.outcomes]}

    def table(self) -> str:
        """Per-category results per half, as printed by `kotoba eval answers`."""
        halves = self.by_half()
        names = sorted(halves, key=lambda h: (h != "dev", h))
        cats = sorted({o.category for o in self.outcomes})
        lines = [f"  {'category':16}" + "".join(f" {h:>16}" for h in names)]
        for cat in cats:
            cells = []
            for h in names:
                c = halves[h]["by_category"].get(cat)
                cells.append(f" {c['passed']:>4}/{c['total']:<4} {c['passed'] / c['total']:>6.1%}" if c else " " * 17)
            lines.append(f"  {cat:16}" + "".join(cells))
        lines.append(f"  {'ALL':16}" + "".join(
            f" {halves[h]['passed']:>4}/{halves[h]['total']:<4} {halves[h]['pass_rate']:>6.1%}" for h in names))
        return "\n".join(lines)


async def _ask(client, q: Question | str, retries: int = 5):
    from services.gateway.client import TurnResult

    text = q.question if isinstance(q, Question) else q
    result = TurnResult()
    for attempt in range(retries):
        result = await client.ask(text)
        if not any(e.get("code") in ("rate_limited", "busy") for e in result.errors):
            return result
        await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))  # a default gateway paces learners
    return result


async def run(url: str, token_for, tools_addr: str, questions: list[Question], default_user: str,
              concurrency: int = 2, progress=None) -> Report:
    """Ask every question (one connection per worker and learner), resolve per-learner facts, score."""
    started = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    queue: asyncio.Queue[Question] = asyncio.Queue()
    for q in questions:
        queue.put_nowait(q)
    asker = _Asker(url, token_for, tools_addr, default_user)

    async def worker() -> None:
        clients: dict[str, Any] = {}
        try:
            while not queue.empty():
                q = queue.get_nowait()
                outcomes[q.id] = await asker.outcome(q, clients)
                if progress is not None:
                    progress(outcomes[q.id])
        finally:
            for c in clients.values():
                await _quietly(c.close())

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        await asker.close()
    ordered = [outcomes[q.id] for q in questions]
    by_cat: dict[str, dict[str, int]] = {}
    for o in ordered:
        c = by_cat.setdefault(o.category, {"total": 0, "passed": 0})
        c["total"] += 1
        c["passed"] += int(o.passed)
    return Report(len(ordered), sum(o.passed for o in ordered), time.perf_counter() - started, by_cat, ordered)


class _Asker:
    """Asks one question through the gateway as its learner and scores the answer against its facts."""

    def __init__(self, url: str, token_for, tools_addr: str, default_user: str) -> None:
        self.url, self.token_for, self.tools_addr, self.default_user = url, token_for, tools_addr, default_user
        self.facts_by_user: dict[str, DynamicFacts] = {}

    async def outcome(self, q: Question, clients: dict[str, Any]) -> Outcome:
        """The scored outcome; an exception is one failed question (and a fresh connection next time)."""
        user = q.user or self.default_user
        t0 = time.perf_counter()
        try:
            if user not in self.facts_by_user:
                self.facts_by_user[user] = DynamicFacts(self.tools_addr, self.token_for(user))
            facts = [await self.facts_by_user[user].resolve(f) for f in q.facts]
            result = await self._result(q, user, clients)
            answer, sources = displayed(result)
            missing = score(answer, facts)
            present = forbidden(answer, q.forbid)
            error = "; ".join(f"{e['code']}: {e['message']}" for e in result.errors)
            return Outcome(q.id, q.category, q.question, not missing and not present and not error,
                           missing, answer, half=q.half, present=present, sources=sources,
                           error=error, seconds=time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - one failure is one failed question, not a dead run
            stale = clients.pop(user, None)
            if stale is not None:
                await _quietly(stale.close())
            return Outcome(q.id, q.category, q.question, False, [], "", half=q.half,
                           error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)

    async def _result(self, q: Question, user: str, clients: dict[str, Any]):
        from services.gateway.client import ChatClient

        if q.turns or q.spoken:
            # a conversation of its own: earlier turns, maybe a resume, then the question
            return await _conversation(self.url, self.token_for(user), q)
        if user not in clients:
            clients[user] = await ChatClient.open(self.url, self.token_for(user))
            await clients[user].start("text")  # the learner's own language
        return await _ask(clients[user], q)

    async def close(self) -> None:
        """Close the tools connections used to resolve per-learner facts."""
        for f in self.facts_by_user.values():
            await f.close()


async def _conversation(url: str, token: str, q: Question):
    from services.gateway.client import ChatClient

    client = await ChatClient.open(url, token)
    try:
        await client.start("text", language=q.language if q.spoken else None)
        for earlier in q.turns:
            await _ask(client, earlier)
        if q.resume:
            session_id = client.session.get("session_id", "")
            await client.close()
            client = await ChatClient.open(url, token)
            await client.start("text", resume=session_id)
        return await _ask(client, q)
    finally:
        await _quietly(client.close())


def displayed(result) -> tuple[str, list[str]]:
    """What the learner reads, and the item ids cited. The gateway sends citations as a `sources`
    list on turn_complete; where it does not (yet), the text is cleaned here the same way the
    gateway does, with services.gateway.citations, so a malformed citation still shows."""
    from services.gateway.citations import CitationStream

    final = next((f for f in reversed(result.frames) if f.get("type") == "turn_complete"), {})
    if "sources" in final:
        return result.answer, [s.get("id", "") for s in final.get("sources") or []]
    stream = CitationStream()
    text = stream.feed(result.answer) + stream.close()
    return text, [s.id for s in stream.sources]


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001
        pass
