"""Chaos soak (the long version of tests/faults): learners chat for a while as the backends are killed and
restarted one after another, some sessions get an upstream drop or a goAway after every turn, and at the
end turns sent are compared with turns stored in Conversations, and every progress answer is checked for
another learner's figures.

Needs the bench stack's gateway started with KOTOBA_GATEWAY_ALLOW_FAULTS=1 (the soak's own gateway).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from typing import Any

import grpc

from kotoba.v1 import conversations_pb2 as cpb
from kotoba.v1 import conversations_pb2_grpc, tools_pb2, tools_pb2_grpc
from services.common.auth import auth_metadata
from services.gateway.client import ChatClient

DEMO = ("demo-n5", "demo-n4", "demo-advanced")
FAULTS = ("", "goaway_after_turns=1,goaway_time_left=0.3", "drop_mid_turn=2", "")
QUESTIONS = ("What does 泳ぐ mean?", "How is my N5 progress?", "What does 食べる mean?", "And how do you read it?")


def fingerprint(stack, user: str) -> str:
    with grpc.insecure_channel(stack.addr("tools")) as ch:
        reply = tools_pb2_grpc.ToolsStub(ch).GetUserProgress(tools_pb2.GetUserProgressRequest(entity_type="word"),
                                                             metadata=auth_metadata(stack.token(user)), timeout=10)
    row = next(r for r in reply.levels if r.level == "N5")
    return f"{row.learned} of {row.total}"


def mentions(text: str, fp: str) -> bool:
    return re.search(rf"(?<!\d){re.escape(fp)}(?!\d)", text) is not None


def stored(stack, session_id: str) -> int:
    with grpc.insecure_channel(stack.addr("conversations")) as ch:
        try:
            reply = conversations_pb2_grpc.ConversationsStub(ch).GetConversation(
                cpb.GetConversationRequest(session_id=session_id),
                metadata=auth_metadata(stack.token("bench-admin", "admin")), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise
    return len({t.turn_id for t in reply.turns})


async def soak(stack, *, sessions: int, duration_s: float, chaos_every_s: float, outage_s: float,
               victims: tuple[str, ...] = ("retrieval", "tools", "conversations")) -> dict[str, Any]:
    prints = {u: await asyncio.to_thread(fingerprint, stack, u) for u in DEMO}
    end = time.perf_counter() + duration_s
    sent: dict[str, int] = {}
    errors: Counter = Counter()
    leaks: list[str] = []
    closed: Counter = Counter()
    chaos_log: list[dict[str, Any]] = []
    rng = random.Random(11)

    async def learner(i: int) -> None:
        # Two sessions per demo learner (under the per-learner cap and message rate), then fresh learners:
        # nobody may ever see a demo learner's figures but that learner.
        user = DEMO[i % len(DEMO)] if i < 2 * len(DEMO) else f"soak-{i:03d}"
        faults = FAULTS[i % len(FAULTS)]
        headers = {"x-kotoba-faults": faults} if faults else None
        try:
            client = await ChatClient.open(stack.url, stack.token(user), headers=headers, open_wait_s=60)
        except Exception as exc:  # noqa: BLE001
            closed[f"open:{type(exc).__name__}"] += 1
            return
        async with client:
            q = i
            while time.perf_counter() < end:
                q += 1
                try:
                    result = await client.ask(QUESTIONS[q % len(QUESTIONS)], wait_s=120)
                except Exception as exc:  # noqa: BLE001 - the session ended; count how
                    closed[type(exc).__name__] += 1
                    return
                for e in result.errors:
                    errors[e.get("code", "?")] += 1
                if result.usage:
                    sid = client.session.get("session_id", "")
                    sent[sid] = sent.get(sid, 0) + 1
                for other in DEMO:
                    if other != user and prints[other] != prints.get(user) and mentions(result.text, prints[other]):
                        leaks.append(f"{user} saw {other}: {result.text[:120]}")
                await asyncio.sleep(rng.uniform(3.0, 7.0))

    async def chaos() -> None:
        k = 0
        while time.perf_counter() + chaos_every_s + outage_s < end:
            await asyncio.sleep(chaos_every_s)
            victim = victims[k % len(victims)]
            k += 1
            t = time.perf_counter()
            await asyncio.to_thread(stack.stop_service, victim)
            await asyncio.sleep(outage_s)
            restart = await asyncio.to_thread(stack.start_service, victim)
            chaos_log.append({"service": victim, "down_s": round(time.perf_counter() - t, 1),
                              "restart_ready_s": round(restart, 1)})

    await asyncio.gather(chaos(), *(learner(i) for i in range(sessions)))
    await asyncio.sleep(5)
    per_session = {sid: (n, 0) for sid, n in sent.items()}
    deadline = time.perf_counter() + 60  # the turn log retries in the background: give it time, then count
    while True:
        for sid, (n, got) in per_session.items():
            if got < n:
                per_session[sid] = (n, await asyncio.to_thread(stored, stack, sid))
        if all(g >= n for n, g in per_session.values()) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(2)
    lost = sum(max(0, n - g) for n, g in per_session.values())
    return {"sessions": sessions, "duration_s": duration_s, "chaos": chaos_log, "turns_sent": sum(sent.values()),
            "turns_stored": sum(g for _, g in per_session.values()), "turn_logs_lost": lost,
            "error_frames": dict(errors), "sessions_ended_early": dict(closed), "cross_learner_leaks": len(leaks),
            "leak_examples": leaks[:3], "faults_per_session": list(FAULTS),
            "per_session_sent_stored": [[sid[:8], n, g] for sid, (n, g) in per_session.items()]}
