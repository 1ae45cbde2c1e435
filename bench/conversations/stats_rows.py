"""Stats rows benchmark: what a busy day's turns cost the store in the per-day stats rows.

    .venv/bin/python -m bench.conversations.stats_rows [--turns 8000] [--json]

DynamoDB bills an UpdateItem by the size of the whole item it changes (write units: KB of the larger of the
before and after image). Every logged turn ADDs its counters and latency samples to a stats row; this bench
feeds `--turns` turns of one day through `ConversationStore.add_turn_counters` (the AppendTurn write) on its
own dynalite (in-memory, free port), once with one row per shard-day (the layout before, `STATS_ROWS = 1`:
the baseline) and once with today's rows, side by side in one process, and reports the write units dynalite
charged (`ReturnConsumedCapacity`) and the client-observed time per write, over all turns and over the last
tenth (the day's busy end), with ratios; and GetStats' read of the day's rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from devtools import procs  # noqa: E402
from kotoba.v1 import conversations_pb2 as pb  # noqa: E402
from services.common.aws import dynamodb_client  # noqa: E402
from services.common.config import AwsConfig  # noqa: E402
from services.common.tables import create_tables  # noqa: E402
from services.conversations import records, stats  # noqa: E402
from services.conversations.store import ConversationStore  # noqa: E402

PREFIX = "bench-"


def _charged(client) -> list[float]:
    """Ask every UpdateItem for its consumed capacity and collect it (a botocore hook: the store is unchanged)."""
    units: list[float] = []

    def ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def note(parsed: dict[str, Any], **_: Any) -> None:
        if "ConsumedCapacity" in parsed:
            units.append(float(parsed["ConsumedCapacity"].get("CapacityUnits", 0)))

    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", ask)
    client.meta.events.register("after-call.dynamodb.UpdateItem", note)
    return units


def _turns(n: int, day_start: datetime) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        turn = pb.Turn(turn_id=uuid.uuid4().hex, session_id=f"s-{i // 3}", connection_id="c", mode="text",
                       language="en", question="q", answer="a", intent="word_meaning",
                       latencies=pb.Latencies(first_text_ms=8 + i % 40, total_ms=20 + (i * 7) % 900),
                       usage=pb.Usage(text_in_tokens=120, text_out_tokens=40, cost_usd=0.001),
                       started_at=day_start.isoformat())
        rows.append(records.turn_row(turn, f"learner-{i % 200}", day_start, 0, False))
    return rows


def _layout(rows_per_shard: int, endpoint: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    client = dynamodb_client(AwsConfig(region="us-east-1", dynamodb_endpoint=endpoint, s3_endpoint="", table_prefix=PREFIX))
    table = f"{PREFIX}{rows_per_shard}-conversations"
    create_tables(client, f"{PREFIX}{rows_per_shard}-", names=["conversations"])
    records.STATS_ROWS = stats.STATS_ROWS = rows_per_shard
    units = _charged(client)
    store = ConversationStore(client, table, f"{PREFIX}settings")
    seconds: list[float] = []
    for i, row in enumerate(turns):
        started = time.perf_counter()
        store.add_turn_counters(row)
        seconds.append(time.perf_counter() - started)
        if (i + 1) % max(1, len(turns) // 10) == 0:
            print(f"  {rows_per_shard} row(s) per shard: {i + 1}/{len(turns)} turns", file=sys.stderr, flush=True)
    started = time.perf_counter()
    read = store.stats_rows([turns[0]["day"]])
    read_s = time.perf_counter() - started
    tail = len(turns) // 10
    return {
        "rows_per_shard": rows_per_shard,
        "write_units_mean": round(statistics.fmean(units), 2), "write_units_last_tenth": round(statistics.fmean(units[-tail:]), 2),
        "write_ms_mean": round(statistics.fmean(seconds) * 1000, 2),
        "write_ms_last_tenth": round(statistics.fmean(seconds[-tail:]) * 1000, 2),
        "stats_rows_read": sum(len(v) for v in read.values()), "stats_read_ms": round(read_s * 1000, 1),
        "largest_row_samples": max(len(r.get(stats.TOTAL_SAMPLES) or []) for v in read.values() for r in v),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=8000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    current = records.STATS_ROWS
    proc, endpoint = procs.start_dynalite(procs.free_port(), None)
    try:
        turns = _turns(args.turns, datetime.now(UTC).replace(microsecond=0))
        baseline = _layout(1, endpoint, turns)
        now = _layout(current, endpoint, turns)
    finally:
        records.STATS_ROWS = stats.STATS_ROWS = current
        procs.stop(proc)
    ratios = {k: round(now[k] / baseline[k], 3) for k in
              ("write_units_mean", "write_units_last_tenth", "write_ms_mean", "write_ms_last_tenth") if baseline[k]}
    result = {"turns": args.turns, "baseline": baseline, "current": now, "ratio_current_to_baseline": ratios}
    print(f"{args.turns} turns of one day, stats write per turn (baseline: one row per shard-day; current: "
          f"{current} rows per shard-day)")
    for key in ("write_units_mean", "write_units_last_tenth", "write_ms_mean", "write_ms_last_tenth",
                "largest_row_samples", "stats_rows_read", "stats_read_ms"):
        print(f"  {key:24s} baseline {baseline[key]:>9}  current {now[key]:>9}  ratio {ratios.get(key, '–')}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
