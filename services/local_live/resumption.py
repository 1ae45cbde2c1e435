"""Session resumption handles: conversation snapshots kept in memory for a limited time.

A handle names the state after one completed turn. Handles stay valid for their whole lifetime
(two hours by default, like Gemini), so a client may resume from any handle it was given.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    state: dict[str, Any]
    expires_at: float


class ResumptionStore:
    def __init__(self, ttl_seconds: float = 7200.0, max_handles: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_handles = max_handles
        self._clock = clock
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()

    def issue(self, state: dict[str, Any]) -> str:
        """A new handle for this session snapshot, valid until it expires."""
        self._expire()
        handle = "kr-" + secrets.token_urlsafe(24)
        self._snapshots[handle] = Snapshot(state, self._clock() + self.ttl_seconds)
        while len(self._snapshots) > self.max_handles:
            self._snapshots.popitem(last=False)
        return handle

    def restore(self, handle: str) -> dict[str, Any] | None:
        """The state saved under `handle`, or None when it is unknown or expired."""
        snapshot = self._snapshots.get(handle)
        if snapshot is None or snapshot.expires_at <= self._clock():
            self._snapshots.pop(handle, None)
            return None
        return snapshot.state

    def _expire(self) -> None:
        now = self._clock()
        while self._snapshots:
            handle, oldest = next(iter(self._snapshots.items()))
            if oldest.expires_at > now:
                break
            del self._snapshots[handle]

    def __len__(self) -> int:
        return len(self._snapshots)
