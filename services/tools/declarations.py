"""The one source of the function declarations the gateway sends to Gemini (Tools RPCs and search_dictionary).

Each declaration's parameter names are the request message's field names, so a function call's
args become a request with `json_format.ParseDict(args, Request(), ignore_unknown_fields=True)`
(an argument such as `user_id` is simply dropped: the learner always comes from the token).
tests/tools/test_tools_declarations.py checks every parameter against the request message.
"""

from __future__ import annotations

from typing import Any

LEVEL_ENUM = ["N5", "N4", "N3", "N2", "N1"]
ENTITY_ENUM = ["words", "kanji", "sentences", "kana"]


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict:
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return {"name": name, "description": description, "parameters": parameters}


FUNCTION_DECLARATIONS: list[dict[str, Any]] = [
    _fn(
        "search_words",
        "Look up Japanese dictionary WORDS by written form (kanji or kana), reading, romaji or English "
        "meaning. Use it when the learner asks how to say something, what a word means, or mentions a word "
        "you need to check. Returns matching words (exact matches first, then words starting with the query, "
        "then close meanings) with readings, romaji, meanings and JLPT level.",
        {
            "query": {"type": "string", "description": "The word or meaning to look up, e.g. '食べる', "
                      "'たべる', 'taberu' or 'to eat'. One word or short phrase."},
            "language": {"type": "string", "enum": ["en", "ja"],
                         "description": "Language of the query: 'en' for English meaning or romaji, 'ja' for "
                                        "Japanese. Leave out to guess."},
            "level": {"type": "string", "enum": LEVEL_ENUM,
                      "description": "Only words of this JLPT level. Leave out for all levels."},
            "limit": {"type": "integer", "description": "Maximum number of words to return, 1 to 50 "
                                                        "(default 10)."},
        },
        ["query"],
    ),
    _fn(
        "get_word_details",
        "Full entry for ONE word: readings, romaji, meanings, JLPT level, part of speech, the kanji it "
        "contains with their meanings, and a few example sentences. Give the id from an earlier result "
        "when you have it, otherwise the written form or kana reading.",
        {
            "id": {"type": "string", "description": "Word id such as 'word:食べる:たべる' from an earlier result."},
            "written": {"type": "string", "description": "The word as written (e.g. '食べる') or its kana "
                                                         "reading, used when no id is known."},
        },
    ),
    _fn(
        "get_kanji_details",
        "Details for ONE kanji character: meanings, on'yomi and kun'yomi readings, stroke count, school "
        "grade, JLPT level and common words that use it. Use it when the learner asks about a single kanji.",
        {"character": {"type": "string", "description": "Exactly one kanji character, e.g. '食'."}},
        ["character"],
    ),
    _fn(
        "get_sentence_details",
        "An example sentence by id: Japanese text, kana reading, romaji, English translation and the "
        "dictionary words it contains. Use it to explain an example sentence from an earlier result.",
        {"id": {"type": "string", "description": "Sentence id such as 'sentence:00042' from an earlier result."}},
        ["id"],
    ),
    _fn(
        "get_user_progress",
        "The learner's own study progress: for each JLPT level, how many items exist, how many the learner "
        "has learned, is learning, has not started, and how many are due for review. Use it for questions "
        "like 'how am I doing with N5 kanji?' or 'how many words do I know?'.",
        {
            "entity_type": {"type": "string", "enum": ENTITY_ENUM,
                            "description": "Which kind of item to count (default 'words')."},
            "group": {"type": "string", "enum": [*LEVEL_ENUM, "all"],
                      "description": "One JLPT level, or 'all' for every level (default 'all')."},
        },
    ),
    _fn(
        "get_user_plan",
        "The learner's review schedule: how many reviews are overdue now and how many fall due in each hour "
        "ahead, in the learner's own time zone. Use it for 'what should I review today?' or 'how many reviews "
        "do I have this evening?'.",
        {"hours": {"type": "integer", "description": "How many hours ahead to plan, 1 to 168 (default 24)."}},
    ),
    _fn(
        "get_user_learned_items",
        "Items the learner has already learned, with proficiency (0-100), when they were learned and the next "
        "review. Paginated: pass next_page_token from the previous answer as page_token to continue.",
        {
            "entity_type": {"type": "string", "enum": ENTITY_ENUM,
                            "description": "Only this kind of item. Leave out for all kinds."},
            "level": {"type": "string", "enum": LEVEL_ENUM, "description": "Only this JLPT level."},
            "limit": {"type": "integer", "description": "Items per page, 1 to 100 (default 20)."},
            "page_token": {"type": "string", "description": "next_page_token from the previous page; leave out "
                                                            "for the first page."},
        },
    ),
    _fn(
        "get_user_reviewable_items",
        "The learner's items that are due for review now, most overdue first, with their readings and "
        "meanings and the total number due. Use it to run a review session or quiz the learner.",
        {"limit": {"type": "integer", "description": "Maximum number of items, 1 to 100 (default 20)."}},
    ),
]

# Answered by the gateway itself (Retrieval.Search with the learner's token), declared in audio mode only:
# a voice turn carries no <kotoba-context> block, so the model looks words up through this function.
SEARCH_DICTIONARY = {
    "name": "search_dictionary",
    "description": "Search the Kotoba dictionary (words, kanji, example sentences, kana) by English, Japanese "
                   "(kana or kanji) or romaji. Use it before answering any question about a word or kanji.",
    "parameters": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look up, as the learner said it."},
            "types": {"type": "array", "items": {"type": "string"},
                      "description": "Optional item types: word, kanji, sentence, kana."},
            "levels": {"type": "array", "items": {"type": "string"},
                       "description": "Optional JLPT levels N5..N1."},
            "top_k": {"type": "integer", "description": "How many hits, 1..20 (default 5)."},
        },
        "required": ["query"],
    },
}

# Every function name a model may call in Kotoba (the local engine calls only these).
DECLARED_NAMES: frozenset[str] = frozenset(d["name"] for d in [*FUNCTION_DECLARATIONS, SEARCH_DICTIONARY])

RPC_FOR_FUNCTION: dict[str, str] = {
    "search_words": "SearchWords",
    "get_word_details": "GetWordDetails",
    "get_kanji_details": "GetKanjiDetails",
    "get_sentence_details": "GetSentenceDetails",
    "get_user_progress": "GetUserProgress",
    "get_user_plan": "GetUserPlan",
    "get_user_learned_items": "GetUserLearnedItems",
    "get_user_reviewable_items": "GetUserReviewableItems",
}

# Request message name (in kotoba.v1.tools_pb2) for each function, for callers that build requests.
REQUEST_FOR_FUNCTION: dict[str, str] = {name: f"{rpc}Request" for name, rpc in RPC_FOR_FUNCTION.items()}


def request_for(function_name: str, args: dict[str, Any] | None):
    """The Tools request message for a model's function call (unknown args such as `user_id` dropped)."""
    from google.protobuf import json_format

    from kotoba.v1 import tools_pb2

    message = getattr(tools_pb2, REQUEST_FOR_FUNCTION[function_name])()
    return json_format.ParseDict(dict(args or {}), message, ignore_unknown_fields=True)
