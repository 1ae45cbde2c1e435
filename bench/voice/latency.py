"""First audio after the learner stops speaking, per stage, old path vs new path side by side.

    .venv/bin/python -m bench.voice.latency [--runs 6] [--sessions 5] [--within 2] [--turns 2] [--think 0.5,3]
                                            [--json out.json]

Runs the local Live engine in this process (real TLS WebSocket server, real google-genai client, the
real offline voice stack) and streams spoken questions in real time (100 ms chunks), then
audio_stream_end (what the gateway sends for `audio_end`). Tool calls are answered at once, so the
"tool" stage here is the engine's own part only (the gateway and tools service add theirs in `make
bench`). Times are from audio_stream_end to: the input transcription, the toolCall, the first audio
chunk.

Modes, interleaved round by round so machine load hits both alike (one shared voice pipeline, its
config switched between rounds):
- old: whole-utterance transcription at audio_end + speech from the first sentence
  (KOTOBA_VOICE_INCREMENTAL=off, KOTOBA_VOICE_FIRST_CLAUSE=off)
- new: transcription while speaking (voice.incremental) + speech from the first clause (the defaults)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from google import genai
from google.genai import types

from bench.load.sessions import schedule, summary
from devtools.procs import free_port
from services.common.tls import client_context, ensure_dev_ca  # noqa: E402
from services.local_live import voice_bridge  # noqa: E402
from services.local_live.config import LiveConfig  # noqa: E402
from services.local_live.server import bound_port, start  # noqa: E402
from services.local_live.voice.testaudio import speech_pcm16_16k  # noqa: E402

API_KEY = "bench-voice-key"
CLIPS = [("How is my N5 progress?", "en"), ("猫はどういう意味ですか。", "ja")]
NEKO = {"id": "word:猫:ねこ", "type": "word", "written": "猫", "reading": "ねこ", "romaji": "neko",
        "meanings": ["cat"], "level": "N5"}
PROGRESS = {"entity_type": "words", "levels": [
    {"level": "N5", "total": "800", "learned": "120", "learning": "30", "reviewable": "12"}]}
DECLARATIONS = [
    {"name": "search_words", "description": "Search words.", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "language": {"type": "string"}}}},
    {"name": "get_word_details", "description": "Word details.", "parameters": {
        "type": "object", "properties": {"id": {"type": "string"}, "written": {"type": "string"}}}},
    {"name": "get_user_progress", "description": "Progress.", "parameters": {
        "type": "object", "properties": {"entity_type": {"type": "string"}, "group": {"type": "string"}}}},
]
MODES = {"old": {"incremental": False, "first_clause": False}, "new": {"incremental": True, "first_clause": True}}


def tool_result(name: str) -> dict:
    if name == "get_user_progress":
        return {"result": PROGRESS}
    return {"result": {"word": NEKO, "items": [NEKO]}}


def live_config(language: str) -> types.LiveConnectConfig:
    instruction = ('You are Kotoba, a friendly Japanese tutor.\n<learner-context>\n'
                   f'{{"summary": "N5 learner", "language": "{language}", "base_level": "N5"}}\n</learner-context>')
    return types.LiveConnectConfig(response_modalities=["AUDIO"], input_audio_transcription={},
                                   output_audio_transcription={}, system_instruction=instruction,
                                   tools=[{"function_declarations": DECLARATIONS}])


async def voice_turn(session, pcm: bytes) -> dict:
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}

    async def reader() -> None:
        async for message in session.receive():  # ends after turn_complete
            now = loop.time()
            content = message.server_content
            if message.tool_call:
                marks.setdefault("tool_call", now)
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response=tool_result(c.name))
                    for c in message.tool_call.function_calls])
            if content and content.input_transcription and content.input_transcription.text:
                marks.setdefault("transcript", now)
                marks["heard"] = content.input_transcription.text  # type: ignore[assignment]
            if content and content.model_turn and any(p.inline_data for p in content.model_turn.parts or []):
                marks.setdefault("first_audio", now)
        marks["turn_complete"] = loop.time()

    task = asyncio.create_task(reader())
    for offset in range(0, len(pcm), 3200):  # 100 ms chunks in real time, like a microphone
        await session.send_realtime_input(audio=types.Blob(data=pcm[offset:offset + 3200],
                                                           mime_type="audio/pcm;rate=16000"))
        await asyncio.sleep(0.1)
    end = loop.time()
    await session.send_realtime_input(audio_stream_end=True)
    await asyncio.wait_for(task, 90)
    out = {k: max(0.0, v - end) for k, v in marks.items() if isinstance(v, float)}
    out["heard"] = marks.get("heard", "")
    return out


class EngineStages(logging.Handler):
    """The engine's own `voice turn stages` log records (ms after the end of speech, per stage)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: dict[str, list[dict]] = {}
        self.mode = "warm-up"

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "voice turn stages":
            self.records.setdefault(self.mode, []).append(
                {k: v for k, v in record.__dict__.items() if k.endswith("_ms") or k == "decodes"})

    def summary(self) -> dict:
        out = {}
        for mode, records in self.records.items():
            stages = sorted({k for r in records for k in r if k != "decodes"})
            out[mode] = {k: summary([r[k] / 1000 for r in records if k in r]) for k in stages}
            # How the transcript was made: "spec" only = ready or running before the end of speech.
            out[mode]["decodes"] = dict(Counter(r.get("decodes", "?") for r in records))
        return out


