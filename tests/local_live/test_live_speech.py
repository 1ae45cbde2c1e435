"""Spoken answers (AUDIO modality): phrased to be heard, and transcribed sentence by sentence as
the voice reaches them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.local_live.brain.context import Learner, TurnInput
from services.local_live.brain.memory import Memory
from services.local_live.brain.tutor import Call, Reply, Tutor
from services.local_live.voice import available

ALL = ["search_words", "get_word_details", "get_kanji_details", "get_sentence_details", "get_user_progress",
       "get_user_plan", "get_user_learned_items", "get_user_reviewable_items", "search_dictionary"]
NEKO = {"id": "word:猫:ねこ", "type": "word", "written": "猫", "reading": "ねこ", "romaji": "neko",
        "meanings": ["cat"], "level": "N5"}
KYOU = {"id": "word:今日:きょう", "type": "word", "written": "今日", "reading": "きょう", "romaji": "kyou",
        "meanings": ["today"], "level": "N5"}
KONNICHI = {"id": "word:今日:こんにち", "type": "word", "written": "今日", "reading": "こんにち", "romaji": "konnichi",
            "meanings": ["these days"], "level": "N3"}
MIRU = {"id": "word:見る:みる", "type": "word", "written": "見る", "reading": "みる", "romaji": "miru",
        "meanings": ["to see"], "level": "N5"}
MIRU2 = {"id": "word:観る:みる", "type": "word", "written": "観る", "reading": "みる", "romaji": "miru",
         "meanings": ["to watch"], "level": "N3"}
KIKU = {"id": "kanji:聞", "type": "kanji", "written": "聞", "onyomi": ["ブン", "モン"], "kunyomi": ["き.く", "き.こえる"],
        "meanings": ["hear"], "strokes": 14, "level": "N5"}
EXAMPLE = {"id": "sentence:00001", "type": "sentence", "written": "猫が好きです。", "translation": "I like cats."}
PROGRESS = {"result": {"entity_type": "words", "levels": [
    {"level": "N5", "total": "80", "learned": "12", "learning": "3", "reviewable": "2"}]}}
REVIEW = {"result": {"total": "2", "items": [{"item": NEKO}, {"item": KYOU}]}}
LEARNED = {"result": {"items": [{"item": NEKO, "proficiency": 80}, {"item": MIRU, "proficiency": 55}]}}


def plan() -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    return {"result": {"timezone": "Asia/Tokyo", "overdue": "1", "total": "9", "slots": [
        {"start": f"{today}T10:00:00+00:00", "label": "19:00", "count": "5"}]}}


def tools(call: Call) -> dict[str, Any]:
    return {"get_user_progress": PROGRESS, "get_user_reviewable_items": REVIEW, "get_user_learned_items": LEARNED,
            "get_user_plan": plan(), "get_kanji_details": {"result": {"kanji": KIKU, "words": [KYOU]}},
            "get_word_details": {"result": {"word": NEKO, "examples": [EXAMPLE]}},
            }.get(call.name, {"result": {}})


def ask(text: str, *, language: str = "en", speech: bool = True, items: list[dict[str, Any]] | None = None,
        tool: Callable[[Call], dict[str, Any]] = tools) -> Reply:
    tutor = Tutor(Learner(language=language, display_name="Aki"), {n: {} for n in ALL}, Memory(),
                  cite=not speech, speech=speech)
    thought = tutor.think(TurnInput(text, items=items or [], has_context_block=True))
    try:
        calls = next(thought)
        while True:
            calls = thought.send([tool(c) for c in calls])
    except StopIteration as done:
        return done.value


QUESTIONS = [
    ("What does 猫 mean?", [NEKO]), ("how do you read 猫", [NEKO]), ("what level is 今日", [KYOU, KONNICHI]),
    ("what does 今日 mean", [KYOU, KONNICHI]), ("how many strokes in 聞", []), ("Give me an example with 猫", []),
    ("difference between 見る and 観る", [MIRU, MIRU2]), ("How do you say cat in Japanese?", [NEKO]),
    ("how is my N5 progress?", []), ("what should I review today?", []), ("which words have I learned?", []),
    ("What is my review plan for the next 24 hours?", []), ("hello", []), ("What's the weather in Paris?", []),
]


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize(("question", "items"), QUESTIONS)
def test_spoken_answers_have_nothing_awkward_to_hear(question, items, language):
    written = " ".join(ask(question, language=language, speech=False, items=items).sentences)
    spoken = ask(question, language=language, items=items).sentences
    said = " ".join(spoken)
    assert said, question
    # No item ids, no romaji or readings in parentheses, no asides, no percent signs or clock faces.
    assert not re.search(r"[\[\]()（）%]|\b\d{1,2}:\d{2}\b|word:|kanji:|sentence:", said), (question, said)
    assert not re.search(r"\b(neko|kyou|konnichi|miru)\b", said), said
    assert not re.search(r"[ぁ-ん]\.[ぁ-ん]", said), said  # き.く okurigana markers
    if "[" in written:  # the text answer cited; the spoken one carries the same facts
        assert "word:" not in said


def test_spoken_labels_use_the_reading_so_homographs_sound_different():
    said = " ".join(ask("what does 今日 mean", items=[KYOU, KONNICHI]).sentences)
    assert said.startswith("きょう means “today”") and "こんにち" in said and "these days" in said
    said = " ".join(ask("how is my N5 progress?").sentences)
    assert "12 of 80" in said and "15 percent" in said
    said = " ".join(ask("What is my review plan for the next 24 hours?").sentences)
    assert "5 at 7 PM" in said and "Tokyo time" in said
    said = " ".join(ask("What is my review plan for the next 24 hours?", language="ja").sentences)
    assert "19時に5個" in said


# ---- through the engine: one text turn answered in AUDIO (TTS only, no STT) ----------------------

@pytest.mark.voice
@pytest.mark.timeout(120)
@pytest.mark.skipif(not available()[0], reason="voice extra not installed")
async def test_output_transcription_follows_the_audio_sentence_by_sentence(live):
    from google.genai import types

    config = live.config(response_modalities=["AUDIO"], output_audio_transcription={})
    context = "<kotoba-context>\n" + json.dumps({"items": [NEKO]}, ensure_ascii=False) + "\n</kotoba-context>"
    events: list[tuple[str, Any]] = []
    async with live.connect(config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[
            types.Part(text=context), types.Part(text="What does 猫 mean?")]), turn_complete=True)
        async for message in session.receive():
            content = message.server_content
            if content and content.output_transcription:
                events.append(("said", content.output_transcription.text))
            if content and content.model_turn:
                events += [("audio", len(p.inline_data.data)) for p in content.model_turn.parts if p.inline_data]
            if content and content.turn_complete:
                break
    said = [value for kind, value in events if kind == "said"]
    assert said == ["ねこ means “cat”. ", "It's a JLPT N5 word."], said
    # Each sentence's transcript comes just before its own audio, not all up front.
    kinds = [kind for kind, _ in events]
    first, second = kinds.index("said"), len(kinds) - 1 - kinds[::-1].index("said")
    assert first == 0 and "audio" in kinds[first:second] and "audio" in kinds[second:]
    assert sum(value for kind, value in events if kind == "audio") > 24_000  # > 0.5 s of speech
