"""A resumed session's `session` message carries its last turns as the connections row keeps them, so a
reloaded page can redraw the conversation: the learner's own only, nothing for a learner who opted out."""

from __future__ import annotations

import asyncio
import uuid

from services.gateway.client import ChatClient
from tests.gateway.test_gateway_privacy import _http


async def _one_turn(stack, user: str, question: str) -> str:
    client = await ChatClient.open(stack.url, stack.token(user))
    async with client:
        session = await client.start("text")
        result = await client.ask(question)
    assert not result.errors, result.errors
    return session["session_id"]


async def _resume(stack, user: str, session_id: str) -> list[dict]:
    client = await ChatClient.open(stack.url, stack.token(user))
    async with client:
        await client.send(type="start", resume=session_id)
        frames = [await client.recv_json()]
        if frames[0]["type"] == "error":
            frames.append(await client.recv_json())
    return frames


async def _readings_loaded(stack) -> None:
    """The gateway loads its reading analyser in the background after start: until then answers go out
    without `display` (never held for it)."""
    client = await ChatClient.open(stack.url, stack.token(f"warmup-{uuid.uuid4().hex[:8]}"))
    async with client:
        for _ in range(45):  # at most one message a second: under the per-learner rate limit
            result = await client.ask("What does 泳ぐ mean?")
            if any(f.get("type") == "turn_complete" and "display" in f for f in result.frames):
                return
            await asyncio.sleep(1.0)
    raise AssertionError("the gateway never sent readings")


async def test_resumed_session_brings_back_its_last_turns_with_readings(stack):
    await _readings_loaded(stack)
    user = f"history-{uuid.uuid4().hex[:8]}"
    session_id = await _one_turn(stack, user, "What does 泳ぐ mean?")
    await asyncio.sleep(0.2)  # the detached row is written as the connection closes
    (session,) = await _resume(stack, user, session_id)
    assert session["type"] == "session" and session["resumed"] is True
    history = session["history"]
    assert [h["role"] for h in history] == ["user", "tutor"]
    assert history[0]["text"] == "What does 泳ぐ mean?" and "swim" in history[1]["text"].lower()
    assert ["泳", "およ"] in history[1]["display"]["furigana"]

    # Another learner naming that session learns nothing of it.
    refused, fresh = await _resume(stack, f"other-{uuid.uuid4().hex[:8]}", session_id)
    assert refused["code"] == "resume_failed"
    assert fresh["type"] == "session" and fresh["resumed"] is False and "history" not in fresh


async def test_no_history_for_a_learner_who_opted_out(stack):
    user = f"optout-{uuid.uuid4().hex[:8]}"
    status, _ = await asyncio.to_thread(_http, stack.gateway_addr, "PUT", "/api/v1/me/privacy", stack.token(user),
                                        {"logging_enabled": False})
    assert status == 200
    session_id = await _one_turn(stack, user, "What does 泳ぐ mean?")
    await asyncio.sleep(0.2)
    (session,) = await _resume(stack, user, session_id)
    assert session["resumed"] is True and session["history"] == []
