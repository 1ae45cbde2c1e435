"""This gateway's learner sessions by session id, and the per-learner session slots they hold.

A slot is taken synchronously (no await between counting and taking), so
simultaneous `start`s of one learner cannot all pass the cap; it is given back
when the connection ends or its session is resumed elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

# How long a session that ended here is known not to be open, whatever its connections row still says (its
# last "detached" write may lag under load; another gateway resuming it rewrites the row anyway).
ENDED_MEMORY_S = 30.0


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, Any] = {}
        self._slots: dict[str, tuple[str, str]] = {}  # connection id → (learner, session id)
        self._ended: dict[str, float] = {}  # session id → when its connection here ended

    # ---- sessions by id (resume finds the in-memory state here)

    def get(self, session_id: str) -> Any | None:
        """The live session with this id, if it is on this gateway."""
        return self._sessions.get(session_id)

    def values(self) -> list[Any]:
        """A snapshot of the live sessions."""
        return list(self._sessions.values())

    def add(self, session_id: str, session: Any) -> None:
        """Register a live session."""
        self._sessions[session_id] = session

    def remove(self, session_id: str, session: Any) -> None:
        """Forget `session_id` unless another connection has taken it over meanwhile."""
        if self._sessions.get(session_id) is session:
            del self._sessions[session_id]

    def turns_in_flight(self) -> int:
        """Turns being answered in this process right now (admission holds new sessions back past a level)."""
        return sum(1 for s in self._sessions.values() if s.turns.turn is not None)

    # ---- per-learner slots

    def reserve(self, connection_id: str, user_id: str, cap: int, resuming: str = "") -> bool:
        """Take a slot unless the learner holds `cap` already; the slot of a session being resumed (it is
        handed over to this connection) does not count."""
        if self.held(user_id, exclude_connection=connection_id, exclude_session=resuming) >= cap:
            return False
        self._slots[connection_id] = (user_id, "")
        return True

    def bind(self, connection_id: str, session_id: str) -> None:
        """The slot's connection now runs `session_id` (new, or resumed here)."""
        if connection_id in self._slots:
            self._slots[connection_id] = (self._slots[connection_id][0], session_id)
            self._ended.pop(session_id, None)

    def release(self, connection_id: str) -> None:
        """Give the connection's slot back; its session is remembered as ended here for a while."""
        slot = self._slots.pop(connection_id, None)
        if slot is not None and slot[1] and not any(sid == slot[1] for _uid, sid in self._slots.values()):
            self._ended[slot[1]] = time.monotonic()

    def open_elsewhere(self, session_ids: set[str]) -> int:
        """How many of these sessions (attached in the connections table) are not this gateway's: sessions
        held here are counted by `held`, and ones that just ended here are closed whatever their row says."""
        cutoff = time.monotonic() - ENDED_MEMORY_S
        for sid in [s for s, at in self._ended.items() if at < cutoff]:
            del self._ended[sid]
        here = {sid for _uid, sid in self._slots.values()}
        return sum(1 for sid in session_ids if sid not in here and sid not in self._ended)

    def held(self, user_id: str, *, exclude_connection: str = "", exclude_session: str = "") -> int:
        """Slots the learner holds on this gateway, minus the given connection or session."""
        return sum(1 for conn, (uid, sid) in self._slots.items()
                   if uid == user_id and conn != exclude_connection and not (exclude_session and sid == exclude_session))
