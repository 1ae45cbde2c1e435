"""The tutor's reasoning for one turn: recognise the intent, call declared functions, compose.

`Tutor.think(turn)` is a generator: it yields lists of `Call`s, receives the matching list of
function responses (`{"result": ...}` or `{"error": ...}`), and returns a `Reply`. The protocol
layer turns each yield into one `toolCall` frame, so the brain never touches the socket.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.local_live.brain.compose import Composer, speakable
from services.local_live.brain.context import Learner, TurnInput
from services.local_live.brain.facts import ItemPool, as_int, meanings, stems, walk_items
from services.local_live.brain.intent import Intent, recognise, recognise_all
from services.local_live.brain.lexicon import KANJI, has_japanese, is_single_kanji, romaji_to_hiragana
from services.local_live.brain.memory import Memory

LOOKUP_KINDS = ("meaning", "reading", "level", "example", "kanji_info", "translate", "kanji_for", "compare")
UNAVAILABLE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED", "CANCELLED"}


@dataclass
class Call:
    name: str
    args: dict[str, Any]


@dataclass
class Reply:
    sentences: list[str]
    intent: str
    topic: str = ""
    calls: list[str] = field(default_factory=list)


Results = list[dict[str, Any]]
Thought = Generator[list[Call], Results, Reply]


class Tutor:
    def __init__(self, learner: Learner, declared: dict[str, dict[str, Any]], memory: Memory,
                 cite: bool = True, speech: bool = False, language: str = "") -> None:
        self.learner = learner
        self.declared = declared
        self.memory = memory
        self.speech = speech  # the answer will be spoken (AUDIO): phrase it to be heard
        # language: the turn's own (a spoken question is answered in the language it was asked in)
        self.say = Composer(language or learner.language, cite=cite, name=learner.display_name, speech=speech)
        self._called: list[str] = []
        self._errors: list[str] = []

    # ---- entry point ----------------------------------------------------------------------------

    def think(self, turn: TurnInput) -> Thought:
        """Answers every question in the message, in order (recognise_all), as one reply."""
        intents = recognise_all(turn.text, self.memory.last_kind)
        pool = ItemPool(turn.items)
        self._context_unavailable = turn.context_unavailable
        self._voice_lookup = not turn.has_context_block
        self._text = turn.text
        sentences: list[str] = []
        topic = ""
        kind = intents[0].kind
        topic_kind = ""
        answered: set[tuple[str, str]] = set()
        for intent in intents:
            if intent.kind in LOOKUP_KINDS and not intent.terms and self.memory.topic:
                intent.terms = [self.memory.topic]
            if intent.term and intent.term == self.memory.topic:
                pool.add(self.memory.topic_items)
            if intent.kind in LOOKUP_KINDS and not intent.terms:
                said, about = self.say.ask_term(intent.kind), ""
            else:
                handler = getattr(self, f"_{intent.kind}", self._unknown)
                said, about = yield from handler(intent, pool)
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
        reply = Reply([s for s in sentences if s], kind, topic, list(self._called))
        topic_items = pool.find(topic) if topic and topic_kind in LOOKUP_KINDS else []
        self.memory.remember(turn.text, " ".join(reply.sentences), kind, topic, topic_items)
        return reply

    # ---- calling functions ----------------------------------------------------------------------

    def _call(self, calls: list[Call]) -> Generator[list[Call], Results, list[dict[str, Any] | None]]:
        """Results for each call in order; None for calls to functions that were not declared."""
        positions = [n for n, c in enumerate(calls) if c.name in self.declared]
        out: list[dict[str, Any] | None] = [None] * len(calls)
        if not positions:
            return out
        responses = yield [calls[n] for n in positions]
        self._called.extend(calls[n].name for n in positions)
        for n, response in zip(positions, responses, strict=False):
            if isinstance(response, dict) and isinstance(response.get("error"), dict):
                self._errors.append(str(response["error"].get("code") or "UNKNOWN"))
            out[n] = response if isinstance(response, dict) else None
        return out

    @staticmethod
    def _result(response: dict[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(response, dict) or "error" in response:
            return None
        result = response.get("result", response)
        return result if isinstance(result, dict) else None

    def _absorb(self, pool: ItemPool, responses: list[dict[str, Any] | None]) -> None:
        for response in responses:
            result = self._result(response)
            if result is not None:
                pool.add(walk_items(result))

    @property
    def _unavailable(self) -> bool:
        return any(code in UNAVAILABLE_CODES for code in self._errors)

    def _lookup_any(self, intent: Intent, pool: ItemPool, types: tuple[str, ...] = ("word", "kanji", "kana")
                    ) -> Generator[list[Call], Results, tuple[str, list[dict[str, Any]]]]:
        """(the form found, its items): the unstripped forms first (こんにちは before こんにち: a
        trailing は is only a particle when the longer form is not a word), then the term, then
        the spellings a learner's romaji may stand for (benkyo → benkyou, konnichiwa → こんにちは)."""
        for form in intent.alternates:
            found = pool.find(form, types)
            if not found and has_japanese(form) and "get_word_details" in self.declared:
                self._absorb(pool, (yield from self._call([Call("get_word_details", {"written": form})])))
                found = pool.find(form, types)
            if found:
                return form, found
        found = yield from self._lookup(intent.term, pool, types)
        if found or has_japanese(intent.term):
            return intent.term, found
        for variant in romaji_variants(intent.term):
            found = pool.find(variant, types)
            kana = variant if has_japanese(variant) else romaji_to_hiragana(variant)
            if not found and kana and "get_word_details" in self.declared:
                self._absorb(pool, (yield from self._call([Call("get_word_details", {"written": kana})])))
                found = pool.find(variant, types)
            if found:
                return variant, found
        return intent.term, []

    def _lookup(self, term: str, pool: ItemPool, types: tuple[str, ...] = ("word", "kanji", "kana")
                ) -> Generator[list[Call], Results, list[dict[str, Any]]]:
        """Items that are `term`: from the context, else through the declared functions."""
        found = pool.find(term, types)
        if found:
            return found
        calls: list[Call] = []
        latin = not has_japanese(term)
        if not latin and "get_word_details" in self.declared:
            calls.append(Call("get_word_details", {"written": term}))
        elif "search_words" in self.declared:
            calls.append(Call("search_words", {"query": term, "limit": 10}))
        if is_single_kanji(term) and "get_kanji_details" in self.declared:
            calls.append(Call("get_kanji_details", {"character": term}))
        if (self._voice_lookup or not calls) and "search_dictionary" in self.declared:
            calls.append(Call("search_dictionary", {"query": term, "top_k": 5}))
        self._absorb(pool, (yield from self._call(calls)))
        found = pool.find(term, types)
        if not found and "search_words" in self.declared and not any(c.name == "search_words" for c in calls):
            query = term
            self._absorb(pool, (yield from self._call([Call("search_words", {"query": query, "limit": 10})])))
            found = pool.find(term, types)
        if not found and latin and (kana := romaji_to_hiragana(term)) and "get_word_details" in self.declared:
            self._absorb(pool, (yield from self._call([Call("get_word_details", {"written": kana})])))
            found = pool.find(term, types)
        return found

    # ---- dictionary intents ---------------------------------------------------------------------

    def _meaning(self, intent: Intent, pool: ItemPool):
        if intent.term.startswith("〜"):
            return self.say.grammar(intent.term), self.memory.topic
        term, items = yield from self._lookup_any(intent, pool)
        if not items:
            if intent.guessed and not self._unavailable and (
                    len(self._text) > len(term) + 3 or len(term) >= 7 or re.search("[のをにでがへ]", term[1:-1])):
                # a Japanese sentence that is no dictionary question ("おすすめのレストランは？")
                return self.say.offtopic(), self.memory.topic
            return self.say.unknown_item(term, self._unavailable), term
        return self.say.meaning(items), items[0].get("written", term)

    def _reading(self, intent: Intent, pool: ItemPool):
        if is_single_kanji(intent.term) and "get_kanji_details" in self.declared:
            # A single kanji's readings are its on/kun readings, not one word's reading.
            return (yield from self._kanji_info(Intent("kanji_info", [intent.term], aspect="readings"), pool))
        term, items = yield from self._lookup_any(intent, pool)
        if not items:
            return self.say.unknown_item(term, self._unavailable), term
        if items[0].get("type") == "kanji" or (is_single_kanji(intent.term) and not items[0].get("reading")):
            return (yield from self._kanji_info(Intent("kanji_info", [intent.term], aspect="readings"), pool))
        return self.say.reading(items), items[0].get("written", intent.term)

    def _level(self, intent: Intent, pool: ItemPool):
        if intent.entity_type == "kanji" and is_single_kanji(intent.term):
            (response,) = yield from self._call([Call("get_kanji_details", {"character": intent.term})])
            self._absorb(pool, [response])
            kanji = pool.find(intent.term, ("kanji",))
            if kanji:
                return self.say.level(kanji), intent.term
        term, items = yield from self._lookup_any(intent, pool)
        if not items:
            return self.say.unknown_item(term, self._unavailable), term
        return self.say.level(items), items[0].get("written", term)

    def _translate(self, intent: Intent, pool: ItemPool):
        english = intent.term
        if has_japanese(english):
            return (yield from self._meaning(intent, pool))
        items = pool.by_meaning(english)
        if not items:
            calls = [Call("search_words", {"query": english, "language": "en", "limit": 10})]
            if "search_words" not in self.declared:
                calls = [Call("search_dictionary", {"query": english, "types": ["word"], "top_k": 5})]
            self._absorb(pool, (yield from self._call(calls)))
            items = pool.by_meaning(english)
        if not items:
            return self.say.unknown_item(f"“{english}”", self._unavailable), english
        return self.say.translate(english, items), items[0].get("written", english)

    def _kanji_info(self, intent: Intent, pool: ItemPool):
        chars = [c for c in intent.term if KANJI.match(c)][:4]
        if not chars:
            return self.say.not_kanji(intent.term), intent.term
        calls = [Call("get_kanji_details", {"character": c}) for c in chars]
        responses = yield from self._call(calls)
        out: list[str] = []
        for char, response in zip(chars, responses, strict=True):
            result = self._result(response) or {}
            pool.add(walk_items(result))
            kanji = result.get("kanji") if isinstance(result.get("kanji"), dict) else None
            if kanji is None:
                found = pool.find(char, ("kanji",))
                kanji = found[0] if found else None
            if kanji is None:
                out += self.say.unknown_item(char, self._unavailable)
                continue
            words = [w for w in result.get("words") or [] if isinstance(w, dict)]
            out += self.say.kanji(kanji, intent.aspect or "all", words)
        return out, intent.term

    def _kanji_for(self, intent: Intent, pool: ItemPool):
        english = intent.term
        if has_japanese(english):
            return (yield from self._kanji_info(Intent("kanji_info", [english], aspect="all"), pool))
        kanji = pool.by_meaning(english, ("kanji",))
        if not kanji:
            calls = [Call("search_dictionary", {"query": english, "types": ["kanji"], "top_k": 5})]
            if "search_dictionary" not in self.declared:
                calls = [Call("search_words", {"query": english, "language": "en", "limit": 10})]
            self._absorb(pool, (yield from self._call(calls)))
            kanji = pool.by_meaning(english, ("kanji",))
        if not kanji:
            # A one-kanji word with that meaning names the kanji; fetch its details to confirm.
            words = [w for w in pool.by_meaning(english) if is_single_kanji(w.get("written", ""))]
            if words and "get_kanji_details" in self.declared:
                self._absorb(pool, (yield from self._call(
                    [Call("get_kanji_details", {"character": words[0]["written"]})])))
                kanji = pool.by_meaning(english, ("kanji",))
            if not kanji and words:
                return self.say.word_written_as(english, words[0]), words[0]["written"]
        if not kanji:
            return self.say.unknown_item(f"“{english}”", self._unavailable), english
        return self.say.kanji_for(english, kanji), kanji[0].get("written", "")

    def _example(self, intent: Intent, pool: ItemPool):
        term = intent.term
        pattern = term.startswith("〜")
        if pattern:
            # a grammar pattern: no dictionary entry, but example sentences may contain it
            bare = term.lstrip("〜")
            calls = [Call("search_dictionary", {"query": bare, "types": ["sentence"], "top_k": 10})]
            self._absorb(pool, (yield from self._call(calls)))
            found = pool.sentences_with([bare])
            if not found:
                return self.say.grammar(term, examples=False), self.memory.topic
            return self.say.examples(term, found, intent.level) + self.say.grammar_note(term), self.memory.topic
        sentences: list[dict[str, Any]] = []
        if has_japanese(term) and "get_word_details" in self.declared:
            # The word's own linked examples are the best ones: ask for them first.
            (response,) = yield from self._call([Call("get_word_details", {"written": term})])
            result = self._result(response) or {}
            pool.add(walk_items(result))
            sentences = [s for s in result.get("examples") or [] if isinstance(s, dict)]
        if not sentences:
            sentences = pool.sentences_with(stems(term))
        if not sentences:
            words = pool.find(term, ("word",))
            linked = [pool.get(i) for w in words for i in w.get("example_ids") or w.get("examples") or []]
            sentences = [s for s in linked if s]
        if not sentences:
            calls = []
            if "search_dictionary" in self.declared:
                args: dict[str, Any] = {"query": term, "types": ["sentence"], "top_k": 5}
                calls.append(Call("search_dictionary", args))
            if not calls and "search_words" in self.declared:
                calls.append(Call("search_words", {"query": term, "limit": 5}))
            responses = yield from self._call(calls)
            for call, response in zip(calls, responses, strict=True):
                result = self._result(response) or {}
                pool.add(walk_items(result))
                if call.name == "get_word_details":
                    sentences += [s for s in result.get("examples") or [] if isinstance(s, dict)]
            forms = stems(term)
            for word in pool.find(term, ("word",)):
                forms += stems(word.get("written", "")) + [word.get("reading", "")]
            sentences += [s for s in pool.sentences_with(forms) if s not in sentences]
        if not sentences:
            if self._unavailable:
                return self.say.unknown_item(term, True), term
            return self.say.no_examples(term), term
        return self.say.examples(term, sentences, intent.level), term

    def _compare(self, intent: Intent, pool: ItemPool):
        a, b = intent.terms[:2]
        missing = [t for t in (a, b) if not pool.find(t)]
        calls = []
        for term in missing:
            if has_japanese(term) and "get_word_details" in self.declared:
                calls.append(Call("get_word_details", {"written": term}))
            elif "search_words" in self.declared:
                calls.append(Call("search_words", {"query": term, "limit": 10}))
            elif "search_dictionary" in self.declared:
                calls.append(Call("search_dictionary", {"query": term, "top_k": 5}))
        if calls:
            self._absorb(pool, (yield from self._call(calls)))
        pairs = [(a, pool.find(a)), (b, pool.find(b))]
        if not pairs[0][1] and not pairs[1][1]:
            return self.say.unknown_item(self.say.pair(a, b), self._unavailable), a
        return self.say.compare(pairs), a

    # ---- the learner's data ---------------------------------------------------------------------

    def _needs(self, name: str) -> bool:
        return name in self.declared

    def _progress(self, intent: Intent, pool: ItemPool):
        if not self._needs("get_user_progress"):
            return self.say.not_available_tool(), ""
        entities = [intent.entity_type] if intent.entity_type else ["words", "kanji"]
        group = intent.level or "all"
        calls = [Call("get_user_progress", {"entity_type": e, "group": group}) for e in entities]
        responses = yield from self._call(calls)
        rows: list[tuple[str, dict[str, Any]]] = []
        for entity, response in zip(entities, responses, strict=True):
            result = self._result(response)
            if result is None:
                continue
            for row in result.get("levels") or []:
                if isinstance(row, dict) and (group == "all" or row.get("level") == group):
                    rows.append((result.get("entity_type") or entity, row))
        if not rows:
            if self._errors:
                return self.say.data_unavailable(), ""
            return self.say.progress([], group), ""
        return self.say.progress(rows, group), ""

    def _plan(self, intent: Intent, pool: ItemPool):
        if not self._needs("get_user_plan"):
            return (yield from self._review(intent, pool))
        (response,) = yield from self._call([Call("get_user_plan", {"hours": intent.hours or 24})])
        result = self._result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        timezone = result.get("timezone") or ""
        slots = [s for s in result.get("slots") or [] if isinstance(s, dict)]
        slots = _slots_in(slots, intent.period, timezone)
        return self.say.plan(as_int(result.get("overdue")), slots, intent.period, timezone,
                             as_int(result.get("total")), intent.hours or 24), ""

    def _review(self, intent: Intent, pool: ItemPool):
        if not self._needs("get_user_reviewable_items"):
            return self.say.not_available_tool(), ""
        (response,) = yield from self._call([Call("get_user_reviewable_items", {"limit": 10})])
        result = self._result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        items = [i for i in result.get("items") or [] if isinstance(i, dict)]
        first = (items[0].get("item") or {}).get("written", "") if items else ""
        return self.say.review(items, as_int(result.get("total"))), first

    def _learned(self, intent: Intent, pool: ItemPool):
        if not self._needs("get_user_learned_items"):
            return self.say.not_available_tool(), ""
        args: dict[str, Any] = {"limit": 10}
        if intent.entity_type:
            args["entity_type"] = intent.entity_type
        if intent.level:
            args["level"] = intent.level
        (response,) = yield from self._call([Call("get_user_learned_items", args)])
        result = self._result(response)
        if result is None:
            return self.say.data_unavailable(), ""
        items = [i for i in result.get("items") or [] if isinstance(i, dict)]
        return self.say.learned(items, bool(result.get("next_page_token"))), ""

    # ---- conversation ---------------------------------------------------------------------------

    def _greeting(self, intent: Intent, pool: ItemPool):
        return self.say.greeting(), self.memory.topic
        yield  # a generator like the others

    def _thanks(self, intent: Intent, pool: ItemPool):
        return self.say.thanks(), self.memory.topic
        yield

    def _help(self, intent: Intent, pool: ItemPool):
        return self.say.help(), self.memory.topic
        yield

    def _grammar(self, intent: Intent, pool: ItemPool):
        return self.say.grammar(intent.term), self.memory.topic
        yield

    def _recall_first(self, intent: Intent, pool: ItemPool):
        """The first word the learner asked about in this conversation (history survives a resume)."""
        asked = asked_terms(self.memory)
        if not asked:
            return self.say.nothing_asked(), self.memory.topic
        return self.say.first_asked(asked[0], asked), self.memory.topic
        yield

    def _simpler(self, intent: Intent, pool: ItemPool):
        """The last answer about the topic again, plainly: the word and its first meaning."""
        topic = self.memory.topic
        if not topic:
            return self.say.ask_term("meaning"), ""
        pool.add(self.memory.topic_items)
        items = yield from self._lookup(topic, pool)
        if not items:
            return self.say.unknown_item(topic, self._unavailable), topic
        return self.say.simply(items[0]), topic

    def _offtopic(self, intent: Intent, pool: ItemPool):
        return self.say.offtopic(), self.memory.topic
        yield

    def _unknown(self, intent: Intent, pool: ItemPool):
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


