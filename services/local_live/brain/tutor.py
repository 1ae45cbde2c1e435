"""The tutor's reasoning for one turn: recognise the intent, call declared functions, compose.

`Tutor.think(turn)` is a generator: it yields lists of `Call`s, receives the matching list of
function responses (`{"result": ...}` or `{"error": ...}`), and returns a `Reply`. The protocol
layer turns each yield into one `toolCall` frame, so the brain never touches the socket.
Dictionary questions are answered in dictionary.py, study-data questions in study.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from services.local_live.brain.compose import Composer, speakable
from services.local_live.brain.context import Learner, TurnInput
from services.local_live.brain.dictionary import Answer, DictionaryAnswers
from services.local_live.brain.facts import ItemPool, meanings
from services.local_live.brain.functions import Call, Functions, Results, romaji_variants
from services.local_live.brain.intent import Intent, recognise, recognise_all
from services.local_live.brain.memory import Memory
from services.local_live.brain.study import StudyAnswers

__all__ = ["Call", "Reply", "Tutor", "asked_terms", "describe", "recall", "romaji_variants"]

LOOKUP_KINDS = ("meaning", "reading", "level", "example", "kanji_info", "translate", "kanji_for", "compare")


@dataclass
class Reply:
    """The tutor's answer to one turn: its sentences, the intent, the topic, the functions called."""

    sentences: list[str]
    intent: str
    topic: str = ""
    calls: list[str] = field(default_factory=list)


Thought = Generator[list[Call], Results, Reply]


