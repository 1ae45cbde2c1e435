"""Gateway paths beyond the happy path: resumption refused → primed fresh session, tool-call
cancellation, idle timeout, switching text → audio mid-session."""

from __future__ import annotations

import asyncio

import pytest

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


async def test_idle_session_is_closed_cleanly_with_a_reason(stack):
    from websockets.exceptions import ConnectionClosed

    addr = stack.start_gateway("gateway-idle", KOTOBA_GATEWAY_IDLE_TIMEOUT_S="1")
    try:
        client = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n4"))
        async with client:
            result = await client.ask("What does 泳ぐ mean?")
            error = await client.recv_json(wait_s=15)  # then nothing for over a second
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv_json(wait_s=15)
    finally:
        stack.stop_service("gateway-idle")
    assert not result.errors and "swim" in result.text.lower()
    assert error["type"] == "error" and error["code"] == "idle_timeout"
    assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")


@pytest.mark.voice
@pytest.mark.timeout(180)
async def test_switching_text_to_audio_mid_session_keeps_the_conversation(stack):
    """A text turn, then {"type":"start","mode":"audio"}: the next (typed) question is answered in speech,
    and it still knows what "it" is. TTS only, no STT."""
    client = await ChatClient.open(stack.url, stack.token("demo-n4"))
    async with client:
        session = await client.start("text")
        first = await client.ask("What does 泳ぐ mean?")
        switched = await client.start("audio")
        spoken = await client.ask("How do you read it?", wait_s=120)
    assert session["mode"] == "text" and switched["mode"] == "audio"
    assert switched["session_id"] == session["session_id"]
    assert not first.errors and "swim" in first.text.lower() and not first.audio
    assert not spoken.errors, spoken.errors
    said = spoken.transcript("tutor")
    assert "およぐ" in said and "[" not in said and "oyogu" not in said, said  # spoken form: no ids, no romaji
    assert len(spoken.audio) > 24000 * 2 * 0.5 and not spoken.text  # speech, not text deltas


@pytest.mark.voice
@pytest.mark.timeout(180)
async def test_learner_interrupting_a_pending_tool_call_cancels_it(stack):
    """Tools that never answer (a socket that accepts and stays silent): the learner asks about their
    progress, the tool call hangs, the learner speaks again → the engine sends toolCallCancellation,
    the gateway cancels the call, forwards `interrupted`, and the next turn is answered."""
    import socket
    import time

    from services.local_live.voice.testaudio import speech_pcm16_16k

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    tools_addr = f"127.0.0.1:{silent.getsockname()[1]}"
    addr = stack.start_gateway("gateway-silent-tools", KOTOBA_TOOLS_ADDR=tools_addr,
                               KOTOBA_GATEWAY_TOOL_DEADLINE_S="60", KOTOBA_GATEWAY_CONTEXT_DEADLINE_S="0.5")
    question = await asyncio.to_thread(speech_pcm16_16k, "How is my N5 progress?", "en")
    hello = await asyncio.to_thread(speech_pcm16_16k, "Hello.", "en")
    try:
        client = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token("demo-n5"))
        async with client:
            await client.start("audio", language="en")
            for start in range(0, len(question), 3200):
                await client.ws.send(question[start:start + 3200])
            await client.send(type="audio_end")
            frame = await client.recv_json(wait_s=60)
            while frame["type"] != "tool":
                frame = await client.recv_json(wait_s=60)
            interrupted = await client.say(hello, wait_s=60)  # ends at the first turn's turn_complete
            answered = await client.collect(time.perf_counter(), wait_s=90)
    finally:
        stack.stop_service("gateway-silent-tools")
        silent.close()
    assert frame["name"] == "get_user_progress"
    assert interrupted.interrupted
    assert not answered.errors, answered.errors
    assert answered.transcript("user").strip() and "Hi" in answered.transcript("tutor")
    assert answered.audio
    log = (stack.logs / "gateway-silent-tools.log").read_text()
    assert "tool call cancelled" in log
