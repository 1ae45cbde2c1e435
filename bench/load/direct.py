"""Gateway overhead: the same text turns straight to the Live engine with google-genai vs through /v1/chat.

The direct path does the work the gateway would do for the turn with the gateway's own modules (RAG block
from Retrieval.Search, tool calls answered through the same ToolBridge over gRPC), so the difference is the
gateway itself: the learner WebSocket hop, session bookkeeping, frame translation and streaming.
Runs are interleaved (direct, gateway, direct, …) so machine load hits both alike.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.gateway import prompts, rag
from services.gateway.backends import Backends
from services.gateway.client import ChatClient
from services.gateway.config import GatewayConfig
from services.gateway.live import connect_config, make_client
from services.gateway.tools_bridge import (
    CallRecord,
    ToolBridge,
    function_declarations,
    function_responses,
    genai_tools,
)

from .sessions import QUESTIONS, summary


class DirectSession:
    def __init__(self, env: dict[str, str], token: str) -> None:
        self.config = GatewayConfig.from_env(env)
        self.token = token
        self.client = make_client(self.config)
        self.backends = Backends.connect(self.config.common)
        self.bridge = ToolBridge(self.backends, self.config.tool_deadline_s)
        self._cm = None
        self.session = None
        self.level = ""

    async def __aenter__(self) -> DirectSession:
        from kotoba.v1 import tools_pb2
        from services.common.auth import auth_metadata

        ctx = await self.backends.tools.GetUserContext(tools_pb2.GetUserContextRequest(), timeout=5,
                                                       metadata=auth_metadata(self.token))
        self.level = ctx.settings.base_level
        cfg = connect_config(system_instruction=prompts.system_instruction(ctx, "en", "text"),
                             tools=genai_tools(function_declarations(voice=False)), mode="text", handle=None,
                             config=self.config)
        self._cm = self.client.aio.live.connect(model=self.config.live.model, config=cfg)
        self.session = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(None, None, None)
        await self.backends.close()

    async def ask(self, text: str) -> tuple[float | None, float]:
        started = time.perf_counter()
        retrieved = await rag.search(self.backends.retrieval, self.token, text,
                                     deadline_s=self.config.rag_deadline_s, top_k=self.config.rag_top_k,
                                     learner_level=self.level)
        await self.session.send_client_content(turns=rag.user_turn(retrieved, text), turn_complete=True)
        first: float | None = None
        while True:
            done = False
            async for msg in self.session.receive():
                sc = msg.server_content
                if sc and sc.model_turn and sc.model_turn.parts and first is None:
                    if any(p.text for p in sc.model_turn.parts):
                        first = time.perf_counter() - started
                if msg.tool_call and msg.tool_call.function_calls:
                    calls = msg.tool_call.function_calls

                    async def one(fc) -> CallRecord:
                        t = time.perf_counter()
                        response = await self.bridge.call(fc.name or "", dict(fc.args or {}), self.token)
                        return CallRecord(fc.id or "", fc.name or "", dict(fc.args or {}), response,
                                          (time.perf_counter() - t) * 1000)

                    records = await asyncio.gather(*(one(fc) for fc in calls))
                    await self.session.send_tool_response(function_responses=function_responses(list(records)))
                if sc and sc.turn_complete:
                    done = True
                    break
            if done:
                return first, time.perf_counter() - started


async def overhead(stack, user: str, turns: int) -> dict[str, Any]:
    direct_ft, direct_total, gw_ft, gw_total = [], [], [], []
    token = stack.token(user)
    async with DirectSession(stack.base_env, token) as direct:
        async with await ChatClient.open(stack.url, token) as gw:
            for q in QUESTIONS:  # warm both paths (channels, caches, engine) before measuring
                await direct.ask(q)
                await gw.ask(q, wait_s=60)
            for i in range(turns):
                q = QUESTIONS[i % len(QUESTIONS)]

                async def via_direct(q: str = q) -> None:
                    ft, total = await direct.ask(q)
                    if ft is not None:
                        direct_ft.append(ft)
                    direct_total.append(total)

                async def via_gateway(q: str = q) -> None:
                    r = await gw.ask(q, wait_s=60)
                    if r.first_text_s is not None:
                        gw_ft.append(r.first_text_s)
                    gw_total.append(r.total_s)

                # Alternate who goes first, so neither path always meets the other's warm caches.
                for step in ((via_direct, via_gateway) if i % 2 == 0 else (via_gateway, via_direct)):
                    await step()
    d, g = summary(direct_ft), summary(gw_ft)
    dt, gt = summary(direct_total), summary(gw_total)

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    return {"turns": turns, "direct_first_text": d, "gateway_first_text": g, "direct_turn_complete": dt,
            "gateway_turn_complete": gt,
            "ratio_first_text_p50": ratio(g["p50_ms"], d["p50_ms"]),
            "ratio_turn_complete_p50": ratio(gt["p50_ms"], dt["p50_ms"]),
            "added_ms_first_text_p50": round(g["p50_ms"] - d["p50_ms"], 1) if g["p50_ms"] and d["p50_ms"] else None}
