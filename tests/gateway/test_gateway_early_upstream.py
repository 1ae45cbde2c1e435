"""The session's upstream is opened beside the read of the learner's context, and that context follows in a
contextUpdate before anything the learner says (docs/protocol.md, "Opening a session"). Checked on the frames
a local Live engine of its own records: with KOTOBA_GATEWAY_EARLY_UPSTREAM on (the default) the session takes
an upstream its gateway connected ahead (KOTOBA_GATEWAY_UPSTREAM_POOL) or connects its own, and with it off the
learner's context is in the setup; while opens queue at admission an open reads first and sets up with it too."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools import procs
from services.common.aws import dynamodb_client
from services.common.contracts import LEARNER_CONTEXT_RE
from services.gateway.client import ChatClient
from tests.support import faultkit as kit

pytestmark = pytest.mark.timeout(180)


def _instruction_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in (content or {}).get("parts", []))


def _learner_block(text: str) -> dict[str, Any] | None:
    match = LEARNER_CONTEXT_RE.search(text)
    return json.loads(match.group(1)) if match else None


def _client_frames(frames_dir: Path) -> list[list[dict[str, Any]]]:
    """The frames (with their times) each upstream connection received, oldest connection first."""
    logs = [[json.loads(line) for line in path.read_text().splitlines()] for path in frames_dir.glob("*.jsonl")]
    logs.sort(key=lambda frames: frames[0]["t"])
    return [[f for f in frames if f["dir"] == "in"] for frames in logs]


@pytest.mark.parametrize(("early", "pool"), [(True, 2), (True, 0), (False, 0)])
async def test_the_learner_context_reaches_the_model_before_the_first_message(stack, tmp_path, early, pool):
    frames_dir = tmp_path / "frames"
    live_addr = f"127.0.0.1:{procs.free_port()}"
    engine = stack.spawn(f"live-rec-{early}-{pool}", "services.local_live",
                         stack.env(KOTOBA_LIVE_ADDR=live_addr, KOTOBA_LIVE_FRAMES_DIR=str(frames_dir)))
    name = f"gateway-rec-{early}-{pool}"
    try:
        stack.wait_ready("local_live", engine, live_addr, 60)
        addr = stack.start_gateway(name, KOTOBA_LIVE_ADDR=live_addr,
                                   KOTOBA_GATEWAY_EARLY_UPSTREAM="1" if early else "0",
                                   KOTOBA_GATEWAY_UPSTREAM_POOL=str(pool))
        if pool:  # the session's upstream was connected before it
            await asyncio.to_thread(procs.wait_until, lambda: len(_client_frames(frames_dir)) >= 2 * pool, 30,
                                    "the gateway's parked upstreams")
        asked_at = time.time()
        async with await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n4")) as client:
            session = await client.start("text")
            answer = await client.ask("What does 泳ぐ mean?")
    finally:
        stack.stop_service(name)
        stack.stop_service(f"live-rec-{early}-{pool}")
    assert session["language"] == "en" and not answer.errors and "swim" in answer.text.lower()

    [used] = [c for c in _client_frames(frames_dir) if any("client_content" in f["frame"] for f in c)]
    # With a pool the session's upstream was set up before the learner came; without, after.
    assert (used[0]["t"] < asked_at) == bool(pool)
    received = [f["frame"] for f in used]
    kinds = [next(iter(frame)) for frame in received]
    setup_block = _learner_block(_instruction_text(received[0]["setup"].get("systemInstruction")))
    first_turn = kinds.index("client_content")
    if early:
        # Opened knowing nothing of the learner; their whole instruction follows before the first message.
        assert setup_block is None
        assert "contextUpdate" in kinds[:first_turn], kinds
        update = received[kinds.index("contextUpdate")]["contextUpdate"]
        learner = _learner_block(_instruction_text(update["systemInstruction"]))
    else:
        assert "contextUpdate" not in kinds, kinds
        learner = setup_block
    assert learner is not None and learner["base_level"] == "N4" and "user_id" not in learner


def _blocks(frames: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The learner's level in one upstream connection's setup, and in its first contextUpdate (None: none)."""
    setup = _learner_block(_instruction_text(frames[0]["frame"]["setup"].get("systemInstruction")))
    update = next((f["frame"]["contextUpdate"] for f in frames if "contextUpdate" in f["frame"]), None)
    updated = _learner_block(_instruction_text(update.get("systemInstruction"))) if update else None
    return (setup or {}).get("base_level"), (updated or {}).get("base_level")


