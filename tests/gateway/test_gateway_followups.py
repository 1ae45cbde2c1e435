"""Gateway paths beyond the happy path: resumption refused → primed fresh session, tool-call
cancellation, idle timeout, switching text → audio mid-session."""

from __future__ import annotations

import asyncio

from services.gateway.client import ChatClient


async def test_follow_up_works_when_resumption_is_impossible(stack):
    """goAway after the first turn, and the engine refuses the handle: the gateway opens a fresh upstream
    session primed with the recent turns, and "how do you read it?" still means 泳ぐ."""
    faults = "goaway_after_turns=1,goaway_time_left=1,reject_resume=1"
    client = await ChatClient.open(stack.url, stack.token("demo-n4"), headers={"x-kotoba-faults": faults})
    async with client:
        first = await client.ask("What does 泳ぐ mean?")
        await asyncio.sleep(0.3)  # the goAway arrives after the first turn; the gateway reconnects between turns
        second = await client.ask("And how do you read it?")
    assert not first.errors and not second.errors, (first.errors, second.errors)
    assert "swim" in first.text.lower()
    assert "およぐ" in second.text, second.text
    log = (stack.logs / "gateway.log").read_text()
    assert "resumption refused; starting a fresh upstream session" in log
