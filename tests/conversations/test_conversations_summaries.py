"""Summarisers: the offline one from the tutor's own classification, and the Gemini one (real google-genai
client) against a tiny local HTTP stub, including retries and failures counted in stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kotoba.v1 import conversations_pb2 as pb
from kotoba.v1 import conversations_pb2_grpc as pb_grpc
from services.common.auth import auth_metadata
from services.common.grpc_server import channel
from services.common.redact import redact_text
from services.conversations.server import build
from services.conversations.summarise import GeminiSummariser, OfflineSummariser, classify, offline_summary


@pytest.mark.parametrize(("turn", "expected"), [
    ({"intent": "kanji_details"}, ("kanji", "explanation")),
    ({"intent": "GREETING"}, ("greeting", "smalltalk")),
    ({"intent": "progress_report"}, ("progress", "progress_report")),
    ({"intent": "review_schedule"}, ("plan", "schedule")),
    ({"intent": "off_topic"}, ("off_topic", "refusal")),
    ({"toolCalls": [{"name": "get_user_plan"}]}, ("plan", "schedule")),
    ({"retrievedItemIds": ["kanji:猫"]}, ("kanji", "explanation")),
    ({"question": "こんにちは！"}, ("greeting", "smalltalk")),
    ({"question": "Which particle goes after 学校?"}, ("grammar", "explanation")),
    ({"question": "Tell me about the weather"}, ("other", "answer")),
])
def test_offline_classification(turn, expected):
    assert classify(turn) == expected


def test_offline_summary_fields():
    summary = offline_summary({
        "intent": "word_meaning", "question": "What does 「勉強」 mean?",
        "answer": "勉強 (べんきょう) means study. It is an N5 word. Example: 毎日勉強します。 More later.",
        "toolCalls": [{"name": "get_word_details", "argsJson": json.dumps({"item_id": "word:勉強:べんきょう"})}],
        "retrievedItemIds": ["word:勉強:べんきょう", "sentence:00012"],
    })
    assert summary["category"] == "vocabulary" and summary["response_type"] == "definition"
    assert summary["topics"][0] == "勉強" and len(summary["key_points"]) == 3


def test_redaction_keeps_study_content():
    for text in ("N5 level, 2026-11-24 10:00:00, sentence:00012, 12345", "word:食べる:たべる", "score 0.87"):
        assert redact_text(text) == text
    assert redact_text("4111111111111111") == "[card]" and redact_text("4111111111111112") == "4111111111111112"
    assert redact_text("＋８１ ９０ １２３４ ５６７８") == "[phone]"


class _Stub(BaseHTTPRequestHandler):
    fail_first = 0
    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "body": body, "key": self.headers.get("x-goog-api-key")})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"code": 400, "message": "stub says no",
                                                   "status": "INVALID_ARGUMENT"}}).encode())
            return
        turns = json.loads(body["contents"][0]["parts"][0]["text"])
        answer = [{"turn_id": t["turn_id"], "category": "grammar", "topics": ["は", "が"],
                   "response_type": "explanation", "key_points": ["は marks the topic"]} for t in turns]
        reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps(answer)}]},
                                 "finishReason": "STOP"}]}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def gemini_stub():
    _Stub.calls = []
    _Stub.fail_first = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _Stub, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_gemini_batch_with_json_schema(gemini_stub):
    stub, url = gemini_stub
    summariser = GeminiSummariser("test-key", "gemini-2.5-flash", url, timeout_seconds=5)
    out = await summariser.summarise([{"turnId": "t1", "question": "は or が?", "answer": "は marks the topic."},
                                      {"turnId": "t2", "question": "again?", "answer": "yes"}])
    assert [s["category"] for s in out] == ["grammar", "grammar"] and out[0]["topics"] == ["は", "が"]
    call = stub.calls[0]
    assert call["path"].endswith("/models/gemini-2.5-flash:generateContent") and call["key"] == "test-key"
    config = call["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseSchema"]["type"] == "ARRAY"
    assert len(stub.calls) == 1  # one call for the whole batch


@contextlib.asynccontextmanager
async def _serving(config, summariser, token_for):
    """Conversations on a free port with the given summariser: (stub, service metadata, admin metadata, app)."""
    app = build(config, summariser=summariser, addr="127.0.0.1:0")
    port = await app.start()
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            yield (pb_grpc.ConversationsStub(ch), auth_metadata(token_for("kotoba-gateway", "service")),
                   auth_metadata(token_for("admin", "admin")), app)
    finally:
        await app.stop()


async def test_gemini_failures_are_retried_and_counted(gemini_stub, conv_config, token_for, new_turn):
    stub, url = gemini_stub
    stub.fail_first = 1  # first attempt fails, the retry succeeds
    summariser = GeminiSummariser("k", "gemini-2.5-flash", url, 5)
    async with _serving(conv_config, summariser, token_for) as (conv, md, admin, app):
        first = new_turn()
        first.user_id = "learner-1"
        await conv.AppendTurn(pb.AppendTurnRequest(turn=first), metadata=md)
        await app.worker.idle()
        stats = await conv.GetStats(pb.GetStatsRequest(), metadata=admin)
        assert stats.by_category["grammar"] == 1 and stats.summary_failures == 0 and stats.summary_pending == 0

        stub.fail_first = 100  # never recovers: after the retries the turn is marked failed
        turn = new_turn()
        turn.user_id = "learner-1"
        await conv.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=md)
        await app.worker.idle()
        stats = await conv.GetStats(pb.GetStatsRequest(), metadata=admin)
        assert stats.summary_failures == 1 and stats.summary_pending == 0 and stats.turns == 2
        got = await conv.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=admin)
        assert got.turns[0].summary_status == "failed"
        assert len(stub.calls) == 2 + 3  # 1 failed + 1 ok, then 1 + 2 retries


class _CountingSummariser(OfflineSummariser):
    def __init__(self) -> None:
        self.batches: list[int] = []

    async def summarise(self, turns):
        self.batches.append(len(turns))
        return await super().summarise(turns)


@pytest.mark.parametrize("linger", [2.0, 0.0])
async def test_turns_logged_together_are_summarised_in_one_batch(conv_config, token_for, new_turn, linger):
    """Turns of several sessions logged within the linger share one summary call (and one counter update
    per stats shard); with no linger each turn is summarised as it comes."""
    summariser = _CountingSummariser()
    config = replace(conv_config, summary_linger_seconds=linger)
    async with _serving(config, summariser, token_for) as (conv, md, admin, app):
        for i in range(3):
            turn = new_turn()
            turn.user_id = f"learner-{i}"
            assert (await conv.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=md)).stored
            await asyncio.sleep(0.05)  # a learner's pace, well inside the linger
        await asyncio.wait_for(app.worker.idle(), 10)
        stats = await conv.GetStats(pb.GetStatsRequest(), metadata=admin)
        assert stats.turns == 3 and stats.summary_pending == 0 and sum(stats.by_category.values()) == 3
    # Without a linger the first turn is summarised alone, as soon as it is queued.
    assert summariser.batches == [3] if linger else summariser.batches[0] == 1


async def test_shutdown_drains_queued_summaries_without_waiting_out_the_linger(conv_config, token_for, new_turn):
    """At shutdown the queue is drained for a bounded time; a batch lingering for more turns then goes at once
    (a 30 s linger would otherwise outlast the 10 s drain and leave the turn pending for the next start)."""
    summariser = _CountingSummariser()
    config = replace(conv_config, summary_linger_seconds=30.0)
    async with _serving(config, summariser, token_for) as (conv, md, admin, app):
        turn = new_turn()
        turn.user_id = "learner-1"
        assert (await conv.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=md)).stored
        await asyncio.sleep(0.05)  # the worker has taken the turn and lingers
        await app.worker.stop(drain_seconds=10)
        assert summariser.batches == [1]
        got = await conv.GetConversation(pb.GetConversationRequest(session_id=turn.session_id), metadata=admin)
        assert got.turns[0].summary_status == "done"


async def test_stopping_without_a_drain_while_a_batch_lingers_ends_the_worker(conv_config, token_for, new_turn):
    """stop() with no drain wakes the lingering batch and cancels the worker in one go: the worker ends (the
    turn stays pending for the next start) instead of going on to wait for turns that never come."""
    config = replace(conv_config, summary_linger_seconds=30.0)
    async with _serving(config, _CountingSummariser(), token_for) as (conv, md, admin, app):
        turn = new_turn()
        turn.user_id = "learner-1"
        assert (await conv.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=md)).stored
        await asyncio.sleep(0.05)  # the worker has taken the turn and lingers
        worker = app.worker._task
        stopping = asyncio.create_task(app.worker.stop())
        ended, _ = await asyncio.wait({worker}, timeout=10)  # a swallowed cancel left it waiting for good
        if worker not in ended:
            worker.cancel()  # so that the test ends; the assertion below reports it
        await stopping
        assert worker in ended and worker.cancelled()