async def test_while_opens_queue_an_open_reads_first_and_connects_with_the_whole_instruction(stack, tmp_path):
    """In a burst early connects slowed the turns' first text 1.3-2x at p95 (paired runs): an open admitted
    while others still queue behind it reads the learner's context, then connects with the whole instruction,
    in its slot; an open with nobody behind it connects early and sends the instruction in a contextUpdate.
    One open slot, held by a first open whose upstream setup the engine delays; two more queue behind it."""
    frames_dir = tmp_path / "frames"
    live_addr = f"127.0.0.1:{procs.free_port()}"
    engine = stack.spawn("live-rec-queue", "services.local_live",
                         stack.env(KOTOBA_LIVE_ADDR=live_addr, KOTOBA_LIVE_FRAMES_DIR=str(frames_dir)))
    clients: list[ChatClient] = []
    try:
        stack.wait_ready("local_live", engine, live_addr, 60)
        addr = stack.start_gateway("gateway-rec-queue", KOTOBA_LIVE_ADDR=live_addr, KOTOBA_GATEWAY_UPSTREAM_POOL="0",
                                   KOTOBA_GATEWAY_ALLOW_FAULTS="1", KOTOBA_GATEWAY_MAX_CONCURRENT_OPENS="1",
                                   KOTOBA_GATEWAY_OPEN_WAIT_S="60")
        url = f"ws://{addr}/v1/chat"
        first = await ChatClient.open(url, stack.token("demo-n5"), headers={"x-kotoba-faults": "delay_setup_ms=2000"})
        clients.append(first)
        await first.send(type="start", mode="text")
        # The first open holds the slot once its upstream connection reached the engine.
        await asyncio.to_thread(procs.wait_until, lambda: len(_client_frames(frames_dir)) >= 1, 30, "the first setup")
        for learner in ("demo-n4", "demo-advanced"):  # queued in this order (admission is first come, first served)
            client = await ChatClient.open(url, stack.token(learner))
            clients.append(client)
            await client.send(type="start", mode="text")
            await asyncio.sleep(0.3)
        for client in clients:
            while (await client.recv_json(wait_s=60))["type"] != "session":
                pass
            answer = await client.ask("What does 泳ぐ mean?", wait_s=60)
            assert not answer.errors and "swim" in answer.text.lower()
    finally:
        for client in clients:
            await client.close()
        stack.stop_service("gateway-rec-queue")
        stack.stop_service("live-rec-queue")
    levels = [_blocks(frames) for frames in _client_frames(frames_dir)]
    assert len(levels) == 3 and set(levels) == {
        (None, "N5"),  # nobody queued when it opened: early, the instruction in a contextUpdate
        ("N4", None),  # admitted while the third still queued: read first, the whole instruction in its setup
        (None, "N2"),  # admitted last, nobody behind it: early again
    }, levels