STAGES = EngineStages()


def set_mode(mode: str, scope: str) -> None:
    STAGES.mode = f"{scope} {mode}"
    voice = voice_bridge._voice
    assert voice is not None
    voice.pipeline.config = replace(voice.pipeline.config, **MODES[mode])


def stats(turns: list[dict]) -> dict:
    return {stage: summary([t[stage] for t in turns if stage in t])
            for stage in ("transcript", "tool_call", "first_audio", "turn_complete")}


async def bench(runs: int, sessions: int, turns: int, within: float = 2.0,
                think: tuple[float, float] = (0.5, 3.0)) -> dict:
    result: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}
    engine_log = logging.getLogger("services.local_live.reply")
    engine_log.setLevel(logging.INFO)
    engine_log.addHandler(STAGES)
    pcms = {text: await asyncio.to_thread(speech_pcm16_16k, text, language, tail_silence=0.3)
            for text, language in CLIPS}
    tmp = Path(tempfile.mkdtemp(prefix="kotoba-voice-bench-"))
    ca = ensure_dev_ca(tmp / "tls")
    config = LiveConfig.from_env({"KOTOBA_LIVE_ADDR": f"127.0.0.1:{free_port()}", "KOTOBA_LIVE_CA_FILE": str(ca),
                                  "KOTOBA_LIVE_API_KEY": API_KEY})
    server, _engine = await start(config)
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(
        base_url=f"https://127.0.0.1:{bound_port(server)}", api_version="v1beta",
        async_client_args={"ssl": client_context(ca)}))

    def connect(language: str):
        return client.aio.live.connect(model="gemini-live-2.5-flash", config=live_config(language))

    single: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        # One session alone: per round both modes, both clips (order alternates); round 0 warms up.
        async with connect("en") as en, connect("ja") as ja:
            by_language = {"en": en, "ja": ja}
            await (await voice_bridge.get_voice()).pipeline.warm()
            for round_ in range(runs + 1):
                for mode in (("old", "new") if round_ % 2 else ("new", "old")):
                    set_mode(mode, "single" if round_ else "warm-up")
                    for text, language in CLIPS:
                        turn = await voice_turn(by_language[language], pcms[text])
                        turn["clip"] = language
                        if round_:
                            single[mode].append(turn)
                        await asyncio.sleep(0.3)
        result["single"] = {mode: {"all": stats(t), **{lang: stats([x for x in t if x["clip"] == lang])
                                                        for _, lang in CLIPS}} for mode, t in single.items()}
        result["heard"] = sorted({(t["clip"], t["heard"]) for ts in single.values() for t in ts})

        # N learners opening within `within` s, `turns` questions each with `think` s between them;
        # mode by mode, each mode twice.
        concurrent: dict[str, list[dict]] = {"old": [], "new": []}
        rng = random.Random(5)

        offsets = schedule(sessions, within)

        async def learner(i: int, mode: str) -> None:
            text, language = CLIPS[i % len(CLIPS)]
            await asyncio.sleep(offsets[i])
            async with connect(language) as session:
                for _ in range(turns):
                    await asyncio.sleep(rng.uniform(*think))
                    try:
                        concurrent[mode].append(await voice_turn(session, pcms[text]))
                    except TimeoutError:
                        timeouts[mode] += 1
                        return

        timeouts = {"old": 0, "new": 0}
        for mode in ("old", "new", "new", "old") if sessions else ():
            set_mode(mode, "concurrent")
            await asyncio.gather(*(learner(i, mode) for i in range(sessions)))
        if sessions:
            result["concurrent"] = {"sessions": sessions, "within_s": within, "turns": turns, "think_s": think,
                                    "timeouts": timeouts, **{mode: stats(t) for mode, t in concurrent.items()}}
    finally:
        server.close()
        await server.wait_closed()

    def ratio(block: dict, q: str) -> float | None:
        old, new = (block[mode].get("all", block[mode])["first_audio"][q] for mode in ("old", "new"))
        return round(new / old, 2) if old and new else None

    result["ratio_new_over_old"] = {f"{scope} {q}": ratio(result[scope], q)
                                    for scope in ("single", "concurrent") if scope in result for q in ("p50_ms", "p95_ms")}
    result["engine_stages"] = STAGES.summary()
    result["machine"]["loadavg_end"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="rounds of the single-session part")
    parser.add_argument("--sessions", type=int, default=5, help="concurrent sessions (0: single-session part only)")
    parser.add_argument("--within", type=float, default=2.0, help="seconds over which the sessions open")
    parser.add_argument("--turns", type=int, default=2, help="turns per session in each concurrent round")
    parser.add_argument("--think", default="0.5,3", help="think time range between turns, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    low, high = (float(x) for x in args.think.split(","))
    result = asyncio.run(bench(args.runs, args.sessions, args.turns, args.within, (low, high)))
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
