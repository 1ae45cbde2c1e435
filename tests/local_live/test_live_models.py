"""The engine is as strict as the model family it is asked for (services/common/live_models.py),
through the unmodified google-genai client: refusals with the real codes and wording, NON_BLOCKING
scheduling, session rules on a sped-up model clock, video frames, Google Search."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import errors, types

from services.common import live_models as lm
from services.common.tls import client_context
from services.local_live.voice import available

from .conftest import API_KEY  # noqa: TID252 - area helper
from .test_live_protocol import SWIM, run_turn, text_turn  # noqa: TID252 - area helper

pytestmark = pytest.mark.timeout(60)

NATIVE = "gemini-2.5-flash-native-audio-preview-12-2025"
HALF = "gemini-live-2.5-flash-preview"
WORD_TOOL = {"name": "get_word_details", "description": "Word details.",
             "parameters": {"type": "object", "properties": {"written": {"type": "string"}}}}


def connect(live, model: str, headers: dict[str, str] | None = None, api_version: str = "v1beta", **config):
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(
        base_url=live.base_url, api_version=api_version, headers=headers,
        async_client_args={"ssl": client_context(live.ca_file)}))
    return client.aio.live.connect(model=model, config=live.config(**config))


async def refusal(live, model: str, api_version: str = "v1beta", **config) -> errors.APIError:
    with pytest.raises(errors.APIError) as caught:
        async with connect(live, model, api_version=api_version, **config) as session:
            await session.send_client_content(turns=text_turn("hello"))
            await run_turn(session)
    return caught.value


@pytest.mark.parametrize("model", [NATIVE, "gemini-3.1-flash-live-preview", "gemini-3.8-live"])
async def test_text_on_an_audio_only_model_closes_1007_like_gemini(live, model):
    err = await refusal(live, model, response_modalities=["TEXT"])
    assert err.code == 1007 and "Cannot extract voices from a non-audio request." in str(err)


async def test_text_and_audio_together_is_an_invalid_argument(live):
    err = await refusal(live, HALF, response_modalities=["TEXT", "AUDIO"])
    assert err.code == 1007 and "Request contains an invalid argument." in str(err)


@pytest.mark.parametrize("model", ["gemini-9-ultra-live", "gemini-2.5-flash-native-audio-preview-09-2025",
                                   "kotoba-local-live", "gemini-live-2.5-flash-native-audio"])
async def test_unknown_retired_or_other_api_models_close_1008_not_found(live, model):
    # (the last is the Vertex GA name: on the Gemini API path it does not exist)
    err = await refusal(live, model)
    wording = f"models/{model} is not found for API version v1beta, or is not supported for bidiGenerateContent"
    # A close reason holds at most 123 bytes: long names cut the wording short.
    reason = str(err).partition(". ")[2]  # the SDK shows "<code> <status>. <close reason>"
    assert err.code == 1008 and wording.startswith(reason) and len(reason) >= min(len(wording), 120)


REFUSED = [
    ("gemini-3.1-flash-live-preview", dict(enable_affective_dialog=True)),
    (NATIVE, dict(enable_affective_dialog=True)),  # a v1alpha flag: refused on v1beta
    ("gemini-3.8-live", dict(enable_affective_dialog=True)),
    ("gemini-3.1-flash-live-preview", dict(tools=[{"function_declarations": [{**WORD_TOOL, "behavior": "NON_BLOCKING"}]}])),
    ("gemini-3.8-live-extended-thinking", dict(tools=[{"function_declarations": [{**WORD_TOOL, "behavior": "BLOCKING"}]}])),
    ("gemini-3.8-live", dict(thinking_config=types.ThinkingConfig(thinking_level="LOW"))),
    (NATIVE, dict(thinking_config=types.ThinkingConfig(thinking_level="LOW"))),  # 2.5 thinks by budget
    ("gemini-3.8-live", dict(proactivity=types.ProactivityConfig(proactive_audio=False))),
    ("gemini-3.1-flash-live-preview", dict(proactivity=types.ProactivityConfig(proactive_audio=True))),
]


@pytest.mark.parametrize(("model", "extra"), REFUSED)
async def test_a_feature_the_model_lacks_closes_1007(live, model, extra):
    err = await refusal(live, model, response_modalities=["AUDIO"], **extra)
    assert err.code == 1007 and "Request contains an invalid argument." in str(err)


@pytest.mark.parametrize("extra", [dict(enable_affective_dialog=True),
                                   dict(proactivity=types.ProactivityConfig(proactive_audio=True)),
                                   dict(thinking_config=types.ThinkingConfig(thinking_level="LOW"))])
async def test_the_half_cascade_model_refuses_native_audio_features_in_text_mode(live, extra):
    err = await refusal(live, HALF, api_version="v1alpha", **extra)
    assert err.code == 1007 and "Request contains an invalid argument." in str(err)


async def test_google_search_grounding_tool_is_accepted_beside_functions(live):
    tools = [{"function_declarations": [WORD_TOOL]}, types.Tool(google_search=types.GoogleSearch())]
    async with connect(live, HALF, tools=tools) as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?", [SWIM]))
        turn = await run_turn(session)
    assert "swim" in turn.text


# ---- NON_BLOCKING tools and their scheduling -------------------------------------------------------

async def _non_blocking_call(session) -> types.FunctionCall:
    """Ask a question whose lookup is NON_BLOCKING: the call goes out, the model says it is looking
    and ends its turn without waiting for the result."""
    await session.send_client_content(turns=text_turn("what does 泳ぐ mean?"))
    holding = await run_turn(session)
    assert holding.tool_calls and "Let me check" in holding.text
    assert holding.content_flag("turn_complete")
    return holding.tool_calls[0]


def _answer(call: types.FunctionCall, scheduling: str | None) -> types.FunctionResponse:
    return types.FunctionResponse(id=call.id, name=call.name, response={"result": {"word": SWIM}},
                                  scheduling=scheduling)


NB_TOOLS = [{"function_declarations": [{**WORD_TOOL, "behavior": "NON_BLOCKING"}]}]


@pytest.mark.parametrize("scheduling", [None, "WHEN_IDLE"])
async def test_non_blocking_result_when_idle_answers_after_the_current_turn(live, scheduling):
    async with connect(live, lm.PERMISSIVE_MODEL, tools=NB_TOOLS,
                       headers={"x-kotoba-faults": "delay_first_token_ms=300"}) as session:
        call = await _non_blocking_call(session)
        await session.send_client_content(turns=text_turn("hello"))
        await session.send_tool_response(function_responses=[_answer(call, scheduling)])
        greeting = await run_turn(session)
        late = await run_turn(session)
    assert not greeting.content_flag("interrupted") and "swim" not in greeting.text
    assert "swim" in late.text and late.has("usage_metadata")


async def test_non_blocking_result_with_interrupt_cuts_the_current_answer(live):
    async with connect(live, lm.PERMISSIVE_MODEL, tools=NB_TOOLS,
                       headers={"x-kotoba-faults": "delay_first_token_ms=300"}) as session:
        call = await _non_blocking_call(session)
        await session.send_client_content(turns=text_turn("hello"))
        await asyncio.sleep(0.05)
        await session.send_tool_response(function_responses=[_answer(call, "INTERRUPT")])
        cut = await run_turn(session)
        late = await run_turn(session)
    assert cut.content_flag("interrupted") and not cut.text
    assert "swim" in late.text


async def test_non_blocking_result_silent_only_joins_the_context(live):
    async with connect(live, lm.PERMISSIVE_MODEL, tools=NB_TOOLS) as session:
        call = await _non_blocking_call(session)
        await session.send_tool_response(function_responses=[_answer(call, "SILENT")])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(session._receive(), 0.5)
        await session.send_client_content(turns=text_turn("and its reading?"))
        follow = await run_turn(session)
    assert "およぐ" in follow.text and not follow.tool_calls


# ---- session rules on the model clock ---------------------------------------------------------------

async def test_go_away_comes_a_minute_before_the_ten_minute_close(live_factory):
    # 600 model seconds per real second: the connection lasts one real second.
    async with live_factory(KOTOBA_LIVE_CLOCK_SPEED="600") as fast:
        async with connect(fast, HALF) as session:
            message = await asyncio.wait_for(session._receive(), 10)
            assert message.go_away is not None and message.go_away.time_left == "0.1s"  # 60 model s
            with pytest.raises(errors.APIError) as caught:
                await asyncio.wait_for(session._receive(), 10)
    assert caught.value.code == 1001


async def test_the_permissive_model_has_no_lifetime(live_factory):
    async with live_factory(KOTOBA_LIVE_CLOCK_SPEED="600") as fast:
        async with connect(fast, lm.PERMISSIVE_MODEL) as session:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(session._receive(), 1.5)


async def test_audio_video_session_without_compression_ends_at_two_minutes(live_factory):
    async with live_factory(KOTOBA_LIVE_CLOCK_SPEED="100") as fast:  # 2 model minutes = 1.2 s
        async with connect(fast, HALF) as session:
            await session.send_realtime_input(video=types.Blob(data=jpeg("a cat"), mime_type="image/jpeg"))
            with pytest.raises(errors.APIError) as caught:
                while True:
                    await asyncio.wait_for(session._receive(), 10)
    assert caught.value.code == 1011 and "Deadline expired" in str(caught.value)


async def test_resume_is_refused_while_the_old_socket_is_open(live):
    cfg = dict(session_resumption=types.SessionResumptionConfig())
    async with connect(live, HALF, **cfg) as first:
        await first.send_client_content(turns=text_turn("what does 泳ぐ mean?", [SWIM]))
        turn = await run_turn(first)
        handle = [m.session_resumption_update.new_handle for m in turn.messages if m.session_resumption_update][-1]
        err = await refusal(live, HALF, session_resumption=types.SessionResumptionConfig(handle=handle))
        assert err.code == 1007 and "Request contains an invalid argument." in str(err)
    async with connect(live, HALF, session_resumption=types.SessionResumptionConfig(handle=handle)) as second:
        await second.send_client_content(turns=text_turn("and its reading?"))
        assert "およぐ" in (await run_turn(second)).text
        # the conversation is open again (on the resumed socket): an older handle of it is refused too
        err = await refusal(live, HALF, session_resumption=types.SessionResumptionConfig(handle=handle))
        assert err.code == 1007


async def test_handles_expire_after_two_hours_of_model_time(live_factory):
    async with live_factory(KOTOBA_LIVE_CLOCK_SPEED="7200") as fast:  # two model hours = one real second
        async with connect(fast, lm.PERMISSIVE_MODEL, session_resumption=types.SessionResumptionConfig()) as s:
            await s.send_client_content(turns=text_turn("hello"))
            turn = await run_turn(s)
        handle = [m.session_resumption_update.new_handle for m in turn.messages if m.session_resumption_update][-1]
        await asyncio.sleep(1.5)
        err = await refusal(fast, lm.PERMISSIVE_MODEL, session_resumption=types.SessionResumptionConfig(handle=handle))
    assert err.code == 1008 and "unknown or expired" in str(err)


# ---- video frames ------------------------------------------------------------------------------------

def jpeg(caption: str) -> bytes:
    """A minimal JPEG whose COM segment carries a test caption (the engine has no vision)."""
    body = caption.encode()
    return b"\xff\xd8\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + b"\xff\xd9"


async def test_video_frames_are_billed_and_the_engine_says_what_it_was_shown(live):
    async with connect(live, HALF) as session:
        for _ in range(2):  # 1 FPS, as the gateway would send them
            await session.send_realtime_input(video=types.Blob(data=jpeg("a red apple"), mime_type="image/jpeg"))
        await session.send_client_content(turns=text_turn("what do you see?"))
        turn = await run_turn(session)
    assert "red apple" in turn.text
    usage = [m.usage_metadata for m in turn.messages if m.usage_metadata][-1]
    details = {d.modality: d.token_count for d in usage.prompt_tokens_details}
    assert details[types.MediaModality.VIDEO] == 2 * 258


async def test_a_video_frame_that_is_not_a_jpeg_closes_1007(live):
    with pytest.raises(errors.APIError) as caught:
        async with connect(live, HALF) as session:
            await session.send_realtime_input(video=types.Blob(data=b"GIF89a....", mime_type="image/jpeg"))
            await run_turn(session)
    assert caught.value.code == 1007 and "not a JPEG" in str(caught.value)


# ---- the real speech path on a native-audio model ----------------------------------------------------

@pytest.mark.voice
@pytest.mark.timeout(120)
@pytest.mark.skipif(not available()[0], reason="voice extra not installed")
async def test_native_audio_model_answers_grounded_through_output_transcription(live):
    """The pattern the gateway uses for text on an audio-only model: AUDIO + output transcription
    (the real TTS path: each sentence's transcription, then its audio)."""
    said, audio, usage = "", bytearray(), None
    async with connect(live, NATIVE, response_modalities=["AUDIO"], output_audio_transcription={}) as session:
        await session.send_client_content(turns=text_turn("what does 泳ぐ mean?", [SWIM]))
        async for message in session.receive():
            content = message.server_content
            if content and content.output_transcription:
                said += content.output_transcription.text
            if content and content.model_turn:
                assert not any(part.text for part in content.model_turn.parts)  # no text parts on this model
                audio += b"".join(part.inline_data.data for part in content.model_turn.parts if part.inline_data)
            usage = message.usage_metadata or usage
    assert "swim" in said and len(audio) > 24_000
    response = {d.modality: d.token_count for d in usage.response_tokens_details}
    assert response[types.MediaModality.AUDIO] > 0 and types.MediaModality.TEXT not in response


# ---- billing ------------------------------------------------------------------------------------------

def _usage(turn) -> types.UsageMetadata:
    return [m.usage_metadata for m in turn.messages if m.usage_metadata][-1]


async def test_every_turn_bills_the_accumulated_context_again(live):
    async with connect(live, HALF) as session:
        usages = []
        for question in ("hello", "thanks", "hello"):
            await session.send_client_content(turns=text_turn(question))
            usages.append(_usage(await run_turn(session)))
    first, second, third = usages
    # turn 2's prompt holds turn 1's prompt and answer (and the system instruction again)
    assert second.prompt_token_count >= first.prompt_token_count + first.response_token_count
    assert third.prompt_token_count > second.prompt_token_count + second.response_token_count
    async with connect(live, lm.PERMISSIVE_MODEL) as session:  # the permissive double: new input only
        flat = []
        for question in ("hello", "hello"):
            await session.send_client_content(turns=text_turn(question))
            flat.append(_usage(await run_turn(session)))
    assert flat[0].prompt_token_count == flat[1].prompt_token_count


def test_every_client_message_kind_has_an_explicit_handler():
    from services.local_live.connection import Connection
    from services.local_live.faults import Faults
    from services.local_live.protocol import CLIENT_KINDS

    handlers = Connection(None, None, Faults()).handlers  # type: ignore[arg-type]
    assert set(handlers) == set(CLIENT_KINDS.values())