async def test_the_session_opens_while_the_learner_context_is_still_being_read(stack, tmp_path):
    """The `session` frame waits for the gateway's own read of the learner's settings and spend, not for
    Tools.GetUserContext (the slowest read of an open): with Tools holding every answer, the session opens in
    the language of the learner's settings and takes their question; the answer comes once Tools answers, with
    the learner's instruction before the question upstream."""
    frames_dir = tmp_path / "frames"
    live_addr = f"127.0.0.1:{procs.free_port()}"
    engine = stack.spawn("live-rec-held", "services.local_live",
                         stack.env(KOTOBA_LIVE_ADDR=live_addr, KOTOBA_LIVE_FRAMES_DIR=str(frames_dir)))
    proxy = kit.TcpProxy(stack.env()["KOTOBA_TOOLS_ADDR"]).start()
    user = kit.learner("held-context")
    dynamodb_client(stack.config.aws).put_item(TableName=stack.config.table("settings"), Item={
        "userId": {"S": user}, "language": {"S": "ja"}, "baseLevel": {"S": "N3"}})
    loop = asyncio.get_running_loop()
    try:
        stack.wait_ready("local_live", engine, live_addr, 60)
        addr = stack.start_gateway("gateway-held-tools", KOTOBA_LIVE_ADDR=live_addr, KOTOBA_GATEWAY_UPSTREAM_POOL="0",
                                   KOTOBA_TOOLS_ADDR=f"127.0.0.1:{proxy.port}",
                                   KOTOBA_GATEWAY_CONTEXT_DEADLINE_S="60")
        proxy.pause("hold")
        async with await ChatClient.open(f"ws://{addr}/v1/chat", stack.token(user)) as client:
            # Before: the open waited for the held context read (60 s deadline) and this timed out.
            session = await client.start("text", wait_s=20)
            loop.call_later(1.0, proxy.release)
            answer = await client.ask("What does 泳ぐ mean?", wait_s=60)
    finally:
        proxy.release()
        stack.stop_service("gateway-held-tools")
        stack.stop_service("live-rec-held")
        proxy.stop()
    assert session["language"] == "ja"
    assert not answer.errors and answer.text

    [used] = [c for c in _client_frames(frames_dir) if any("client_content" in f["frame"] for f in c)]
    received = [f["frame"] for f in used]
    kinds = [next(iter(frame)) for frame in received]
    assert "contextUpdate" in kinds[:kinds.index("client_content")], kinds
    learner = _learner_block(_instruction_text(received[kinds.index("contextUpdate")]["contextUpdate"]
                                               ["systemInstruction"]))
    assert learner is not None and learner["base_level"] == "N3" and learner["language"] == "ja"


async def test_a_cached_context_is_sent_in_the_language_the_session_opened_in(stack, tmp_path):
    """A returning learner's context is cached, so it can be known before their settings row is read (here
    the gateway's store answers late): the instruction waits for the session's language (the `start`
    frame's), not only for the context."""
    frames_dir = tmp_path / "frames"
    live_addr = f"127.0.0.1:{procs.free_port()}"
    engine = stack.spawn("live-rec-cached", "services.local_live",
                         stack.env(KOTOBA_LIVE_ADDR=live_addr, KOTOBA_LIVE_FRAMES_DIR=str(frames_dir)))
    proxy = kit.TcpProxy(stack.env()["AWS_ENDPOINT_URL_DYNAMODB"]).start()
    loop = asyncio.get_running_loop()
    try:
        stack.wait_ready("local_live", engine, live_addr, 60)
        addr = stack.start_gateway("gateway-rec-cached", KOTOBA_LIVE_ADDR=live_addr, KOTOBA_GATEWAY_UPSTREAM_POOL="0",
                                   KOTOBA_GATEWAY_CONTEXT_CACHE_S="600", KOTOBA_GATEWAY_STORE_DEADLINE_S="30",
                                   AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint)
        for language in ("en", "ja"):  # the first session reads the context, the second finds it cached
            if language == "ja":
                proxy.pause("hold")
                loop.call_later(1.0, proxy.release)
            async with await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n5")) as client:
                session = await client.start("text", language=language)
                answer = await client.ask("What does 泳ぐ mean?")
                assert session["language"] == language and not answer.errors
    finally:
        proxy.release()
        stack.stop_service("gateway-rec-cached")
        stack.stop_service("live-rec-cached")
        proxy.stop()
    used = [c for c in _client_frames(frames_dir) if any("client_content" in f["frame"] for f in c)]
    languages = []
    for frames in used:
        update = next(f["frame"]["contextUpdate"] for f in frames if "contextUpdate" in f["frame"])
        languages.append((_learner_block(_instruction_text(update["systemInstruction"])) or {}).get("language"))
    assert languages == ["en", "ja"]
