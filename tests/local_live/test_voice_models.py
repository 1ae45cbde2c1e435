"""Offline voice with the real models: weights assembly, Kokoro/espeak TTS, Whisper STT, VAD."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from services.local_live.voice import (
    Endpointer,
    VoiceBusyError,
    VoiceConfig,
    VoicePipeline,
    available,
    models,
)
from services.local_live.voice.audio import pcm16_to_float, rms
from services.local_live.voice.pipeline import english_backend
from services.local_live.voice.stt import FULL_WINDOW, Heard, fitted_window
from services.local_live.voice.testaudio import noise_pcm16, silence_pcm16, speech_pcm16_16k
from services.local_live.voice.text import reading
from services.local_live.voice.tts import plan_speech

OK, WHY = available()
pytestmark = [pytest.mark.voice, pytest.mark.skipif(not OK, reason=WHY)]
needs_english_voice = pytest.mark.skipif(english_backend() is None,
                                         reason="no English voice: apt-get install espeak-ng")


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    voice = VoicePipeline(VoiceConfig.from_env())
    yield voice
    voice.close()


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_whisper_weights_assembled_once_and_verified(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(models.whisper_model_dir(tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = results[0]
    assert results == [folder, folder]
    assert _entries(folder) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert models.sha256_of(folder / "model.bin") == models.WHISPER_SHA256
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert models.whisper_model_dir(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # idempotent: not rewritten


def test_corrupt_weights_are_never_renamed_into_place(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(models, "WHISPER_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        models.whisper_model_dir(tmp_path)
    folder = tmp_path / models.WHISPER_DIRNAME
    assert "model.bin" not in _entries(folder)
    assert not [name for name in _entries(folder) if name.startswith(".model.bin")]


def test_available_reports_ready() -> None:
    ok, reason = available()
    assert ok and "voice ready" in reason


async def test_japanese_speech_streams_in_24khz_chunks(pipeline: VoicePipeline) -> None:
    chunks = [c async for c in pipeline.synthesize("ねこはかわいいです。いぬもすきです。", "ja")]
    assert len(chunks) >= 5
    assert all(len(c) % 2 == 0 and len(c) <= 24_000 * 2 * pipeline.config.chunk_ms // 1000 for c in chunks)
    audio = pcm16_to_float(b"".join(chunks))
    assert 1.0 < len(audio) / 24_000 < 8.0
    assert rms(audio) > 0.02


async def test_barge_in_stops_synthesis_after_the_first_chunk(pipeline: VoicePipeline) -> None:
    text = "今日はいい天気です。公園に行きましょう。それから、ご飯を食べます。"
    stream = pipeline.synthesize(text, "ja")
    first = await anext(stream)
    await stream.aclose()
    assert first and pipeline.active == 0
    # The worker is free again promptly: the queued sentences were dropped.
    assert await asyncio.wait_for(pipeline.transcribe(silence_pcm16(0.5), "ja"), 30) == ""


async def test_busy_voice_fails_fast(pipeline: VoicePipeline) -> None:
    config = pipeline.config
    pipeline.config = replace(config, max_pending=1)
    try:
        first = asyncio.create_task(pipeline.transcribe(silence_pcm16(1.0), "ja"))
        await asyncio.sleep(0)  # let it take the only slot
        with pytest.raises(VoiceBusyError, match="busy"):
            await pipeline.transcribe(silence_pcm16(1.0), "ja")
        assert await first == ""
    finally:
        pipeline.config = config


async def test_round_trip_japanese(pipeline: VoicePipeline) -> None:
    pcm = speech_pcm16_16k("ねこはかわいいです。", "ja")
    text = await pipeline.transcribe(pcm, "ja", prompt="ねこはかわいいです。いぬもすきです。")
    assert reading(text) == reading("猫はかわいいです。") == "ネコワカワイイデス"


@needs_english_voice
async def test_round_trip_english(pipeline: VoicePipeline) -> None:
    pcm = speech_pcm16_16k("What does neko mean? It means cat.", "en")
    prompt = "The student asks what Japanese words like neko, inu and kawaii mean."
    text = (await pipeline.transcribe(pcm, "en", prompt=prompt)).lower()
    assert "cat" in text and "mean" in text


@needs_english_voice
async def test_mixed_answer_uses_both_voices(pipeline: VoicePipeline) -> None:
    assert [p.voice for p in plan_speech("The word ねこ means cat.", "en")] == ["en", "ja", "en"]
    assert [p.voice for p in plan_speech("「猫」は英語で cat です。", "ja")] == ["ja", "en", "ja"]
    audio = pcm16_to_float(await pipeline.synthesize_all("The word ねこ means cat.", "en"))
    assert rms(audio) > 0.02


async def test_silence_transcribes_to_nothing(pipeline: VoicePipeline) -> None:
    assert await pipeline.transcribe(silence_pcm16(2.0), "ja") == ""
    assert await pipeline.hear(silence_pcm16(2.0), "en") == Heard("en", "")


async def test_hearing_judges_the_language_and_transcribes_from_one_encoder_pass(pipeline: VoicePipeline) -> None:
    """Issue 19: the language check and the transcript used to encode the utterance twice (0.75 s each)."""
    pcm = speech_pcm16_16k("ねこはかわいいです。", "ja")
    stt = pipeline._get_stt()  # noqa: SLF001 - the pass counter lives on the worker's model
    before = stt.encoder_passes
    heard = await pipeline.hear(pcm, "en", {"ja": "ねこはかわいいです。いぬもすきです。"})
    assert heard.language == "ja"  # an English session hears Japanese as Japanese
    assert reading(heard.text) == "ネコワカワイイデス"
    assert stt.encoder_passes - before == 1
    await pipeline.hear(pcm, "en")  # the same utterance again: its encoding is remembered
    assert stt.encoder_passes - before == 1
    stt.forget_encoding()
    await pipeline.hear(pcm, "en")
    assert stt.encoder_passes - before == 2
    english = await pipeline.hear(speech_pcm16_16k("What does sushi mean?", "en"), "en")
    # English is judged English and transcribed as English. Not the word "sushi" itself: Whisper base (int8)
    # hears espeak's "sushi" in this clip as "it" on some CPUs ("What does it mean?"), from the same audio.
    assert english.language == "en" and english.text.lower().startswith("what do") and "mean" in english.text.lower()


def test_the_encoder_window_fits_twice_the_audio_in_whole_seconds() -> None:
    padded = np.zeros((80, FULL_WINDOW), np.float32)
    padded[:, :250] = -0.5  # 2.5 s of log-mel frames, then pad_or_trim's zeros
    assert fitted_window(padded, 500, 2.0).shape == (80, 500)  # at least the minimum
    padded[:, :640] = 0.3
    assert fitted_window(padded, 500, 2.0).shape == (80, 1300)  # 12.8 s, rounded up to whole seconds
    padded[:, :2000] = 0.3
    assert fitted_window(padded, 500, 2.0).shape == (80, FULL_WINDOW)  # never past Whisper's 30 s
    assert fitted_window(padded[:, :400], 500, 2.0).shape == (80, 400)  # already short: untouched


def _run_vad(pcm: bytes, chunk: int = 1234) -> list:
    endpointer = Endpointer()
    events = []
    for start in range(0, len(pcm), chunk):
        events += endpointer.feed(pcm[start:start + chunk])
    return events + endpointer.flush()


def test_vad_finds_speech_start_and_end() -> None:
    speech = speech_pcm16_16k("ねこはかわいいです。", "ja", lead_silence=0.0, tail_silence=0.0)
    pcm = silence_pcm16(0.6) + speech + silence_pcm16(1.2)
    events = _run_vad(pcm)
    assert [e.kind for e in events] == ["speech_start", "speech_end"]
    speech_ms = len(speech) // 32
    assert abs(events[0].offset_ms - 600) <= 120
    assert abs(events[1].offset_ms - (600 + speech_ms)) <= 250
    # The utterance handed over for transcription covers the speech with some padding.
    assert len(events[1].audio) // 32 >= speech_ms - 100


def test_vad_ignores_noise_at_stream_start_and_silence() -> None:
    assert _run_vad(silence_pcm16(2.0)) == []
    noisy = noise_pcm16(0.5, level=0.03) + silence_pcm16(1.0)
    assert _run_vad(noisy) == []
    speech = speech_pcm16_16k("いぬもすきです。", "ja", lead_silence=0.0, tail_silence=1.0)
    events = _run_vad(noise_pcm16(0.4, level=0.01) + speech)
    assert [e.kind for e in events] == ["speech_start", "speech_end"]
    assert events[0].offset_ms >= 300


def test_vad_splits_two_utterances() -> None:
    one = speech_pcm16_16k("はい。", "ja", lead_silence=0.3, tail_silence=1.0)
    two = speech_pcm16_16k("いいえ。", "ja", lead_silence=0.0, tail_silence=1.0)
    kinds = [e.kind for e in _run_vad(one + two)]
    assert kinds == ["speech_start", "speech_end", "speech_start", "speech_end"]


def test_model_cache_env_is_respected(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.cache_root() == tmp_path
    assert VoiceConfig.from_env().model_cache == tmp_path
