"""Connection floods: beyond the per-learner session cap and beyond a global cap → a clean refusal (an error
code and a 1008/1013 close, or an HTTP 503 at the handshake), while other learners carry on unaffected."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from services.gateway.client import ChatClient

CONFIG = Path(__file__).resolve().parents[2] / "services" / "gateway" / "config.py"


async def test_sessions_beyond_the_per_learner_cap_are_refused_cleanly(stack, kit):
    cap = int(stack.base_env["KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER"])
    flooder = kit.learner("abuse-cap")
    opened: list[ChatClient] = []
    try:
        for _ in range(cap):
            client, frame = await kit.open_session(stack.url, stack.token(flooder))
            assert client is not None, frame
            opened.append(client)
        refusals = await asyncio.gather(*(kit.open_session(stack.url, stack.token(flooder)) for _ in range(5)))
        # Meanwhile another learner is served as usual.
        async with await ChatClient.open(stack.url, stack.token(kit.learner("abuse-bystander"))) as other:
            answer = await other.ask("What does 泳ぐ mean?")
        assert not answer.errors and "swim" in answer.text.lower()
        # An already open session of the flooder still works.
        still = await opened[0].ask("What does 泳ぐ mean?")
        assert not still.errors and "swim" in still.text.lower()
    finally:
        for c in opened:
            await c.close()
    for client, frame in refusals:
        if client is not None:
            await client.close()
        assert client is None, f"session {len(opened) + 1} of one learner was accepted (cap {cap})"
        assert frame.get("code") == "too_many_sessions" and frame.get("close") == 1008, frame
    # Closing frees the slots.
    client, frame = await kit.open_session(stack.url, stack.token(flooder))
    assert client is not None, frame
    await client.close()


def _global_cap_variable() -> str | None:
    names = set(re.findall(r'"(KOTOBA_GATEWAY_MAX_[A-Z_]+)"', CONFIG.read_text()))
    caps = [n for n in names if re.search(r"MAX_(CONNECTIONS|SESSIONS|CLIENTS)(_TOTAL|_GLOBAL)?$", n)
            and "PER_LEARNER" not in n]
    return caps[0] if caps else None


async def test_connections_beyond_the_global_cap_are_refused_cleanly(stack, kit):
    variable = _global_cap_variable()
    assert variable == "KOTOBA_GATEWAY_MAX_CONNECTIONS", variable
    cap = 4
    side = kit.derived_stack(stack, "global-cap")
    side.gateway_addr = await asyncio.to_thread(side.start_gateway, **{variable: str(cap)})
    opened: list[ChatClient] = []
    try:
        for i in range(cap):
            client, frame = await kit.open_session(side.url, side.token(kit.learner(f"abuse-g{i}")))
            assert client is not None, frame
            opened.append(client)
        refusals = await asyncio.gather(*(kit.open_session(side.url, side.token(kit.learner("abuse-gx")))
                                          for _ in range(6)))
        for client, frame in refusals:
            assert client is None, "accepted beyond the global cap"
            assert frame.get("http") == 503 or frame.get("close") in (1008, 1013), frame
        still = await opened[0].ask("What does 泳ぐ mean?")
        assert not still.errors and "swim" in still.text.lower()
    finally:
        for c in opened:
            await c.close()
        await asyncio.to_thread(side.stop_all)
