"""Issue 16 in the brain alone: every part of a message answered, particle-stripped terms checked
against the dictionary first, honest grammar answers, follow-ups from the conversation's history."""

from __future__ import annotations

from typing import Any

from services.local_live.brain.context import Learner, TurnInput
from services.local_live.brain.memory import Memory
from services.local_live.brain.tutor import Call, Tutor, romaji_variants

ALL = ["search_words", "get_word_details", "get_kanji_details", "get_sentence_details", "search_dictionary",
       "get_user_progress", "get_user_plan", "get_user_learned_items", "get_user_reviewable_items"]
WORDS = {
    "泳ぐ": {"id": "word:泳ぐ:およぐ", "type": "word", "written": "泳ぐ", "reading": "およぐ", "romaji": "oyogu",
            "meanings": ["to swim"], "level": "N5"},
    "こんにちは": {"id": "word:こんにちは:こんにちは", "type": "word", "written": "こんにちは", "reading": "こんにちは",
              "romaji": "konnichiha", "meanings": ["hello", "good day (daytime greeting)"], "level": "N3",
              "pos": "exp; int"},
    "こんにち": {"id": "word:今日:こんにち", "type": "word", "written": "今日", "reading": "こんにち",
             "romaji": "konnichi", "meanings": ["today", "this day"], "level": "N3"},
    "猫": {"id": "word:猫:ねこ", "type": "word", "written": "猫", "reading": "ねこ", "romaji": "neko",
          "meanings": ["cat"], "level": "N5"},
    "犬": {"id": "word:犬:いぬ", "type": "word", "written": "犬", "reading": "いぬ", "romaji": "inu",
          "meanings": ["dog"], "level": "N5"},
    "勉強": {"id": "word:勉強:べんきょう", "type": "word", "written": "勉強", "reading": "べんきょう",
           "romaji": "benkyou", "meanings": ["study"], "level": "N5"},
}
KIKU = {"id": "kanji:聞", "type": "kanji", "written": "聞", "onyomi": ["ブン"], "kunyomi": ["き.く"],
        "meanings": ["hear"], "strokes": 14, "level": "N5"}


def dictionary(call: Call) -> dict[str, Any]:
    if call.name == "get_word_details":
        written = call.args["written"]
        word = WORDS.get(written) or next((w for w in WORDS.values() if w["reading"] == written), None)
        return {"result": {"word": word}} if word else {"result": {}}
    if call.name == "get_kanji_details":
        return {"result": {"kanji": KIKU}} if call.args["character"] == "聞" else {"result": {}}
    return {"result": {}}


def ask(text: str, memory: Memory | None = None, language: str = "en") -> tuple[str, list[Call]]:
    tutor = Tutor(Learner(language=language), {n: {} for n in ALL}, memory if memory is not None else Memory())
    thought = tutor.think(TurnInput(text, has_context_block=True))
    made: list[Call] = []
    try:
        calls = next(thought)
        while True:
            made += calls
            calls = thought.send([dictionary(c) for c in calls])
    except StopIteration as done:
        return " ".join(done.value.sentences), made


def test_konnichiwa_is_a_word_not_today():
    answer, calls = ask("What does こんにちは mean?")
    assert "hello" in answer and "today" not in answer
    assert calls[0].args == {"written": "こんにちは"}  # the unstripped form is checked first


def test_every_part_of_a_message_is_answered():
    answer, _ = ask("What does 泳ぐ mean and what level is it?")
    assert "to swim" in answer and "N5" in answer and "Tanos" in answer
    answer, _ = ask("How many strokes does 聞 have, and what JLPT level is it?")
    assert "14 strokes" in answer and "N5" in answer
    answer, _ = ask("What do 猫 and 犬 mean?")
    assert "cat" in answer and "dog" in answer
    assert answer.count("[") == 1  # one citation at the end


def test_set_phrase_level_says_where_it_comes_from():
    answer, _ = ask("What JLPT level is こんにちは?")
    assert "N3" in answer and "Tanos" in answer and "set phrases" in answer


def test_grammar_gets_an_honest_answer_not_a_homophone():
    for question in ("what's the difference between は and が?", "What does 〜ながら mean?", "explain keigo"):
        answer, calls = ask(question)
        assert "grammar" in answer and not any(c.name == "get_word_details" for c in calls), (question, answer)


def test_romaji_spellings_and_typos():
    assert "benkyou" in romaji_variants("benkyo") and "こんにちは" in romaji_variants("konnichiwa")
    answer, _ = ask("what does benkyo mean?")
    assert "study" in answer
    answer, _ = ask("waht dose 猫 meen?")
    assert "cat" in answer


def test_first_word_and_simpler_follow_ups_survive_a_resume():
    memory = Memory()
    ask("What does 泳ぐ mean?", memory)
    ask("What does 猫 mean?", memory)
    resumed = Memory.from_dict(memory.to_dict())
    answer, _ = ask("what was the first word I asked about?", resumed)
    assert "泳ぐ" in answer
    answer, _ = ask("say that more simply", resumed)
    assert "cat" in answer and "[" not in answer


def test_japanese_sentence_that_is_no_word_is_off_topic():
    answer, _ = ask("おすすめのレストランは？")
    assert "Japanese" in answer and "dictionary" not in answer
