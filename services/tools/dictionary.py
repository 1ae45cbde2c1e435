"""Dictionary tools: search_words and the word / kanji / sentence details."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from kotoba.v1 import items_pb2, retrieval_pb2, retrieval_pb2_grpc, tools_pb2
from services.common.japanese import KANJI_CHAR, has_japanese
from services.tools.errors import invalid, not_found
from services.tools.prefix import PrefixIndex, norm_latin
from services.tools.records import (
    clamp_limit,
    is_live,
    item_from_row,
    kata2hira,
    level_rank,
    normalize_level,
)
from services.tools.store import Store

log = logging.getLogger(__name__)

MAX_EXAMPLES = 3
MAX_KANJI_WORDS = 5
MAX_HOMOGRAPHS = 5


def _by_level(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (level_rank(r.get("level")), r["id"]))


class _Matches:
    """The words a search found so far (live words at the asked level, up to the limit), and how."""

    def __init__(self, limit: int, level: str) -> None:
        self.limit, self.level = limit, level
        self.items: dict[str, tuple[items_pb2.Item, str]] = {}

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def take(self, row: dict[str, Any], how: str) -> None:
        if (not self.full and row["id"] not in self.items and is_live(row) and row.get("type") == "word"
                and (not self.level or row.get("level") == self.level)):
            self.items[row["id"]] = (item_from_row(row), how)


class Dictionary:
    """The dictionary tools over the items table, the prefix index and (for meanings) retrieval."""

    def __init__(self, store: Store, prefixes: PrefixIndex, retrieval: retrieval_pb2_grpc.RetrievalStub | None,
                 retrieval_timeout: float) -> None:
        self.store = store
        self.prefixes = prefixes
        self.retrieval = retrieval
        self.retrieval_timeout = retrieval_timeout

    # ---- search_words ------------------------------------------------------------------

    async def search_words(self, request: tools_pb2.SearchWordsRequest,
                           metadata: Sequence[tuple[str, str]] = ()) -> tools_pb2.SearchWordsResponse:
        """Words matching a query in Japanese, romaji or English: exact, then prefix, then by meaning."""
        query = request.query.strip()
        if not 1 <= len(query) <= 200:
            raise invalid("query must be 1 to 200 characters")
        language = request.language.strip().lower()
        if language not in ("", "en", "ja"):
            raise invalid(f"language must be 'en' or 'ja'; got {request.language!r}")
        level = normalize_level(request.level)
        found = _Matches(clamp_limit(request.limit, 10, 50), level)
        # The text itself decides the path ("taberu" is romaji even when the learner speaks Japanese).
        japanese = has_japanese(query)
        keys = {"written": query, "reading": kata2hira(query), "romaji": norm_latin(query), "meaning": norm_latin(query)}
        for row in await self._exact_rows(japanese, keys):
            found.take(row, "exact")
        meaning_ids = [] if japanese else self.prefixes.exact_meaning(keys["meaning"], level)
        if not found.full:
            await self._prefix_matches(found, meaning_ids, ("written", "reading") if japanese else ("romaji", "meaning"),
                                       keys)
        if not found.full and self.retrieval is not None:
            degraded = not await self._meaning_matches(query, level, found.limit, found.items, metadata)
        else:
            degraded = self.retrieval is None and not found.full
        response = tools_pb2.SearchWordsResponse(degraded=degraded)
        for item, how in found.items.values():
            response.items.append(item)
            response.matched_by.append(how)
        return response

    async def _exact_rows(self, japanese: bool, keys: dict[str, str]) -> list[dict[str, Any]]:
        """Rows whose written form or reading (Japanese) or romaji (Latin) is the query, by level."""
        if japanese:
            lookups = [("written-index", "written", keys["written"]), ("reading-index", "reading", keys["reading"])]
        else:
            latin = keys["romaji"]
            lookups = [("romaji-index", "romaji", latin)]
            if " " in latin:
                lookups.append(("romaji-index", "romaji", latin.replace(" ", "")))
        rows: list[dict[str, Any]] = []
        for found in await asyncio.gather(*(self.store.run(self.store.by_index, *args) for args in lookups)):
            rows.extend(_by_level(found))
        return rows

    async def _prefix_matches(self, found: _Matches, meaning_ids: list[str], fields: tuple[str, ...],
                              keys: dict[str, str]) -> None:
        """Exact meaning matches first, then forms that start with the query."""
        wanted = [i for i in meaning_ids if i not in found.items][: found.limit]
        prefix_ids: list[str] = []
        for field in fields:
            prefix_ids.extend(self.prefixes.prefix(field, keys[field], found.level, limit=found.limit))
        rows = await self.store.run(self.store.get_items, wanted + prefix_ids[: found.limit * 2])
        for item_id in wanted:
            if item_id in rows:
                found.take(rows[item_id], "exact")
        for item_id in prefix_ids:
            if item_id in rows:
                found.take(rows[item_id], "prefix")

    async def _meaning_matches(self, query: str, level: str, limit: int,
                               found: dict[str, tuple[items_pb2.Item, str]],
                               metadata: Sequence[tuple[str, str]]) -> bool:
        """Retrieval's meaning-level hits; False (degraded) when it is down, slow or refuses."""
        assert self.retrieval is not None
        request = retrieval_pb2.SearchRequest(query=query[:512], top_k=min(50, limit * 2), types=["word"],
                                              levels=[level] if level else [])
        try:
            reply = await self.retrieval.Search(request, timeout=self.retrieval_timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            log.info("retrieval fallback unavailable", extra={"code": exc.code().name})
            return False
        for hit in reply.hits:
            item = hit.item
            if len(found) >= limit:
                break
            if item.id and item.id not in found and item.type == "word" and (not level or item.level == level):
                found[item.id] = (item, "meaning")
        return True

    # ---- details -----------------------------------------------------------------------

    async def word_details(self, request: tools_pb2.GetWordDetailsRequest) -> tools_pb2.GetWordDetailsResponse:
        """A word by id or written form, with its homographs and example sentences."""
        item_id, written = request.id.strip(), request.written.strip()
        homographs: list[dict[str, Any]] = []
        if item_id:
            # Ids are at most 300 characters (records.py); a longer one would reach DynamoDB, whose refusal of
            # an oversized key looks like an outage (UNAVAILABLE) to the caller.
            if not item_id.startswith("word:") or len(item_id) > 300:
                raise invalid(f"id must be a word id such as 'word:食べる:たべる'; got {item_id[:80]!r}")
            row = await self.store.run(self.store.get_item, item_id)
            if not is_live(row) or row.get("type") != "word":
                raise not_found(f"There is no word with id {item_id!r} in the dictionary.")
        elif written:
            if len(written) > 200:
                raise invalid("written must be at most 200 characters")
            by_written, by_reading = await asyncio.gather(
                self.store.run(self.store.by_index, "written-index", "written", written),
                self.store.run(self.store.by_index, "reading-index", "reading", kata2hira(written)),
            )
            rows = [r for r in _by_level(by_written) + _by_level(by_reading) if is_live(r) and r.get("type") == "word"]
            rows = list({r["id"]: r for r in rows}.values())
            if not rows:
                raise not_found(f"There is no word written {written!r} in the dictionary.")
            row, homographs = rows[0], rows[1:1 + MAX_HOMOGRAPHS]
        else:
            raise invalid("give the word's id or its written form")
        assert row is not None
        kanji_ids = [f"kanji:{c}" for c in row.get("kanji") or []]
        example_ids = list(row.get("examples") or [])[:MAX_EXAMPLES]
        related = await self.store.run(self.store.get_items, kanji_ids + example_ids)
        return tools_pb2.GetWordDetailsResponse(
            word=item_from_row(row),
            kanji=[item_from_row(related[i]) for i in kanji_ids if is_live(related.get(i))],
            examples=[item_from_row(related[i]) for i in example_ids if is_live(related.get(i))],
            homographs=[item_from_row(r) for r in homographs],
        )

    async def kanji_details(self, request: tools_pb2.GetKanjiDetailsRequest) -> tools_pb2.GetKanjiDetailsResponse:
        """A kanji by character or id, with common words written with it."""
        character = request.character.strip()
        if character.startswith("kanji:"):
            character = character[len("kanji:"):]
        if len(character) != 1:
            raise invalid(f"character must be exactly one kanji; got {request.character[:80]!r}")
        if not KANJI_CHAR.fullmatch(character):
            raise invalid(f"{character!r} is not a kanji character")
        row = await self.store.run(self.store.get_item, f"kanji:{character}")
        if not is_live(row):
            raise not_found(f"The kanji {character} is not in the dictionary.")
        word_ids = list(row.get("words") or [])[:MAX_KANJI_WORDS]
        words = await self.store.run(self.store.get_items, word_ids)
        return tools_pb2.GetKanjiDetailsResponse(
            kanji=item_from_row(row),
            words=[item_from_row(words[i]) for i in word_ids if is_live(words.get(i))],
        )

    async def sentence_details(self, request: tools_pb2.GetSentenceDetailsRequest
                               ) -> tools_pb2.GetSentenceDetailsResponse:
        """A sentence by id, with the words it contains."""
        item_id = request.id.strip()
        if item_id.isdigit() and len(item_id) <= 12:  # int() of thousands of digits raises ValueError
            item_id = f"sentence:{int(item_id):05d}"
        if not item_id.startswith("sentence:") or len(item_id) > 100:
            raise invalid(f"id must be a sentence id such as 'sentence:00042'; got {request.id[:80]!r}")
        row = await self.store.run(self.store.get_item, item_id)
        if not is_live(row) or row.get("type") != "sentence":
            raise not_found(f"There is no sentence with id {item_id!r} in the dictionary.")
        word_ids = list(row.get("words") or [])
        words = await self.store.run(self.store.get_items, word_ids)
        return tools_pb2.GetSentenceDetailsResponse(
            sentence=item_from_row(row),
            words=[item_from_row(words[i]) for i in word_ids if is_live(words.get(i))],
        )
