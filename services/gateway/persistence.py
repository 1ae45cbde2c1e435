"""A session's row in the `connections` table: finding a session to resume, claiming the row against the
per-learner cap, and writing the latest handle and turns so the learner can come back (here or on another
gateway). Reads at session start are bounded and fail open (docs/protocol.md, storage outages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from services.common import metrics
from services.gateway import furigana
from services.gateway.connections import ConnectionStore, SessionRow, stored_recent
from services.gateway.resumption import ResumptionState
from services.gateway.session_parts import SessionInfo

log = logging.getLogger(__name__)


class SessionPersistence:
    def __init__(self, store: ConnectionStore | None, info: SessionInfo, state: ResumptionState,
                 deadline_s: float, logging_enabled: Callable[[str], Awaitable[bool]]) -> None:
        self.store = store
        self.info = info
        self.state = state
        self.deadline_s = deadline_s
        self.logging_enabled = logging_enabled  # the learner's privacy choice, read per write
        # Row writes: in order (a lock), never cancelled, so the row ends with the latest state.
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task] = set()
        self._handed_over = False
        # The handle and turns the row was last written with: a write with nothing new (the closing one,
        # right after a turn's) only changes the row's state.
        self._written: tuple[str, list[dict[str, str]]] | None = None

    async def bounded(self, coro: Coroutine[Any, Any, Any], what: str, default: Any) -> Any:
        """A DynamoDB call at session start, bounded: when the table is slow or unreachable the learner is
        still answered (the Live engine and tools may well work) and the gap is logged and counted."""
        try:
            return await asyncio.wait_for(coro, self.deadline_s)
        except Exception as exc:  # noqa: BLE001
            log.warning("store unavailable at session start; going on without it",
                        extra={"what": what, "error": repr(exc), "session_id": self.info.session_id})
            metrics.errors.add(1, {"component": "gateway", "code": "store_unavailable"})
            return default

    async def lookup(self, session_id: str, in_memory: SessionRow | None) -> SessionRow | None:
        """The stored row of a session to resume; when the table cannot be read, what this gateway holds."""
        if self.store is None:
            return in_memory
        try:
            return await asyncio.wait_for(self.store.get(session_id), self.deadline_s)
        except Exception as exc:  # noqa: BLE001 - a session on this gateway can still be resumed from memory
            log.warning("connections table unreadable", extra={"error": repr(exc)})
            metrics.errors.add(1, {"component": "gateway", "code": "store_unavailable"})
            return in_memory

    async def attached_elsewhere(self, here: int, open_elsewhere: Callable[[set[str]], int]) -> int:
        """Open sessions of this learner besides this one: `here` (this gateway's) plus those the table shows
        attached on other gateways (`open_elsewhere` filters out what this gateway knows better). When the
        table does not answer in time, `here` alone (fail open: a learner is not refused for a storage outage;
        the per-learner rate limits and the global cap still hold)."""
        if self.store is None:
            return here
        stored = await self.bounded(self._claim_and_list(), "session cap", None)
        return here if stored is None else here + open_elsewhere(stored)

    async def _claim_and_list(self) -> set[str]:
        """Claim the row (a conditional write) first, then list: of two gateways starting this learner's
        sessions at once, each sees the other's claim."""
        uid = self.info.identity.user_id
        if not await self.store.claim(self.info.session_id, uid, language=self.info.language, mode=self.info.mode):
            raise PermissionError("the session row belongs to another learner")
        return await self.store.attached_sessions(uid, exclude=self.info.session_id)

    async def unclaim(self, *, fresh: bool) -> None:
        """Give back the learner's session slot in the store."""
        if self.store is not None:
            await self.bounded(self.store.unclaim(self.info.session_id, self.info.identity.user_id, fresh=fresh),
                               "session cap", None)

    async def shown_history(self) -> list[dict[str, str]]:
        """The resumed session's last turns for the client to redraw after a reload: exactly what the row
        keeps (redacted; nothing for a learner who opted out), whether the state came from the row or from a
        connection still held here."""
        try:
            keep = await asyncio.wait_for(self.logging_enabled(self.info.identity.user_id), self.deadline_s)
        except Exception:  # noqa: BLE001 - unknown choice: show nothing rather than what may not be kept
            keep = False
        shown = [{"role": "tutor" if h.get("role") == "model" else "user", "text": h.get("text", "")}
                 for h in stored_recent(self.state.history, keep)]
        for h in shown:
            if h["role"] == "tutor" and (display := await asyncio.to_thread(furigana.display_if_ready, h["text"])):
                h["display"] = display
        return shown

    def hand_over(self) -> None:
        """Another connection resumed the session: it owns the row from now on."""
        self._handed_over = True

    def write_soon(self, state: str = "attached") -> asyncio.Task:
        """Save the session row in the background, tracked so shutdown can await it."""
        task = asyncio.create_task(self._write(state))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def write_last(self) -> None:
        """The detached row, waited for (bounded: a DynamoDB outage must not hold the connection's slot)."""
        task = self.write_soon(state="detached")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 3 * self.deadline_s)

    async def settle(self) -> None:
        """Wait (bounded) until this session's row writes so far are done."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._writes, return_exceptions=True), 3 * self.deadline_s)

    async def _write(self, state: str) -> None:
        if self.store is None:
            return
        async with self._lock:
            if self._handed_over:
                return
            info = self.info
            uid = info.identity.user_id
            # Built under the lock, so each write carries the newest handle and turns.
            latest = (self.state.handle, list(self.state.history))
            try:
                if latest == self._written and await self.store.set_state(info.session_id, uid, state):
                    return
                # Nothing said yet: no turns to keep or drop, so no settings read.
                keep_turns = bool(self.state.history) and await self.logging_enabled(uid)
                await self.store.put(SessionRow(info.session_id, uid, handle=latest[0], state=state,
                                                language=info.language, mode=info.mode,
                                                recent=stored_recent(latest[1], keep_turns)))
                self._written = latest
            except Exception:  # noqa: BLE001 - losing resumability is not worth failing a turn
                log.warning("connections row not written", exc_info=True)
