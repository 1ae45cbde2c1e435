"""Per-day counters and latency histograms, and turning them into GetStatsResponse.

Stats are pre-aggregated at write time (UpdateItem ADD on a per-day row per
shard) so GetStats reads days x shards small rows instead of every turn: the
cost of a stats call does not grow with traffic. Percentiles are exact (nearest
rank over the range's samples, kept beside the buckets as number sets of up to
SAMPLE_CAP per shard and day); when a shard-day holds more turns than samples,
they come from the fixed histogram buckets (upper edge of the bucket holding
the rank), approximate to one bucket.
"""

from __future__ import annotations

import bisect
import math
import zlib
from typing import Any

from kotoba.v1 import conversations_pb2 as pb

# Bucket upper edges in ms; the last bucket is everything above.
# Fine at the low end: local answers take tens of milliseconds, and a dashboard that
# rounds 11 ms up to 25 ms hides exactly the regressions it is for.
EDGES_MS = (2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
            7500, 10_000, 15_000, 20_000, 30_000, 60_000)


FIRST_TEXT_SAMPLES = "fts"
TOTAL_SAMPLES = "tts"
SAMPLE_CAP = 5000  # per shard and day: ~100 KB of a 400 KB item


def sample(ms: float, turn_id: str) -> str:
    """A latency as a number-set element: 0.1 ms, then six turn-derived digits that make it unique (a set
    would merge two turns of equal latency) and that `exact_percentile` cuts off again."""
    tail = zlib.crc32(turn_id.encode()) % 1_000_000
    return f"{round(ms, 1):.1f}{tail:06d}"[:38] if ms >= 0 else "0"


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return math.floor(ordered[rank - 1] * 10 + 1e-6) / 10


def bucket(ms: float) -> int:
    return bisect.bisect_left(EDGES_MS, ms)


def percentile(buckets: dict[int, int], q: float) -> float:
    total = sum(buckets.values())
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return float(EDGES_MS[index]) if index < len(EDGES_MS) else float(EDGES_MS[-1])
    return float(EDGES_MS[-1])


def build_response(rows_by_day: dict[str, list[dict[str, Any]]], days: list[str], sessions: int,
                   learners: int) -> pb.GetStatsResponse:
    reply = pb.GetStatsResponse(sessions=sessions, learners=learners)
    first_text: dict[int, int] = {}
    total: dict[int, int] = {}
    samples: dict[str, list[float]] = {FIRST_TEXT_SAMPLES: [], TOTAL_SAMPLES: []}
    for day in days:
        day_turns, day_cost = 0, 0.0
        for row in rows_by_day.get(day, []):
            for name, value in row.items():
                if name in samples and isinstance(value, list):
                    samples[name].extend(float(v) for v in value)
                    continue
                if not isinstance(value, (int, float)) or name == "ttl":
                    continue
                if name == "turns":
                    day_turns += int(value)
                elif name == "costUsd":
                    day_cost += float(value)
                elif name == "optedOut":
                    reply.opted_out_turns += int(value)
                elif name == "sumFailed":
                    reply.summary_failures += int(value)
                elif name == "sumPending":
                    reply.summary_pending += int(value)
                elif name.startswith("c_"):
                    reply.by_category[name[2:]] += int(value)
                elif name.startswith("m_"):
                    reply.by_mode[name[2:]] += int(value)
                elif name.startswith("t_"):
                    reply.tool_calls[name[2:]] += int(value)
                elif name.startswith("ft_"):
                    first_text[int(name[3:])] = first_text.get(int(name[3:]), 0) + int(value)
                elif name.startswith("tt_"):
                    total[int(name[3:])] = total.get(int(name[3:]), 0) + int(value)
        reply.turns += day_turns
        reply.cost_usd += day_cost
        reply.daily.append(pb.DailyStats(day=day, turns=day_turns, cost_usd=round(day_cost, 6)))
    reply.cost_usd = round(reply.cost_usd, 6)
    for target, hist, values in ((reply.first_text_ms, first_text, samples[FIRST_TEXT_SAMPLES]),
                                 (reply.total_ms, total, samples[TOTAL_SAMPLES])):
        # Exact only when every counted turn left its sample (none lost to the cap or predating samples).
        exact = bool(values) and len(values) == sum(hist.values())
        target.p50, target.p95, target.p99 = (exact_percentile(values, q) if exact else percentile(hist, q)
                                              for q in (0.5, 0.95, 0.99))
    return reply
