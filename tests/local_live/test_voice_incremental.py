"""Transcribing while the learner speaks (voice.incremental) and speaking the first clause first.

The decoding logic is checked with stand-in decoders on synthetic voiced audio (no models, fast);
one test runs the real Whisper to check the joined text equals the whole-utterance transcript."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from services.local_live.voice import available

pytestmark = [pytest.mark.voice, pytest.mark.timeout(120)]
needs_models = pytest.mark.skipif(not available()[0], reason="voice extra not installed")

RATE = 16_000
CHUNK = 3200  # 100 ms, like the microphone stream


def voiced(seconds: float) -> bytes:
    """A gliding harmonic tone with a syllable-rate envelope: webrtcvad calls it speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 3 * t)) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (x / np.abs(x).max() * 8000).astype(np.int16).tobytes()


def silent(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


class Decoders:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def speculate(self, pcm: bytes) -> str:
        self.calls.append(("spec", len(pcm)))
        return f"s{len(self.calls)}"

    async def final(self, pcm: bytes) -> str:
        self.calls.append(("final", len(pcm)))
        return f"f{len(self.calls)}"


async def stream(transcript, audio: bytes) -> None:
    for end in range(CHUNK, len(audio) + CHUNK, CHUNK):
        transcript.update(audio[:end])
        await asyncio.sleep(0)  # the stand-in decode completes here, as a worker call would meanwhile


def make(decoders: Decoders, **kw):
    from services.local_live.voice import StreamingTranscript

    return StreamingTranscript(speculate=decoders.speculate, final=decoders.final, language="en", **kw)


async def test_stopping_at_a_pause_leaves_nothing_to_decode_at_the_end():
    audio = silent(0.3) + voiced(1.5) + silent(0.6) + voiced(1.2) + silent(0.4)
    # Short utterance: sentence 1 is decoded at its break but not committed (Whisper hears words
    # better with what follows); the decode at the final pause covers it all and is the transcript.
    d = Decoders()
    t = make(d)
    await stream(t, audio)
    assert await t.finish(audio) == "s2"
    assert [kind for kind, _ in d.calls] == ["spec", "spec"] and t.committed == 0 and t.decoded[1][0] == 0
    # Long stretches are committed at a sentence break; the next decode starts from the commit.
    d = Decoders()
    t = make(d, commit_after_ms=1000)
    await stream(t, audio)
    assert await t.finish(audio) == "s1 s2"
    assert [kind for kind, _ in d.calls] == ["spec", "spec"]
    assert t.committed > 0 and t.decoded[1][0] == t.committed


async def test_at_the_end_only_the_tail_after_the_last_commit_is_decoded():
    d = Decoders()
    t = make(d, commit_after_ms=1000)
    audio = silent(0.3) + voiced(1.5) + silent(0.6) + voiced(1.2)  # audio_end while still speaking
    await stream(t, audio)
    text = await t.finish(audio)
    assert [kind for kind, _ in d.calls] == ["spec", "final"]
    start, end, kind = t.decoded[-1]
    assert kind == "final" and start == t.committed > 0 and end == len(audio)
    assert d.calls[-1] == ("final", len(audio) - t.committed)
    assert text == "s1 f2"


async def test_a_short_pause_is_not_a_cut_and_a_busy_worker_means_no_early_decode():
    d = Decoders()
    t = make(d, commit_after_ms=500)
    audio = silent(0.3) + voiced(1.0) + silent(0.3) + voiced(1.0)  # a breath, not a sentence break
    await stream(t, audio)
    assert await t.finish(audio) == "f2"
    assert d.calls[0][0] == "spec" and d.calls[-1] == ("final", len(audio))  # dropped, decoded whole

    busy = Decoders()
    t = make(busy, may_start=lambda: False)
    await stream(t, audio + silent(0.5))
    assert await t.finish(audio + silent(0.5)) == "f1" and busy.calls == [("final", len(audio) + 16000)]


async def test_endpointer_utterance_so_far_is_a_prefix_of_the_final_utterance():
    from services.local_live.voice import Endpointer

    ep = Endpointer()
    audio = silent(0.5) + voiced(1.5) + silent(1.0)
    seen, final = b"", None
    for start in range(0, len(audio), CHUNK):
        for event in ep.feed(audio[start:start + CHUNK]):
            if event.kind == "speech_end":
                final = event.audio
        if ep.in_speech:
            seen = ep.utterance_audio()
    assert final is not None and len(seen) > RATE  # over a second heard before the end
    assert final[:len(seen)] == seen[:len(final)]


class RecordingTTS:
    def __init__(self) -> None:
        self.rendered: list[str] = []

    def plan(self, text: str, language: str):
        from services.local_live.voice.tts import plan_speech

        return plan_speech(text, language)

    def render(self, piece) -> bytes:
        self.rendered.append(piece.text)
        return bytes(4800)


async def test_speech_starts_with_the_first_clause_not_the_first_sentence(tmp_path):
    from services.local_live.voice import VoiceConfig, VoicePipeline

    sentences = ["猫の読み方は、ねこです。", "かわいいです。"]
    for first_clause, expected in ((True, ["猫の読み方は、", "ねこです。", "かわいいです。"]),
                                   (False, ["猫の読み方は、ねこです。", "かわいいです。"])):
        pipeline = VoicePipeline(VoiceConfig(model_cache=tmp_path, first_clause=first_clause))
        pipeline._tts = tts = RecordingTTS()
        indexes = [index async for index, _chunk in pipeline.speak(sentences, "ja")]
        pipeline.close()
        assert tts.rendered == expected
        assert indexes[0] == 0 and indexes[-1] == 1  # both clauses still belong to sentence 0


@needs_models
async def test_incremental_transcript_equals_the_whole_utterance_transcript():
    from services.local_live.voice import VoiceConfig, VoicePipeline
    from services.local_live.voice.testaudio import speech_pcm16_16k

    pipeline = VoicePipeline(replace(VoiceConfig.from_env(), incremental=True))
    try:
        for text, language in (("What does neko mean? And how do I write it in kanji?", "en"),
                               ("猫はかわいいです。犬も好きです。", "ja")):
            pcm = await asyncio.to_thread(speech_pcm16_16k, text, language, tail_silence=0.3)
            whole = await pipeline.transcribe(pcm, language)
            t = pipeline.stream_transcriber(language)
            await stream(t, pcm)
            assert await t.finish(pcm) == whole, (language, t.decoded)
            assert t.decoded[0][2] == "spec"  # decoding began at the sentence break, before the end
    finally:
        pipeline.close()


async def test_voice_worker_runs_waiting_work_before_later_pieces_and_early_decodes(tmp_path):
    import threading

    from services.local_live.voice import VoiceConfig, VoicePipeline
    from services.local_live.voice.pipeline import LATER, SPECULATIVE, URGENT

    pipeline = VoicePipeline(VoiceConfig(model_cache=tmp_path))
    gate, ran = threading.Event(), []
    try:
        blocker = pipeline._on_worker(gate.wait)
        queued = [pipeline._on_worker(ran.append, name, priority=priority)
                  for name, priority in (("spec", SPECULATIVE), ("later", LATER), ("urgent", URGENT),
                                         ("dropped", URGENT), ("later2", LATER))]
        queued[3].cancel()  # barge-in: a queued piece is dropped, not run
        await asyncio.sleep(0)  # the cancellation reaches the worker's future in a loop callback
        gate.set()
        await blocker
        await asyncio.gather(*queued, return_exceptions=True)
        assert ran == ["urgent", "later", "later2", "spec"]
    finally:
        pipeline.close()


async def test_the_end_waits_for_a_decode_in_flight_before_judging_its_language():
    """Found with bench/voice/latency.py: an early decode still running at the end of speech had not yet
    judged the language, so the reply gave it up and queued a language check and a whole decode behind
    it on the one voice worker (first audio 1.5-1.7x the old path's)."""
    gate = asyncio.Event()
    d = Decoders()
    t = make(d)

    async def slow_spec(pcm: bytes) -> str:
        d.calls.append(("spec", len(pcm)))
        await gate.wait()
        t.detected = "en"  # as the pipeline's decode_and_judge does before its transcription
        return "s1"

    t.speculate = slow_spec
    audio = silent(0.3) + voiced(1.5) + silent(0.4)
    await stream(t, audio)
    assert t.detected == ""  # still decoding
    waiter = asyncio.create_task(t.settled())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    gate.set()
    await waiter
    assert t.detected == "en"
    assert await t.finish(audio) == "s1" and [kind for kind, _ in d.calls] == ["spec"]
