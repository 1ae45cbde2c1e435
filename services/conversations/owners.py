"""Whose each recently logged session is, as its turn rows say.

AppendTurn refuses a turn for a session whose rows name another learner; reading the session's newest rows
for that costs a Query per turn. A session's owner does not change while its rows live, so once this process
has stored a turn of a session (or read its rows) it remembers the owner, and the learner's later turns skip
the read. Remembering is never looser than the rows: a session the rows give no owner is not remembered, and
an erased learner's sessions are forgotten with their rows. Turns of one session that arrive together (a
learner's quick turns, or the gateway's turn log catching up after an outage) share one read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable


class SessionOwners:
    def __init__(self, read: Callable[[str], Awaitable[set[str]]], size: int = 10_000) -> None:
        self.read = read  # the session's owners from its newest live rows (the store)
        self.size = size
        self._owner: OrderedDict[str, str] = OrderedDict()  # least recently used first
        self._reading: dict[str, asyncio.Future[set[str]]] = {}  # reads in flight, by session

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._owner

    async def of(self, session_id: str) -> set[str]:
        """The user ids (or pseudonyms) the session's rows name; empty for a new session."""
        owner = self._owner.get(session_id)
        if owner is not None:
            self._owner.move_to_end(session_id)
            return {owner}
        reading = self._reading.get(session_id)
        if reading is None:
            reading = self._reading[session_id] = asyncio.ensure_future(self.read(session_id))
            reading.add_done_callback(lambda _: self._reading.pop(session_id, None))
        owners = set(await asyncio.shield(reading))  # a caller that goes away leaves the read to the others
        if len(owners) == 1:
            self.note(session_id, next(iter(owners)))
        return owners

    def note(self, session_id: str, owner: str) -> None:
        """A turn of the session was stored naming `owner`."""
        self._owner[session_id] = owner
        self._owner.move_to_end(session_id)
        while len(self._owner) > self.size:
            self._owner.popitem(last=False)

    def forget(self, ids: Iterable[str]) -> None:
        """The learner's rows were erased: their sessions are nobody's again."""
        gone = set(ids)
        for session_id in [s for s, owner in self._owner.items() if owner in gone]:
            del self._owner[session_id]
