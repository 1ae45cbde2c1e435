"""Load generators against the bench stack's gateway (127.0.0.1 only), bounded in sessions and in time.

- `text_level`: N concurrent text sessions (one learner each), exponential think time around a mean, for a
  fixed window; per-turn time to first text delta and to turn_complete, errors by code, RSS while loaded.
- `voice_level`: N concurrent voice sessions streaming a spoken question in real time; first audio byte
  after audio_end and turn complete.
- `churn`: open a session, start it, close it — many times, bounded concurrency — and RSS before/after.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.gateway.client import ChatClient

QUESTIONS = [
    "What does 泳ぐ mean?",
    "What does 食べる mean?",
    "How do you read 買う?",
    "How is my N5 progress?",
    "What should I review today?",
    "What does 飲む mean?",
]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round((ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)) * 1000, 1)  # ms


def schedule(n: int, within_s: float) -> list[float]:
    """Offsets (s) at which n learners open in a load profile: evenly spread over `within_s`, the first at 0
    (the text burst in bench/load/burst.py, the concurrent voice learners in bench/voice/latency.py)."""
    return [i * within_s / max(1, n - 1) for i in range(n)]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p95_ms": pct(values, 95),
            "p99_ms": pct(values, 99), "max_ms": round(max(values) * 1000, 1) if values else None,
            "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else None}


@dataclass
class Tally:
    first_text: list[float] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    turns: int = 0
    sessions_opened: int = 0
    turn_ids: dict[str, int] = field(default_factory=dict)  # session id -> completed turns

    def add(self, session_id: str, result) -> None:
        for e in result.errors:
            self.errors[e.get("code", "?")] += 1
        if result.usage or any(f.get("type") == "turn_complete" for f in result.frames):
            self.turns += 1
            self.turn_ids[session_id] = self.turn_ids.get(session_id, 0) + 1
            self.total.append(result.total_s)
            if result.first_text_s is not None:
                self.first_text.append(result.first_text_s)
            if result.first_audio_s is not None:
                self.first_audio.append(result.first_audio_s)


async def _open(stack, user: str, tally: Tally, mode: str = "text") -> ChatClient | None:
    try:
        client = await ChatClient.open(stack.url, stack.token(user), open_wait_s=120)
        await client.start(mode, wait_s=120)
        tally.sessions_opened += 1
        return client
    except Exception as exc:  # noqa: BLE001 - counted: a refusal or a failure to connect
        tally.refused[_reason(exc)] += 1
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for code in ("too_many_sessions", "upstream_unavailable", "rate_limited", "503", "1011", "1013", "1008"):
        if code in text:
            return code
    return type(exc).__name__


async def text_level(stack, n: int, duration_s: float, think_s: float, *, prefix: str, sampler=None,
                     ramp_s: float | None = None) -> dict[str, Any]:
    """n sessions, each: connect (spread over the ramp), then ask/think until the window closes."""
    tally = Tally()
    ramp_s = ramp_s if ramp_s is not None else min(30.0, n * 0.06)
    t_start = time.perf_counter()
    end = t_start + ramp_s + duration_s
    rng = random.Random(n)

    async def session(i: int) -> None:
        await asyncio.sleep(ramp_s * i / max(1, n))
        client = await _open(stack, f"{prefix}-{i:04d}", tally)
        if client is None:
            return
        try:
            await asyncio.sleep(rng.uniform(0, think_s))  # desynchronise the first turns
            q = i
            while time.perf_counter() < end:
                q += 1
                try:
                    result = await client.ask(QUESTIONS[q % len(QUESTIONS)], wait_s=120)
                except Exception as exc:  # noqa: BLE001 - counted; a closed session ends this learner
                    tally.errors[_reason(exc)] += 1
                    return
                tally.add(client.session.get("session_id", ""), result)
                await asyncio.sleep(min(rng.expovariate(1 / think_s), max(0.0, end - time.perf_counter())))
        finally:
            await client.close()

    sampled: list[dict[str, float]] = []

    async def sample() -> None:
        await asyncio.sleep(ramp_s)
        while time.perf_counter() < end:
            if sampler is not None:
                sampled.append(sampler())
            await asyncio.sleep(5)

    sampler_task = asyncio.create_task(sample())
    await asyncio.gather(*(session(i) for i in range(n)))
    sampler_task.cancel()
    wall = time.perf_counter() - t_start
    return {"sessions": n, "think_mean_s": think_s, "window_s": round(duration_s, 1), "ramp_s": round(ramp_s, 1),
            "wall_s": round(wall, 1), "sessions_opened": tally.sessions_opened, "refused": dict(tally.refused),
            "turns": tally.turns, "turns_per_s": round(tally.turns / max(duration_s, 1e-9), 2),
            "errors": dict(tally.errors), "first_text": summary(tally.first_text), "turn_complete": summary(tally.total),
            "rss_samples_mb": sampled, "_turns_by_session": tally.turn_ids}


async def voice_turn(client: ChatClient, pcm: bytes, chunk_ms: int = 100, wait_s: float = 180) -> dict[str, Any]:
    """Stream one utterance in real time while a reader timestamps what comes back (nothing is misattributed
    to a later turn). Times count from audio_end; an answer that starts before it (the engine's VAD ended
    the utterance first) counts as 0."""
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}
    errors: list[dict] = []
    seen: dict[str, int] = {}

    async def reader() -> None:
        while True:
            raw = await client.ws.recv()
            now = loop.time()
            if isinstance(raw, bytes):
                marks.setdefault("first_audio", now)
                continue
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "error":
                errors.append(frame)
            elif kind in ("interrupted", "transcript"):
                seen[f"{kind}:{frame.get('role', '')}"] = seen.get(f"{kind}:{frame.get('role', '')}", 0) + 1
            if kind == "turn_complete":
                marks["turn_complete"] = now
                return

    task = asyncio.create_task(reader())
    step = 16000 * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await client.ws.send(pcm[i:i + step])
        await asyncio.sleep(chunk_ms / 1000)
    audio_end = loop.time()
    await client.send(type="audio_end")
    try:
        await asyncio.wait_for(task, wait_s)
    finally:
        task.cancel()
    first = marks.get("first_audio")
    return {"first_audio_s": None if first is None else max(0.0, first - audio_end),
            "total_s": max(0.0, marks["turn_complete"] - audio_end), "errors": errors, "seen": seen,
            "early_s": None if first is None else max(0.0, audio_end - first)}


async def voice_level(stack, n: int, pcm: bytes, turns_per_session: int, think_s: float, *,
                      prefix: str, sampler=None) -> dict[str, Any]:
    tally = Tally()
    rng = random.Random(7 * n)
    sampled: list[dict[str, float]] = []
    shapes: dict[str, int] = {}  # what the turns looked like: audio or not, interrupted, user transcript
    t0 = time.perf_counter()

    async def session(i: int) -> None:
        await asyncio.sleep(i * 0.2)
        client = await _open(stack, f"{prefix}-{i:03d}", tally, mode="audio")
        if client is None:
            return
        try:
            for _ in range(turns_per_session):
                await asyncio.sleep(rng.uniform(0.5, think_s))
                try:
                    r = await voice_turn(client, pcm)
                except Exception as exc:  # noqa: BLE001
                    tally.errors[_reason(exc)] += 1
                    return
                for e in r["errors"]:
                    tally.errors[e.get("code", "?")] += 1
                tally.turns += 1
                shape = ("audio" if r["first_audio_s"] is not None else "no-audio") + "".join(
                    f",{k}" for k in sorted(r["seen"]) if k.startswith("interrupted") or k == "transcript:user")
                shapes[shape] = shapes.get(shape, 0) + 1
                tally.total.append(r["total_s"])
                if r["first_audio_s"] is not None:
                    tally.first_audio.append(r["first_audio_s"])
                if sampler is not None and i == 0:
                    sampled.append(sampler())
        finally:
            await client.close()

    await asyncio.gather(*(session(i) for i in range(n)))
    return {"sessions": n, "turns": tally.turns, "wall_s": round(time.perf_counter() - t0, 1),
            "refused": dict(tally.refused), "errors": dict(tally.errors),
            "first_audio_after_audio_end": summary(tally.first_audio), "turn_complete": summary(tally.total),
            "turn_shapes": shapes, "rss_samples_mb": sampled, "_turns_by_session": tally.turn_ids}


async def churn(stack, total: int, concurrency: int, *, prefix: str) -> dict[str, Any]:
    """Open, start and close `total` sessions with bounded concurrency (each a fresh learner)."""
    sem = asyncio.Semaphore(concurrency)
    tally = Tally()
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        async with sem:
            client = await _open(stack, f"{prefix}-{i:05d}", tally)
            if client is not None:
                await client.close()

    await asyncio.gather(*(one(i) for i in range(total)))
    return {"sessions": total, "concurrency": concurrency, "opened": tally.sessions_opened,
            "refused": dict(tally.refused), "wall_s": round(time.perf_counter() - t0, 1),
            "sessions_per_s": round(total / max(time.perf_counter() - t0, 1e-9), 1)}
