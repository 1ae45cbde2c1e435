"""Gateway overhead: time to first text delta and to first audio byte through the gateway vs directly
against the local Live engine (same process stack, interleaved runs), plus memory per idle session.

    .venv/bin/python bench/gateway/bench_gateway.py [--text-runs 20] [--audio-runs 3] [--idle 50] [--json]

Starts its own stack (moto, fixture seed, snapshot, retrieval/tools/conversations/local_live, gateway).
Reports medians, the gateway/direct ratio, and absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def direct_text(client, model: str, question: str, system: str, tools) -> float:
    """First text delta straight from the engine (same context block the gateway would add, no RAG)."""
    from google.genai import types

    from services.gateway import rag

    cfg = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], system_instruction=system,
                                  tools=tools, session_resumption=types.SessionResumptionConfig())
    async with client.aio.live.connect(model=model, config=cfg) as session:
        started = time.perf_counter()
        await session.send_client_content(turns=rag.user_turn(rag.Retrieved(), question), turn_complete=True)
        first = None
        async for msg in session.receive():
            sc = msg.server_content
            if first is None and sc and sc.model_turn and any(p.text for p in sc.model_turn.parts or []):
                first = time.perf_counter() - started
            if msg.tool_call:
                from google.genai import types as t
                await session.send_tool_response(function_responses=[
                    t.FunctionResponse(id=fc.id, name=fc.name, response={"error": {"code": "UNAVAILABLE",
                                                                                  "message": "bench"}})
                    for fc in msg.tool_call.function_calls])
        return first


async def direct_audio(client, model: str, pcm: bytes, system: str, tools) -> float:
    from google.genai import types

    cfg = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO], system_instruction=system,
                                  tools=tools, input_audio_transcription=types.AudioTranscriptionConfig(),
                                  output_audio_transcription=types.AudioTranscriptionConfig())
    async with client.aio.live.connect(model=model, config=cfg) as session:
        for i in range(0, len(pcm), 3200):
            await session.send_realtime_input(audio=types.Blob(data=pcm[i:i + 3200], mime_type="audio/pcm;rate=16000"))
        started = time.perf_counter()
        await session.send_realtime_input(audio_stream_end=True)
        first = None
        async for msg in session.receive():
            sc = msg.server_content
            if first is None and sc and sc.model_turn and any(p.inline_data for p in sc.model_turn.parts or []):
                first = time.perf_counter() - started
            if msg.tool_call:
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=fc.id, name=fc.name, response={"error": {"code": "UNAVAILABLE",
                                                                                      "message": "bench"}})
                    for fc in msg.tool_call.function_calls])
        return first


async def bench(stack, gw_pid: int, text_runs: int, audio_runs: int, idle: int) -> dict:
    from services.gateway import prompts
    from services.gateway.client import ChatClient
    from services.gateway.config import GatewayConfig
    from services.gateway.live import make_client
    from services.gateway.tools_bridge import function_declarations, genai_tools
    from services.local_live.voice.testaudio import speech_pcm16_16k

    config = GatewayConfig.from_env(stack.env())
    client = make_client(config)
    system = prompts.system_instruction(None, "en", "text")
    questions = ["What does 泳ぐ mean?", "How do you read 学校?", "What JLPT level is 思う?", "Hello!"]
    gw_text, direct = [], []
    token = stack.token("bench-learner")
    chat = await ChatClient.open(stack.url, token)
    await chat.start("text")
    for i in range(text_runs):  # interleaved so both see the same machine load
        q = questions[i % len(questions)]
        r = await chat.ask(q)
        gw_text.append(r.first_text_s)
        direct.append(await direct_text(client, config.live.model, q, system, genai_tools(function_declarations(False))))
    await chat.close()
    out = {"text_runs": text_runs,
           "gateway_first_text_ms": round(statistics.median(gw_text) * 1000, 2),
           "direct_first_text_ms": round(statistics.median(direct) * 1000, 2)}
    out["first_text_ratio"] = round(out["gateway_first_text_ms"] / out["direct_first_text_ms"], 2)
    if audio_runs:
        pcm = speech_pcm16_16k("What does taberu mean?", "en")
        gw_audio, direct_a = [], []
        voice_system = prompts.system_instruction(None, "en", "audio")
        for _ in range(audio_runs):
            chat = await ChatClient.open(stack.url, token)
            await chat.start("audio")
            r = await chat.say(pcm, wait_s=120)
            await chat.close()
            gw_audio.append(r.first_audio_s)
            direct_a.append(await direct_audio(client, config.live.model, pcm, voice_system,
                                               genai_tools(function_declarations(True))))
        out.update(audio_runs=audio_runs, gateway_first_audio_ms=round(statistics.median(gw_audio) * 1000, 1),
                   direct_first_audio_ms=round(statistics.median(direct_a) * 1000, 1))
        out["first_audio_ratio"] = round(out["gateway_first_audio_ms"] / out["direct_first_audio_ms"], 3)
    if idle:
        await asyncio.sleep(1)
        before = rss_kib(gw_pid)
        clients = []
        for i in range(idle):
            c = await ChatClient.open(stack.url, stack.token(f"idle-{i}"))
            await c.start("text")
            clients.append(c)
        await asyncio.sleep(2)
        after = rss_kib(gw_pid)
        for c in clients:
            await c.close()
        out.update(idle_sessions=idle, gateway_rss_before_mib=round(before / 1024, 1),
                   gateway_rss_after_mib=round(after / 1024, 1),
                   rss_per_idle_session_kib=round((after - before) / idle, 1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--text-runs", type=int, default=20)
    parser.add_argument("--audio-runs", type=int, default=3)
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from devtools import procs
    from tests.support.kotoba_stack import start_stack

    moto, endpoint = procs.start_moto()
    root = Path(tempfile.mkdtemp(prefix="kotoba-bench-gw-"))
    stack = None
    try:
        stack = start_stack(endpoint, root, KOTOBA_GATEWAY_MESSAGES_PER_MINUTE="100000",
                            KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER="1000", KOTOBA_LOG_LEVEL="WARNING")
        result = asyncio.run(bench(stack, stack.procs["gateway"].pid, args.text_runs, args.audio_runs, args.idle))
    finally:
        if stack is not None:
            stack.stop_all()
        procs.stop(moto)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
