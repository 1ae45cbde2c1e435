"""The learner's context (Tools' GetUserContext: settings, progress, reviews), reused briefly per learner.

A learner who reconnects (a new tab, a dropped phone connection, every client after a deploy) opens a new
session seconds after the last one; their context has not changed in any way the system instruction cares
about, so it is read once per `ttl_s` and concurrent opens of one learner share one read. Entries are keyed
by the verified learner id, so no learner can be given another's context; a privacy change (erasure,
settings) drops the learner's entry.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

from kotoba.v1 import tools_pb2

MAX_ENTRIES = 10_000

Fetch = Callable[[], Awaitable[tools_pb2.GetUserContextResponse | None]]


class ContextCache:
    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[str, tuple[float, tools_pb2.GetUserContextResponse]] = \
            collections.OrderedDict()
        self._reading: dict[str, asyncio.Future] = {}

    def invalidate(self, user_id: str) -> None:
        """Drop a learner's cached context, e.g. after their data changed."""
        self._entries.pop(user_id, None)

    async def get(self, user_id: str, fetch: Fetch) -> tools_pb2.GetUserContextResponse | None:
        """Return the learner's context, fetching it when absent or stale."""
        hit = self._entries.get(user_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            self._entries.move_to_end(user_id)
            return hit[1]
        pending = self._reading.get(user_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._reading[user_id] = fut
        ctx = None
        try:
            ctx = await fetch()
        finally:
            # Waiters get what this read got; if it was cancelled (its connection went away), no context —
            # their sessions go on with a minimal one, as when Tools is unavailable.
            self._reading.pop(user_id, None)
            if not fut.done():
                fut.set_result(ctx)
        if ctx is not None and self.ttl_s > 0:  # an unavailable context is asked again next time
            self._entries[user_id] = (time.monotonic(), ctx)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return ctx
