"""Issue 19's load shapes against the bench stack's gateway (127.0.0.1 only).

- `open_cost`: sessions one after another (back to back, or with idle before each: unloaded): the session
  open (start → `session` frame), the first answer and a later turn of each, what the run cost the machine,
  plus the gateway's own per-stage breakdown of every open (its `session opened` log records, read from the
  gateway log).
- `burst`: N learners opening within T seconds, K questions each, a uniform think time range between them
  (a morning rush, or every client reconnecting after a deploy): errors, refusals (`busy` with retry_after),
  first text delta of first and later turns, session open beside turn.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load.sessions import QUESTIONS, Tally, _reason, schedule, summary
from services.gateway.client import ChatClient

MAX_BUSY_RETRIES = 10  # a client keeps retrying after retry_after; the bench gives up after this many


def log_lines(log_path: Path) -> int:
    return len(log_path.read_text(errors="replace").splitlines()) if log_path.exists() else 0


def stage_breakdown(log_path: Path, skip_lines: int = 0) -> dict[str, Any]:
    """p50 per stage over the gateway's `session opened` records (after the first `skip_lines` log lines)."""
    stages: dict[str, list[float]] = {}
    if not log_path.exists():
        return {}
    for line in log_path.read_text(errors="replace").splitlines()[skip_lines:]:
        if '"session opened"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for name, ms in (entry.get("stages_ms") or {}).items():
            stages.setdefault(name, []).append(float(ms))
    return {name: {"n": len(v), "p50_ms": round(statistics.median(v), 2)} for name, v in stages.items()}


async def open_cost(stack, n: int, *, prefix: str, gap_s: float = 0.0,
                    cpu: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
    """n sessions in turn: open, ask, ask again; p50 of each part. With `gap_s`, that pause before each
    session: the stack has finished the previous one's background writes (turn log, summaries, its row).
    With `cpu` (BenchStack.cpu_s), what the run cost the machine: CPU ms per session by process, and how
    many cores were busy on average over the run (the machine's load while these opens were timed)."""
    opens, firsts, laters, errors = [], [], [], Counter()
    cpu_before, started = (cpu() if cpu else {}), time.perf_counter()
    for i in range(n):
        await asyncio.sleep(gap_s)
        t = time.perf_counter()
        try:
            async with await ChatClient.open(stack.url, stack.token(f"{prefix}-{i:03d}"), open_wait_s=60) as c:
                await c.start("text", wait_s=60)
                opens.append(time.perf_counter() - t)
                first = await c.ask(QUESTIONS[i % len(QUESTIONS)], wait_s=60)
                later = await c.ask(QUESTIONS[(i + 1) % len(QUESTIONS)], wait_s=60)
        except Exception as exc:  # noqa: BLE001 - counted
            errors[_reason(exc)] += 1
            continue
        for r, into in ((first, firsts), (later, laters)):
            errors.update(e.get("code", "?") for e in r.errors)
            if r.first_text_s is not None:
                into.append(r.first_text_s)
    out = {"sessions": n, "errors": dict(errors), "open": summary(opens), "first_turn_first_text": summary(firsts),
           "later_turn_first_text": summary(laters)}
    if opens and laters:
        # What the learner waits for on a fresh session beyond what a turn costs: open + first answer − turn.
        out["open_adds_p50_ms"] = round((statistics.median(opens) + statistics.median(firsts)
                                         - statistics.median(laters)) * 1000, 1)
    if cpu:
        out.update(_cpu_cost(cpu_before, cpu(), n, time.perf_counter() - started))
    return out


def _cpu_cost(before: dict[str, float], after: dict[str, float], n: int, wall_s: float) -> dict[str, Any]:
    used = {name: after[name] - before[name] for name in after if name in before}
    return {"cpu_ms_per_session": {name: round(s * 1000 / n, 1) for name, s in sorted(used.items())},
            "cores_busy": round(sum(used.values()) / wall_s, 2)}


async def burst(stack, n: int, within_s: float, questions: int, think: tuple[float, float], *,
                prefix: str, seed: int = 19) -> dict[str, Any]:
    tally, first_tally = Tally(), Tally()
    opens: list[float] = []
    busy_retry_after: list[float] = []
    rng = random.Random(seed)
    thinks = [[rng.uniform(*think) for _ in range(questions)] for _ in range(n)]
    t0 = time.perf_counter()

    async def connect(i: int) -> ChatClient | None:
        """Open and start, retrying after `server_busy` as a client should (after its retry_after)."""
        for _attempt in range(MAX_BUSY_RETRIES + 1):
            try:
                client = await ChatClient.open(stack.url, stack.token(f"{prefix}-{i:04d}"), open_wait_s=120)
            except Exception as exc:  # noqa: BLE001 - counted: the handshake was refused or failed
                tally.refused[_reason(exc)] += 1
                return None
            try:
                await client.start("text", wait_s=120)
                return client
            except Exception as exc:  # noqa: BLE001
                await client.close()
                if "server_busy" not in str(exc):
                    tally.refused[_reason(exc)] += 1
                    return None
                retry = _retry_after(str(exc))
                busy_retry_after.append(retry)
                await asyncio.sleep(max(retry, 0.5))
        tally.refused["server_busy"] += 1
        return None

    async def learner(i: int, offset: float) -> None:
        await asyncio.sleep(offset)
        t = time.perf_counter()
        client = await connect(i)
        if client is None:
            return
        try:
            opens.append(time.perf_counter() - t)  # what the learner waited, busy retries included
            tally.sessions_opened += 1
            for k in range(questions):
                await asyncio.sleep(thinks[i][k])
                try:
                    result = await client.ask(QUESTIONS[(i + k) % len(QUESTIONS)], wait_s=120)
                except Exception as exc:  # noqa: BLE001 - counted; a closed session ends this learner
                    tally.errors[_reason(exc)] += 1
                    return
                (first_tally if k == 0 else tally).add(client.session.get("session_id", ""), result)
        finally:
            await client.close()

    await asyncio.gather(*(learner(i, off) for i, off in enumerate(schedule(n, within_s))))
    errors = tally.errors + first_tally.errors
    all_first_text = first_tally.first_text + tally.first_text
    return {"sessions": n, "within_s": within_s, "questions": questions, "think_s": list(think),
            "wall_s": round(time.perf_counter() - t0, 1), "sessions_opened": tally.sessions_opened,
            "refused": dict(tally.refused), "busy_retries": len(busy_retry_after),
            "busy_retry_after_s": sorted(set(busy_retry_after)),
            "turns": tally.turns + first_tally.turns, "errors": dict(errors),
            "open": summary(opens), "first_text": summary(all_first_text),
            "first_turn_first_text": summary(first_tally.first_text), "later_turn_first_text": summary(tally.first_text),
            "turn_complete": summary(first_tally.total + tally.total),
            "open_over_turn_p50_ms": _over(opens, tally.first_text)}


def _over(opens: list[float], turns: list[float]) -> float | None:
    if not opens or not turns:
        return None
    return round((statistics.median(opens) - statistics.median(turns)) * 1000, 1)


def _retry_after(message: str) -> float:
    for word in message.replace("(", " ").replace(")", " ").split():
        try:
            return float(word)
        except ValueError:
            continue
    return -1.0
