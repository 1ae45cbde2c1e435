"""Flood benchmark: 10,000 turns through Conversations.AppendTurn while a chat-turn probe runs beside it.

    .venv/bin/python -m bench.conversations.flood [--turns 10000] [--concurrency 16] [--json]

Runs on its own dynalite (in-memory, free port) and its own `python -m services.conversations`
process. Phase 1 (logging off): the probe alone. Phase 2 (logging on): the same probe while
the flood runs. Reports flood throughput, AppendTurn latency, the probe's latency in both
phases and their ratio, summary drain time, and loss (acknowledged turns vs rows stored).

The probe is what a chat turn does against the shared store, from a separate process like the
gateway/tools: a settings GetItem, a 20-row progress Query and a context JSON build, then the
turn record is handed off (non-blocking) as the gateway's TurnLog does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from devtools import procs  # noqa: E402
from kotoba.v1 import conversations_pb2 as pb  # noqa: E402
from kotoba.v1 import conversations_pb2_grpc as pb_grpc  # noqa: E402
from services.common.auth import auth_metadata, mint_token  # noqa: E402
from services.common.aws import dynamodb_client  # noqa: E402
from services.common.config import CommonConfig  # noqa: E402
from services.common.tables import create_tables  # noqa: E402

PREFIX = "bench-"


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- probe (separate process) ----------------------------------------------------------------
def probe(stop_file: Path, out_file: Path) -> None:
    config = CommonConfig.from_env()
    ddb = dynamodb_client(config.aws)
    latencies: list[float] = []
    while not stop_file.exists():
        started = time.perf_counter()
        ddb.get_item(TableName=config.table("settings"), Key={"userId": {"S": "probe"}}, ConsistentRead=True)
        rows = ddb.query(TableName=config.table("progress"), KeyConditionExpression="userId = :u",
                         ExpressionAttributeValues={":u": {"S": "probe"}}, Limit=20)["Items"]
        json.dumps({"items": rows, "summary": "x" * 2000}, ensure_ascii=False)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    out_file.write_text(json.dumps(latencies))


def run_probe(env: dict[str, str], work: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    stop, out = work / f"{name}.stop", work / f"{name}.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench.conversations.flood", "--probe", str(stop), str(out)],
                            env=env, cwd=REPO)
    return proc, stop, out


def finish_probe(proc: subprocess.Popen, stop: Path, out: Path) -> list[float]:
    stop.touch()
    proc.wait(30)
    return json.loads(out.read_text())


# ---- flood -----------------------------------------------------------------------------------
async def flood(addr: str, service: str, learners: int, turns: int, concurrency: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(turns):
        queue.put_nowait(i)
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationsStub(channel)

        async def sender() -> None:
            nonlocal failures
            while not queue.empty():
                i = queue.get_nowait()
                # Five turns per session, all of one learner's: a session is never re-owned (AppendTurn
                # refuses another learner's turn for it).
                user = (i // 5) % learners
                # As the gateway logs: its service token, the learner named in the record.
                turn = pb.Turn(turn_id=uuid.uuid4().hex, user_id=f"learner-{user}", session_id=f"bench-s{i // 5}", connection_id="c1",
                               mode="voice" if i % 4 == 0 else "text", language="en",
                               question=f"What does word number {i} mean? my email is x{i}@example.com",
                               answer="It means something useful. Here is an example sentence.",
                               intent=("word_meaning", "kanji_details", "grammar_question", "progress")[i % 4],
                               retrieved_item_ids=["word:食べる:たべる"],
                               tool_calls=[pb.ToolCall(name="get_word_details", args_json='{"word": "食べる"}',
                                                       result_json='{"result": {}}', latency_ms=5)],
                               latencies=pb.Latencies(first_text_ms=300 + i % 200, total_ms=900 + i % 500),
                               usage=pb.Usage(text_in_tokens=200, text_out_tokens=50, cost_usd=0.0002))
                for attempt in range(5):
                    started = time.perf_counter()
                    try:
                        await stub.AppendTurn(pb.AppendTurnRequest(turn=turn), timeout=10,
                                              metadata=auth_metadata(service))
                        latencies.append((time.perf_counter() - started) * 1000)
                        break
                    except grpc.aio.AioRpcError:
                        if attempt == 4:
                            failures += 1
                        await asyncio.sleep(0.1 * (attempt + 1))

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return latencies, failures, time.perf_counter() - started


async def wait_summaries(addr: str, admin: str, limit_s: float) -> tuple[pb.GetStatsResponse, float]:
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationsStub(channel)
        while True:
            stats = await stub.GetStats(pb.GetStatsRequest(), metadata=auth_metadata(admin), timeout=30)
            if stats.summary_pending == 0 or time.perf_counter() - started > limit_s:
                return stats, time.perf_counter() - started
            await asyncio.sleep(0.5)


def count_turn_rows(config: CommonConfig) -> int:
    ddb = dynamodb_client(config.aws)
    total, args = 0, {"TableName": config.table("conversations"), "Select": "COUNT",
                      "FilterExpression": "attribute_exists(turnId)"}
    while True:
        page = ddb.scan(**args)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conversations.flood")
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(Path(args.probe[0]), Path(args.probe[1]))
        return 0

    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"kotoba-bench-conv-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    port = procs.free_port()
    dynalite, endpoint = procs.start_dynalite(port, None, work / "dynalite.log")
    server = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTOBA_", "AWS_ENDPOINT"))}
        addr = f"127.0.0.1:{procs.free_port()}"
        env.update({"KOTOBA_ENV": "local", "KOTOBA_TABLE_PREFIX": PREFIX, "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                    "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
                    "KOTOBA_CONVERSATIONS_ADDR": addr, "PYTHONPATH": str(REPO), "KOTOBA_LOG_LEVEL": "INFO"})
        config = CommonConfig.from_env(env)
        ddb = dynamodb_client(config.aws)
        create_tables(ddb, PREFIX)
        for n in range(50):
            ddb.put_item(TableName=config.table("progress"), Item={
                "userId": {"S": "probe"}, "itemId": {"S": f"word:{n:03d}"}, "status": {"S": "learning"}})
        # Turn logs go to a file, as a cluster's log pipeline would collect them.
        server = subprocess.Popen([sys.executable, "-m", "services.conversations"], env=env, cwd=REPO,
                                  stdout=open(work / "conversations.log", "wb"), stderr=subprocess.STDOUT)

        def serving() -> bool:
            with grpc.insecure_channel(addr) as ch:
                return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1

        procs.wait_until(serving, 60, "conversations")
        service = mint_token(config.auth, "kotoba-gateway", ("service",), ttl_seconds=3600)
        admin = mint_token(config.auth, "bench-admin", ("admin",))

        proc, stop, out = run_probe(env, work, "baseline")
        time.sleep(args.baseline_seconds)
        baseline = finish_probe(proc, stop, out)

        proc, stop, out = run_probe(env, work, "flood")
        append_ms, failures, flood_s = asyncio.run(flood(addr, service, args.learners, args.turns, args.concurrency))
        during = finish_probe(proc, stop, out)
        stats, drain_s = asyncio.run(wait_summaries(addr, admin, 600))
        # A second logging-off run after the flood: other load on the box drifts, so the
        # baseline is the mean of both sides.
        proc, stop, out = run_probe(env, work, "baseline-after")
        time.sleep(args.baseline_seconds)
        baseline_after = finish_probe(proc, stop, out)
        stored = count_turn_rows(config)
        acknowledged = len(append_ms)
        off = {"p50": (pct(baseline, .5) + pct(baseline_after, .5)) / 2,
               "p95": (pct(baseline, .95) + pct(baseline_after, .95)) / 2}
        result = {
            "turns_sent": args.turns, "acknowledged": acknowledged, "failed": failures, "stored_rows": stored,
            "lost": acknowledged - stored, "stats_turns": stats.turns, "summary_pending": stats.summary_pending,
            "summary_failures": stats.summary_failures,
            "flood_seconds": round(flood_s, 2), "flood_turns_per_s": round(acknowledged / flood_s, 1),
            "append_ms": {"p50": round(pct(append_ms, .5), 1), "p95": round(pct(append_ms, .95), 1),
                          "p99": round(pct(append_ms, .99), 1)},
            "summaries_drained_after_flood_s": round(drain_s, 1),
            "probe_logging_off_ms": {"n": len(baseline) + len(baseline_after), "p50": round(off["p50"], 2),
                                     "p95": round(off["p95"], 2),
                                     "before_p50": round(pct(baseline, .5), 2),
                                     "after_p50": round(pct(baseline_after, .5), 2)},
            "probe_logging_on_ms": {"n": len(during), "p50": round(pct(during, .5), 2),
                                    "p95": round(pct(during, .95), 2), "mean": round(statistics.fmean(during), 2)},
        }
        result["probe_ratio_p50"] = round(result["probe_logging_on_ms"]["p50"] / result["probe_logging_off_ms"]["p50"], 2)
        result["probe_ratio_p95"] = round(result["probe_logging_on_ms"]["p95"] / result["probe_logging_off_ms"]["p95"], 2)
        if args.json:
            print(json.dumps(result))
        else:
            for key, value in result.items():
                print(f"{key:34} {value}")
        return 0 if result["lost"] == 0 and failures == 0 else 1
    finally:
        if server is not None:
            procs.stop(server)
        procs.stop(dynalite)


if __name__ == "__main__":
    sys.exit(main())
