"""The engine through the real google-genai Live client: turns, tools, usage, resumption,
goAway, interruption, API key and fault controls."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.genai import errors, types

SWIM = {"id": "word:泳ぐ:およぐ", "type": "word", "written": "泳ぐ", "reading": "およぐ", "romaji": "oyogu",
        "meanings": ["to swim"], "level": "N5"}
pytestmark = pytest.mark.timeout(60)


@dataclass
class Turn:
    text: str = ""
    tool_calls: list[types.FunctionCall] = field(default_factory=list)
    messages: list[types.LiveServerMessage] = field(default_factory=list)

    def has(self, attr: str) -> bool:
        return any(getattr(m, attr, None) for m in self.messages)

    def content_flag(self, name: str) -> bool:
        return any(m.server_content and getattr(m.server_content, name) for m in self.messages)


def text_turn(text: str, items: list[dict[str, Any]] | None = None) -> types.Content:
    context = "<kotoba-context>\n" + json.dumps({"items": items or []}, ensure_ascii=False) + "\n</kotoba-context>"
    return types.Content(role="user", parts=[types.Part(text=context), types.Part(text=text)])


async def run_turn(session, tools: dict[str, Any] | None = None) -> Turn:
    """Receive one whole turn, answering tool calls from `tools` (name -> response dict)."""
    turn = Turn()
    async for message in session.receive():
        turn.messages.append(message)
        if message.text:
            turn.text += message.text
        if message.tool_call:
            turn.tool_calls += message.tool_call.function_calls
            if tools is not None:
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response=tools.get(c.name, {"result": {}}))
                    for c in message.tool_call.function_calls])
    return turn


async def test_text_turn_streams_deltas_and_completes(live):
    async with live.connect() as session:
        assert session.session_id
        await session.send_client_content(turns=text_turn("hello!"))
        turn = await run_turn(session)
    assert "Aki" in turn.text
    deltas = [m.text for m in turn.messages if m.text]
    assert len(deltas) >= 2
    assert turn.content_flag("generation_complete") and turn.content_flag("turn_complete")


async def test_realtime_text_is_a_turn(live):
    async with live.connect() as session:
        await session.send_realtime_input(text="what's the weather in Paris?")
        turn = await run_turn(session)
    assert "Japanese" in turn.text and not turn.tool_calls


async def test_function_call_round_trip(live):
    async with live.connect() as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
        turn = await run_turn(session, {"get_word_details": {"result": {"word": SWIM}}})
    assert [c.name for c in turn.tool_calls] == ["get_word_details"]
    assert turn.tool_calls[0].args == {"written": "泳ぐ"} and turn.tool_calls[0].id
    assert "to swim" in turn.text and "N5" in turn.text


async def test_context_items_answer_without_tools(live):
    async with live.connect() as session:
        await session.send_client_content(turns=text_turn("how do you read 泳ぐ?", [SWIM]))
        turn = await run_turn(session)
    assert not turn.tool_calls and "およぐ" in turn.text


async def test_tool_error_is_said_plainly(live):
    async with live.connect() as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
        turn = await run_turn(session, {
            "get_word_details": {"error": {"code": "UNAVAILABLE", "message": "tools down"}},
            "search_words": {"error": {"code": "UNAVAILABLE", "message": "tools down"}}})
    assert "can't reach the dictionary" in turn.text and "swim" not in turn.text


async def test_usage_metadata_by_modality(live):
    async with live.connect() as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?", [SWIM]))
        turn = await run_turn(session)
    usage = next(m.usage_metadata for m in turn.messages if m.usage_metadata)
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    assert usage.response_tokens_details[0].modality == types.MediaModality.TEXT
    assert usage.prompt_token_count > 0 and usage.response_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.response_token_count


async def test_wrong_api_key_is_rejected(live):
    with pytest.raises(errors.APIError) as caught:
        async with live.connect(api_key="wrong-key"):
            pass
    assert caught.value.code == 1008 and "API key not valid" in str(caught.value)


async def test_resumption_after_dropped_connection_keeps_context(live):
    config = live.config(session_resumption=types.SessionResumptionConfig())
    handle = None
    with pytest.raises(errors.APIError):
        async with live.connect(config, headers={"x-kotoba-faults": "drop_mid_turn=2"}) as session:
            await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
            turn = await run_turn(session, {"get_word_details": {"result": {"word": SWIM}}})
            handle = [m.session_resumption_update.new_handle for m in turn.messages
                      if m.session_resumption_update][-1]
            await session.send_client_content(turns=text_turn("hello"))
            await run_turn(session)  # the engine cuts the connection after the first delta
    assert handle
    resumed = live.config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with live.connect(resumed) as session:
        await session.send_client_content(turns=text_turn("and its reading?"))
        turn = await run_turn(session)
    assert "泳ぐ" in turn.text and "およぐ" in turn.text and not turn.tool_calls


async def test_unknown_resumption_handle_is_rejected(live):
    config = live.config(session_resumption=types.SessionResumptionConfig(handle="kr-nope"))
    with pytest.raises(errors.APIError) as caught:
        async with live.connect(config) as session:
            await session.send_client_content(turns=text_turn("hi"))
            await run_turn(session)
    assert caught.value.code == 1008 and "unknown or expired" in str(caught.value)


async def test_go_away_after_turns(live):
    headers = {"x-kotoba-faults": "goaway_after_turns=1,goaway_time_left=0.3"}
    async with live.connect(headers=headers) as session:
        await session.send_client_content(turns=text_turn("hello"))
        await run_turn(session)
        message = await asyncio.wait_for(session._receive(), 5)
        assert message.go_away is not None and message.go_away.time_left == "0.3s"
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(session._receive(), 5)
    assert caught.value.code == 1001


async def test_interruption_cancels_pending_tool_call(live):
    async with live.connect() as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
        first = await asyncio.wait_for(session._receive(), 5)
        call_id = first.tool_call.function_calls[0].id
        await session.send_realtime_input(activity_start=types.ActivityStart())
        turn = await run_turn(session)
        assert turn.messages[0].tool_call_cancellation.ids == [call_id]
        assert turn.content_flag("interrupted") and not turn.text
        # The stale call's late answer is ignored; the session goes on.
        await session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call_id, name="get_word_details", response={"result": {"word": SWIM}})])
        await session.send_client_content(turns=text_turn("thanks"))
        assert "welcome" in (await run_turn(session)).text


async def test_interruption_stops_a_slow_reply(live):
    async with live.connect(headers={"x-kotoba-faults": "delay_first_token_ms=5000"}) as session:
        await session.send_client_content(turns=text_turn("hello"))
        await asyncio.sleep(0.2)
        await session.send_client_content(turns=text_turn("thanks"))
        interrupted = await run_turn(session)
        assert interrupted.content_flag("interrupted") and not interrupted.text


async def test_reject_setup_fault(live):
    with pytest.raises(errors.APIError) as caught:
        async with live.connect(headers={"x-kotoba-faults": "reject_setup=1"}):
            pass
    assert caught.value.code == 1008 and "reject_setup" in str(caught.value)


async def test_server_wide_faults_and_frame_recording(live_factory):
    async with live_factory(KOTOBA_LIVE_FAULTS="record=1") as server:
        async with server.connect() as session:
            await session.send_client_content(turns=text_turn("hello"))
            await run_turn(session)
            conn_id = session.session_id
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        request = urllib.request.Request(f"{server.base_url}/debug/frames/{conn_id}",
                                         headers={"x-goog-api-key": "test-live-key"})
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(request, context=ctx, timeout=5).read())
    frames = json.loads(body)["frames"]
    assert frames[0]["dir"] == "in" and "setup" in frames[0]["frame"]
    assert any("setupComplete" in f["frame"] for f in frames if f["dir"] == "out")
    assert any(f["frame"].get("serverContent", {}).get("turnComplete") for f in frames if f["dir"] == "out")


async def test_reject_resume_fault_makes_every_handle_of_the_connection_unusable(live):
    config = live.config(session_resumption=types.SessionResumptionConfig())
    async with live.connect(config, headers={"x-kotoba-faults": "reject_resume=1"}) as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?", [SWIM]))
        turn = await run_turn(session)
    handle = [m.session_resumption_update.new_handle for m in turn.messages if m.session_resumption_update][-1]
    with pytest.raises(errors.APIError) as caught:
        async with live.connect(live.config(session_resumption=types.SessionResumptionConfig(handle=handle))) as s:
            await s.send_client_content(turns=text_turn("and its reading?"))
            await run_turn(s)
    assert caught.value.code == 1008 and "unknown or expired" in str(caught.value)


async def test_a_session_primed_with_recent_turns_resolves_follow_ups(live):
    """What the gateway does when resumption is impossible: replay recent turns (turn_complete=False)."""
    primed = [types.Content(role="user", parts=[types.Part(text="What does 泳ぐ mean?")]),
              types.Content(role="model", parts=[types.Part(text="泳ぐ (およぐ, oyogu) means “to swim”. "
                                                                 "[word:泳ぐ:およぐ]")])]
    async with live.connect() as session:
        await session.send_client_content(turns=primed, turn_complete=False)
        await session.send_client_content(turns=text_turn("and its reading?"))
        turn = await run_turn(session, {"get_word_details": {"result": {"word": SWIM}}})
    assert [(c.name, c.args) for c in turn.tool_calls] == [("get_word_details", {"written": "泳ぐ"})]
    assert "およぐ" in turn.text


async def test_context_update_gives_the_learner_context_to_the_next_turn(live):
    """The gateway opens the upstream before the learner's context is read and sends it in a contextUpdate
    (docs/protocol.md): the engine must take it, in order, for the turns that follow."""
    from tests.local_live.conftest import system_instruction

    config = live.config(system_instruction="You are Kotoba, a friendly Japanese tutor.")
    async with live.connect(config) as session:
        await session.send_context_update(system_instruction=system_instruction(name="Mika"))
        await session.send_client_content(turns=text_turn("hello!"))
        turn = await run_turn(session)
    assert "Mika" in turn.text


async def test_context_update_of_tools_replaces_the_declared_functions(live):
    """The SDK wraps updated tools in an object (LiveClientContextUpdateTools); an empty list clears them, so
    the model can no longer call a function it was given at setup."""
    async with live.connect() as session:
        await session.send_context_update(tools=[])
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
        turn = await run_turn(session, {"get_word_details": {"result": {"word": SWIM}}})
    assert not turn.tool_calls
