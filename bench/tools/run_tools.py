"""Tools benchmark: p50/p99 per operation against dynalite with the full seed data and a 5,000-row learner.

    .venv/bin/python bench/tools/run_tools.py [--calls 200] [--seed-dir data/seed]

Starts its own dynalite (free port, store in a temp dir), loads the seed data (reporting load time and
items/s), adds `bench-5k` with 5,000 progress rows, starts the tools server and calls each operation
sequentially through gRPC. Baseline in the same run: progress counted by reading every progress row of
the learner (projected Query) versus the aggregate rows the service uses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]

from devtools import procs  # noqa: E402
from kotoba.v1 import tools_pb2 as t  # noqa: E402
from kotoba.v1 import tools_pb2_grpc  # noqa: E402
from services.common.auth import auth_metadata, mint_token  # noqa: E402
from services.common.aws import dynamodb_client  # noqa: E402
from services.common.config import CommonConfig  # noqa: E402
from services.common.tables import create_tables, query_all  # noqa: E402
from services.seed.learners import PlannedRow, _review_offset, ensure_learners, progress_items  # noqa: E402
from services.seed.load import batch_write, level_of, load_items  # noqa: E402
from services.seed.reader import iter_items  # noqa: E402

BENCH_USER = "bench-5k"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(fn, calls: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_learner(client, prefix: str, items: list[dict], rows_wanted: int = 5000) -> int:
    rng = random.Random(5000)
    pool = sorted((it for it in items if it["type"] != "sentence"), key=lambda it: it["id"])
    pool += sorted((it for it in items if it["type"] == "sentence"), key=lambda it: it["id"])
    chosen = pool[:rows_wanted]
    rows = []
    for it in chosen:
        learned = rng.random() < 0.8
        rows.append(PlannedRow(it["id"], it["type"], level_of(it), "learned" if learned else "learning",
                               rng.randint(60, 100) if learned else rng.randint(5, 59),
                               _review_offset(rng, learned), -rng.randint(86400, 400 * 86400) if learned else None))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    requests = [{"PutRequest": {"Item": r}} for r in progress_items(BENCH_USER, rows, now)]
    result = batch_write(client, prefix + "progress", requests)
    assert not result.errors, result.errors[:3]
    return len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seed-dir", type=Path, default=REPO / "data" / "seed")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-tools-"))
    dyn_port, tools_port = procs.free_port(), procs.free_port()
    dynalite, endpoint = procs.start_dynalite(dyn_port, work / "dynamodb", work / "dynalite.log")
    tools = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTOBA_", "AWS_ENDPOINT"))}
        env.update({"KOTOBA_ENV": "local", "KOTOBA_TABLE_PREFIX": "bench-", "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                    "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
                    "KOTOBA_TOOLS_ADDR": f"127.0.0.1:{tools_port}", "KOTOBA_DATA_DIR": str(work),
                    "KOTOBA_RETRIEVAL_ADDR": f"127.0.0.1:{procs.free_port()}", "PYTHONPATH": str(REPO)})
        config = CommonConfig.from_env(env)
        client = dynamodb_client(config.aws)
        create_tables(client, "bench-")
        items = list(iter_items(args.seed_dir))
        report = load_items(client, "bench-", args.seed_dir, items=items, progress=True)
        learners_started = time.monotonic()
        learners = ensure_learners(client, "bench-", items)
        learners_seconds = time.monotonic() - learners_started
        print(f"seed load into dynalite: {report.written} items in {report.seconds:.1f}s "
              f"({report.items_per_second:.0f} items/s while writing); demo learners "
              f"{sum(x['rows'] for x in learners)} rows in {learners_seconds:.1f}s")
        again = load_items(client, "bench-", args.seed_dir, items=items, progress=False)
        print(f"second load: {again.written} written, {again.unchanged} unchanged in {again.seconds:.1f}s")
        n_rows = bench_learner(client, "bench-", items)

        log = open(work / "tools.log", "ab")  # noqa: SIM115
        tools = subprocess.Popen([sys.executable, "-m", "services.tools"], env=env, cwd=REPO, stdout=log, stderr=log)
        channel = grpc.insecure_channel(f"127.0.0.1:{tools_port}")
        procs.wait_until(lambda: health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING,
            60, "tools", interval=0.2)
        stub = tools_pb2_grpc.ToolsStub(channel)
        md = auth_metadata(mint_token(config.auth, BENCH_USER))
        word = next(it for it in items if it["id"] == "word:食べる:たべる") if any(
            it["id"] == "word:食べる:たべる" for it in items) else next(it for it in items if it["type"] == "word")
        ops = {
            "search_words exact (romaji)": lambda: stub.SearchWords(t.SearchWordsRequest(query=word["romaji"], limit=1), metadata=md),
            "search_words prefix (kana)": lambda: stub.SearchWords(t.SearchWordsRequest(query="たべ", limit=5), metadata=md),
            "search_words meaning (en)": lambda: stub.SearchWords(t.SearchWordsRequest(query="eat", limit=5), metadata=md),
            "get_word_details": lambda: stub.GetWordDetails(t.GetWordDetailsRequest(id=word["id"]), metadata=md),
            "get_kanji_details": lambda: stub.GetKanjiDetails(t.GetKanjiDetailsRequest(character="食"), metadata=md),
            "get_sentence_details": lambda: stub.GetSentenceDetails(t.GetSentenceDetailsRequest(id="sentence:00042"), metadata=md),
            "get_user_progress (words, all)": lambda: stub.GetUserProgress(t.GetUserProgressRequest(entity_type="words"), metadata=md),
            "get_user_plan (24h)": lambda: stub.GetUserPlan(t.GetUserPlanRequest(), metadata=md),
            "get_user_learned_items (20)": lambda: stub.GetUserLearnedItems(t.GetUserLearnedItemsRequest(limit=20), metadata=md),
            "get_user_reviewable_items (20)": lambda: stub.GetUserReviewableItems(t.GetUserReviewableItemsRequest(limit=20), metadata=md),
            "get_user_context": lambda: stub.GetUserContext(t.GetUserContextRequest(), metadata=md),
        }
        due = stub.GetUserPlan(t.GetUserPlanRequest(), metadata=md)
        print(f"learner {BENCH_USER}: {n_rows} progress rows, {due.overdue} overdue, {due.total - due.overdue} due in 24h")

        def full_read_progress():
            rows = query_all(client.query, TableName="bench-progress", KeyConditionExpression="userId = :u",
                             ProjectionExpression="#t, #l, #s, nextReview",
                             ExpressionAttributeNames={"#t": "type", "#l": "level", "#s": "status"},
                             ExpressionAttributeValues={":u": {"S": BENCH_USER}})
            return Counter((r["type"]["S"], r.get("level", {}).get("S"), r.get("status", {}).get("S")) for r in rows)

        def aggregate_read():
            return client.query(TableName="bench-progress", KeyConditionExpression="userId = :u AND begins_with(itemId, :p)",
                                ExpressionAttributeValues={":u": {"S": BENCH_USER}, ":p": {"S": "#agg#word#"}})

        results = {}
        print(f"\n{'operation':36} {'p50 ms':>8} {'p99 ms':>8}   ({args.calls} sequential calls each)")
        for name, fn in ops.items():
            lat = timed(fn, args.calls)
            results[name] = (statistics.median(lat), percentile(lat, 99))
            print(f"{name:36} {results[name][0]:8.1f} {results[name][1]:8.1f}")
        base_calls = max(20, args.calls // 5)
        full = timed(full_read_progress, base_calls, warmup=2)
        agg = timed(aggregate_read, args.calls)
        print(f"\nbaseline, same run (direct DynamoDB, no gRPC): read all {n_rows} rows projected "
              f"p50 {statistics.median(full):.1f} ms / p99 {percentile(full, 99):.1f} ms; aggregate rows "
              f"p50 {statistics.median(agg):.1f} ms / p99 {percentile(agg, 99):.1f} ms; ratio full/aggregate "
              f"{statistics.median(full) / statistics.median(agg):.0f}x; full read / tools get_user_progress "
              f"{statistics.median(full) / results['get_user_progress (words, all)'][0]:.1f}x")
        (work / "results.json").write_text(json.dumps({"ops": results, "full_read_p50": statistics.median(full),
                                                      "aggregate_p50": statistics.median(agg)}, indent=1))
        print(f"results: {work / 'results.json'}")
        channel.close()
    finally:
        if tools is not None:
            procs.stop(tools)
        procs.stop(dynalite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
