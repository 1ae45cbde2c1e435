"""PCM16 helpers: conversions, resampling without scipy, fixed-size framing."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

STT_RATE = 16_000
TTS_RATE = 24_000


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """Little-endian PCM16 as float32 in [-1, 1); a trailing odd byte is dropped."""
    if len(pcm) % 2:
        pcm = pcm[:-1]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """float32 audio as little-endian PCM16, clipped so loud samples saturate instead of wrapping."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


@lru_cache(maxsize=8)
def _lowpass(cutoff: float, taps: int = 63) -> np.ndarray:
    """Windowed-sinc low-pass; cutoff as a fraction of the input sample rate (0..0.5)."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    return (kernel / kernel.sum()).astype(np.float32)


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited linear resampling: good enough for speech, no scipy needed.

    Downsampling filters first so content above the new Nyquist does not alias
    into the band Whisper listens to.
    """
    if src_rate == dst_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    if dst_rate < src_rate:
        audio = np.convolve(audio, _lowpass(0.45 * dst_rate / src_rate), mode="same")
    n_out = int(round(audio.size * dst_rate / src_rate))
    positions = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)


def frames(pcm: bytes, frame_bytes: int) -> Iterator[bytes]:
    """Split PCM into frames of frame_bytes (the last one may be shorter)."""
    for start in range(0, len(pcm), frame_bytes):
        yield pcm[start:start + frame_bytes]


def silence(seconds: float, rate: int) -> np.ndarray:
    """A pause of that many seconds at that sample rate, as float32 zeros."""
    return np.zeros(int(seconds * rate), dtype=np.float32)


def rms(audio: np.ndarray) -> float:
    """Loudness of a stretch of audio as its root mean square (0.0 for no samples)."""
    return float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
