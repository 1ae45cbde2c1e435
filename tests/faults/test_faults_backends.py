"""Kill and restart retrieval, tools and conversations under live sessions.

Each learner session stays open across the outage: answers keep arriving (degraded, or with a clear error),
every completed turn is stored in Conversations once, and the gateway finds the restarted service by itself.
"""

from __future__ import annotations

import asyncio

from services.gateway.client import ChatClient

WORD_Q = "What does 泳ぐ mean?"
PROGRESS_Q = "How is my N5 progress?"


async def _ask_ok(client: ChatClient, text: str):
    result = await client.ask(text, wait_s=60)
    assert result.usage or result.errors, f"turn neither completed nor refused: {result.as_dict()}"
    return result


async def test_retrieval_killed_mid_session_then_back(stack, kit):
    user = kit.learner("flt-ret")
    client = await ChatClient.open(stack.url, stack.token(user))
    async with client:
        before = await _ask_ok(client, WORD_Q)
        assert "swim" in before.text.lower() and not before.errors
        session = client.session["session_id"]
        await asyncio.to_thread(stack.stop_service, "retrieval")
        try:
            during = await _ask_ok(client, WORD_Q)
            # No retrieval: the turn goes on without context (the tools still know the word).
            assert not during.errors, during.errors
            assert "swim" in during.text.lower()
        finally:
            await asyncio.to_thread(stack.start_service, "retrieval")
        sent = 2

        # Back without manual steps: a later turn is grounded in retrieved items again.
        async def grounded() -> bool:
            nonlocal sent
            result = await _ask_ok(client, WORD_Q)
            sent += 1
            tid = kit.turn_id(result)
            for _ in range(20):
                turns = await asyncio.to_thread(kit.session_turns, stack, session)
                row = next((t for t in turns if t.turn_id == tid), None)
                if row is not None:
                    return bool(row.retrieved_item_ids)
                await asyncio.sleep(0.5)
            return False

        for _ in range(30):
            if await grounded():
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("retrieval never came back for the gateway")
    await kit.assert_all_turns_stored(stack, sent, session_id=session)


async def test_tools_killed_mid_session_then_back(stack, kit):
    own = await asyncio.to_thread(kit.progress_fingerprint, stack, "demo-n5")
    client = await ChatClient.open(stack.url, stack.token("demo-n5"))
    async with client:
        before = await _ask_ok(client, PROGRESS_Q)
        assert kit.mentions(before.text, own), before.text
        session = client.session["session_id"]
        await asyncio.to_thread(stack.stop_service, "tools")
        try:
            during = await _ask_ok(client, PROGRESS_Q)
            assert not during.errors, during.errors
            # The model got structured errors: the answer says the data is unavailable, invents nothing.
            assert not kit.mentions(during.text, own)
            assert any(w in during.text.lower() for w in ("unavailable", "can't", "cannot", "not available",
                                                           "couldn't", "could not", "try again")), during.text
        finally:
            await asyncio.to_thread(stack.start_service, "tools")
        sent = 2
        for _ in range(30):
            result = await _ask_ok(client, PROGRESS_Q)
            sent += 1
            if kit.mentions(result.text, own):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("tools never came back for the gateway")
    await kit.assert_all_turns_stored(stack, sent, session_id=session)


async def test_conversations_killed_no_turn_log_lost(stack, kit):
    """Turns finished while Conversations is down are handed over once it is back (turn logs lost: 0)."""
    users = [kit.learner("flt-conv") for _ in range(2)]
    clients = [await ChatClient.open(stack.url, stack.token(u)) for u in users]
    sent = dict.fromkeys(users, 0)
    try:
        for u, c in zip(users, clients, strict=True):
            await _ask_ok(c, WORD_Q)
            sent[u] += 1
        await asyncio.to_thread(stack.stop_service, "conversations")
        try:
            for _ in range(2):
                for u, c in zip(users, clients, strict=True):
                    result = await _ask_ok(c, WORD_Q)
                    assert not result.errors and "swim" in result.text.lower()  # the learner never waits on it
                    sent[u] += 1
            await asyncio.sleep(3)  # an outage longer than a blip
        finally:
            await asyncio.to_thread(stack.start_service, "conversations")
        for u, c in zip(users, clients, strict=True):
            await _ask_ok(c, WORD_Q)
            sent[u] += 1
    finally:
        for c in clients:
            await c.close()
    for u in users:
        await kit.assert_all_turns_stored(stack, sent[u], user_id=u, within_s=20)
