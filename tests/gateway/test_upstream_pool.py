"""The gateway's pool of connected upstreams (services/gateway/upstream_pool.py) against the stack's local Live
engine, through the real google-genai client: a taken upstream works once given the learner's instruction and is
replaced; a parked one that drops is replaced; closing closes them all."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import types

from services.gateway.config import GatewayConfig
from services.gateway.live import make_client
from services.gateway.session_parts import LinkSettings
from services.gateway.upstream_pool import UpstreamPool

pytestmark = pytest.mark.timeout(60)
INSTRUCTION = ('You are Kotoba.\n<learner-context>\n{"summary": "N5 learner", "language": "en", "base_level": "N5", '
               '"display_name": "Mika"}\n</learner-context>')


class Collector:
    def __init__(self) -> None:
        self.text = ""
        self.done = asyncio.Event()

    async def on_upstream_message(self, msg: types.LiveServerMessage) -> None:
        self.text += msg.text or ""
        if msg.server_content and msg.server_content.turn_complete:
            self.done.set()

    async def on_upstream_lost(self, exc: BaseException | None) -> None:
        self.done.set()


async def _until(condition, what: str, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling the pool's state from outside
            await asyncio.sleep(0.02)


@pytest.fixture
async def pool(stack):
    config = GatewayConfig.from_env(stack.env())
    pool = UpstreamPool(make_client(config), LinkSettings.from_config(config), size=1)
    pool.start()
    await _until(lambda: len(pool.parked("text")) == len(pool.parked("audio")) == 1, "a parked upstream per mode")
    yield pool
    await pool.close()


async def test_a_taken_upstream_answers_with_the_learners_instruction_and_is_replaced(pool):
    parked = pool.take("text")
    assert parked is not None and parked.upstream is not None
    assert parked.handle  # the handle the engine gave after setup, for the session to keep
    collector = Collector()
    parked.upstream.handler = collector
    await parked.upstream.send_context_update(INSTRUCTION)
    await parked.upstream.send_turn(types.Content(role="user", parts=[types.Part(text="hello!")]))
    async with asyncio.timeout(20):
        await collector.done.wait()
    assert "Mika" in collector.text
    await _until(lambda: len(pool.parked("text")) == 1, "a replacement")
    await parked.upstream.close()
    assert pool.take("video") is None


async def test_a_parked_upstream_that_drops_is_replaced_and_close_closes_them(pool):
    [parked] = pool.parked("text")
    await parked.upstream.session._ws.close()  # noqa: SLF001 - the connection drops under the pool
    await _until(lambda: [p is not parked for p in pool.parked("text")] == [True], "a replacement")
    remaining = [p.upstream for mode in ("text", "audio") for p in pool.parked(mode)]
    await pool.close()
    assert all(u.session is None for u in remaining)
    assert pool.take("text") is None


async def test_no_refill_while_opens_queue_at_admission(stack):
    """While opens queue (a burst) sessions connect their own upstreams in their admission slots: refilling
    the pool then would add connects to the machine the queued opens are waiting for. It refills once the
    queue is gone."""
    config = GatewayConfig.from_env(stack.env())
    queueing = False
    pool = UpstreamPool(make_client(config), LinkSettings.from_config(config), size=1, busy=lambda: queueing)
    pool.start()
    try:
        await _until(lambda: len(pool.parked("text")) == 1, "a parked upstream")
        queueing = True
        taken = pool.take("text")
        assert taken is not None
        await taken.upstream.close()
        await asyncio.sleep(1.0)  # five times the refill delay
        assert pool.parked("text") == []
        queueing = False
        await _until(lambda: len(pool.parked("text")) == 1, "the refill once opens stop queueing")
    finally:
        await pool.close()
