"""The conformance matrix: the core gateway scenarios against the local engine once per model family in
the registry (services/common/live_models.py), each through its own gateway started with that
`KOTOBA_LIVE_MODEL`. The engine is as strict as the family (TEXT refused on audio-only models, NON_BLOCKING
tools on 3.8), so a scenario that passes here asks for what the real family accepts.

Text mode on an audio-only family reads the output transcription: the learner gets `text` deltas and no
audio, and the usage shows audio-out tokens at the family's audio price. Voice is one short clip per
family (real Whisper/Kokoro), marked `voice`; it also covers the learner barging in (`interrupted`).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common import live_models
from services.gateway.client import ChatClient

pytestmark = pytest.mark.timeout(240)

# Text on an audio-only family is spoken by the engine (Kokoro) before it is transcribed: those rows need
# the voice extra too.
FAMILIES = [pytest.param(fam, id=fam.key, marks=[pytest.mark.voice] if fam.audio_only else [])
            for fam in live_models.FAMILIES]
# The stall watchdog: the stall scenario runs on its own gateway per family with a short wait; the others
# with a wait no local Whisper/Kokoro delay on a loaded machine reaches (a false stall would be a reconnect).
STALL_S = 3.0
RELAXED_STALL_S = 60.0


@pytest.fixture(scope="module")
def gateways(stack):
    """family key → ws URL of a gateway on that family's first model name (started on first use)."""
    started: dict[str, str] = {}

    def url(fam: live_models.Family, stall: bool = False) -> str:
        name = f"gateway-{fam.key}" + ("-stall" if stall else "")
        if name not in started:
            addr = stack.start_gateway(name, KOTOBA_LIVE_MODEL=fam.names[0],
                                       KOTOBA_GATEWAY_STALL_S=str(STALL_S if stall else RELAXED_STALL_S),
                                       KOTOBA_GATEWAY_DAILY_BUDGET_USD="1000")
            started[name] = f"ws://{addr}/v1/chat"
        return started[name]

    yield url
    for name in started:
        stack.stop_service(name)


def log_of(stack, fam: live_models.Family, stall: bool = False) -> str:
    return (stack.logs / f"gateway-{fam.key}{'-stall' if stall else ''}.log").read_text()


def expected_cost(usage: dict, fam: live_models.Family) -> float:
    p = fam.prices
    return (usage["text_in_tokens"] * p.text_in + usage["text_out_tokens"] * p.text_out
            + usage["audio_in_tokens"] * p.audio_in + usage["audio_out_tokens"] * p.audio_out) / 1e6


def assert_text_answer(result, fam: live_models.Family) -> None:
    """What the learner sees in text mode is the same on every family: text deltas, no audio."""
    assert not result.errors, result.errors
    assert result.text and result.first_text_s is not None
    assert not result.audio and not result.transcript("tutor"), "text mode must not carry speech"
    usage = result.usage
    if fam.audio_only:  # the text was spoken and transcribed: billed as audio out
        assert usage["audio_out_tokens"] > 0 and usage["text_out_tokens"] == 0, usage
    elif not fam.permissive:
        assert usage["text_out_tokens"] > 0 and usage["audio_out_tokens"] == 0, usage
    assert usage["cost_usd"] == pytest.approx(expected_cost(usage, fam), rel=1e-3, abs=1e-7), usage


@pytest.mark.parametrize("fam", FAMILIES)
async def test_text_turn(stack, gateways, fam):
    client = await ChatClient.open(gateways(fam), stack.token("demo-n4"))
    async with client:
        result = await client.ask("What does 泳ぐ mean?", wait_s=90)
    assert_text_answer(result, fam)
    assert "swim" in result.text.lower(), result.text
    assert "[word:" not in result.text
    if not fam.audio_only:  # a spoken answer carries no citations (the engine speaks without them)
        assert {"id": "word:泳ぐ:およぐ", "kind": "word"} in result.sources, result.sources


@pytest.mark.parametrize("fam", FAMILIES)
async def test_tool_call(stack, gateways, fam):
    """Own progress through get_user_progress; on 3.8 the call is NON_BLOCKING: the learner's turn stays
    open across the engine's holding turn and the INTERRUPT-scheduled answer completes it."""
    client = await ChatClient.open(gateways(fam), stack.token("demo-n5"))
    async with client:
        result = await client.ask("how is my N5 progress?", wait_s=90)
        after = await client.ask("What does 食べる mean?", wait_s=90)
    assert_text_answer(result, fam)
    assert "get_user_progress" in result.tools
    assert any(ch.isdigit() for ch in result.text), result.text  # the answer uses the result
    assert "eat" in after.text.lower(), after.text  # the next turn is its own, not the late answer
    if live_models.NON_BLOCKING in fam.function_modes and fam.default_function_mode == live_models.NON_BLOCKING:
        assert "holding turn complete" in log_of(stack, fam)


@pytest.mark.parametrize("fam", FAMILIES)
async def test_tool_results_survive_an_upstream_drop(stack, gateways, fam):
    """The upstream drops in the first turn (the engine's drop fault), while tool results may still be
    owed to it: the turn is asked again on the new upstream and the answer arrives once."""
    client = await ChatClient.open(gateways(fam), stack.token("demo-n5"),
                                   headers={"x-kotoba-faults": "drop_mid_turn=1"})
    async with client:
        result = await client.ask("how is my N5 progress?", wait_s=90)
    assert not result.errors, result.errors
    assert "get_user_progress" in result.tools and any(ch.isdigit() for ch in result.text), result.text


