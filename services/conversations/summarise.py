"""Turn summaries: {category, topics, response_type, key_points}.

Offline: a deterministic summariser from the tutor's own classification of
the question (`intent`), falling back to the tool calls, the retrieved item
ids and the question text. With Gemini: one batched generate_content call
with a JSON response schema for several turns at once.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from services.common.japanese import JAPANESE_RUN as _JAPANESE

CATEGORIES = ("vocabulary", "kanji", "grammar", "example", "progress", "plan", "greeting", "off_topic", "other")
RESPONSE_TYPES = ("definition", "explanation", "example", "progress_report", "schedule", "refusal", "smalltalk",
                  "answer")

# Checked in order; the first keyword found in the intent wins.
_INTENT_RULES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("greet", "hello", "smalltalk", "small_talk", "chitchat", "thanks"), "greeting", "smalltalk"),
    (("off_topic", "offtopic", "refus", "unsupported", "out_of_scope"), "off_topic", "refusal"),
    (("progress", "learned", "stats"), "progress", "progress_report"),
    (("plan", "schedule", "review", "due", "reviewable"), "plan", "schedule"),
    (("kanji",), "kanji", "explanation"),
    (("grammar", "particle", "conjugat"), "grammar", "explanation"),
    (("sentence", "example"), "example", "example"),
    (("word", "vocab", "meaning", "defin", "translat", "lookup", "search", "dictionary", "reading"),
     "vocabulary", "definition"),
)
_TOOL_RULES = {
    "get_kanji_details": ("kanji", "explanation"),
    "get_word_details": ("vocabulary", "definition"),
    "search_words": ("vocabulary", "definition"),
    "search_dictionary": ("vocabulary", "definition"),
    "get_sentence_details": ("example", "example"),
    "get_user_progress": ("progress", "progress_report"),
    "get_user_learned_items": ("progress", "progress_report"),
    "get_user_plan": ("plan", "schedule"),
    "get_user_reviewable_items": ("plan", "schedule"),
}
_ITEM_RULES = {"kanji": ("kanji", "explanation"), "word": ("vocabulary", "definition"),
               "sentence": ("example", "example"), "kana": ("vocabulary", "explanation")}
_TEXT_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"(?i)^\s*(hi|hello|hey|good (morning|evening)|thanks?|thank you)\b|こんにちは|おはよう|こんばんは|ありがとう"),
     "greeting", "smalltalk"),
    (re.compile(r"(?i)progress|how (much|many).*(learn|know)|進捗|どのくらい覚え"), "progress", "progress_report"),
    (re.compile(r"(?i)\b(plan|schedule|review|due)\b|復習|予定"), "plan", "schedule"),
    (re.compile(r"(?i)\bkanji\b|漢字|stroke"), "kanji", "explanation"),
    (re.compile(r"(?i)grammar|particle|conjugat|\bform\b|文法|助詞|活用"), "grammar", "explanation"),
    (re.compile(r"(?i)example|sentence|例文"), "example", "example"),
    (re.compile(r"(?i)mean|word|say|how do you|translate|意味|単語|読み"), "vocabulary", "definition"),
)
_QUOTED = re.compile(r"[「『\"“]([^」』\"”]{1,30})[」』\"”]")
_TOPIC_ARGS = ("query", "word", "kanji", "written", "text", "item_id", "id")
_OPEN, _CLOSE = "“「『（(", "”」』）)"
_CITATION = re.compile(r"\s*\[(?:word|kanji|kana|sentence):[^\]\n]*\]")
_CITED_ID = re.compile(r"(?:word|kanji|kana|sentence):[^\s,\[\]]+")
_HAS_WORDS = re.compile(r"[A-Za-z\u3040-\u30ff\u4e00-\u9fff]{2,}")


def _topic_from_item(item_id: str) -> str:
    parts = item_id.split(":")
    return parts[1] if len(parts) > 1 and parts[1] else item_id


def _discussed(turn: dict[str, Any]) -> list[str]:
    """Item ids the answer is about: the turn's sources (citations as data), else the citations
    still in the answer text."""
    ids: list[str] = []
    for source in turn.get("sources") or []:
        item_id = source.get("id") if isinstance(source, dict) else source
        if isinstance(item_id, str) and item_id:
            ids.append(item_id)
    if not ids:
        for citation in _CITATION.finditer(turn.get("answer") or ""):
            ids.extend(_CITED_ID.findall(citation.group(0)))
    return ids


def _topics(turn: dict[str, Any]) -> list[str]:
    """The items discussed (cited in the answer) first; without citations, what the tools were asked
    about; retrieval hits only when nothing else names the topic (they are candidates, not topics)."""
    topics: list[str] = [_topic_from_item(i) for i in _discussed(turn) if not i.startswith("sentence:")]
    for call in turn.get("toolCalls") or []:
        try:
            args = json.loads(call.get("argsJson") or "{}")
        except ValueError:
            continue
        if isinstance(args, dict):
            for key in _TOPIC_ARGS:
                value = args.get(key)
                if isinstance(value, str) and value.strip():
                    topics.append(_topic_from_item(value.strip()) if ":" in value else value.strip())
    topics.extend(m.group(1) for m in _QUOTED.finditer(turn.get("question") or ""))
    if not topics:
        topics.extend(_topic_from_item(i) for i in (turn.get("retrievedItemIds") or [])[:3])
    if not topics:  # "How do I write 猫?": the Japanese words in an English question are the topic
        topics.extend(w for w in _JAPANESE.findall(turn.get("question") or "") if len(w) <= 8)
    unique: list[str] = []
    for topic in topics:
        if topic and topic not in unique and not topic.startswith("["):
            unique.append(topic[:40])
    return unique[:5]


def _sentences(text: str) -> list[str]:
    """Split at . ! ? 。 ！ ？ outside quotes and brackets ("“Congratulations!”." is one sentence), and
    only where a space, the end or Japanese follows (not inside "e.g" or "3.5")."""
    out, start, depth = [], 0, 0
    for n, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        elif ch in ".!?。！？" and depth == 0:
            after = text[n + 1:n + 2]
            if ch in "。！？" or not after or after.isspace():
                out.append(text[start:n + 1])
                start = n + 1
    out.append(text[start:])
    return out


def _key_points(answer: str) -> list[str]:
    """Up to three sentences of the answer, without citations; a piece with no words in it ("." or
    "”.") is no sentence."""
    text = _CITATION.sub("", answer or "")
    points = [s.strip() for s in _sentences(text) if _HAS_WORDS.search(s)]
    return [p if len(p) <= 120 else p[:117] + "…" for p in points[:3]]


def classify(turn: dict[str, Any]) -> tuple[str, str]:
    """(category, response type) of a turn from its intent and words, without a model."""
    intent = (turn.get("intent") or "").lower()
    if intent:
        for words, category, response in _INTENT_RULES:
            if any(w in intent for w in words):
                return category, response
    for call in turn.get("toolCalls") or []:
        if call.get("name") in _TOOL_RULES:
            return _TOOL_RULES[call["name"]]
    for item_id in turn.get("retrievedItemIds") or []:
        kind = item_id.split(":", 1)[0]
        if kind in _ITEM_RULES:
            return _ITEM_RULES[kind]
    question = turn.get("question") or ""
    for pattern, category, response in _TEXT_RULES:
        if pattern.search(question):
            return category, response
    return "other", "answer"


def offline_summary(turn: dict[str, Any]) -> dict[str, Any]:
    """A summary of a turn made by rules, when no model is configured or it failed."""
    category, response_type = classify(turn)
    return {"category": category, "topics": _topics(turn), "response_type": response_type,
            "key_points": _key_points(turn.get("answer") or "")}


class Summariser(Protocol):
    async def summarise(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One summary (category, topics, response type, key points) per turn, in order."""
        ...


