"""Session-open admission (admission.py) and the learner context cache (context_cache.py), in-process: FIFO
order, refusal when the wait would exceed the bound, turns holding opens back, no slot lost to a learner who
leaves while queued; one context read per learner shared by concurrent opens. The same behaviour against real
gateways is in tests/abuse/test_abuse_burst.py."""

from __future__ import annotations

import asyncio

import pytest

from kotoba.v1 import tools_pb2
from services.gateway.admission import Admission, Slot
from services.gateway.context_cache import ContextCache


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_opens_are_admitted_first_come_first_served():
    adm = Admission(max_opens=1, max_wait_s=60, turn_saturation=100)
    assert isinstance(await adm.enter(), Slot)  # the slot
    order: list[int] = []

    async def opener(i: int) -> None:
        assert isinstance(await adm.enter(), Slot)
        order.append(i)
        await _settle()
        adm.leave(0.01)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(opener(i)))
        await _settle()  # queued in this order
    assert adm.queued == 5 and order == []
    adm.leave(0.01)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert adm.opening == 0 and adm.queued == 0


async def test_an_open_that_would_wait_past_the_bound_is_refused_with_a_retry_after():
    adm = Admission(max_opens=2, max_wait_s=0.5, turn_saturation=100)
    adm.open_s = 1.0  # opens have been taking a second each
    assert isinstance(await adm.enter(), Slot) and isinstance(await adm.enter(), Slot)
    retry = await adm.enter()  # a full round of opens ahead (1 s) > 0.5 s: told at once, not queued
    assert not isinstance(retry, Slot) and retry >= 1
    assert adm.queued == 0 and adm.opening == 2


async def test_a_queued_open_is_refused_when_its_wait_runs_out_and_frees_nothing():
    adm = Admission(max_opens=1, max_wait_s=0.05, turn_saturation=100)
    adm.open_s = 0.001
    assert isinstance(await adm.enter(), Slot)
    retry = await adm.enter()  # queued (expected wait is tiny), but the holder never finishes
    assert not isinstance(retry, Slot) and retry >= 1
    assert adm.opening == 1 and adm.queued == 0
    adm.leave(None)
    assert isinstance(await adm.enter(), Slot)


async def test_opens_wait_while_turns_are_saturated():
    turns = {"n": 3}
    adm = Admission(max_opens=4, max_wait_s=60, turn_saturation=3, turns_in_flight=lambda: turns["n"])
    waiter = asyncio.create_task(adm.enter())
    await asyncio.sleep(0.1)
    assert not waiter.done() and adm.opening == 0  # slots are free, but the turns come first
    turns["n"] = 2
    assert isinstance(await asyncio.wait_for(waiter, 30), Slot)
    assert adm.opening == 1


async def test_a_learner_leaving_the_queue_gives_up_their_place():
    adm = Admission(max_opens=1, max_wait_s=60, turn_saturation=100)
    assert isinstance(await adm.enter(), Slot)
    gone = asyncio.create_task(adm.enter())
    await _settle()
    stays = asyncio.create_task(adm.enter())
    await _settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    adm.leave(0.01)
    assert isinstance(await asyncio.wait_for(stays, 30), Slot)
    assert adm.opening == 1 and adm.queued == 0


async def test_an_open_costs_from_its_grant_not_from_its_arrival():
    """The burst fix of issue 19 as a unit test: a queued open's wait is not part of what an open costs."""
    now = {"t": 0.0}
    adm = Admission(max_opens=1, max_wait_s=60, turn_saturation=100, clock=lambda: now["t"])
    adm.open_s = 0.05
    first = await adm.enter()
    queued = asyncio.create_task(adm.enter())
    await _settle()
    now["t"] = 3.0  # the first open took 3 s; the second learner waited all that time
    assert isinstance(first, Slot)
    first.release(done=True)
    second = await asyncio.wait_for(queued, 30)
    assert isinstance(second, Slot) and second.granted_at == 3.0
    after_first = adm.open_s
    now["t"] = 3.04  # the second open itself took 40 ms
    second.release(done=True)
    second.release(done=True)  # once only
    assert adm.open_s < after_first  # 40 ms pulled the average down; from arrival it would have been 3.04 s
    assert adm.open_s == pytest.approx(after_first + 0.2 * (0.04 - after_first))
    assert adm.opening == 0


async def test_context_is_read_once_per_learner_and_kept_apart():
    cache = ContextCache(ttl_s=60)
    reads: list[str] = []
    gate = asyncio.Event()

    def fetch_for(user: str):
        async def fetch():
            reads.append(user)
            await gate.wait()
            return tools_pb2.GetUserContextResponse(user_id=user)
        return fetch

    concurrent = [asyncio.create_task(cache.get("a", fetch_for("a"))) for _ in range(3)]
    other = asyncio.create_task(cache.get("b", fetch_for("b")))
    await _settle()
    gate.set()
    results = await asyncio.gather(*concurrent, other)
    assert [r.user_id for r in results] == ["a", "a", "a", "b"]
    assert sorted(reads) == ["a", "b"]  # one read per learner for the concurrent opens
    assert (await cache.get("a", fetch_for("a"))).user_id == "a" and sorted(reads) == ["a", "b"]
    cache.invalidate("a")
    assert (await cache.get("a", fetch_for("a"))).user_id == "a" and sorted(reads) == ["a", "a", "b"]


async def test_an_unavailable_context_is_not_kept():
    cache = ContextCache(ttl_s=60)
    calls = []

    async def unavailable():
        calls.append(1)
        return None

    assert await cache.get("a", unavailable) is None
    assert await cache.get("a", unavailable) is None
    assert len(calls) == 2


async def test_has_room_says_whether_an_open_now_would_be_let_in_at_once():
    """A connection reads its learner's context ahead only then (chat.py): in a burst the reads queue too."""
    busy_turns = 0
    adm = Admission(max_opens=1, max_wait_s=60, turn_saturation=3, turns_in_flight=lambda: busy_turns)
    assert adm.has_room()
    slot = await adm.enter()
    assert isinstance(slot, Slot) and not adm.has_room()  # every slot taken
    assert not adm.queueing()  # taken, but nobody waits: background work need not hold back
    waiting = asyncio.create_task(adm.enter())
    await _settle()
    assert adm.queueing()  # an open waits: the pool's refills and the turn log's records wait too
    slot.release(done=True)
    assert isinstance(await waiting, Slot)
    assert not adm.queueing()
    adm.leave(None)
    assert adm.has_room()
    busy_turns = 3
    assert not adm.has_room()  # turns in flight hold opens back