def romaji_variants(term: str) -> list[str]:
    """Spellings a learner's romaji may stand for: long vowels written short (benkyo → benkyou,
    gakko → gakkou), "ee" for "ei" (sensee), は written as "wa" (konnichiwa → こんにちは)."""
    low = term.lower()
    if not low.isascii() or not low.isalpha():
        return []
    out = []
    if low.endswith("o"):
        out.append(low + "u")
    if "ee" in low:
        out.append(low.replace("ee", "ei"))
    if low.endswith("oo"):
        out.append(low[:-1] + "u")
    if re.search(r"o(?=[kgstdhbpmyrwzj])", low):
        out.append(re.sub(r"o(?=[kgstdhbpmyrwzj])", "ou", low, count=1))
    variants = [v for v in dict.fromkeys(out) if v != low]
    if low.endswith("wa"):
        kana = romaji_to_hiragana(low[:-2])
        if kana:
            variants.append(kana + "は")
    return variants


def _merge_citations(sentences: list[str]) -> list[str]:
    """One citation at the end of a reply made of several answers: "[a] … [b]" → "… [a, b]"."""
    cites = [s for s in sentences if s.startswith("[") and s.endswith("]")]
    if len(cites) < 2:
        return sentences
    ids: list[str] = []
    for c in cites:
        ids += [i.strip() for i in c[1:-1].split(",") if i.strip() and i.strip() not in ids]
    return [s for s in sentences if s not in cites] + [f"[{', '.join(ids[:6])}]"]


def _slots_in(slots: list[dict[str, Any]], period: str, timezone: str) -> list[dict[str, Any]]:
    """The plan slots that fall in the period the learner asked about, in their time zone."""
    if period in ("", "hours", "week"):
        return slots
    try:
        tz = ZoneInfo(timezone) if timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    today = datetime.now(tz).date()
    picked = []
    for slot in slots:
        try:
            start = datetime.fromisoformat(str(slot.get("start", "")).replace("Z", "+00:00"))
        except ValueError:
            continue
        if tz is not None:
            start = start.astimezone(tz)
        if period == "today" and start.date() == today:
            picked.append(slot)
        elif period == "evening" and start.date() == today and start.hour >= 17:
            picked.append(slot)
        elif period == "tomorrow" and start.date() == today + timedelta(days=1):
            picked.append(slot)
    return picked


def describe(item: dict[str, Any]) -> str:
    """One-line summary of an item (used in logs and tests)."""
    return f"{item.get('written')} {item.get('reading')} {meanings(item)[:1]}"
