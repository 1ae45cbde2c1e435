"""Speech to text with faster-whisper (multilingual Whisper base, int8, CPU).

Whisper always encodes a 30 s window, so a call costs ~0.8 s however short the
audio: transcribe whole utterances cut at VAD endpoints, not small chunks.
The language is always forced (auto-detection called Japanese TTS audio Thai);
`detect_language` picks between Japanese and English only, per utterance, so a
learner in an English session who speaks Japanese is heard (and answered) in
Japanese. The prompt is one short natural sentence (a word list made the model echo
the prompt and loop for seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    beam_size: int = 5  # encoder-bound: beam 5 costs about the same as greedy here and hears 猫 not 寝子
    max_new_tokens: int = 96  # ~20 s of speech; bounds a looping decode
    vad_filter: bool = True
    cpu_threads: int = 2


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
        from faster_whisper import WhisperModel

        self.options = options or SttOptions()
        folder = model_dir or whisper_model_dir()
        self._model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                   cpu_threads=self.options.cpu_threads, local_files_only=True)

    def detect_language(self, pcm16: bytes, default: str) -> str:
        """"ja" or "en" for one utterance: Whisper's language scores compared for these two only
        (its own pick may be a third language). The session's language stays unless the other one
        scores clearly higher, so a short or unclear utterance keeps the session's language."""
        if default not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {default!r}")
        audio = pcm16_to_float(pcm16)
        if audio.size < STT_RATE // 4:  # under 250 ms: too little to tell
            return default
        _top, _p, scores = self._model.detect_language(audio, vad_filter=False)
        return pick_language(dict(scores), default)

    def transcribe(self, pcm16: bytes, language: str, prompt: str | None = None,
                   vad_filter: bool | None = None) -> str:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        audio = pcm16_to_float(pcm16)
        return self.transcribe_array(audio, language, prompt, vad_filter)

    def transcribe_array(self, audio: np.ndarray, language: str, prompt: str | None = None,
                         vad_filter: bool | None = None) -> str:
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
            without_timestamps=True,
            vad_filter=use_vad,
            # The audio was already cut at an endpoint: keep short pauses inside it.
            vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200} if use_vad else None,
        )
        joiner = "" if language == "ja" else " "
        return joiner.join(segment.text.strip() for segment in segments).strip()
