"""The session's upstream is opened beside the read of the learner's context, and that context follows in a
contextUpdate before anything the learner says (docs/protocol.md, "Opening a session"). Checked on the frames
a local Live engine of its own records: with KOTOBA_GATEWAY_EARLY_UPSTREAM on (the default) the session takes
an upstream its gateway connected ahead (KOTOBA_GATEWAY_UPSTREAM_POOL) or connects its own, and with it off the
learner's context is in the setup."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools import procs
from services.common.contracts import LEARNER_CONTEXT_RE
from services.gateway.client import ChatClient

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
