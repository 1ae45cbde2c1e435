"""The admin's free-text search reads candidate sessions' turns concurrently, in the serial order's result.

Found by CI: with 168 sessions in range, one DynamoDB query per session one after another passed the
gateway's 10 s deadline on a loaded moto server, and the admin page kept showing the unfiltered rows.
"""

from __future__ import annotations

import asyncio

from kotoba.v1 import conversations_pb2 as pb
from services.conversations.search import MAX_TEXT_CANDIDATES, ConversationPage


def _sessions(n: int) -> list[pb.ConversationSummary]:
    return [pb.ConversationSummary(session_id=f"s{i:03}", started_at=f"2026-12-01T00:{i // 60:02}:{i % 60:02}",
                                   categories=["grammar" if i % 2 else "vocabulary"])
            for i in reversed(range(n))]


class _Turns:
    """Answers after a yield and records how many reads were in flight at once."""

    def __init__(self, matching: set[str]) -> None:
        self.matching, self.in_flight, self.most, self.reads = matching, 0, 0, []

    async def __call__(self, session_id: str) -> list[dict]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.reads.append(session_id)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        return [{"question": "about PARTICLES" if session_id in self.matching else "other", "answer": ""}]


async def test_text_search_reads_sessions_concurrently_and_pages_as_before():
    sessions = _sessions(60)
    matching = {"s050", "s031", "s030", "s007", "s002"}
    turns = _Turns(matching)
    page = ConversationPage("", "particles", 3, turns)
    full = await page.fill(sessions, None)
    assert full and [c.session_id for c in page.reply.conversations] == ["s050", "s031", "s030"]
    assert turns.most > 1  # the reads overlap
    # The cursor is the last session kept, so the next page starts right after it.
    assert page.after_key == (sessions[29].started_at, "s030")
    rest = ConversationPage("", "particles", 3, _Turns(matching))
    assert not await rest.fill(sessions, page.after_key)
    assert [c.session_id for c in rest.reply.conversations] == ["s007", "s002"]


async def test_category_filter_skips_reads_and_candidates_stay_bounded():
    turns = _Turns(set())
    page = ConversationPage("grammar", "particles", 25, turns)
    assert await page.fill(_sessions(2 * MAX_TEXT_CANDIDATES + 50), None)
    assert not page.reply.conversations
    assert len(turns.reads) <= MAX_TEXT_CANDIDATES + page.window
    assert all(int(s[1:]) % 2 for s in turns.reads)  # only the category's sessions are read


async def test_no_query_reads_nothing():
    turns = _Turns(set())
    page = ConversationPage("", "", 5, turns)
    assert await page.fill(_sessions(9), None)
    assert [c.session_id for c in page.reply.conversations] == ["s008", "s007", "s006", "s005", "s004"]
    assert not turns.reads


class _Clock:
    """Advances a fixed step at every session read: a store that is slow to answer, without real waiting."""

    def __init__(self, turns: _Turns, step_s: float) -> None:
        self.now, self.step_s, self.turns = 0.0, step_s, turns

    def __call__(self) -> float:
        return self.now

    async def read(self, session_id: str) -> list[dict]:
        self.now += self.step_s
        return await self.turns(session_id)


async def test_a_slow_text_search_returns_what_it_has_and_goes_on_from_there():
    """Found by CI: with every session's turns to read on a loaded store, the search passed the gateway's
    10 s deadline (504) and the admin saw an error instead of a page. A page now stops reading at its time
    budget; the cursor continues after the last session read, so nothing is skipped or shown twice."""
    sessions = _sessions(100)
    matching = {"s090", "s040", "s003"}
    found: list[str] = []
    after = None
    pages = 0
    while True:
        clock = _Clock(_Turns(matching), step_s=0.5)
        page = ConversationPage("", "particles", 25, clock.read, clock=clock, budget_s=4.0)
        full = await page.fill(sessions, after)
        found += [c.session_id for c in page.reply.conversations]
        pages += 1
        assert clock.now <= 4.0 + page.window * clock.step_s  # one window past the budget at most
        if not full:
            break
        after = page.after_key
    assert found == ["s090", "s040", "s003"] and pages > 1
