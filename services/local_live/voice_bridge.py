"""Lazy access to the offline voice stack (services/local_live/voice, the `voice` extra).

Nothing is imported until a session asks for AUDIO or sends audio, so text-only engines start
fast and work without the extra. One pipeline is shared by all connections: the models are big,
and the pipeline already runs all model work on one worker thread (STT and TTS at the same time
on two cores slow each other down about 2x).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)


class VoiceUnavailable(RuntimeError):
    pass


class Voice:
    def __init__(self, pipeline: Any, endpointer_cls: type) -> None:
        self.pipeline = pipeline
        self.endpointer_cls = endpointer_cls

    def endpointer(self) -> Any:
        """A new voice-activity endpointer for one connection's audio."""
        return self.endpointer_cls()

    async def transcribe(self, pcm16_16k: bytes, language: str, prompt: str | None = None) -> str:
        """The text of 16 kHz PCM speech, in the given language (a prompt word helps it)."""
        return await self.pipeline.transcribe(pcm16_16k, language, prompt)

    async def hear(self, pcm16_16k: bytes, default: str, prompts: dict[str, str]) -> Any:
        """voice.Heard: the language of 16 kHz PCM speech (`default` when unsure) and its text in it."""
        return await self.pipeline.hear(pcm16_16k, default, prompts)

    def stream_transcriber(self, language: str, prompt: str | None = None) -> Any:
        """A voice.StreamingTranscript for the utterance being spoken, or None (incremental off)."""
        return self.pipeline.stream_transcriber(language, prompt)

    async def synthesize(self, text: str, language: str) -> AsyncIterator[bytes]:
        """Speech chunks for the text, in the given language, as they are synthesised."""
        stream = self.pipeline.synthesize(text, language)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # barge-in: drop the queued sentence at once

    async def speak(self, sentences: list[str], language: str) -> AsyncIterator[tuple[int, bytes]]:
        """(sentence index, PCM16 24 kHz chunk) pairs, rendered sentence by sentence."""
        stream = self.pipeline.speak(sentences, language)
        try:
            async for pair in stream:
                yield pair
        finally:
            await stream.aclose()


_voice: Voice | None = None
_error: str | None = None
_loading: asyncio.Lock | None = None


async def get_voice() -> Voice:
    """The shared voice stack, loaded on first use; VoiceUnavailable with the reason otherwise."""
    global _voice, _error, _loading
    if _voice is not None:
        return _voice
    if _error is not None:
        raise VoiceUnavailable(_error)
    if _loading is None:
        _loading = asyncio.Lock()
    async with _loading:
        if _voice is None and _error is None:
            try:
                _voice = await asyncio.to_thread(_load)
            except Exception as exc:  # noqa: BLE001 - any import/model failure disables audio only
                _error = f"offline voice is not available ({type(exc).__name__}: {exc})"
                log.warning("voice unavailable", extra={"reason": _error})
    if _voice is None:
        raise VoiceUnavailable(_error or "offline voice is not available")
    return _voice


def _load() -> Voice:
    from services.local_live import voice  # the voice extra; models load on first use

    ok, reason = voice.available()
    if not ok:
        raise RuntimeError(reason)
    pipeline = voice.VoicePipeline()
    return Voice(pipeline, voice.Endpointer)
