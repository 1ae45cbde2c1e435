"""Answers to questions about dictionary items: meaning, reading, level, translation, kanji,
examples and comparisons. Each answer is a generator (it may call functions) returning
(sentences, the topic the answer was about)."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from services.local_live.brain.compose import Composer
from services.local_live.brain.facts import ItemPool, stems, walk_items
from services.local_live.brain.functions import Call, Functions, Results
from services.local_live.brain.intent import Intent
from services.local_live.brain.lexicon import KANJI, has_japanese, is_single_kanji
from services.local_live.brain.memory import Memory

Answer = Generator[list[Call], Results, tuple[list[str], str]]
Items = list[dict[str, Any]]


class DictionaryAnswers:
    """The dictionary intents of one turn, answered from the context and the declared functions."""

    def __init__(self, say: Composer, memory: Memory, functions: Functions) -> None:
        self.say = say
        self.memory = memory
        self.fn = functions
        self.text = ""  # the whole learner message, to tell a sentence from a word

    def meaning(self, intent: Intent, pool: ItemPool) -> Answer:
        """What a word means (a grammar pattern gets the no-grammar answer)."""
        if intent.term.startswith("〜"):
            return self.say.grammar(intent.term), self.memory.topic
        term, items = yield from self.fn.lookup_any(intent, pool)
        if not items:
            if intent.guessed and not self.fn.unavailable and (
                    len(self.text) > len(term) + 3 or len(term) >= 7 or re.search("[のをにでがへ]", term[1:-1])):
                # a Japanese sentence that is no dictionary question ("おすすめのレストランは？")
                return self.say.offtopic(), self.memory.topic
            return self.say.unknown_item(term, self.fn.unavailable), term
        return self.say.meaning(items), items[0].get("written", term)

    def reading(self, intent: Intent, pool: ItemPool) -> Answer:
        """How a word is read; for a single kanji, its on/kun readings."""
        if is_single_kanji(intent.term) and self.fn.declares("get_kanji_details"):
            # A single kanji's readings are its on/kun readings, not one word's reading.
            return (yield from self.kanji_info(Intent("kanji_info", [intent.term], aspect="readings"), pool))
        term, items = yield from self.fn.lookup_any(intent, pool)
        if not items:
            return self.say.unknown_item(term, self.fn.unavailable), term
        if items[0].get("type") == "kanji" or (is_single_kanji(intent.term) and not items[0].get("reading")):
            return (yield from self.kanji_info(Intent("kanji_info", [intent.term], aspect="readings"), pool))
        return self.say.reading(items), items[0].get("written", intent.term)

    def level(self, intent: Intent, pool: ItemPool) -> Answer:
        """The JLPT level of a word or kanji, and where that level comes from."""
        if intent.entity_type == "kanji" and is_single_kanji(intent.term):
            (response,) = yield from self.fn.call([Call("get_kanji_details", {"character": intent.term})])
            self.fn.absorb(pool, [response])
            kanji = pool.find(intent.term, ("kanji",))
            if kanji:
                return self.say.level(kanji), intent.term
        term, items = yield from self.fn.lookup_any(intent, pool)
        if not items:
            return self.say.unknown_item(term, self.fn.unavailable), term
        return self.say.level(items), items[0].get("written", term)

    def translate(self, intent: Intent, pool: ItemPool) -> Answer:
        """The Japanese word for an English one."""
        english = intent.term
        if has_japanese(english):
            return (yield from self.meaning(intent, pool))
        items = pool.by_meaning(english)
        if not items:
            calls = [Call("search_words", {"query": english, "language": "en", "limit": 10})]
            if not self.fn.declares("search_words"):
                calls = [Call("search_dictionary", {"query": english, "types": ["word"], "top_k": 5})]
            self.fn.absorb(pool, (yield from self.fn.call(calls)))
            items = pool.by_meaning(english)
        if not items:
            return self.say.unknown_item(f"“{english}”", self.fn.unavailable), english
        return self.say.translate(english, items), items[0].get("written", english)

    def kanji_info(self, intent: Intent, pool: ItemPool) -> Answer:
        """Strokes, meaning and readings of up to four kanji in the term."""
        chars = [c for c in intent.term if KANJI.match(c)][:4]
        if not chars:
            return self.say.not_kanji(intent.term), intent.term
        calls = [Call("get_kanji_details", {"character": c}) for c in chars]
        responses = yield from self.fn.call(calls)
        out: list[str] = []
        for char, response in zip(chars, responses, strict=True):
            result = self.fn.result(response) or {}
            pool.add(walk_items(result))
            kanji = result.get("kanji") if isinstance(result.get("kanji"), dict) else None
            if kanji is None:
                found = pool.find(char, ("kanji",))
                kanji = found[0] if found else None
            if kanji is None:
                out += self.say.unknown_item(char, self.fn.unavailable)
                continue
            words = [w for w in result.get("words") or [] if isinstance(w, dict)]
            out += self.say.kanji(kanji, intent.aspect or "all", words)
        return out, intent.term

    def kanji_for(self, intent: Intent, pool: ItemPool) -> Answer:
        """The kanji for an English meaning (or the word written with it, when no kanji matches)."""
        english = intent.term
        if has_japanese(english):
            return (yield from self.kanji_info(Intent("kanji_info", [english], aspect="all"), pool))
        kanji = pool.by_meaning(english, ("kanji",))
        if not kanji:
            calls = [Call("search_dictionary", {"query": english, "types": ["kanji"], "top_k": 5})]
            if not self.fn.declares("search_dictionary"):
                calls = [Call("search_words", {"query": english, "language": "en", "limit": 10})]
            self.fn.absorb(pool, (yield from self.fn.call(calls)))
            kanji = pool.by_meaning(english, ("kanji",))
        if not kanji:
            # A one-kanji word with that meaning names the kanji; fetch its details to confirm.
            words = [w for w in pool.by_meaning(english) if is_single_kanji(w.get("written", ""))]
            if words and self.fn.declares("get_kanji_details"):
                self.fn.absorb(pool, (yield from self.fn.call(
                    [Call("get_kanji_details", {"character": words[0]["written"]})])))
                kanji = pool.by_meaning(english, ("kanji",))
            if not kanji and words:
                return self.say.word_written_as(english, words[0]), words[0]["written"]
        if not kanji:
            return self.say.unknown_item(f"“{english}”", self.fn.unavailable), english
        return self.say.kanji_for(english, kanji), kanji[0].get("written", "")

    def example(self, intent: Intent, pool: ItemPool) -> Answer:
        """Example sentences with a word or a grammar pattern."""
        term = intent.term
        if term.startswith("〜"):
            return (yield from self._pattern_examples(intent, pool))
        sentences = yield from self._linked_examples(term, pool)
        if not sentences:
            sentences = yield from self._searched_examples(term, pool)
        if not sentences:
            if self.fn.unavailable:
                return self.say.unknown_item(term, True), term
            return self.say.no_examples(term), term
        return self.say.examples(term, sentences, intent.level), term

    def _pattern_examples(self, intent: Intent, pool: ItemPool) -> Answer:
        """A grammar pattern: no dictionary entry, but example sentences may contain it."""
        term = intent.term
        bare = term.lstrip("〜")
        calls = [Call("search_dictionary", {"query": bare, "types": ["sentence"], "top_k": 10})]
        self.fn.absorb(pool, (yield from self.fn.call(calls)))
        found = pool.sentences_with([bare])
        if not found:
            return self.say.grammar(term, examples=False), self.memory.topic
        return self.say.examples(term, found, intent.level) + self.say.grammar_note(term), self.memory.topic

    def _linked_examples(self, term: str, pool: ItemPool) -> Generator[list[Call], Results, Items]:
        """The word's own linked examples are the best ones: ask for them first, then the context's."""
        sentences: Items = []
        if has_japanese(term) and self.fn.declares("get_word_details"):
            (response,) = yield from self.fn.call([Call("get_word_details", {"written": term})])
            result = self.fn.result(response) or {}
            pool.add(walk_items(result))
            sentences = [s for s in result.get("examples") or [] if isinstance(s, dict)]
        if not sentences:
            sentences = pool.sentences_with(stems(term))
        if not sentences:
            words = pool.find(term, ("word",))
            linked = [pool.get(i) for w in words for i in w.get("example_ids") or w.get("examples") or []]
            sentences = [s for s in linked if s]
        return sentences

    def _searched_examples(self, term: str, pool: ItemPool) -> Generator[list[Call], Results, Items]:
        """Sentences a search finds that contain the term or one of its forms."""
        calls = []
        if self.fn.declares("search_dictionary"):
            calls.append(Call("search_dictionary", {"query": term, "types": ["sentence"], "top_k": 5}))
        if not calls and self.fn.declares("search_words"):
            calls.append(Call("search_words", {"query": term, "limit": 5}))
        responses = yield from self.fn.call(calls)
        sentences: Items = []
        for call, response in zip(calls, responses, strict=True):
            result = self.fn.result(response) or {}
            pool.add(walk_items(result))
            if call.name == "get_word_details":
                sentences += [s for s in result.get("examples") or [] if isinstance(s, dict)]
        forms = stems(term)
        for word in pool.find(term, ("word",)):
            forms += stems(word.get("written", "")) + [word.get("reading", "")]
        sentences += [s for s in pool.sentences_with(forms) if s not in sentences]
        return sentences

    def compare(self, intent: Intent, pool: ItemPool) -> Answer:
        """Two words side by side: meanings, levels, a shared reading or meaning."""
        a, b = intent.terms[:2]
        missing = [t for t in (a, b) if not pool.find(t)]
        calls = []
        for term in missing:
            if has_japanese(term) and self.fn.declares("get_word_details"):
                calls.append(Call("get_word_details", {"written": term}))
            elif self.fn.declares("search_words"):
                calls.append(Call("search_words", {"query": term, "limit": 10}))
            elif self.fn.declares("search_dictionary"):
                calls.append(Call("search_dictionary", {"query": term, "top_k": 5}))
        if calls:
            self.fn.absorb(pool, (yield from self.fn.call(calls)))
        pairs = [(a, pool.find(a)), (b, pool.find(b))]
        if not pairs[0][1] and not pairs[1][1]:
            return self.say.unknown_item(self.say.pair(a, b), self.fn.unavailable), a
        return self.say.compare(pairs), a
