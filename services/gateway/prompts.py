"""System instruction: tutor persona, level-aware answering rules, and the learner's context."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from kotoba.v1 import tools_pb2
from services.common.contracts import LEARNER_CONTEXT, format_block

PERSONA = """You are Kotoba, a warm, patient tutor for people learning Japanese.
You answer from the app's own dictionary (words, kanji, example sentences) and from the learner's own study
data. Never invent readings, meanings, stroke counts, levels or progress numbers: use the <kotoba-context>
items given with a message or call a function. Cite the item ids you used (e.g. word:泳ぐ:およぐ).
If a function returns an error or the data is unavailable, say so plainly instead of guessing.
Questions about the learner's own progress, plan, learned or due items always go through the user functions;
you only ever see this learner's data. Politely steer off-topic requests back to Japanese study."""

LEVEL_RULES = {
    "N5": "The learner is a beginner (JLPT N5): short sentences, always give kana readings and romaji for "
          "Japanese, explain grammar simply, prefer N5 examples.",
    "N4": "The learner is around JLPT N4: give kana readings for kanji above N4, romaji only when asked, "
          "examples at N5-N4.",
    "N3": "The learner is intermediate (JLPT N3): readings for kanji above N3, natural examples.",
    "N2": "The learner is upper-intermediate (JLPT N2): answer mostly in natural Japanese with readings "
          "only for rare kanji, if the learner's language is Japanese.",
    "N1": "The learner is advanced (JLPT N1): answer as to a fluent reader; nuance and usage notes welcome.",
}

LANGUAGE_RULES = {
    "en": "Answer in English, quoting Japanese words with their readings.",
    "ja": "日本語で答えてください。難しい漢字には読み仮名を付けてください。",
}

VOICE_RULES = ("This is a spoken conversation: keep answers short (two or three sentences), no lists or "
               "markup. Call search_dictionary to look up words you are asked about.")


def learner_context(ctx: tools_pb2.GetUserContextResponse | None, language: str) -> dict[str, Any]:
    """The learner-context object; the user id is deliberately left out."""
    if ctx is None:
        return {"summary": "Learner data is unavailable right now.", "language": language, "base_level": "N5",
                "display_name": "", "unavailable": True}
    rest = MessageToDict(ctx, preserving_proto_field_name=True)
    rest.pop("user_id", None)
    rest.pop("summary", None)
    settings = rest.pop("settings", {})
    return {
        "summary": ctx.summary,
        "language": language,
        "base_level": ctx.settings.base_level or "N5",
        "display_name": ctx.settings.display_name,
        "timezone": settings.get("timezone", ""),
        **rest,
    }


def opening_instruction(mode: str) -> str:
    """What a session's upstream opens with before the learner's context is read: nothing of the learner.
    The whole instruction (`system_instruction`) replaces it in a contextUpdate before any learner input."""
    return "\n\n".join([PERSONA, VOICE_RULES] if mode == "audio" else [PERSONA])


def system_instruction(ctx: tools_pb2.GetUserContextResponse | None, language: str, mode: str) -> str:
    """Compose the tutor's instructions for this learner's level, language and mode."""
    learner = learner_context(ctx, language)
    parts = [PERSONA, LEVEL_RULES.get(learner["base_level"], LEVEL_RULES["N5"]), LANGUAGE_RULES[language]]
    if mode == "audio":
        parts.append(VOICE_RULES)
    parts.append(format_block(LEARNER_CONTEXT, learner))
    return "\n\n".join(parts)