@pytest.mark.parametrize("fam", FAMILIES)
async def test_resume(stack, gateways, fam):
    url = gateways(fam)
    client = await ChatClient.open(url, stack.token("demo-n4"))
    async with client:
        session = await client.start("text")
        first = await client.ask("What does 買う mean?", wait_s=90)
    assert "buy" in first.text, first.text
    client = await ChatClient.open(url, stack.token("demo-n4"))
    async with client:
        again = await client.start("text", resume=session["session_id"])
        result = await client.ask("How do you read it?", wait_s=90)
    assert again["resumed"] is True and again["session_id"] == session["session_id"]
    assert_text_answer(result, fam)
    assert "かう" in result.text or "kau" in result.text.lower(), result.text


@pytest.mark.parametrize("fam", FAMILIES)
async def test_go_away(stack, gateways, fam):
    client = await ChatClient.open(gateways(fam), stack.token("demo-n4"),
                                   headers={"x-kotoba-faults": "goaway_after_turns=1,goaway_time_left=2"})
    async with client:
        first = await client.ask("What does 泳ぐ mean?", wait_s=90)
        await asyncio.sleep(0.3)  # the goAway arrives after the first turn; the gateway resumes between turns
        second = await client.ask("And how do you read it?", wait_s=90)
    assert_text_answer(first, fam)
    assert_text_answer(second, fam)
    assert "およぐ" in second.text or "oyogu" in second.text.lower(), second.text
    assert '"reason": "go_away"' in log_of(stack, fam)


@pytest.mark.parametrize("fam", FAMILIES)
async def test_stall(stack, gateways, fam):
    """A model that takes the turn and never answers (the engine's never_answer fault, on the first
    upstream only): the watchdog nudges, then reconnects and asks again; the learner gets the answer."""
    client = await ChatClient.open(gateways(fam, stall=True), stack.token("demo-n4"),
                                   headers={"x-kotoba-faults": "never_answer=1"})
    async with client:
        result = await client.ask("What does 泳ぐ mean?", wait_s=90)
    assert_text_answer(result, fam)
    assert "swim" in result.text.lower()
    assert result.total_s > STALL_S  # it did stall
    log = log_of(stack, fam, stall=True)
    assert "upstream stalled; nudging" in log and "upstream stalled; reconnecting" in log
    assert '"reason": "stall"' in log


@pytest.mark.voice
@pytest.mark.parametrize("fam", FAMILIES)
async def test_voice_turn_and_interruption(stack, gateways, fam, voice_clip):
    """Voice mode: the learner speaks (one short clip) while the tutor is still preparing the answer to a
    typed question → `interrupted` ends that answer, and the clip is heard and answered with transcripts
    and audio. The engine's first words are held back (delay_first_token_ms) because it synthesises
    faster than real time: an answer it had already sent could not be spoken over."""
    client = await ChatClient.open(gateways(fam), stack.token("demo-n4"),
                                   headers={"x-kotoba-faults": "delay_first_token_ms=6000"})
    async with client:
        await client.start("audio", language="en")
        started = time.perf_counter()
        await client.send(type="text", text="What can you help me with?")  # three sentences, no tools
        await asyncio.sleep(2)  # the typed turn is with the engine
        spoken_over = await client.say(voice_clip, wait_s=120)
        answered = await client.collect(started, wait_s=120)
    assert spoken_over.interrupted and not spoken_over.audio, spoken_over.frames
    assert not answered.errors, answered.errors
    assert answered.transcript("user").strip() and answered.transcript("tutor").strip()
    assert answered.audio and not answered.text
    assert answered.usage["audio_in_tokens"] > 0 and answered.usage["audio_out_tokens"] > 0


@pytest.fixture(scope="module")
def voice_clip() -> bytes:
    from services.local_live.voice.testaudio import speech_pcm16_16k

    return speech_pcm16_16k("What does taberu mean?", "en")


def captioned_jpeg(caption: str) -> bytes:
    """A minimal JPEG whose COM segment carries a test caption (the engine has no vision)."""
    body = caption.encode()
    return b"\xff\xd8\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + b"\xff\xd9"


@pytest.mark.parametrize("fam", [p for p in FAMILIES if p.values[0].key in ("3.8-live", "half-cascade")])
async def test_video_frame_is_seen_and_billed(stack, gateways, fam):
    """{"type":"video","jpeg":…} → realtime video input: the model can say what it was shown, the frame is
    billed (at the family's video price), and bad frames get typed errors that change nothing."""
    import base64

    client = await ChatClient.open(gateways(fam), stack.token("demo-n4"))
    async with client:
        await client.start("text", language="en")
        await client.send(type="video", jpeg=base64.b64encode(captioned_jpeg("a red apple")).decode())
        await client.send(type="video", jpeg=base64.b64encode(b"GIF89a").decode())
        bad = await client.recv_json()
        await client.send(type="video", jpeg=base64.b64encode(captioned_jpeg("a blue cup")).decode())
        fast = await client.recv_json()
        result = await client.ask("What do you see?", wait_s=90)
    assert bad["type"] == "error" and bad["code"] == "bad_message", bad
    assert fast["type"] == "error" and fast["code"] == "rate_limited", fast  # at most one frame a second
    assert not result.errors and "red apple" in result.text, result.text
    video_tokens = 258  # one frame, billed with the turn after it, counted with text input
    extra = video_tokens * (fam.prices.video_in - fam.prices.text_in) / 1e6
    assert result.usage["text_in_tokens"] >= video_tokens
    assert result.usage["cost_usd"] == pytest.approx(expected_cost(result.usage, fam) + extra, rel=1e-3, abs=1e-7)
