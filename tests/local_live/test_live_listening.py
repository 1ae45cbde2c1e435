"""The Whisper prompt for the learner's next utterance: helps with the conversation's topic without
forcing it onto a question about something else."""

from __future__ import annotations

import asyncio

import pytest

from services.local_live.brain.lexicon import has_japanese
from services.local_live.brain.memory import Memory
from services.local_live.reply import transcription_prompt
from services.local_live.voice import available

SWIM = {"id": "word:泳ぐ:およぐ", "type": "word", "written": "泳ぐ", "reading": "およぐ", "romaji": "oyogu",
        "meanings": ["to swim"]}


def test_english_prompt_names_the_topic_in_romaji_never_in_japanese_script():
    prompt = transcription_prompt(Memory(topic="泳ぐ", topic_items=[SWIM]), "en")
    assert "oyogu" in prompt and not has_japanese(prompt)
    assert "neko" in transcription_prompt(Memory(topic="ねこ"), "en")  # kana topic, no item: romanised
    assert not has_japanese(transcription_prompt(Memory(topic="猫"), "en"))  # no reading known: no word
    assert "「泳ぐ」" in transcription_prompt(Memory(topic="泳ぐ", topic_items=[SWIM]), "ja")
    assert transcription_prompt(Memory(), "en") == "The student asks about Japanese words."


@pytest.mark.voice
@pytest.mark.timeout(120)
@pytest.mark.skipif(not available()[0], reason="voice extra not installed")
async def test_previous_topic_helps_but_is_not_forced():
    """The gateway browser test's failure: after talking about 泳ぐ, "What does sushi mean?" was heard
    as "What does 泳ぐ mean?". Two STT calls with the prompt the engine now builds."""
    from services.local_live.voice import VoicePipeline
    from services.local_live.voice.testaudio import speech_pcm16_16k

    prompt = transcription_prompt(Memory(topic="泳ぐ", topic_items=[SWIM]), "en")
    voice = VoicePipeline()
    try:
        other = await voice.transcribe(await asyncio.to_thread(speech_pcm16_16k, "What does sushi mean?", "en"),
                                       "en", prompt)
        same = await voice.transcribe(await asyncio.to_thread(speech_pcm16_16k, "What does oyogu mean?", "en"),
                                      "en", prompt)
    finally:
        voice.close()
    assert "sushi" in other.lower() and "泳" not in other, other
    assert "oyogu" in same.lower(), same