class OfflineSummariser:
    async def summarise(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Summaries by rules, one per turn."""
        return [offline_summary(t) for t in turns]


def _schema() -> dict[str, Any]:
    return {
        "type": "ARRAY",
        "items": {
            "type": "OBJECT",
            "properties": {
                "turn_id": {"type": "STRING"},
                "category": {"type": "STRING", "enum": list(CATEGORIES)},
                "topics": {"type": "ARRAY", "items": {"type": "STRING"}},
                "response_type": {"type": "STRING", "enum": list(RESPONSE_TYPES)},
                "key_points": {"type": "ARRAY", "items": {"type": "STRING"}},
            },
            "required": ["turn_id", "category", "topics", "response_type", "key_points"],
        },
    }


_INSTRUCTION = (
    "You summarise turns of a Japanese tutoring chat for the app's administrators. For every turn in the "
    "input, return one object with the same turn_id: category (what the learner asked about), topics (the "
    "words, kanji or grammar points asked about, at most 5), response_type (what kind of answer the tutor "
    "gave) and key_points (at most 3 short points of the answer, in English). Use only the given text."
)


class GeminiSummariser:
    """Batched summaries through the google-genai text API with a JSON response schema."""

    def __init__(self, api_key: str, model: str, base_url: str = "", timeout_seconds: float = 30.0) -> None:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(timeout=int(timeout_seconds * 1000))
        if base_url:
            options = types.HttpOptions(base_url=base_url, timeout=int(timeout_seconds * 1000))
        self._types = types
        self.client = genai.Client(api_key=api_key, http_options=options)
        self.model = model

    async def summarise(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Summaries of a batch of turns from Gemini; ValueError when its answer is not the expected JSON."""
        payload = [{"turn_id": t["turnId"], "intent": t.get("intent", ""), "question": t.get("question", ""),
                    "answer": (t.get("answer") or "")[:4000],
                    "tools": [c.get("name") for c in t.get("toolCalls") or []]} for t in turns]
        reply = await self.client.aio.models.generate_content(
            model=self.model,
            contents=json.dumps(payload, ensure_ascii=False),
            config=self._types.GenerateContentConfig(
                system_instruction=_INSTRUCTION, temperature=0.0, response_mime_type="application/json",
                response_schema=_schema(),
            ),
        )
        data = json.loads(reply.text or "[]")
        by_id = {d.get("turn_id"): d for d in data if isinstance(d, dict)}
        out = []
        for turn in turns:
            found = by_id.get(turn["turnId"])
            if found is None:
                raise ValueError(f"model returned no summary for turn {turn['turnId']}")
            out.append(_clean(found))
        return out


def _clean(summary: dict[str, Any]) -> dict[str, Any]:
    category = str(summary.get("category") or "other")
    return {
        "category": category if category in CATEGORIES else "other",
        "topics": [str(t)[:40] for t in summary.get("topics") or []][:5],
        "response_type": str(summary.get("response_type") or "answer")[:32],
        "key_points": [str(p)[:200] for p in summary.get("key_points") or []][:3],
    }
