"""`python -m services.conversations` as a real process: redacted JSON turn logs on stdout, and
summaries left pending by a crash are made at the next start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools import procs
from kotoba.v1 import conversations_pb2 as pb
from kotoba.v1 import conversations_pb2_grpc as pb_grpc
from services.common.auth import auth_metadata
from services.common.aws import dynamodb_client
from services.conversations import records
from services.conversations.config import ConversationsConfig
from services.conversations.privacy import pseudonym


def _start(aws_env: dict[str, str], log_path) -> tuple[subprocess.Popen, str]:
    addr = f"127.0.0.1:{procs.free_port()}"
    env = {**aws_env, "KOTOBA_CONVERSATIONS_ADDR": addr, "KOTOBA_DRAIN_SECONDS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "services.conversations"], env=env,
                            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=env["PYTHONPATH"])

    def serving() -> bool:
        assert proc.poll() is None, log_path.read_text()
        with grpc.insecure_channel(addr) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status
            return status == health_pb2.HealthCheckResponse.SERVING

    procs.wait_until(serving, 30, "conversations", interval=0.1)
    return proc, addr


def test_process_logs_and_recovers_pending(tables, aws_env, token_for, tmp_path):
    config = ConversationsConfig.from_env(aws_env, common=tables)
    ddb = dynamodb_client(config.common.aws)
    # A turn stored just before a crash: row pending, marker present, nobody summarising it.
    row = records.turn_row(pb.Turn(turn_id="crashed-1", session_id="s-crash", mode="text",
                                   question="What does 猫 mean?", answer="猫 means cat.", intent="word_meaning"),
                           "learner-9", records.parse_time("2026-01-02T03:04:05Z", "t"), int(time.time()) + 3600, False)
    ddb.put_item(TableName=config.table, Item=records.to_item(row))
    ddb.put_item(TableName=config.table, Item={**records.pending_key(row["timestamp"]),
                                               "turnSessionId": {"S": "s-crash"}, "ttl": {"N": str(row["ttl"])}})

    log_path = tmp_path / "conversations.log"
    proc, addr = _start(aws_env, log_path)
    try:
        with grpc.insecure_channel(addr) as ch:
            stub = pb_grpc.ConversationsStub(ch)
            turn = pb.Turn(turn_id=uuid.uuid4().hex, session_id="s-live", mode="voice", user_id="learner-8",
                           question="My name is Kenji, mail kenji@example.org", answer="Hello Kenji!",
                           tool_calls=[pb.ToolCall(name="search_words", args_json='{"query": "call 03-1234-5678"}')])
            assert stub.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=auth_metadata(token_for("kotoba-gateway", "service")),
                                   timeout=10).stored
            admin = auth_metadata(token_for("admin", "admin"))

            def summarised() -> bool:
                got = stub.GetConversation(pb.GetConversationRequest(session_id="s-crash"), metadata=admin, timeout=5)
                return got.turns[0].summary_status == "done"

            procs.wait_until(summarised, 20, "recovered summary")
            got = stub.GetConversation(pb.GetConversationRequest(session_id="s-crash"), metadata=admin, timeout=5)
            assert got.turns[0].summary.category == "vocabulary"
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    turns = [line for line in lines if line.get("event") == "turn"]
    assert len(turns) == 1
    logged = turns[0]["turn"]
    # The learner id never appears in clear on stdout, only its keyed pseudonym (issue 15, finding 6).
    assert logged["user_id"] == pseudonym(config.pseudonym_key, "learner-8")
    assert logged["turn_id"] == turn.turn_id and logged["mode"] == "voice"
    text = json.dumps(turns[0], ensure_ascii=False)
    for secret in ("Kenji", "kenji@example.org", "03-1234-5678", "learner-8"):
        assert secret not in text
    assert "[name]" in logged["question"] and "[email]" in logged["question"] and "[name]" in logged["answer"]
    assert "[phone]" in logged["tool_calls"][0]["args_json"]
    assert any(line.get("msg") == "pending summaries recovered" for line in lines)


async def test_digit_runs_are_stored_fast_and_health_never_waits(tables, aws_env, token_for, tmp_path):
    """Issue 15, finding 1: 24 digits and a letter took ~1.5 s on the event loop (doubling per digit), so
    a 40-digit message froze the process, health checks included (the old pattern needs ~1.5 s x 2^16 on
    40 digits: the call hits its 10 s deadline). Hostile turns are interleaved with plain ones and compared
    with them, because the store's own latency swings with the machine's load; the bounds are
    catastrophic-backtracking guards with a wide margin, not performance claims. Figures are printed
    with -s; bench/redact.py times the patterns themselves."""
    import asyncio

    proc, addr = _start(aws_env, tmp_path / "conversations.log")
    service = auth_metadata(token_for("kotoba-gateway", "service"))
    try:
        async with grpc.aio.insecure_channel(addr) as ch:
            stub, health = pb_grpc.ConversationsStub(ch), health_pb2_grpc.HealthStub(ch)
            waits: list[float] = []
            done = asyncio.Event()

            async def probe() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    waits.append(time.perf_counter() - started)
                    await asyncio.sleep(0.005)

            async def append(question: str) -> float:
                turn = pb.Turn(turn_id=uuid.uuid4().hex, session_id=f"s-{uuid.uuid4().hex[:8]}", user_id="learner-7",
                               mode="text", question=question, answer="ok")
                started = time.perf_counter()
                assert (await stub.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=service, timeout=10)).stored
                return time.perf_counter() - started

            await append("warm-up")
            prober = asyncio.create_task(probe())
            plain, hostile = [], []
            for q in ("1" * 24 + "a", "1" * 40 + "a", "1-" * 40 + "a", "１" * 40 + "a"):
                plain.append(await append("What does 猫 mean?"))
                hostile.append(await append(q))
            done.set()
            await prober
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"append plain {[round(p * 1000, 1) for p in plain]} ms, hostile {[round(h * 1000, 1) for h in hostile]} "
          f"ms, health max {max(waits) * 1000:.1f} ms over {len(waits)} checks")
    assert max(hostile) < 2 * max(plain) + 0.5, (plain, hostile)
    assert max(waits) < 1.0, sorted(waits)[-5:]
