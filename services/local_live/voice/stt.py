"""Speech to text with faster-whisper (multilingual Whisper base, int8, CPU).

The encoder is most of a call's cost, so it is made cheap in two ways (issue 19):
- faster-whisper pads every utterance to a 30 s window (~0.75 s of encoding here); the encoder is
  given twice the utterance instead, at least `SttOptions.min_window_s` (5 s: ~0.04 s).
  `bench/voice/stt_window.py` compares both on a tuning and a held-out question set.
- `hear()` judges the language and transcribes from ONE encoder pass (faster-whisper encodes again
  for each), by remembering the last encoder output.
Whole utterances cut at VAD endpoints are still the unit: a call has a fixed cost beyond the encoder.
The language is always forced (auto-detection called Japanese TTS audio Thai);
`hear` judges between Japanese and English only, per utterance, so a
learner in an English session who speaks Japanese is heard (and answered) in
Japanese. The prompt is one short natural sentence (a word list made the model echo
the prompt and loop for seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import STT_RATE, pcm16_to_float
from .models import whisper_model_dir

LANGUAGES = ("ja", "en")
DEFAULT_PROMPTS = {
    "ja": "日本語の勉強をしています。",
    "en": "The student asks about Japanese words.",
}


@dataclass(frozen=True)
class SttOptions:
    # Greedy is ~20% faster since the encoder got cheap, with no clear gain in errors (10 s window:
    # 0.171 vs 0.186 tune, 0.132 vs 0.113 held out), so beam 5 stays (it heard 猫, greedy 寝子).
    beam_size: int = 5
    max_new_tokens: int = 96  # ~20 s of speech; bounds a looping decode
    vad_filter: bool = True
    cpu_threads: int = 2
    # Encoder window: `window_ratio` times the utterance, at least `min_window_s`; None = Whisper's 30 s.
    # Chosen on the tuning half of bench/voice/questions.py. Known miss: a 9 s clip of four sentences
    # comes out as its first sentence in any window under 20 s (the 30 s window drops another clip's last).
    min_window_s: float | None = 5.0
    window_ratio: float = 2.0
    # Timestamp tokens let Whisper go on after a segment it ended mid-window (that 9 s clip came out
    # whole) but made it loop on another clip ("Give me an apple apple with an apple." x5): off.
    timestamps: bool = False


@dataclass(frozen=True)
class Heard:
    """One utterance: the language it was judged to be in, and its text in that language."""

    language: str
    text: str


# The audio was already cut at an endpoint: keep short pauses inside it.
_VAD_PARAMETERS = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
FRAMES_PER_S = 100  # Whisper's log-mel frames (10 ms hop)
FULL_WINDOW = 30 * FRAMES_PER_S


def fitted_window(features: np.ndarray, min_frames: int, ratio: float) -> np.ndarray:
    """The padded features cut to `ratio` times the audio (whole seconds, at least min_frames).

    pad_or_trim pads with exact zeros, which real log-mel frames never are (silence is clamped to
    the clip's maximum minus 8 and then normalised), so the audio ends at the last non-zero frame."""
    frames = features.shape[-1]
    if frames <= min_frames:
        return features
    nonzero = np.flatnonzero(np.any(features.reshape(-1, frames) != 0, axis=0))
    content = int(nonzero[-1]) + 1 if nonzero.size else 0
    window = -(-round(content * ratio) // FRAMES_PER_S) * FRAMES_PER_S
    window = min(frames, max(min_frames, window))
    return features[..., :window]


def _windowed_whisper(options: SttOptions, **kwargs: Any) -> Any:
    from faster_whisper import WhisperModel

    class WindowedWhisper(WhisperModel):
        """WhisperModel whose encode() fits the window to the audio and reuses its last output for
        the same features (hear() judges the language on the segment transcribe() then encodes)."""

        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.encoded = 0  # encoder passes actually run (tests check hear() runs one)
            self.last: tuple[np.ndarray, Any] | None = None  # features and their encoder output

        def encode(self, features: np.ndarray) -> Any:
            if options.min_window_s is not None:
                features = fitted_window(features, round(options.min_window_s * FRAMES_PER_S),
                                         options.window_ratio)
            last = self.last
            if last is not None and last[0].shape == features.shape and np.array_equal(last[0], features):
                return last[1]
            output = super().encode(features)
            self.encoded += 1
            self.last = (np.array(features, copy=True), output)
            return output

    return WindowedWhisper()


def prompt_from_vocabulary(words: list[str], language: str, limit: int = 5) -> str:
    """One natural sentence mentioning the lesson's words (never a bare list)."""
    words = [w.strip() for w in words if w and w.strip()][:limit]
    if not words:
        return DEFAULT_PROMPTS.get(language, DEFAULT_PROMPTS["en"])
    if language == "ja":
        return "今日は" + "や".join(f"「{w}」" for w in words) + "について話します。"
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"The student asks what Japanese words like {listed} mean."


def pick_language(scores: dict[str, float], default: str, margin: float = 2.0) -> str:
    """The other language of the two only when it scores `margin` times the session's."""
    other = "ja" if default == "en" else "en"
    return other if scores.get(other, 0.0) > margin * scores.get(default, 0.0) else default


class SpeechToText:
    """Not thread-safe by design: the pipeline runs it on its single voice worker."""

    def __init__(self, model_dir: Path | None = None, options: SttOptions | None = None) -> None:
        self.options = options or SttOptions()
        folder = model_dir or whisper_model_dir()
        self._model = _windowed_whisper(self.options, model_size_or_path=str(folder), device="cpu",
                                        compute_type="int8", cpu_threads=self.options.cpu_threads,
                                        local_files_only=True)

    @property
    def encoder_passes(self) -> int:
        """Encoder passes run so far (the bulk of the cost of every call)."""
        return int(self._model.encoded)

    def forget_encoding(self) -> None:
        """Drop the remembered encoder output, so the next call encodes again (benchmarks time whole calls)."""
        self._model.last = None

    def hear(self, pcm16: bytes, default: str, prompts: Mapping[str, str] | None = None) -> Heard:
        """The utterance's language and its text in that language, from one encoder pass.

        The language is Whisper's scores compared for "ja" and "en" only (its own pick may be a third
        language); the session's `default` stays unless the other one scores clearly higher, so a short
        or unclear utterance keeps it. prompts: the transcription prompt per language (else the defaults)."""
        if default not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {default!r}")
        audio = self._speech(pcm16_to_float(pcm16))
        language = default
        if audio.size >= STT_RATE // 4:  # under 250 ms: too little to tell
            language = self._judge(audio, default)
        prompt = (prompts or {}).get(language)
        return Heard(language, self.transcribe_array(audio, language, prompt, vad_filter=False))

    def _speech(self, audio: np.ndarray) -> np.ndarray:
        """The voiced parts of the audio (Silero VAD, as transcribe's vad_filter would cut them)."""
        if not self.options.vad_filter or audio.size < STT_RATE // 10:
            return audio
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        chunks, _meta = collect_chunks(audio, get_speech_timestamps(audio, VadOptions(**_VAD_PARAMETERS)))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def _judge(self, audio: np.ndarray, default: str) -> str:
        from faster_whisper.audio import pad_or_trim

        # The very segment transcribe() will encode (it drops the last frame), so its encode is reused.
        features = self._model.feature_extractor(audio)
        segment = pad_or_trim(features[:, : features.shape[-1] - 1])
        scores = self._model.model.detect_language(self._model.encode(segment))[0]
        return pick_language({token[2:-2]: p for token, p in scores}, default)

    def transcribe(self, pcm16: bytes, language: str, prompt: str | None = None,
                   vad_filter: bool | None = None) -> str:
        """Text of one PCM16 16 kHz utterance in the forced language ("ja" or "en")."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        audio = pcm16_to_float(pcm16)
        return self.transcribe_array(audio, language, prompt, vad_filter)

    def transcribe_array(self, audio: np.ndarray, language: str, prompt: str | None = None,
                         vad_filter: bool | None = None) -> str:
        """Text of one float32 16 kHz utterance; under 100 ms of audio is taken as nothing said."""
        if audio.size < STT_RATE // 10:  # under 100 ms: nothing a learner said
            return ""
        use_vad = self.options.vad_filter if vad_filter is None else vad_filter
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            task="transcribe",
            initial_prompt=prompt or DEFAULT_PROMPTS[language],
            temperature=0.0,
            beam_size=self.options.beam_size,
            max_new_tokens=self.options.max_new_tokens,
            condition_on_previous_text=False,
            without_timestamps=not self.options.timestamps,
            vad_filter=use_vad,
            vad_parameters=_VAD_PARAMETERS if use_vad else None,
        )
        joiner = "" if language == "ja" else " "
        return joiner.join(segment.text.strip() for segment in segments).strip()
