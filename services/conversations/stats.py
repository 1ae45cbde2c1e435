"""Per-day counters and latency histograms, and turning them into GetStatsResponse.

Stats are pre-aggregated at write time (UpdateItem ADD on per-day rows, per
shard and spread over records.STATS_ROWS rows by turn) so GetStats reads a
fixed number of small rows per day instead of every turn: the cost of a stats
call does not grow with traffic, nor does the cost of a turn's write (billed by
the size of the row it changes). Percentiles are exact (nearest rank over the
range's samples, kept beside the buckets as number sets of up to SAMPLE_CAP per
shard and day, SAMPLE_CAP / STATS_ROWS per row); when a range holds more turns
than samples, they come from the fixed histogram buckets (upper edge of the
bucket holding the rank), approximate to one bucket.
"""

from __future__ import annotations

import bisect
import math
import zlib
from typing import Any

from kotoba.v1 import conversations_pb2 as pb
from services.conversations.records import STATS_ROWS, safe_name

# Bucket upper edges in ms; the last bucket is everything above.
# Fine at the low end: local answers take tens of milliseconds, and a dashboard that
# rounds 11 ms up to 25 ms hides exactly the regressions it is for.
EDGES_MS = (2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
            7500, 10_000, 15_000, 20_000, 30_000, 60_000)


FIRST_TEXT_SAMPLES = "fts"
TOTAL_SAMPLES = "tts"
SAMPLE_CAP = 5000  # per shard and day, spread over STATS_ROWS rows: a row's two sets stay under ~6 KB


def row_sample_cap() -> int:
    """How many samples of each kind one stats row keeps (read at call time: tests lower SAMPLE_CAP)."""
    return math.ceil(SAMPLE_CAP / STATS_ROWS)


def sample(ms: float, turn_id: str) -> str:
    """A latency as a number-set element: 0.1 ms, then six turn-derived digits that make it unique (a set
    would merge two turns of equal latency) and that `exact_percentile` cuts off again."""
    tail = zlib.crc32(turn_id.encode()) % 1_000_000
    return f"{round(ms, 1):.1f}{tail:06d}"[:38] if ms >= 0 else "0"


def exact_percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of latency samples, their uniqueness digits cut off."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return math.floor(ordered[rank - 1] * 10 + 1e-6) / 10


def bucket(ms: float) -> int:
    """Index of the histogram bucket a latency falls in (len(EDGES_MS) for the overflow bucket)."""
    return bisect.bisect_left(EDGES_MS, ms)


def percentile(buckets: dict[int, int], q: float) -> float:
    """Approximate the q-quantile of a bucket histogram as the upper edge of the bucket holding that rank."""
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


# Counter name -> the GetStatsResponse total it adds to.
_TOTALS = {"optedOut": "opted_out_turns", "sumFailed": "summary_failures", "sumPending": "summary_pending"}
# Counter name prefix -> the GetStatsResponse map it adds to, keyed by the rest of the name.
_MAPS = {"c_": "by_category", "m_": "by_mode", "t_": "tool_calls"}


def build_response(rows_by_day: dict[str, list[dict[str, Any]]], days: list[str], sessions: int,
                   learners: int) -> pb.GetStatsResponse:
    """Fold the per-day, per-shard counter rows of the asked days into one GetStatsResponse."""
    reply = pb.GetStatsResponse(sessions=sessions, learners=learners)
    # Latency histograms by counter prefix: ft_ = first text, tt_ = whole turn; and the turns' exact samples.
    hists: dict[str, dict[int, int]] = {"ft_": {}, "tt_": {}}
    samples: dict[str, list[float]] = {FIRST_TEXT_SAMPLES: [], TOTAL_SAMPLES: []}
    for day in days:
        day_turns, day_cost = 0, 0.0
        for row in rows_by_day.get(day, []):
            for name, value in row.items():
                if name in samples and isinstance(value, list):
                    samples[name].extend(float(v) for v in value)
                    continue
                turns, cost = _add_counter(reply, hists, name, value)
                day_turns += turns
                day_cost += cost
        reply.turns += day_turns
        reply.cost_usd += day_cost
        reply.daily.append(pb.DailyStats(day=day, turns=day_turns, cost_usd=round(day_cost, 6)))
    reply.cost_usd = round(reply.cost_usd, 6)
    _set_percentiles(reply.first_text_ms, hists["ft_"], samples[FIRST_TEXT_SAMPLES])
    _set_percentiles(reply.total_ms, hists["tt_"], samples[TOTAL_SAMPLES])
    return reply


