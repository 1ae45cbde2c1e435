"""Streaming end-pointing over PCM16 16 kHz with webrtcvad.

webrtcvad takes exactly 10/20/30 ms frames, flags the first ~0.1 s of steady
noise at stream start as speech (its noise model is still adapting) and flips on
single frames. So decisions go through a sliding window (speech starts when most
of the last few frames are voiced; frames in a short warm-up never start speech
on their own) and speech ends after a run of unvoiced frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

SAMPLE_RATE = 16_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["speech_start", "speech_end"]
    offset_ms: int  # from the start of the stream: first voiced frame, or end of the last voiced one
    audio: bytes = b""  # speech_end only: the utterance with some padding, ready for transcription

    @property
    def offset_bytes(self) -> int:
        return self.offset_ms * BYTES_PER_MS


class Endpointer:
    """Feed arbitrary-size PCM16 chunks; get speech_start / speech_end events.

    One instance per audio stream; not thread-safe; cheap (µs per frame).
    """

    def __init__(self, *, aggressiveness: int = 2, frame_ms: int = 30, start_window_ms: int = 240,
                 start_ratio: float = 0.75, end_silence_ms: int = 600, warmup_ms: int = 150,
                 preroll_ms: int = 300, max_utterance_ms: int = 28_000) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames must be 10, 20 or 30 ms")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_ms = frame_ms
        self._frame_bytes = frame_ms * BYTES_PER_MS
        self._window = deque(maxlen=max(1, start_window_ms // frame_ms))
        self._raw: deque[bool] = deque(maxlen=self._window.maxlen)
        self._start_ratio = start_ratio
        self._end_frames = max(1, end_silence_ms // frame_ms)
        self._warmup_frames = warmup_ms // frame_ms
        self._preroll_bytes = preroll_ms * BYTES_PER_MS
        self._max_frames = max_utterance_ms // frame_ms
        self.reset()

    def reset(self) -> None:
        self._pending = b""
        self._frame_index = 0
        self._window.clear()
        self._raw.clear()
        self._in_speech = False
        self._silent_run = 0
        self._voiced_run_start: int | None = None
        self._last_voiced_end = 0
        self._speech_frames = 0
        self._history = bytearray()  # recent audio, kept to preroll while idle
        self._history_start = 0  # stream offset (bytes) of _history[0]
        self._utterance_start = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def utterance_audio(self) -> bytes:
        """The open utterance so far (b"" outside speech), starting where speech_end's audio will
        start: for transcribing while the learner is still speaking."""
        if not self._in_speech:
            return b""
        return bytes(self._history[self._utterance_start - self._history_start:])

    def feed(self, pcm: bytes) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = self._pending + pcm
        usable = len(data) - len(data) % self._frame_bytes
        for start in range(0, usable, self._frame_bytes):
            event = self._frame(data[start:start + self._frame_bytes])
            if event:
                events.append(event)
        self._pending = data[usable:]
        return events

    def flush(self) -> list[VadEvent]:
        """End of the audio stream: close an open utterance."""
        self._pending = b""
        if self._in_speech:
            return [self._end()]
        return []

    def _frame(self, frame: bytes) -> VadEvent | None:
        index = self._frame_index
        self._frame_index += 1
        self._history += frame
        voiced = self._vad.is_speech(frame, SAMPLE_RATE)
        if voiced:
            if self._voiced_run_start is None:
                self._voiced_run_start = index
        else:
            self._voiced_run_start = None
        if not self._in_speech:
            warm = index >= self._warmup_frames
            self._window.append(voiced and warm)
            self._raw.append(voiced)
            self._trim_history()
            full = len(self._window) == self._window.maxlen
            if full and sum(self._window) >= self._start_ratio * len(self._window):
                return self._start(index)
            return None
        self._speech_frames += 1
        if voiced:
            self._silent_run = 0
            self._last_voiced_end = (index + 1) * self.frame_ms
        else:
            self._silent_run += 1
        if self._silent_run >= self._end_frames or self._speech_frames >= self._max_frames:
            return self._end()
        return None

    def _start(self, index: int) -> VadEvent:
        # Date the start back to the first voiced frame in the window, or further
        # back to where an unbroken voiced run began (it may reach into warm-up).
        window_first = index - len(self._raw) + 1
        first = window_first + next((i for i, v in enumerate(self._raw) if v), 0)
        if self._voiced_run_start is not None:
            first = min(first, self._voiced_run_start)
        self._in_speech = True
        self._silent_run = 0
        self._speech_frames = 0
        self._last_voiced_end = (index + 1) * self.frame_ms
        offset_ms = first * self.frame_ms
        self._utterance_start = max(self._history_start, offset_ms * BYTES_PER_MS - self._preroll_bytes)
        return VadEvent("speech_start", offset_ms)

    def _end(self) -> VadEvent:
        self._in_speech = False
        self._window.clear()
        self._raw.clear()
        end_bytes = min(self._frame_index * self._frame_bytes,
                        self._last_voiced_end * BYTES_PER_MS + self._preroll_bytes)
        lo = self._utterance_start - self._history_start
        hi = end_bytes - self._history_start
        audio = bytes(self._history[lo:hi])
        self._history = bytearray()
        self._history_start = self._frame_index * self._frame_bytes
        self._voiced_run_start = None
        return VadEvent("speech_end", self._last_voiced_end, audio)

    def _trim_history(self) -> None:
        excess = len(self._history) - self._preroll_bytes - self._window.maxlen * self._frame_bytes
        if excess > 0:
            del self._history[:excess]
            self._history_start += excess
