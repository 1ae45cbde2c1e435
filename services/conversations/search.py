"""One page of the admin's conversation list: category and free-text filters over sessions, newest first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kotoba.v1 import conversations_pb2 as pb

# Bounds the work one free-text page may do (each candidate session is read).
MAX_TEXT_CANDIDATES = 200
# Candidate sessions read at once: one query each, run side by side on the DynamoDB threads. One after
# another, 168 sessions on a loaded store passed the gateway's 10 s deadline.
READ_WINDOW = 16
# A text search stops reading after this long and returns the page so far with a cursor after the last
# session read (the admin page offers "more"): on a slow store, reading every candidate passed the
# gateway's 10 s deadline and the admin got an error instead of results.
TEXT_SEARCH_BUDGET_S = 4.0

SessionTurns = Callable[[str], Awaitable[list[dict[str, Any]]]]


class ConversationPage:
    """The sessions kept so far and where the next page starts."""

    window = READ_WINDOW

    def __init__(self, category: str, query: str, size: int, session_turns: SessionTurns, *,
                 clock: Callable[[], float] = time.monotonic, budget_s: float = TEXT_SEARCH_BUDGET_S) -> None:
        self.category, self.query, self.size = category, query, size
        self.session_turns = session_turns
        self.clock = clock
        self.deadline = clock() + budget_s
        self.reply = pb.ListConversationsResponse()
        self.seen: set[str] = set()
        self.examined = 0  # sessions whose text was searched: bounded per page
        self.after_key: tuple[str, str] = ("", "")

    async def fill(self, sessions: list[pb.ConversationSummary], after: tuple[str, ...] | None) -> bool:
        """Keep the sessions (newest first) that match, after the cursor; True when the page is full."""
        todo = [s for s in sessions if not (after and (s.started_at, s.session_id) >= after)]
        for start in range(0, len(todo), self.window):
            batch = todo[start:start + self.window]
            texts = await self._read_texts(batch)
            for s in batch:
                if len(self.reply.conversations) == self.size or self.examined >= MAX_TEXT_CANDIDATES:
                    return True
                self._consider(s, texts)
                self.after_key = (s.started_at, s.session_id)
            if texts and self.clock() >= self.deadline and start + self.window < len(todo):
                return True  # out of time: the cursor continues after this batch
        return False

    def _wanted(self, summary: pb.ConversationSummary) -> bool:
        return summary.session_id not in self.seen and (not self.category or self.category in summary.categories)

    async def _read_texts(self, batch: list[pb.ConversationSummary]) -> dict[str, list[str]]:
        """Each of the batch's candidates' turns as question + answer, lower-cased, read concurrently."""
        if not self.query:
            return {}
        ids = [s.session_id for s in batch if self._wanted(s)]
        turns = await asyncio.gather(*(self.session_turns(i) for i in ids))
        return {i: [(t.get("question", "") + "\n" + t.get("answer", "")).lower() for t in ts]
                for i, ts in zip(ids, turns, strict=True)}

    def _consider(self, summary: pb.ConversationSummary, texts: dict[str, list[str]]) -> None:
        if not self._wanted(summary):
            return
        if self.query:
            self.examined += 1
            # Within one turn, as before: a match never spans two turns.
            if not any(self.query in text for text in texts[summary.session_id]):
                return
        self.seen.add(summary.session_id)
        self.reply.conversations.append(summary)
