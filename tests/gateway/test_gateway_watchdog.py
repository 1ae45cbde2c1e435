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