class Tutor:
    """One turn's reasoning: each recognised intent goes to its answer (an explicit table by kind)."""

    def __init__(self, learner: Learner, declared: dict[str, dict[str, Any]], memory: Memory,
                 cite: bool = True, speech: bool = False, language: str = "") -> None:
        self.learner = learner
        self.declared = declared
        self.memory = memory
        self.speech = speech  # the answer will be spoken (AUDIO): phrase it to be heard
        # language: the turn's own (a spoken question is answered in the language it was asked in)
        self.say = Composer(language or learner.language, cite=cite, name=learner.display_name, speech=speech)
        self.functions = Functions(declared)
        self.dictionary = DictionaryAnswers(self.say, memory, self.functions)
        study = StudyAnswers(self.say, self.functions)
        d = self.dictionary
        self.answers: dict[str, Callable[[Intent, ItemPool], Answer]] = {
            "meaning": d.meaning, "reading": d.reading, "level": d.level, "translate": d.translate,
            "kanji_info": d.kanji_info, "kanji_for": d.kanji_for, "example": d.example, "compare": d.compare,
            "progress": study.progress, "plan": study.plan, "review": study.review, "learned": study.learned,
            "greeting": self._greeting, "thanks": self._thanks, "help": self._help, "grammar": self._grammar,
            "recall_first": self._recall_first, "simpler": self._simpler, "offtopic": self._offtopic,
            "unknown": self._unknown,
        }

    # ---- entry point ----------------------------------------------------------------------------

    def think(self, turn: TurnInput) -> Thought:
        """Answers every question in the message, in order (recognise_all), as one reply."""
        intents = recognise_all(turn.text, self.memory.last_kind)
        pool = ItemPool(turn.items)
        self.functions.voice_lookup = not turn.has_context_block
        self.dictionary.text = turn.text
        sentences: list[str] = []
        topic = ""
        kind = intents[0].kind
        topic_kind = ""
        answered: set[tuple[str, str]] = set()
        for intent in intents:
            said, about = yield from self._answer(intent, pool)
            if intent.kind == "level" and ("meaning", intent.term) in answered and len(said) > 1 \
                    and any("JLPT" in x for x in sentences):
                said = said[1:]  # the meaning answer already gave the level: only where it comes from
            answered.add((intent.kind, intent.term))
            sentences += [s for s in said if s not in sentences or not s.startswith("[")]
            if about and not topic:
                topic, topic_kind = about, intent.kind
        sentences = _merge_citations(sentences)
        if self.speech:
            sentences = [speakable(s) for s in sentences]
        reply = Reply([s for s in sentences if s], kind, topic, list(self.functions.called))
        topic_items = pool.find(topic) if topic and topic_kind in LOOKUP_KINDS else []
        self.memory.remember(turn.text, " ".join(reply.sentences), kind, topic, topic_items)
        return reply

    def _answer(self, intent: Intent, pool: ItemPool) -> Answer:
        """One intent's answer; a lookup with no term falls back on the conversation's topic."""
        if intent.kind in LOOKUP_KINDS and not intent.terms and self.memory.topic:
            intent.terms = [self.memory.topic]
        if intent.term and intent.term == self.memory.topic:
            pool.add(self.memory.topic_items)
        if intent.kind in LOOKUP_KINDS and not intent.terms:
            return self.say.ask_term(intent.kind), ""
        return (yield from self.answers.get(intent.kind, self._unknown)(intent, pool))

    # ---- conversation ---------------------------------------------------------------------------

    def _greeting(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.greeting(), self.memory.topic
        yield  # a generator like the others

    def _thanks(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.thanks(), self.memory.topic
        yield

    def _help(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.help(), self.memory.topic
        yield

    def _grammar(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.grammar(intent.term), self.memory.topic
        yield

    def _recall_first(self, intent: Intent, pool: ItemPool) -> Answer:
        """The first word the learner asked about in this conversation (history survives a resume)."""
        asked = asked_terms(self.memory)
        if not asked:
            return self.say.nothing_asked(), self.memory.topic
        return self.say.first_asked(asked[0], asked), self.memory.topic
        yield

    def _simpler(self, intent: Intent, pool: ItemPool) -> Answer:
        """The last answer about the topic again, plainly: the word and its first meaning."""
        topic = self.memory.topic
        if not topic:
            return self.say.ask_term("meaning"), ""
        pool.add(self.memory.topic_items)
        items = yield from self.functions.lookup(topic, pool)
        if not items:
            return self.say.unknown_item(topic, self.functions.unavailable), topic
        return self.say.simply(items[0]), topic

    def _offtopic(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.offtopic(), self.memory.topic
        yield

    def _unknown(self, intent: Intent, pool: ItemPool) -> Answer:
        return self.say.misheard(), self.memory.topic
        yield


def recall(memory: Memory) -> None:
    """Find the topic again in replayed history (a fresh session primed with recent turns), so a
    follow-up like "and its reading?" still resolves. The item an answer cited names the topic
    exactly ([word:泳ぐ:およぐ] → 泳ぐ); a spoken answer cites nothing, so then the term asked about."""
    topic, kind = memory.topic, memory.last_kind
    history = memory.history
    for n, entry in enumerate(history):
        if entry.get("role") != "user":
            continue
        intent = recognise(entry.get("text", ""), kind)
        kind = intent.kind
        if intent.kind not in LOOKUP_KINDS:
            continue
        answer = history[n + 1].get("text", "") if n + 1 < len(history) and history[n + 1].get("role") == "model" else ""
        cited = _CITED.search(answer)
        if cited:
            topic = cited.group(1)
        elif intent.terms:
            topic = intent.terms[0]
    if topic != memory.topic:
        memory.topic, memory.topic_items = topic, []
    memory.last_kind = kind


_CITED = re.compile(r"\[(?:word|kanji|kana):([^:\],]+)")


def asked_terms(memory: Memory) -> list[str]:
    """The terms the learner asked about, in order, from the conversation so far (the cited item
    names a term exactly; else the term in the question)."""
    out: list[str] = []
    history = memory.history
    kind = ""
    for n, entry in enumerate(history):
        if entry.get("role") != "user":
            continue
        for intent in recognise_all(entry.get("text", ""), kind):
            kind = intent.kind
            if intent.kind not in LOOKUP_KINDS or not intent.terms:
                continue
            answer = history[n + 1].get("text", "") if n + 1 < len(history) else ""
            cited = _CITED.search(answer)
            term = cited.group(1) if cited and len(intent.terms) == 1 else intent.terms[0]
            if term not in out:
                out.append(term)
    return out


def _merge_citations(sentences: list[str]) -> list[str]:
    """One citation at the end of a reply made of several answers: "[a] … [b]" → "… [a, b]"."""
    cites = [s for s in sentences if s.startswith("[") and s.endswith("]")]
    if len(cites) < 2:
        return sentences
    ids: list[str] = []
    for c in cites:
        ids += [i.strip() for i in c[1:-1].split(",") if i.strip() and i.strip() not in ids]
    return [s for s in sentences if s not in cites] + [f"[{', '.join(ids[:6])}]"]


def describe(item: dict[str, Any]) -> str:
    """One-line summary of an item (used in logs and tests)."""
    return f"{item.get('written')} {item.get('reading')} {meanings(item)[:1]}"
