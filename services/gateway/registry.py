"""This gateway's learner sessions by session id, and the per-learner session slots they hold.

A slot is taken synchronously (no await between counting and taking), so
simultaneous `start`s of one learner cannot all pass the cap; it is given back
when the connection ends or its session is resumed elsewhere.
"""

from __future__ import annotations

from typing import Any


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, Any] = {}
        self._slots: dict[str, tuple[str, str]] = {}  # connection id → (learner, session id)

    # ---- sessions by id (resume finds the in-memory state here)

    def get(self, session_id: str) -> Any | None:
        return self._sessions.get(session_id)

    def values(self) -> list[Any]:
        return list(self._sessions.values())

    def add(self, session_id: str, session: Any) -> None:
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
        if connection_id in self._slots:
            self._slots[connection_id] = (self._slots[connection_id][0], session_id)

    def release(self, connection_id: str) -> None:
        self._slots.pop(connection_id, None)

    def held(self, user_id: str, *, exclude_connection: str = "", exclude_session: str = "") -> int:
        return sum(1 for conn, (uid, sid) in self._slots.items()
                   if uid == user_id and conn != exclude_connection and not (exclude_session and sid == exclude_session))
