"""The Whisper prompt for the learner's next utterance: helps with the conversation's topic without
forcing it onto a question about something else."""

from __future__ import annotations

from services.local_live.brain.lexicon import has_japanese
from services.local_live.brain.memory import Memory
from services.local_live.reply import transcription_prompt

SWIM = {"id": "word:泳ぐ:およぐ", "type": "word", "written": "泳ぐ", "reading": "およぐ", "romaji": "oyogu",
        "meanings": ["to swim"]}


def test_english_prompt_names_the_topic_in_romaji_never_in_japanese_script():
    prompt = transcription_prompt(Memory(topic="泳ぐ", topic_items=[SWIM]), "en")
    assert "oyogu" in prompt and not has_japanese(prompt)
    assert "neko" in transcription_prompt(Memory(topic="ねこ"), "en")  # kana topic, no item: romanised
    assert not has_japanese(transcription_prompt(Memory(topic="猫"), "en"))  # no reading known: no word
    assert "「泳ぐ」" in transcription_prompt(Memory(topic="泳ぐ", topic_items=[SWIM]), "ja")
    assert transcription_prompt(Memory(), "en") == "The student asks about Japanese words."
