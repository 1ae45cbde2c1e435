"""`python -m services.retrieval` as a real process: ready on health after the first load, answers, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.procs import free_port, wait_until
from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.common.auth import auth_metadata, mint_token
from services.common.config import CommonConfig


def test_process_serves_and_cli_search(loaded, make_indexer, snapshot_uri, aws_env, tmp_path):
    make_indexer(loaded).build()
    addr = f"127.0.0.1:{free_port()}"
    env = {**aws_env, "KOTOBA_RETRIEVAL_ADDR": addr, "KOTOBA_SNAPSHOT_URI": snapshot_uri, "KOTOBA_DRAIN_SECONDS": "0"}
    log = open(tmp_path / "retrieval.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "services.retrieval"], env=env, stdout=log, stderr=log)
    try:
        def serving() -> bool:
            assert proc.poll() is None, (tmp_path / "retrieval.log").read_text()
            with grpc.insecure_channel(addr) as ch:
                reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_until(serving, 60, "retrieval process")
        with grpc.insecure_channel(addr) as ch:
            search = retrieval_pb2_grpc.RetrievalStub(ch).Search
            with pytest.raises(grpc.RpcError) as err:  # issue 15: retrieval answered without any token
                search(retrieval_pb2.SearchRequest(query="kanji for one"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = search(retrieval_pb2.SearchRequest(query="kanji for one"), timeout=10,
                           metadata=auth_metadata(mint_token(CommonConfig.from_env(env).auth, "learner-1")))
        assert reply.hits[0].item.id == "kanji:一"
        out = subprocess.run([sys.executable, "-m", "services.cli", "search", "shaberu", "--json"], env=env,
                             capture_output=True, text=True, timeout=60, check=True)
        result = json.loads(out.stdout)
        assert result["source"].startswith("grpc") and result["hits"][0]["written"] == "しゃべる"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0 or proc.returncode in (0, -signal.SIGTERM)


def test_index_and_eval_commands(loaded, put_items, embedder, snapshot_uri, aws_env, tmp_path):
    env = {**aws_env, "KOTOBA_SNAPSHOT_URI": snapshot_uri}

    def kotoba(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "services.cli", *args, "--json"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    built = kotoba("index", "build")
    assert built["count"] > 300 and built["embedded"] == 0 and not built["errors"]
    verified = kotoba("index", "verify")
    assert verified["ok"] and verified["canary"]["ok"] and verified["version"] == built["version"]
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"query": "kanji for one", "kind": "kanji", "expect": {"id": "kanji:一"}},
        {"query": "asatte", "kind": "romaji", "expect": {"type": "word", "text": "あさって"}},
        {"query": "example with あさって", "kind": "sentence", "expect": {"type": "sentence", "contains": "あさって"}},
    ]))
    report = kotoba("eval", "retrieval", "--queries", str(queries))
    assert report["recall_at_1"] == 1.0 and set(report["by_kind"]) == {"kanji", "romaji", "sentence"}
    assert {"recall_at_5", "mrr"} <= set(report)
    put_items(loaded, [{"id": "word:雪だるま:ゆきだるま", "type": "word", "level": "N3", "written": "雪だるま",
                        "reading": "ゆきだるま", "romaji": "yukidaruma", "meanings": ["snowman"],
                        "updated_at": "2026-11-24T12:00:00Z"}], None, embedder.model, dirty=True)
    watched = kotoba("index", "watch", "--once")
    assert watched["action"] == "update" and watched["changed"] == 1 and watched["parent"] == built["version"]
    assert kotoba("index", "rollback") == {"from": watched["version"], "to": built["version"]}
