"""The tutor's access to the functions the client declared: calls, their results, dictionary lookups.

Every method that calls a function is a generator (`yield from`): it yields the list of `Call`s and
receives the function responses, so the brain never touches the socket.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from services.local_live.brain.facts import ItemPool, walk_items
from services.local_live.brain.intent import Intent
from services.local_live.brain.lexicon import has_japanese, is_single_kanji, romaji_to_hiragana

UNAVAILABLE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED", "CANCELLED"}
ITEM_TYPES = ("word", "kanji", "kana")


@dataclass
class Call:
    """One function call the tutor asks the client to run."""

    name: str
    args: dict[str, Any]


Results = list[dict[str, Any]]


class Functions:
    """Calls to the declared functions during one turn, and what they returned (errors included)."""

    def __init__(self, declared: dict[str, dict[str, Any]]) -> None:
        self.declared = declared
        self.called: list[str] = []
        self.errors: list[str] = []
        # the turn came without the gateway's context block (a voice turn): search the dictionary too
        self.voice_lookup = False

    def declares(self, name: str) -> bool:
        """The client declared this function, so the tutor may call it."""
        return name in self.declared

    def call(self, calls: list[Call]) -> Generator[list[Call], Results, list[dict[str, Any] | None]]:
        """Results for each call in order; None for calls to functions that were not declared."""
        positions = [n for n, c in enumerate(calls) if c.name in self.declared]
        out: list[dict[str, Any] | None] = [None] * len(calls)
        if not positions:
            return out
        responses = yield [calls[n] for n in positions]
        self.called.extend(calls[n].name for n in positions)
        for n, response in zip(positions, responses, strict=False):
            if isinstance(response, dict) and isinstance(response.get("error"), dict):
                self.errors.append(str(response["error"].get("code") or "UNKNOWN"))
            out[n] = response if isinstance(response, dict) else None
        return out

    @staticmethod
    def result(response: dict[str, Any] | None) -> dict[str, Any] | None:
        """The result object of a function response; None for an error or a malformed response."""
        if not isinstance(response, dict) or "error" in response:
            return None
        result = response.get("result", response)
        return result if isinstance(result, dict) else None

    def absorb(self, pool: ItemPool, responses: list[dict[str, Any] | None]) -> None:
        """Add every item found in the responses to the turn's pool, for the answer to cite."""
        for response in responses:
            result = self.result(response)
            if result is not None:
                pool.add(walk_items(result))

    @property
    def unavailable(self) -> bool:
        """A call failed because the backend was down (not because the item is unknown)."""
        return any(code in UNAVAILABLE_CODES for code in self.errors)

    def lookup_any(self, intent: Intent, pool: ItemPool, types: tuple[str, ...] = ITEM_TYPES
                   ) -> Generator[list[Call], Results, tuple[str, list[dict[str, Any]]]]:
        """(the form found, its items): the unstripped forms first (こんにちは before こんにち: a
        trailing は is only a particle when the longer form is not a word), then the term, then
        the spellings a learner's romaji may stand for (benkyo → benkyou, konnichiwa → こんにちは)."""
        for form in intent.alternates:
            found = pool.find(form, types)
            if not found and has_japanese(form) and self.declares("get_word_details"):
                self.absorb(pool, (yield from self.call([Call("get_word_details", {"written": form})])))
                found = pool.find(form, types)
            if found:
                return form, found
        found = yield from self.lookup(intent.term, pool, types)
        if found or has_japanese(intent.term):
            return intent.term, found
        for variant in romaji_variants(intent.term):
            found = pool.find(variant, types)
            kana = variant if has_japanese(variant) else romaji_to_hiragana(variant)
            if not found and kana and self.declares("get_word_details"):
                self.absorb(pool, (yield from self.call([Call("get_word_details", {"written": kana})])))
                found = pool.find(variant, types)
            if found:
                return variant, found
        return intent.term, []

    def lookup(self, term: str, pool: ItemPool, types: tuple[str, ...] = ITEM_TYPES
               ) -> Generator[list[Call], Results, list[dict[str, Any]]]:
        """Items that are `term`: from the context, else through the declared functions."""
        found = pool.find(term, types)
        if found:
            return found
        calls = self._lookup_calls(term)
        self.absorb(pool, (yield from self.call(calls)))
        found = pool.find(term, types)
        if not found and self.declares("search_words") and not any(c.name == "search_words" for c in calls):
            self.absorb(pool, (yield from self.call([Call("search_words", {"query": term, "limit": 10})])))
            found = pool.find(term, types)
        if not found and not has_japanese(term) and (kana := romaji_to_hiragana(term)) \
                and self.declares("get_word_details"):
            self.absorb(pool, (yield from self.call([Call("get_word_details", {"written": kana})])))
            found = pool.find(term, types)
        return found

    def _lookup_calls(self, term: str) -> list[Call]:
        """The first calls for a term not in the context: its details, or a search for a Latin term."""
        calls: list[Call] = []
        if has_japanese(term) and self.declares("get_word_details"):
            calls.append(Call("get_word_details", {"written": term}))
        elif self.declares("search_words"):
            calls.append(Call("search_words", {"query": term, "limit": 10}))
        if is_single_kanji(term) and self.declares("get_kanji_details"):
            calls.append(Call("get_kanji_details", {"character": term}))
        if (self.voice_lookup or not calls) and self.declares("search_dictionary"):
            calls.append(Call("search_dictionary", {"query": term, "top_k": 5}))
        return calls


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
