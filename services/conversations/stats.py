"""Per-day counters and latency histograms, and turning them into GetStatsResponse.

Stats are pre-aggregated at write time (UpdateItem ADD on a per-day row per
shard) so GetStats reads days x shards small rows instead of every turn: the
cost of a stats call does not grow with traffic. Percentiles come from fixed
histogram buckets (upper edge of the bucket holding the rank), so they are
approximate to one bucket (about 25-50 %), which is plenty for a dashboard.
"""

from __future__ import annotations

import bisect
from typing import Any

from kotoba.v1 import conversations_pb2 as pb

# Bucket upper edges in ms; the last bucket is everything above.
# Fine at the low end: local answers take tens of milliseconds, and a dashboard that
# rounds 11 ms up to 25 ms hides exactly the regressions it is for.
EDGES_MS = (2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
            7500, 10_000, 15_000, 20_000, 30_000, 60_000)


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
    # Latency histograms by counter prefix: ft_ = first text, tt_ = whole turn.
    hists: dict[str, dict[int, int]] = {"ft_": {}, "tt_": {}}
    for day in days:
        day_turns, day_cost = 0, 0.0
        for row in rows_by_day.get(day, []):
            for name, value in row.items():
                turns, cost = _add_counter(reply, hists, name, value)
                day_turns += turns
                day_cost += cost
        reply.turns += day_turns
        reply.cost_usd += day_cost
        reply.daily.append(pb.DailyStats(day=day, turns=day_turns, cost_usd=round(day_cost, 6)))
    reply.cost_usd = round(reply.cost_usd, 6)
    _set_percentiles(reply.first_text_ms, hists["ft_"])
    _set_percentiles(reply.total_ms, hists["tt_"])
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


def _set_percentiles(target: pb.Percentiles, hist: dict[int, int]) -> None:
    target.p50, target.p95, target.p99 = (percentile(hist, q) for q in (0.5, 0.95, 0.99))
