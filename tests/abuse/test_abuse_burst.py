"""A burst of session opens against a real gateway whose opens are held up by a slow upstream setup (the
engine's `delay_setup_ms` fault): opens queue first come first served, an open that cannot be served within
the wait bound gets `server_busy` with `retry_after` and a 1013 close, and the turns of open sessions are
answered meanwhile. Ordering and refusals are asserted, never durations."""

from __future__ import annotations

import asyncio

from services.gateway.client import ChatClient


async def _slow_open(url: str, token: str, delay_ms: int = 2500) -> tuple[ChatClient, asyncio.Task]:
    """A connection whose start holds the gateway's only open slot while the engine sits on its setup."""
    client = await ChatClient.open(url, token, headers={"x-kotoba-faults": f"delay_setup_ms={delay_ms}"})
    await client.send(type="start", mode="text")
    return client, asyncio.create_task(client.recv_json(wait_s=60))


async def test_an_open_beyond_the_wait_bound_gets_server_busy_with_retry_after(stack, kit):
    side = kit.derived_stack(stack, "burst-busy")
    side.gateway_addr = await asyncio.to_thread(
        side.start_gateway, KOTOBA_GATEWAY_ALLOW_FAULTS="1", KOTOBA_GATEWAY_MAX_CONCURRENT_OPENS="1",
        KOTOBA_GATEWAY_OPEN_WAIT_S="0.3")
    slow, slow_session = await _slow_open(side.url, side.token(kit.learner("burst-slow")))
    refusal = None
    try:
        # Until the slow open holds the slot a probe may get in; once it does, the next probe is refused.
        for i in range(20):
            client, frame = await kit.open_session(side.url, side.token(kit.learner(f"burst-probe{i}")))
            if client is None:
                refusal = frame
                break
            await client.close()
        assert refusal is not None, "no open was refused while the only slot was held"
        assert refusal.get("code") == "server_busy", refusal
        assert isinstance(refusal.get("retry_after"), int) and refusal["retry_after"] >= 1, refusal
        assert str(refusal["retry_after"]) in refusal["message"]
        assert refusal.get("close") == 1013, refusal
        # The slow open itself is served, and the slot is free again afterwards.
        assert (await slow_session)["type"] == "session"
        answer = await slow.ask("What does 泳ぐ mean?")
        assert not answer.errors and "swim" in answer.text.lower()
        client, frame = await kit.open_session(side.url, side.token(kit.learner("burst-after")))
        assert client is not None, frame
        await client.close()
    finally:
        slow_session.cancel()
        await slow.close()
        await asyncio.to_thread(side.stop_all)


async def test_queued_opens_are_served_in_order_while_open_sessions_keep_their_turns(stack, kit):
    side = kit.derived_stack(stack, "burst-fifo")
    side.gateway_addr = await asyncio.to_thread(
        side.start_gateway, KOTOBA_GATEWAY_ALLOW_FAULTS="1", KOTOBA_GATEWAY_MAX_CONCURRENT_OPENS="1",
        KOTOBA_GATEWAY_OPEN_WAIT_S="60")
    talking, frame = await kit.open_session(side.url, side.token(kit.learner("burst-talking")))
    assert talking is not None, frame
    arrivals: list[str] = []
    queued: list[ChatClient] = []
    # Long enough for two turns of the open session on a busy box.
    slow, slow_session = await _slow_open(side.url, side.token(kit.learner("burst-first")), delay_ms=6000)
    try:

        async def session_of(name: str, client: ChatClient, waiting: asyncio.Task | None = None) -> None:
            got = await (waiting or client.recv_json(wait_s=60))
            assert got["type"] == "session", got
            arrivals.append(name)

        await session_of("first", slow, slow_session)
        # The first learner asks at once: the answer waits for its upstream, which holds the only slot.
        first_answer = asyncio.create_task(slow.ask("What does 泳ぐ mean?"))
        waiters = []
        for name in ("second", "third"):
            # A turn of the open session is answered while the slow open holds the slot (and it also
            # orders the starts: the previous one has reached the gateway before the next is sent).
            answer = await talking.ask("What does 泳ぐ mean?")
            assert not answer.errors and "swim" in answer.text.lower()
            assert not first_answer.done(), "the open session's turn waited for the queued opens"
            client = await ChatClient.open(side.url, side.token(kit.learner(f"burst-{name}")))
            await client.send(type="start", mode="text")
            queued.append(client)
            waiters.append(asyncio.create_task(session_of(name, client)))
        await asyncio.gather(*waiters)
        assert arrivals == ["first", "second", "third"]
        answer = await first_answer
        assert not answer.errors and "swim" in answer.text.lower()
        for client in queued:
            answer = await client.ask("What does 泳ぐ mean?")
            assert not answer.errors, answer.errors
    finally:
        for client in (talking, slow, *queued):
            await client.close()
        await asyncio.to_thread(side.stop_all)
