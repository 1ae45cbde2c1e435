"""Speech audio for tests, made with the project's own TTS (no recordings shipped).

    from services.local_live.voice.testaudio import speech_pcm16_16k
    pcm = speech_pcm16_16k("ねこはかわいいです。", "ja")   # PCM16 mono 16 kHz, ready for realtime_input

Results are cached on disk (under the model cache) keyed by text, language and
voice, so repeated test runs skip synthesis.
"""

from __future__ import annotations

import hashlib
import io
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from services.common.files import write_atomic

from .audio import STT_RATE, TTS_RATE, float_to_pcm16, pcm16_to_float, resample
from .models import cache_root, kokoro_cache_dir
from .tts import TextToSpeech


@lru_cache(maxsize=1)
def _tts() -> TextToSpeech:
    kokoro_cache_dir()
    return TextToSpeech.load()


def _cache_file(text: str, language: str, tts: TextToSpeech) -> Path:
    english = tts.english.name if tts.english else "none"
    key = hashlib.sha256(f"v1|{language}|{tts.japanese.name}|{english}|{text}".encode()).hexdigest()[:24]
    return cache_root() / "testaudio" / f"{key}.pcm"


def speech_pcm16_24k(text: str, language: str) -> bytes:
    """The TTS voice saying the text as PCM16 mono 24 kHz, synthesised once and then read from disk."""
    tts = _tts()
    path = _cache_file(text, language, tts)
    if path.is_file():
        return path.read_bytes()
    pcm = tts.synthesize(text, language)
    write_atomic(path, pcm)
    return pcm


def speech_pcm16_16k(text: str, language: str, *, lead_silence: float = 0.3,
                     tail_silence: float = 0.8) -> bytes:
    """PCM16 mono 16 kHz speech with silence around it (so a VAD can find the end)."""
    audio = resample(pcm16_to_float(speech_pcm16_24k(text, language)), TTS_RATE, STT_RATE)
    pad = [np.zeros(int(s * STT_RATE), np.float32) for s in (lead_silence, tail_silence)]
    return float_to_pcm16(np.concatenate([pad[0], audio, pad[1]]))


def silence_pcm16(seconds: float, rate: int = STT_RATE) -> bytes:
    """That many seconds of PCM16 silence, to pad or pause a test stream."""
    return bytes(int(seconds * rate) * 2)


def noise_pcm16(seconds: float, level: float = 0.02, rate: int = STT_RATE, seed: int = 0) -> bytes:
    """Seeded Gaussian noise as PCM16 mono, to check that background noise is not taken for speech."""
    rng = np.random.default_rng(seed)
    return float_to_pcm16(rng.normal(0, level, int(seconds * rate)).astype(np.float32))


def wav_bytes(pcm16: bytes, rate: int = STT_RATE) -> bytes:
    """Mono PCM16 wrapped in a WAV file, e.g. the fake microphone a browser test plays."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)
    return buffer.getvalue()
