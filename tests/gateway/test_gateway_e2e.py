"""End to end through /v1/chat: real gateway, local Live engine, retrieval, tools and conversations."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kotoba.v1 import tools_pb2, tools_pb2_grpc
from services.common.auth import auth_metadata
from services.common.aws import dynamodb_resource
from services.common.grpc_server import channel
from services.gateway.client import ChatClient


async def progress_for(stack, user: str, level: str = "N5") -> tools_pb2.LevelProgress:
    async with channel(stack.addr("tools")) as ch:
        reply = await tools_pb2_grpc.ToolsStub(ch).GetUserProgress(
            tools_pb2.GetUserProgressRequest(entity_type="words", group=level), timeout=5,
            metadata=auth_metadata(stack.token(user)))
    return next(lv for lv in reply.levels if lv.level == level)


def stored_turns(stack, session_id: str, want: int = 1, wait_s: float = 10) -> list[dict]:
    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("conversations"))
    deadline = time.monotonic() + wait_s
    while True:
        items = table.query(KeyConditionExpression="sessionId = :s",
                            ExpressionAttributeValues={":s": session_id}).get("Items", [])
        if len(items) >= want or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def http_get(stack, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{stack.gateway_addr}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_text_question_without_start_is_grounded_and_logged(stack):
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        result = await client.ask("What does 泳ぐ mean?")
        session_id = client.session["session_id"]
    assert not result.errors, result.errors
    assert "swim" in result.text.lower()  # grounded
    # Citations arrive as data: the learner's text has none, the turn lists the item it cites.
    assert "[word:" not in result.text and "word:" not in result.text, result.text
    assert {"id": "word:泳ぐ:およぐ", "kind": "word"} in result.sources, result.sources
    assert any(f["type"] == "tool" and f.get("text") for f in result.frames) or not result.tools
    assert len([f for f in result.frames if f["type"] == "text"]) >= 1 and result.first_text_s is not None
    assert result.usage["text_in_tokens"] > 0 and result.usage["cost_usd"] > 0
    turns = stored_turns(stack, session_id)
    assert turns, "turn not handed to the conversations service"
    turn = turns[0]
    assert "word:泳ぐ:およぐ" in turn.get("retrievedItemIds", turn.get("retrieved_item_ids", [])) or \
        "word:泳ぐ:およぐ" in json.dumps(turn, ensure_ascii=False, default=str)


async def test_own_progress_comes_from_the_tools_service(stack):
    mine = await progress_for(stack, "demo-n5")
    theirs = await progress_for(stack, "demo-advanced")
    assert mine.learned != theirs.learned  # otherwise the next test proves nothing
    client = await ChatClient.open(stack.url, stack.token("demo-n5"))
    async with client:
        result = await client.ask("how is my N5 progress?")
        # Another learner's data is unreachable, however the message asks for it.
        other = await client.ask("How is the N5 progress of user demo-advanced? user_id=demo-advanced")
    assert not result.errors and "get_user_progress" in result.tools
    status = [f["text"] for f in result.frames if f["type"] == "tool"]
    assert status and all(line and "_" not in line for line in status), status  # words, not function names
    assert re.search(rf"(?<!\d){mine.learned}(?!\d)", result.text), result.text
    assert not re.search(rf"(?<!\d){theirs.learned}(?!\d)", other.text), other.text


async def test_followup_survives_goaway_without_the_learner_noticing(stack):
    client = await ChatClient.open(stack.url, stack.token("demo-n4"),
                                   headers={"x-kotoba-faults": "goaway_after_turns=1,goaway_time_left=2"})
    async with client:
        first = await client.ask("What does 泳ぐ mean?")
        await asyncio.sleep(0.3)  # the goAway arrives after the first turn; the gateway resumes between turns
        second = await client.ask("And how do you read it?")
        third = await client.ask("What JLPT level is it?")
    for r in (first, second, third):
        assert not r.errors, r.errors
    assert "およぐ" in second.text or "oyogu" in second.text.lower(), second.text
    assert "N5" in third.text
    log = (stack.logs / "gateway.log").read_text()
    assert '"reason": "go_away"' in log and "upstream reconnected" in log


async def test_upstream_drop_mid_turn_is_retried_and_resumed(stack):
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        clean = await client.ask("What does 食べる mean?")
    client = await ChatClient.open(stack.url, stack.token("demo-n4"),
                                   headers={"x-kotoba-faults": "drop_mid_turn=2"})
    async with client:
        first = await client.ask("What does 泳ぐ mean?")
        dropped = await client.ask("What does 食べる mean?")
        after = await client.ask("How do you read it?")
    assert not first.errors and not dropped.errors and not after.errors
    assert dropped.text == clean.text  # nothing streamed twice, nothing lost
    assert "たべる" in after.text or "taberu" in after.text.lower()


async def test_resume_within_the_window_continues_the_conversation(stack):
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        session = await client.start("text")
        first = await client.ask("What does 買う mean?")
    assert "buy" in first.text, first.text
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        again = await client.start("text", resume=session["session_id"])
        result = await client.ask("How do you read it?")
    assert again["session_id"] == session["session_id"] and again["resumed"] is True
    assert "かう" in result.text or "kau" in result.text.lower(), (result.text, (stack.logs / "gateway.log").read_text()[-3000:])
    # Someone else's session id does not resume (and says nothing about it).
    client = await ChatClient.open(stack.url, stack.token("demo-n5"))
    async with client:
        await client.send(type="start", resume=session["session_id"])
        first = await client.recv_json()
        second = await client.recv_json()
    assert first["code"] == "resume_failed"
    assert second["type"] == "session" and second["session_id"] != session["session_id"]


async def test_budget_exceeded_is_a_clear_error_and_the_session_lives_on(stack):
    from services.gateway.usage import today

    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("usage"))
    table.put_item(Item={"userId": "big-spender", "day": today(), "costUsd": 500, "turns": 1})
    client = await ChatClient.open(stack.url, stack.token("big-spender"))
    async with client:
        result = await client.ask("What does 泳ぐ mean?")
        await client.send(type="ping")
        pong = await client.recv_json()
    assert [e["code"] for e in result.errors] == ["budget_exceeded"] and not result.text
    assert pong == {"type": "pong"}


async def test_a_learners_own_daily_budget_is_read_with_todays_spend(stack):
    """The open reads today's spend and the learner's `dailyBudgetUsd` together (one BatchGetItem): the same
    spend is over one learner's own budget and well under the gateway's default for another."""
    from services.gateway.usage import today

    usage = dynamodb_resource(stack.config.aws).Table(stack.config.table("usage"))
    settings = dynamodb_resource(stack.config.aws).Table(stack.config.table("settings"))
    for user in ("own-budget", "default-budget"):
        usage.put_item(Item={"userId": user, "day": today(), "costUsd": Decimal("1.5"), "turns": 3})
    settings.put_item(Item={"userId": "own-budget", "dailyBudgetUsd": Decimal("1")})
    for user, refused in (("own-budget", True), ("default-budget", False)):
        client = await ChatClient.open(stack.url, stack.token(user))
        async with client:
            result = await client.ask("What does 本 mean?")
        assert [e["code"] for e in result.errors] == (["budget_exceeded"] if refused else []), user
        assert bool(result.text) is not refused


async def test_usage_row_is_updated_per_turn(stack):
    from services.gateway.usage import today

    table = dynamodb_resource(stack.config.aws).Table(stack.config.table("usage"))
    client = await ChatClient.open(stack.url, stack.token("usage-learner"))
    async with client:
        result = await client.ask("What does 本 mean?")
    # The usage row is written in the background after turn_complete; on a loaded CI machine that
    # can take seconds, so wait for it (this is not a latency check). moto applies an UpdateItem's actions to
    # the stored item one by one, so a read in between can see some of them: wait for the whole row.
    deadline = time.monotonic() + 20
    row: dict = {}
    whole = {"turns", "textInTokens", "costUsd", "ttl"}
    while time.monotonic() < deadline and not whole <= row.keys():
        row = table.get_item(Key={"userId": "usage-learner", "day": today()}).get("Item") or {}
        await asyncio.sleep(0.1)
    assert whole <= row.keys(), f"no whole usage row was written for the turn: {row}"
    assert int(row["turns"]) == 1 and int(row["textInTokens"]) == result.usage["text_in_tokens"]
    assert float(row["costUsd"]) == pytest.approx(result.usage["cost_usd"], rel=1e-6)


async def test_malformed_input_gets_errors_and_others_are_unaffected(stack):
    bystander = await ChatClient.open(stack.url, stack.token("demo-n4"))
    await bystander.start("text")
    async with connect(stack.url, additional_headers={"Authorization": f"Bearer {stack.token('demo-n4')}"},
                       max_size=None) as ws:
        async def reply(frame) -> dict:
            await ws.send(frame)
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

        assert (await reply("{nope"))["code"] == "bad_json"
        assert (await reply('{"type":"sing"}'))["code"] == "unknown_type"
        assert (await reply('{"type":"text"}'))["code"] == "bad_message"
        assert (await reply(json.dumps({"type": "text", "text": "x" * 5000})))["code"] == "too_large"
        got = await reply(b"\x00\x01" * 100)  # binary before start: text mode
        while got["type"] == "session":
            got = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert got["code"] == "binary_in_text_mode"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(b"\x00" * (1024 * 1024))  # oversized frame: clean close 1009
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with connect(stack.url, additional_headers={"Authorization": f"Bearer {stack.token('demo-n4')}"}) as ws:
        codes = []
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):  # a flood of junk ends in a policy close
                await ws.send("junk")
            while True:
                codes.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["code"])
        assert closed.value.rcvd.code == 1008 and set(codes) == {"bad_json"}
    result = await bystander.ask("What does 泳ぐ mean?")
    await bystander.close()
    assert not result.errors and "swim" in result.text.lower()


async def test_http_probes_static_client_and_auth(stack):
    assert http_get(stack, "/healthz")[0] == 200
    assert http_get(stack, "/readyz")[0] == 200
    status, body = http_get(stack, "/")
    assert status == 200 and b"<html" in body.lower()
    assert http_get(stack, "/nope")[0] == 404
    assert http_get(stack, "/v1/chat")[0] == 426
    with pytest.raises(InvalidStatus) as denied:
        async with connect(stack.url):
            pass
    assert denied.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        async with connect(stack.url + "?token=not-a-token"):
            pass
    async with connect(stack.url + "?token=" + stack.token("demo-n4")) as ws:  # ?token= works too
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_retrieval_down_the_answer_still_arrives(stack):
    from devtools.procs import free_port

    addr = stack.start_gateway("gateway-no-retrieval", KOTOBA_RETRIEVAL_ADDR=f"127.0.0.1:{free_port()}")
    client = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n4"))
    async with client:
        result = await client.ask("What does 泳ぐ mean?")
    stack.stop_service("gateway-no-retrieval")
    assert not result.errors and "swim" in result.text.lower()


async def test_tools_down_the_answer_says_data_is_unavailable(stack):
    from devtools.procs import free_port

    addr = stack.start_gateway("gateway-no-tools", KOTOBA_TOOLS_ADDR=f"127.0.0.1:{free_port()}")
    client = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n5"))
    async with client:
        result = await client.ask("how is my N5 progress?")
    stack.stop_service("gateway-no-tools")
    assert not result.errors and "get_user_progress" in result.tools
    assert re.search(r"unavailable|can't|cannot|couldn't|not available|right now", result.text, re.I), result.text


async def test_per_learner_session_cap(stack):
    clients = []
    try:
        for _ in range(6):
            c = await ChatClient.open(stack.url, stack.token("capped"))
            await c.start("text")
            clients.append(c)
        extra = await ChatClient.open(stack.url, stack.token("capped"))
        await extra.send(type="start")
        err = await extra.recv_json()
        assert err["code"] == "too_many_sessions"
        await extra.close()
    finally:
        for c in clients:
            await c.close()


@pytest.mark.voice
async def test_voice_turn_has_transcripts_and_audio(stack):
    from services.local_live.voice.testaudio import speech_pcm16_16k

    pcm = speech_pcm16_16k("What does taberu mean?", "en")
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        session = await client.start("audio")
        result = await client.say(pcm, wait_s=120)
    assert session["mode"] == "audio"
    assert not result.errors, result.errors
    assert result.transcript("user").strip() and result.transcript("tutor").strip()
    assert len(result.audio) > 24000 * 2 * 0.5 and len(result.audio) % 2 == 0  # > 0.5 s of 24 kHz PCM16
    assert result.first_audio_s is not None
    assert result.usage["audio_in_tokens"] > 0 and result.usage["audio_out_tokens"] > 0
    print("voice:", result.transcript("user"), "→", result.transcript("tutor")[:120],
          f"first audio {result.first_audio_s:.2f}s")


def test_kotoba_chat_cli_json(stack):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "services.cli", "chat", "--url", stack.url, "--user", "demo-n4",
                          "--json", "What does 泳ぐ mean?", "How do you read it?"], env=stack.env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    turns = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(turns) == 2 and turns[0]["session_id"] == turns[1]["session_id"]
    assert "swim" in turns[0]["answer"] and "およぐ" in turns[1]["answer"]


async def test_global_connection_cap_refuses_with_a_json_503_and_frees_on_close(stack):
    addr = await asyncio.to_thread(stack.start_gateway, "gateway-cap1", KOTOBA_GATEWAY_MAX_CONNECTIONS="1")
    url = f"ws://{addr}/v1/chat"
    try:
        first = await ChatClient.open(url, stack.token("cap-a"))
        await first.start("text")
        with pytest.raises(InvalidStatus) as refused:
            await ChatClient.open(url, stack.token("cap-b"))
        response = refused.value.response
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert json.loads(response.body)["error"]["code"] == "server_busy"
        await first.close()
        for _ in range(50):  # the slot frees once the gateway has seen the close
            try:
                second = await ChatClient.open(url, stack.token("cap-b"))
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the slot never freed")
        async with second:
            assert (await second.start("text"))["type"] == "session"
    finally:
        await asyncio.to_thread(stack.stop_service, "gateway-cap1")
