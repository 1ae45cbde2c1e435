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
            turn = pb.Turn(turn_id=uuid.uuid4().hex, session_id="s-live", mode="voice",
                           question="My name is Kenji, mail kenji@example.org", answer="Hello Kenji!",
                           tool_calls=[pb.ToolCall(name="search_words", args_json='{"query": "call 03-1234-5678"}')])
            assert stub.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=auth_metadata(token_for("learner-8")),
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
    assert logged["turn_id"] == turn.turn_id and logged["user_id"] == "learner-8" and logged["mode"] == "voice"
    text = json.dumps(turns[0], ensure_ascii=False)
    for secret in ("Kenji", "kenji@example.org", "03-1234-5678"):
        assert secret not in text
    assert "[name]" in logged["question"] and "[email]" in logged["question"] and "[name]" in logged["answer"]
    assert "[phone]" in logged["tool_calls"][0]["args_json"]
    assert any(line.get("msg") == "pending summaries recovered" for line in lines)
