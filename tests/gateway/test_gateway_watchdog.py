"""The stall watchdog (services/gateway/watchdog.py) on its own, and the parts of issue 13 that need no
stack: video frames in the learner protocol, video priced as video. The end-to-end stall (the engine's
never_answer fault) is in test_gateway_conformance.py."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from google.genai import types

from services.gateway import protocol
from services.gateway.config import Prices
from services.gateway.usage import from_metadata
from services.gateway.watchdog import StallWatchdog


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []

    async def nudge(self) -> None:
        self.log.append("nudge")

    async def reconnect(self) -> None:
        self.log.append("reconnect")


async def test_silence_is_nudged_then_reconnected():
    calls = Calls()
    dog = StallWatchdog(0.05, calls.nudge, calls.reconnect)
    dog.arm("learner_turn")
    await asyncio.sleep(0.3)
    assert calls.log == ["nudge", "reconnect"] and (dog.nudges, dog.reconnects) == (1, 1)
    assert not dog.armed_for  # one reconnect per stall; the re-asked turn arms it again
    dog.arm("asked_again")  # still nothing: the next wait is twice as long
    await asyncio.sleep(0.07)
    assert calls.log == ["nudge", "reconnect"]
    await asyncio.sleep(0.1)
    assert calls.log == ["nudge", "reconnect", "nudge"]
    dog.output()
    dog.arm("learner_turn")  # output resets the wait
    await asyncio.sleep(0.07)
    assert calls.log == ["nudge", "reconnect", "nudge", "nudge"]
    dog.stop()


async def test_output_after_the_nudge_cancels_the_reconnect():
    calls = Calls()
    dog = StallWatchdog(0.05, calls.nudge, calls.reconnect)
    dog.arm("tool_response")
    await asyncio.sleep(0.07)
    dog.output()
    await asyncio.sleep(0.15)
    assert calls.log == ["nudge"]


async def test_learner_audio_and_the_utterance_length_push_the_deadline_back():
    calls = Calls()
    dog = StallWatchdog(0.1, calls.nudge, calls.reconnect)
    dog.arm("interrupted")
    for _ in range(5):  # the learner keeps talking
        await asyncio.sleep(0.05)
        dog.touch()
    assert calls.log == []
    dog.arm("learner_turn", extra_s=0.2)
    await asyncio.sleep(0.2)
    assert calls.log == []
    dog.stop()


def test_video_message_is_parsed_and_bad_frames_get_codes():
    jpeg = b"\xff\xd8\xff\xfe\x00\x05abc\xff\xd9"
    assert protocol.parse(json.dumps({"type": "video", "jpeg": base64.b64encode(jpeg).decode()}), 100) == \
        protocol.Video(jpeg)
    for raw, code in ((json.dumps({"type": "video"}), protocol.BAD_MESSAGE),
                      (json.dumps({"type": "video", "jpeg": "not base64!"}), protocol.BAD_MESSAGE),
                      (json.dumps({"type": "video", "jpeg": base64.b64encode(b"GIF89a").decode()}),
                       protocol.BAD_MESSAGE),
                      (json.dumps({"type": "video", "jpeg": "A" * 300_000}), protocol.TOO_LARGE)):
        result = protocol.parse(raw, 100)
        assert isinstance(result, protocol.ProtocolError) and result.code == code, (raw[:40], result)


def test_video_tokens_are_priced_at_the_video_price():
    meta = types.UsageMetadata(prompt_tokens_details=[types.ModalityTokenCount(modality="TEXT", token_count=1000),
                                                      types.ModalityTokenCount(modality="VIDEO", token_count=258)],
                               response_tokens_details=[types.ModalityTokenCount(modality="AUDIO", token_count=100)])
    u = from_metadata(meta, Prices(text_in=0.5, video_in=3.0, audio_out=12.0))
    assert u.text_in_tokens == 1258 and u.audio_out_tokens == 100
    assert u.cost_usd == pytest.approx((1000 * 0.5 + 258 * 3.0 + 100 * 12.0) / 1e6)


@pytest.mark.parametrize("model,behaviour,modality", [
    ("gemini-live-2.5-flash-preview", None, "TEXT"),
    ("gemini-2.5-flash-native-audio-preview-12-2025", None, "AUDIO"),
    ("gemini-3.1-flash-live-preview", None, "AUDIO"),
    ("gemini-3.8-live", None, "AUDIO"),  # NON_BLOCKING is 3.8's default: nothing written on the declarations
    ("gemini-3.8-live-extended-thinking", "NON_BLOCKING", "AUDIO"),
])
def test_connect_config_follows_the_family_and_search_is_opt_in(model, behaviour, modality):
    from services.common import live_models
    from services.gateway.live import connect_config
    from services.gateway.session_parts import LinkSettings
    from services.gateway.tools_bridge import function_declarations, genai_tools

    tools = genai_tools(function_declarations(voice=False))
    for search in (False, True):
        settings = LinkSettings(model, 1, 0.1, 25_600, 12_800, google_search=search)
        cfg = connect_config(system_instruction="x", tools=tools, mode="text", handle=None, config=settings)
        assert [m.value for m in cfg.response_modalities] == [modality]
        assert (cfg.output_audio_transcription is not None) == (modality == "AUDIO")
        decls = cfg.tools[0].function_declarations
        assert {d.behavior.value if d.behavior else None for d in decls} == {behaviour}
        assert any(t.google_search is not None for t in cfg.tools) == search
        live_models.check_setup(live_models.find(model), cfg.model_dump(exclude_none=True))  # the engine takes it


@pytest.mark.parametrize("model,affective,proactive", [
    ("gemini-2.5-flash-native-audio-preview-12-2025", True, True),
    ("gemini-3.8-live", False, False),  # affective dialog removed; proactivity always on (false is refused)
    ("gemini-live-2.5-flash-preview", False, False),
])
def test_affective_dialog_and_proactive_audio_only_where_the_family_has_them(model, affective, proactive):
    from services.common import live_models
    from services.gateway.live import connect_config
    from services.gateway.session_parts import LinkSettings

    settings = LinkSettings(model, 1, 0.1, 25_600, 12_800, affective_dialog=True, proactive_audio=True)
    cfg = connect_config(system_instruction="x", tools=[], mode="audio", handle=None, config=settings)
    assert bool(cfg.enable_affective_dialog) == affective
    assert (cfg.proactivity is not None) == proactive
    live_models.check_setup(live_models.find(model), cfg.model_dump(exclude_none=True),
                            api_version="v1alpha" if affective else "v1beta")


def test_affective_dialog_makes_the_gemini_client_v1alpha(aws_env, tmp_path):
    from services.common.tls import ensure_dev_ca
    from services.gateway.config import GatewayConfig
    from services.gateway.live import make_client

    ensure_dev_ca(tmp_path)
    env = {**aws_env, "KOTOBA_LIVE_CA_FILE": str(tmp_path / "ca.pem"),
           "KOTOBA_LIVE_MODEL": "gemini-2.5-flash-native-audio-preview-12-2025",
           "KOTOBA_GATEWAY_AFFECTIVE_DIALOG": "1"}
    assert make_client(GatewayConfig.from_env(env))._api_client._http_options.api_version == "v1alpha"
    env["KOTOBA_LIVE_MODEL"] = "gemini-3.8-live"
    assert make_client(GatewayConfig.from_env(env))._api_client._http_options.api_version == "v1beta"
