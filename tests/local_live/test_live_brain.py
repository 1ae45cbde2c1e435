"""The tutor brain on its own: intents over many phrasings, which functions it calls, and that it
never states a fact it was not given."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest

from services.local_live.brain.context import Learner, TurnInput
from services.local_live.brain.intent import recognise
from services.local_live.brain.memory import Memory
from services.local_live.brain.tutor import Call, Reply, Tutor

ALL = ["search_words", "get_word_details", "get_kanji_details", "get_sentence_details", "get_user_progress",
       "get_user_plan", "get_user_learned_items", "get_user_reviewable_items", "search_dictionary"]
SWIM = {"id": "word:泳ぐ:およぐ", "type": "word", "written": "泳ぐ", "reading": "およぐ", "romaji": "oyogu",
        "meanings": ["to swim"], "level": "N5", "example_ids": ["sentence:00007"]}
KIKU = {"id": "kanji:聞", "type": "kanji", "written": "聞", "onyomi": ["ブン", "モン"], "kunyomi": ["き.く"],
        "meanings": ["hear", "ask", "listen"], "strokes": 14, "level": "N5"}
EXAMPLE = {"id": "sentence:00007", "type": "sentence", "written": "海で泳ぐのは面白い。",
           "translation": "Swimming in the sea is fun."}


@pytest.mark.parametrize(("text", "kind", "terms"), [
    ("what does 泳ぐ mean", "meaning", ["泳ぐ"]),
    ("What does oyogu mean?", "meaning", ["oyogu"]),
    ("oyogu", "meaning", ["oyogu"]),
    ("泳ぐってどういう意味", "meaning", ["泳ぐ"]),
    ("泳ぐの意味は？", "meaning", ["泳ぐ"]),
    ("本はどういう意味ですか？", "meaning", ["本"]),
    ("ねこってなに", "meaning", ["ねこ"]),
    ("whats the meaning of wasuremono?", "meaning", ["wasuremono"]),
    ("ten'in meaning?", "meaning", ["ten'in"]),
    ("What is benkyou in English?", "meaning", ["benkyou"]),
    ("猫", "meaning", ["猫"]),
    ("how do you read 今日", "reading", ["今日"]),
    ("今日の読み方は？", "reading", ["今日"]),
    ("古いはどう読みますか", "reading", ["古い"]),
    ("how do you pronounce 綺麗", "reading", ["綺麗"]),
    ("how many strokes in 聞", "kanji_info", ["聞"]),
    ("How many strokes does the kanji 国 have?", "kanji_info", ["国"]),
    ("聞は何画ですか", "kanji_info", ["聞"]),
    ("寒の画数は？", "kanji_info", ["寒"]),
    ("what is the onyomi of 山", "kanji_info", ["山"]),
    ("山の音読みは？", "kanji_info", ["山"]),
    ("What does the kanji 泳 mean?", "kanji_info", ["泳"]),
    ("tell me about the kanji 日", "kanji_info", ["日"]),
    ("kanji for fire", "kanji_for", ["fire"]),
    ("what kanji means water?", "kanji_for", ["water"]),
    ("give me an N4 example with ながら", "example", ["ながら"]),
    ("ながらを使った例文をください", "example", ["ながら"]),
    ("Give me an example sentence with 泳ぐ.", "example", ["泳ぐ"]),
    ("what level is 勉強", "level", ["勉強"]),
    ("勉強のレベルは？", "level", ["勉強"]),
    ("What JLPT level is taberu?", "level", ["taberu"]),
    ("is 食べる N5?", "level", ["食べる"]),
    ("difference between 見る and 観る", "compare", ["見る", "観る"]),
    ("見ると観るの違いは？", "compare", ["見る", "観る"]),
    ("Compare 寒い and 古い", "compare", ["寒い", "古い"]),
    ("見る vs 観る", "compare", ["見る", "観る"]),
    ("How do I say 'to swim' in Japanese?", "translate", ["to swim"]),
    ("What's the Japanese word for medicine?", "translate", ["medicine"]),
    ("how is my N5 progress?", "progress", []),
    ("N5の単語はどれくらい覚えましたか？", "progress", []),
    ("How am I doing with N2 words?", "progress", []),
    ("what level am I?", "progress", []),
    ("what should I review today?", "review", []),
    ("How many reviews are due right now?", "review", []),
    ("今日は何を復習すればいい？", "review", []),
    ("what is due this evening?", "plan", []),
    ("What is my review plan for the next 24 hours?", "plan", []),
    ("今日の復習の予定は？", "plan", []),
    ("what's my schedule for tomorrow?", "plan", []),
    ("which words have I learned?", "learned", []),
    ("覚えた漢字を見せて", "learned", []),
    ("hello", "greeting", []),
    ("こんにちは", "greeting", []),
    ("Thank you!", "thanks", []),
    ("What can you help me with?", "help", []),
    ("What's the weather in Paris tomorrow?", "offtopic", []),
    ("Should I buy Tesla stock?", "offtopic", []),
    ("Write me a Python script to sort a list.", "offtopic", []),
    ("and its reading?", "reading", []),
])
def test_intents(text, kind, terms):
    intent = recognise(text)
    assert (intent.kind, intent.terms) == (kind, terms)


def test_what_about_follows_the_last_question():
    assert (recognise("what about 犬?", "reading").kind, recognise("what about 犬?", "reading").terms) == (
        "reading", ["犬"])


def ask(text: str, tools: Callable[[Call], dict[str, Any]] | None = None, *, language: str = "en",
        declared: list[str] = ALL, items: list[dict[str, Any]] | None = None, memory: Memory | None = None,
        context_block: bool = True) -> tuple[Reply, list[Call]]:
    tutor = Tutor(Learner(language=language, display_name="Aki"), {n: {} for n in declared}, memory or Memory())
    thought = tutor.think(TurnInput(text, items=items or [], has_context_block=context_block))
    made: list[Call] = []
    try:
        calls = next(thought)
        while True:
            made += calls
            calls = thought.send([(tools or (lambda c: {"result": {}}))(c) for c in calls])
    except StopIteration as done:
        return done.value, made


def test_uses_context_before_tools_and_cites_ids():
    reply, calls = ask("what does 泳ぐ mean?", items=[SWIM])
    answer = " ".join(reply.sentences)
    assert not calls and "to swim" in answer and "word:泳ぐ:およぐ" in answer


def test_strokes_come_from_get_kanji_details():
    reply, calls = ask("how many strokes in 聞", lambda c: {"result": {"kanji": KIKU}})
    assert [(c.name, c.args) for c in calls] == [("get_kanji_details", {"character": "聞"})]
    assert "14 strokes" in " ".join(reply.sentences)


def test_progress_calls_with_entity_type_and_group():
    rows = {"result": {"entity_type": "kanji", "levels": [
        {"level": "N5", "total": "80", "learned": "12", "learning": "3", "reviewable": "2"}]}}
    reply, calls = ask("How many N5 kanji have I learned so far?", lambda c: rows)
    assert [(c.name, c.args) for c in calls] == [("get_user_progress", {"entity_type": "kanji", "group": "N5"})]
    assert re.search(r"\b12 of 80\b", " ".join(reply.sentences))


def test_only_declared_functions_are_called():
    reply, calls = ask("what does 泳ぐ mean?", declared=["search_words"],
                       tools=lambda c: {"result": {"items": [SWIM]}})
    assert [c.name for c in calls] == ["search_words"] and "to swim" in " ".join(reply.sentences)
    reply, calls = ask("how is my N5 progress?", declared=[])
    assert not calls and "don't have access" in " ".join(reply.sentences)


def test_voice_turn_without_context_uses_search_dictionary():
    _, calls = ask("what does 泳ぐ mean", context_block=False, tools=lambda c: {"result": {"hits": [SWIM]}})
    assert "search_dictionary" in [c.name for c in calls]


@pytest.mark.parametrize("question", ["what does 泳ぐ mean?", "how do you read 泳ぐ", "what level is 泳ぐ",
                                      "how many strokes in 聞", "kanji for fire", "give me an example with 泳ぐ",
                                      "difference between 見る and 観る", "How do you say cat in Japanese?"])
def test_empty_results_mean_i_dont_know(question):
    reply, _ = ask(question, lambda c: {"result": {}})
    answer = " ".join(reply.sentences)
    assert re.search(r"don't (have|know)", answer), answer
    # No reading, level, stroke count or meaning slipped in.
    assert not re.search(r"\bN[1-5]\b|\d+ strokes|およぐ|swim|means “", answer), answer


def test_tool_errors_are_said_plainly():
    reply, _ = ask("what should I review today?", lambda c: {"error": {"code": "UNAVAILABLE", "message": "down"}})
    assert "can't get your study data" in " ".join(reply.sentences)
    reply, _ = ask("what does 泳ぐ mean", lambda c: {"error": {"code": "DEADLINE_EXCEEDED", "message": "slow"}})
    assert "can't reach the dictionary" in " ".join(reply.sentences)


def test_never_adds_fields_it_was_not_given():
    bare = {**SWIM}
    del bare["level"]
    reply, _ = ask("what level is 泳ぐ", items=[bare])
    answer = " ".join(reply.sentences)
    assert "no JLPT level" in answer and not re.search(r"\bN[1-5]\b", answer)


def test_examples_come_from_the_word_details():
    reply, calls = ask("Give me an example sentence with 泳ぐ.",
                       lambda c: {"result": {"word": SWIM, "examples": [EXAMPLE]}})
    assert calls[0].name == "get_word_details"
    assert "海で泳ぐのは面白い。" in reply.sentences and "Swimming in the sea is fun." in " ".join(reply.sentences)


def test_japanese_learner_gets_japanese_answers():
    reply, _ = ask("泳ぐってどういう意味", items=[SWIM], language="ja")
    assert "という意味です" in " ".join(reply.sentences)


def test_follow_up_uses_the_topic_and_remembered_facts():
    memory = Memory()
    ask("what does 泳ぐ mean?", items=[SWIM], memory=memory)
    reply, calls = ask("and its reading?", memory=memory)
    assert not calls and "およぐ" in " ".join(reply.sentences)
    restored = Memory.from_dict(memory.to_dict())
    reply, calls = ask("what level is it?", memory=restored)
    assert not calls and "N5" in " ".join(reply.sentences)


def test_plan_for_the_evening_lists_only_evening_slots():
    from datetime import datetime

    today = datetime.now(UTC).date().isoformat()
    plan = {"result": {"timezone": "UTC", "overdue": "1", "total": "9", "slots": [
        {"start": f"{today}T09:00:00+00:00", "label": "09:00", "count": "3"},
        {"start": f"{today}T19:00:00+00:00", "label": "19:00", "count": "5"}]}}
    reply, calls = ask("what is due this evening?", lambda c: plan)
    answer = " ".join(reply.sentences)
    assert calls[0].name == "get_user_plan" and "19:00: 5" in answer and "09:00" not in answer
    assert re.search(r"\b9 reviews in total", answer)


def test_word_and_kanji_of_one_form_are_told_apart_and_repeats_dropped():
    word = {"id": "word:日:ひ", "type": "word", "level": "N5", "written": "日", "reading": "ひ", "romaji": "hi",
            "meanings": ["day"]}
    kanji = {"id": "kanji:日", "type": "kanji", "level": "N5", "written": "日", "reading": "ひ", "romaji": "hi",
             "meanings": ["day", "sun", "Japan"]}
    same = {**kanji, "meanings": ["day"]}
    answer = " ".join(ask("what does 日 mean?", items=[word, kanji])[0].sentences)
    assert "As a kanji, 日 means “day; sun; Japan”." in answer
    answer = " ".join(ask("what does 日 mean?", items=[word, same])[0].sentences)
    assert answer.count("“day”") == 1 and "kanji:日" in answer
