"""Unit tests of the gateway's small modules: protocol, usage/cost/limits, resumption, RAG block, prompts,
tool declarations, the tools bridge and the turn-log queue (against small real gRPC servers)."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from google.genai import types

from kotoba.v1 import (
    conversations_pb2,
    conversations_pb2_grpc,
    items_pb2,
    retrieval_pb2,
    retrieval_pb2_grpc,
    tools_pb2,
    tools_pb2_grpc,
)
from services.gateway import prompts, protocol, rag
from services.gateway.backends import Backends
from services.gateway.config import GatewayConfig, Prices
from services.gateway.resumption import ResumptionState, backoff_delays, priming_turns
from services.gateway.tools_bridge import ToolBridge, function_declarations, genai_tools
from services.gateway.turnlog import TurnLog
from services.gateway.usage import Limits, TokenBucket, TurnUsage, cost, from_metadata


def test_parse_accepts_the_documented_messages():
    assert protocol.parse('{"type":"text","text":" 泳ぐ "}', 100) == protocol.Text("泳ぐ")
    assert protocol.parse('{"type":"start","mode":"audio","language":"ja"}', 100) == \
        protocol.Start("audio", "ja", None)
    assert protocol.parse('{"type":"start","resume":"abc"}', 100) == protocol.Start(None, None, "abc")
    assert isinstance(protocol.parse('{"type":"audio_end"}', 100), protocol.AudioEnd)
    assert isinstance(protocol.parse('{"type":"ping"}', 100), protocol.Ping)


@pytest.mark.parametrize("raw,code", [
    ("{not json", protocol.BAD_JSON),
    ("[1,2]", protocol.BAD_MESSAGE),
    ('{"type":"dance"}', protocol.UNKNOWN_TYPE),
    ('{"text":"hi"}', protocol.BAD_MESSAGE),
    ('{"type":"text","text":""}', protocol.BAD_MESSAGE),
    ('{"type":"text","text":5}', protocol.BAD_MESSAGE),
    ('{"type":"text","text":"' + "a" * 101 + '"}', protocol.TOO_LARGE),
    ('{"type":"start","mode":"video"}', protocol.BAD_MESSAGE),
    ('{"type":"start","language":"fr"}', protocol.BAD_MESSAGE),
    ('{"type":"start","resume":{}}', protocol.BAD_MESSAGE),
    ("[" * 100000, protocol.BAD_JSON),
])
def test_parse_rejects_bad_input_with_a_code(raw, code):
    result = protocol.parse(raw, 100)
    assert isinstance(result, protocol.ProtocolError) and result.code == code


def test_usage_by_modality_and_cost_at_configured_prices():
    meta = types.UsageMetadata(
        prompt_token_count=7600, response_token_count=3750,
        prompt_tokens_details=[types.ModalityTokenCount(modality="AUDIO", token_count=7500),
                               types.ModalityTokenCount(modality="TEXT", token_count=100)],
        response_tokens_details=[types.ModalityTokenCount(modality="AUDIO", token_count=3750)])
    u = from_metadata(meta, Prices())
    assert (u.audio_in_tokens, u.text_in_tokens, u.audio_out_tokens, u.text_out_tokens) == (7500, 100, 3750, 0)
    assert u.cost_usd == pytest.approx((7500 * 3 + 100 * 0.5 + 3750 * 12) / 1e6)
    # The facts' example: a 5-minute voice session (300 s in, 150 s out) costs about $0.0675.
    assert cost(TurnUsage(audio_in_tokens=300 * 25, audio_out_tokens=150 * 25), Prices()) == pytest.approx(0.0675)
    plain = from_metadata(types.UsageMetadata(prompt_token_count=1000, response_token_count=500), Prices())
    assert plain.text_in_tokens == 1000 and plain.text_out_tokens == 500
    assert plain.cost_usd == pytest.approx(0.0015)
    assert cost(plain, Prices(text_in=1.0, text_out=4.0)) == pytest.approx(0.003)


async def test_limits_rate_and_budget():
    limits = Limits(None, messages_per_minute=3, audio_seconds_per_minute=10, daily_budget_usd=0.01)
    assert [limits.allow_message("a") for _ in range(4)] == [True, True, True, False]
    assert limits.allow_message("b")  # per learner
    assert limits.allow_audio("a", 6) and not limits.allow_audio("a", 6)
    assert not limits.over_budget("a")
    limits.record_soon("a", TurnUsage(cost_usd=0.02))  # counted at once, whenever the row is written
    assert limits.over_budget("a") and not limits.over_budget("b")
    bucket = TokenBucket(60)
    bucket.tokens = 0
    bucket.stamp -= 2  # two seconds later: two more messages
    assert bucket.take() and bucket.take() and not bucket.take()


def test_resumption_state_and_backoff():
    state = ResumptionState()
    assert state.resume_handle() is None
    assert state.update("h1", True) and state.resume_handle() == "h1"
    assert not state.update("h1", True)
    state.update(None, False)
    assert state.resume_handle() is None  # not resumable right now
    state.update("h2", True)
    assert state.resume_handle() == "h2"
    delays = list(backoff_delays(5, 0.2, cap_s=1.0))
    assert delays[0] == 0 and all(0 < d <= 1.5 for d in delays[1:])
    for i in range(10):
        state.remember(f"q{i}", f"a{i}", keep=3)
    assert [h["text"] for h in state.history] == ["q7", "a7", "q8", "a8", "q9", "a9"]
    turns = priming_turns(state.history)
    assert [t.role for t in turns] == ["user", "model"] * 3


def test_context_block_follows_the_interface():
    hit = retrieval_pb2.SearchResponse(hits=[retrieval_pb2.SearchHit(
        item=items_pb2.Item(id="word:泳ぐ:およぐ", type="word", written="泳ぐ", meanings=["to swim"]), score=0.5)])
    r = rag.Retrieved(rag.hit_dicts(hit), True, 3.0)
    content = rag.user_turn(r, "what does 泳ぐ mean?")
    first, last = content.parts[0].text, content.parts[-1].text
    assert first.startswith("<kotoba-context>\n") and first.endswith("\n</kotoba-context>")
    body = json.loads(first.split("\n", 1)[1].rsplit("\n", 1)[0])
    assert body["items"][0]["id"] == "word:泳ぐ:およぐ" and body["items"][0]["score"] == 0.5
    assert last == "what does 泳ぐ mean?" and content.role == "user"
    down = rag.user_turn(rag.Retrieved(), "x").parts[0].text
    assert down == '<kotoba-context>\n{"items": [], "unavailable": true}\n</kotoba-context>'


def test_system_instruction_has_learner_context_without_user_id():
    ctx = tools_pb2.GetUserContextResponse(user_id="demo-n4", summary="N4 learner, 12 reviews due",
                                           settings=tools_pb2.LearnerSettings(base_level="N4", language="en",
                                                                              display_name="Aki"),
                                           reviews_due=12)
    text = prompts.system_instruction(ctx, "en", "text")
    assert "demo-n4" not in text and "JLPT N4" in text
    block = text.split("<learner-context>\n", 1)[1].split("\n</learner-context>")[0]
    learner = json.loads(block)
    assert learner["base_level"] == "N4" and learner["display_name"] == "Aki" and learner["reviews_due"] == "12"
    assert learner["summary"].startswith("N4 learner") and learner["language"] == "en"
    assert "unavailable" in json.loads(prompts.system_instruction(None, "ja", "audio").split(
        "<learner-context>\n")[1].split("\n</learner-context>")[0])


def test_all_declarations_convert_for_the_live_setup():
    text_decls = function_declarations(voice=False)
    voice_decls = function_declarations(voice=True)
    assert "search_dictionary" not in {d["name"] for d in text_decls}
    assert {d["name"] for d in voice_decls} - {d["name"] for d in text_decls} == {"search_dictionary"}
    tool = genai_tools(voice_decls)[0]
    assert len(tool.function_declarations) == len(voice_decls)
    assert "get_user_context" not in {d["name"] for d in voice_decls}


# ---------------------------------------------------------------- bridge and turn log on real gRPC servers


class FakeTools(tools_pb2_grpc.ToolsServicer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def GetUserProgress(self, request, context):
        token = dict(context.invocation_metadata()).get("authorization", "")
        self.seen.append((request.group, token))
        return tools_pb2.GetUserProgressResponse(entity_type="words", levels=[tools_pb2.LevelProgress(
            level="N5", total=10, learned=4)])

    async def GetKanjiDetails(self, request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no kanji {request.character!r}")

    async def GetUserPlan(self, request, context):
        await asyncio.sleep(5)
        return tools_pb2.GetUserPlanResponse()


class FakeRetrieval(retrieval_pb2_grpc.RetrievalServicer):
    async def Search(self, request, context):
        return retrieval_pb2.SearchResponse(hits=[retrieval_pb2.SearchHit(
            item=items_pb2.Item(id="kanji:水", type="kanji", written="水"), score=1.0)])


class FlakyConversations(conversations_pb2_grpc.ConversationsServicer):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stored: list[str] = []
        self.senders: list[tuple[str, str]] = []

    async def AppendTurn(self, request, context):
        bearer = dict(context.invocation_metadata()).get("authorization", "")
        if bearer == "Bearer expired":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "not signed in: token expired")
        if self.failures:
            self.failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
        self.stored.append(request.turn.turn_id)
        self.senders.append((request.turn.user_id, bearer))
        return conversations_pb2.AppendTurnResponse(stored=True)


@pytest.fixture
async def fake_backends(config):
    server = grpc.aio.server()
    tools, conv = FakeTools(), FlakyConversations(failures=2)
    tools_pb2_grpc.add_ToolsServicer_to_server(tools, server)
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(FakeRetrieval(), server)
    conversations_pb2_grpc.add_ConversationsServicer_to_server(conv, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    addr = f"127.0.0.1:{port}"
    common = config.__class__(**{**config.__dict__, "addrs": {**config.addrs, "tools": addr, "retrieval": addr,
                                                               "conversations": addr}})
    backends = Backends.connect(common)
    yield backends, tools, conv
    await backends.close()
    await server.stop(0)


async def test_bridge_runs_calls_in_parallel_and_answers_every_id(fake_backends):
    backends, tools, _ = fake_backends
    bridge = ToolBridge(backends, deadline_s=0.5)
    calls = [
        types.FunctionCall(id="1", name="get_user_progress", args={"group": "N5", "user_id": "someone-else"}),
        types.FunctionCall(id="2", name="get_kanji_details", args={"character": "龘"}),
        types.FunctionCall(id="3", name="get_user_plan", args={}),
        types.FunctionCall(id="4", name="drop_tables", args={}),
        types.FunctionCall(id="5", name="get_user_progress", args={"group": {"bad": 1}}),
        types.FunctionCall(id="6", name="search_dictionary", args={"query": "water", "top_k": "x"}),
    ]
    records = await bridge.run(calls, "tok-1")
    assert [r.id for r in records] == ["1", "2", "3", "4", "5", "6"]
    assert records[0].response["result"]["levels"][0]["learned"] == "4"
    assert tools.seen == [("N5", "Bearer tok-1")]  # user_id arg dropped, identity from the token only
    assert records[1].response["error"]["code"] == "NOT_FOUND" and "龘" in records[1].response["error"]["message"]
    assert records[2].response["error"]["code"] == "DEADLINE_EXCEEDED"
    assert records[3].response["error"]["code"] == "NOT_FOUND"
    assert records[4].response["error"]["code"] == "INVALID_ARGUMENT"
    assert records[5].response["result"]["hits"][0]["id"] == "kanji:水"
    assert max(r.latency_ms for r in records) < 1500  # parallel: bounded by one deadline, not the sum


async def test_turnlog_retries_and_flushes(fake_backends):
    backends, _, conv = fake_backends
    log = TurnLog(backends.conversations, maxsize=10, base_delay_s=0.01)
    log.start()
    for i in range(3):
        log.submit(conversations_pb2.Turn(turn_id=f"t{i}"), "tok")
    await log.close(5)
    assert sorted(conv.stored) == ["t0", "t1", "t2"] and log.sent == 3 and log.failed == 0 and log.dropped == 0


async def test_turnlog_retries_until_delivered_through_a_long_outage(fake_backends):
    backends, _, conv = fake_backends
    conv.failures = 40  # far more than any fixed number of attempts
    log = TurnLog(backends.conversations, maxsize=10, base_delay_s=0.005, max_delay_s=0.02, senders=1)
    log.start()
    log.submit(conversations_pb2.Turn(turn_id="t-outage"), "tok")
    await log.close(30)
    assert conv.stored == ["t-outage"] and log.retries == 40 and log.dropped == 0 and log.failed == 0


async def test_turnlog_sends_with_the_service_token(fake_backends, config):
    from services.gateway.turnlog import ServiceToken

    backends, _, conv = fake_backends
    conv.failures = 0
    log = TurnLog(backends.conversations, maxsize=10, service_token=ServiceToken(config.auth))
    log.start()
    log.submit(conversations_pb2.Turn(turn_id="t-valid"), "tok", user_id="learner-1")
    log.submit(conversations_pb2.Turn(turn_id="t-refused"), "expired", user_id="learner-1")  # UNAUTHENTICATED
    log.submit(conversations_pb2.Turn(turn_id="t-known"), "tok", user_id="learner-1", expires_at=1.0)
    await log.close(5)
    by_turn = dict(zip(conv.stored, conv.senders, strict=True))
    # With a service token every record goes with it (Conversations takes turns from the service role only).
    for tid in ("t-valid", "t-refused", "t-known"):
        user_id, bearer = by_turn[tid]
        assert user_id == "learner-1" and bearer.startswith("Bearer ") and bearer != "Bearer tok"
    # Without a service token such a record is refused and counted, never retried for ever.
    plain = TurnLog(backends.conversations, maxsize=10)
    plain.start()
    plain.submit(conversations_pb2.Turn(turn_id="t-orphan"), "expired", user_id="learner-1")
    await plain.close(5)
    assert plain.failed == 1 and "t-orphan" not in conv.stored


async def test_turnlog_waits_while_opens_are_queued_but_not_for_ever_and_never_at_shutdown(fake_backends):
    """Issue 19's burst: records wait while `hold()` says answers are waiting, since Conversations writes ~9
    rows per turn into the DynamoDB the opens read; bounded by age and by the queue filling up."""
    backends, _, conv = fake_backends
    conv.failures = 0
    busy = {"on": True}
    log = TurnLog(backends.conversations, maxsize=10, senders=1, hold=lambda: busy["on"], max_hold_s=30)
    log.start()
    log.submit(conversations_pb2.Turn(turn_id="t-held"), "tok")
    await asyncio.sleep(0.3)
    assert conv.stored == []  # held while opens are queued
    busy["on"] = False
    for _ in range(100):
        if conv.stored:
            break
        await asyncio.sleep(0.02)
    assert conv.stored == ["t-held"]
    busy["on"] = True
    log.submit(conversations_pb2.Turn(turn_id="t-at-close"), "tok")
    await log.close(5)  # a flush does not wait for the burst to end
    assert conv.stored == ["t-held", "t-at-close"] and log.dropped == 0
    bounded = TurnLog(backends.conversations, maxsize=10, senders=1, hold=lambda: True, max_hold_s=0.2)
    bounded.start()
    bounded.submit(conversations_pb2.Turn(turn_id="t-bounded"), "tok")
    for _ in range(100):
        if "t-bounded" in conv.stored:
            break
        await asyncio.sleep(0.02)
    assert "t-bounded" in conv.stored  # a burst that never ends holds each record at most max_hold_s
    await bounded.close(5)
    # Counted from the submission: records that waited in the queue meanwhile are not held again, so a
    # long burst delays records by max_hold_s but does not cut the rate they are delivered at.
    steady = TurnLog(backends.conversations, maxsize=100, senders=1, hold=lambda: True, max_hold_s=0.3)
    for i in range(20):
        steady.submit(conversations_pb2.Turn(turn_id=f"t-steady-{i}"), "tok")
    await asyncio.sleep(0.3)
    steady.start()
    for _ in range(200):
        if sum(t.startswith("t-steady-") for t in conv.stored) == 20:
            break
        await asyncio.sleep(0.01)
    assert sum(t.startswith("t-steady-") for t in conv.stored) == 20  # within 2 s, not 20 x 0.3 s
    await steady.close(5)
    # A queue half full sends at once, however young its records: an overload must not drop any.
    full = TurnLog(backends.conversations, maxsize=8, senders=1, hold=lambda: True, max_hold_s=60)
    for i in range(6):
        full.submit(conversations_pb2.Turn(turn_id=f"t-full-{i}"), "tok")
    full.start()
    for _ in range(200):
        if sum(t.startswith("t-full-") for t in conv.stored) >= 2:
            break
        await asyncio.sleep(0.01)
    assert sum(t.startswith("t-full-") for t in conv.stored) >= 2 and full.dropped == 0
    await full.close(5)


async def test_turnlog_is_bounded_and_never_blocks():
    log = TurnLog(None, maxsize=2)  # no worker: nothing drains
    for i in range(5):
        log.submit(conversations_pb2.Turn(turn_id=f"t{i}"), "tok")
    assert log.queue.qsize() == 2 and log.dropped == 3
    assert [log.queue.get_nowait().turn.turn_id for _ in range(2)] == ["t3", "t4"]


async def test_turnlog_counts_what_the_flush_deadline_leaves_behind(fake_backends):
    backends, _, conv = fake_backends
    conv.failures = 10_000  # Conversations never comes back
    log = TurnLog(backends.conversations, maxsize=10, base_delay_s=0.01, max_delay_s=0.05, senders=1)
    log.start()
    for i in range(3):
        log.submit(conversations_pb2.Turn(turn_id=f"t{i}"), "tok")
    await log.close(0.3)
    assert log.dropped == 3 and log.sent == 0 and log.queue.qsize() == 0


def test_config_reads_env_and_rejects_bad_values(aws_env):
    cfg = GatewayConfig.from_env({**aws_env, "KOTOBA_PRICE_AUDIO_OUT_PER_M": "10"})
    assert cfg.prices.audio_out == 10 and cfg.live.kind == "local" and cfg.live.api_key == "local-dev-key"
    assert cfg.ping_timeout_s >= cfg.ping_interval_s >= 20
    from services.common.config import ConfigError

    with pytest.raises(ConfigError, match="KOTOBA_GATEWAY_PING_TIMEOUT_S"):
        GatewayConfig.from_env({**aws_env, "KOTOBA_GATEWAY_PING_TIMEOUT_S": "5"})
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GatewayConfig.from_env({**aws_env, "KOTOBA_LIVE_BACKEND": "gemini"})


def test_sessions_that_ended_here_do_not_count_against_the_cap_while_their_rows_lag():
    """A learner who closes and reopens quickly is not refused because the closed sessions' rows still say
    attached (their last write lags under load); sessions attached on other gateways still count."""
    from services.gateway.registry import SessionRegistry

    registry = SessionRegistry()
    for n in range(3):
        assert registry.reserve(f"c{n}", "learner", cap=3)
        registry.bind(f"c{n}", f"s{n}")
        registry.release(f"c{n}")  # closed here; its row may still read "attached"
    assert registry.open_elsewhere({"s0", "s1", "s2"}) == 0
    assert registry.open_elsewhere({"s0", "other-gateway"}) == 1
    assert registry.reserve("c9", "learner", cap=3)
    registry.bind("c9", "s0")  # resumed here again: counted by `held`, not twice
    assert registry.held("learner") == 1 and registry.open_elsewhere({"s0"}) == 0