def _add_counter(reply: pb.GetStatsResponse, hists: dict[str, dict[int, int]], name: str,
                 value: Any) -> tuple[int, float]:
    """Add one counter of a day row to the reply or a histogram; return what it adds to that day's turns and cost.

    Turns and cost are handed back rather than added here because they are also
    reported per day.
    """
    if not isinstance(value, (int, float)) or name == "ttl":
        return 0, 0.0
    if name == "turns":
        return int(value), 0.0
    if name == "costUsd":
        return 0, float(value)
    if name in _TOTALS:
        setattr(reply, _TOTALS[name], getattr(reply, _TOTALS[name]) + int(value))
    elif name[:2] in _MAPS:
        getattr(reply, _MAPS[name[:2]])[name[2:]] += int(value)
    elif name[:3] in hists:
        hist, index = hists[name[:3]], int(name[3:])
        hist[index] = hist.get(index, 0) + int(value)
    return 0, 0.0


def _set_percentiles(target: pb.Percentiles, hist: dict[int, int], values: list[float]) -> None:
    """p50/p95/p99 of the range: exact from the turns' samples when every counted turn left one (none lost to
    the cap or predating samples), else the histogram's bucket bounds."""
    exact = bool(values) and len(values) == sum(hist.values())
    target.p50, target.p95, target.p99 = (exact_percentile(values, q) if exact else percentile(hist, q)
                                          for q in (0.5, 0.95, 0.99))


def turn_counter_adds(row: dict[str, Any]) -> dict[str, Any]:
    """What one stored turn adds to its day's stats shard: turns, mode, tool calls, cost, latency buckets."""
    latencies, usage = row["latencies"], row["usage"]
    adds: dict[str, Any] = {"turns": 1, "stored": 1, "sumPending": 1, f"m_{safe_name(row['mode'])}": 1}
    if usage.get("cost_usd"):
        adds["costUsd"] = float(usage["cost_usd"])
    for call in row["toolCalls"]:
        name = f"t_{safe_name(call['name'])}"
        adds[name] = adds.get(name, 0) + 1
    if latencies.get("first_text_ms"):
        adds[f"ft_{bucket(float(latencies['first_text_ms'])):02d}"] = 1
    if latencies.get("total_ms"):
        adds[f"tt_{bucket(float(latencies['total_ms'])):02d}"] = 1
    return adds


def sample_update(row: dict[str, Any]) -> dict[str, Any] | None:
    """The UpdateItem arguments that add the turn's latencies as exact samples (number sets, made unique per
    turn) unless the turn's stats row already holds its share of SAMPLE_CAP; None when the turn has no latency."""
    latencies = row["latencies"]
    sets = {attr: sample(float(latencies[field]), row["turnId"])
            for attr, field in ((FIRST_TEXT_SAMPLES, "first_text_ms"), (TOTAL_SAMPLES, "total_ms"))
            if latencies.get(field)}
    if not sets:
        return None
    values: dict[str, Any] = {f":s{i}": {"NS": [v]} for i, v in enumerate(sets.values())}
    values[":cap"] = {"N": str(row_sample_cap())}
    return {"UpdateExpression": "ADD " + ", ".join(f"#s{i} :s{i}" for i in range(len(sets))),
            "ConditionExpression": "attribute_not_exists(#s0) OR size(#s0) < :cap",
            "ExpressionAttributeNames": {f"#s{i}": attr for i, attr in enumerate(sets)},
            "ExpressionAttributeValues": values}
