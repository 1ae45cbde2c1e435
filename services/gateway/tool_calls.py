"""The model's tool calls within a turn: announced to the learner, run together through the tools bridge,
their results sent back upstream, and cancelled when the model withdraws them (turns.py hands these on)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.genai import types
from opentelemetry import trace

from services.gateway.citations import tool_status
from services.gateway.link import UpstreamLink
from services.gateway.session_parts import Background, LearnerChannel, SessionInfo
from services.gateway.tools_bridge import ToolBridge
from services.gateway.watchdog import StallWatchdog

if TYPE_CHECKING:
    from services.gateway.turns import TurnState

log = logging.getLogger(__name__)


class ToolFanOut:
    """Runs the tools one model message asks for, and returns their results to the session that asked."""

    def __init__(self, bridge: ToolBridge, info: SessionInfo, link: UpstreamLink, learner: LearnerChannel,
                 background: Background, watchdog: StallWatchdog, non_blocking: bool,
                 current: Callable[[], TurnState], running: Callable[[], TurnState | None]) -> None:
        self.bridge = bridge
        self.info = info
        self.link = link
        self.learner = learner
        self.background = background
        self.watchdog = watchdog
        self.non_blocking = non_blocking
        self.current = current  # the turn in progress, begun if there is none
        self.running = running  # the turn in progress, or None
        self._tasks: dict[str, asyncio.Task] = {}

    async def on_tool_call(self, tc: types.LiveServerToolCall) -> None:
        """Run the model's tool calls concurrently and send their results back."""
        calls = list(tc.function_calls or [])
        if not calls:
            return
        turn = self.current()
        self.watchdog.output()
        if self.non_blocking and not turn.held:
            turn.holding = True
        turn.tools_pending += 1
        for fc in calls:
            await self.learner.frame("tool", name=fc.name,
                                     text=tool_status(fc.name or "", dict(fc.args or {}), self.info.language))
        self.background.spawn(self._run_tools(turn, calls, self.link.generation))

    async def _run_tools(self, turn: TurnState, calls: list[types.FunctionCall], gen: int) -> None:
        started = time.perf_counter()
        with trace.use_span(turn.span, end_on_exit=False):  # each kotoba.tool span sits under the turn
            records = await self.bridge.run(calls, self.info.identity.token, self._tasks)
        turn.tool_calls.extend(records)
        turn.tools_ms += (time.perf_counter() - started) * 1000
        # NON_BLOCKING: the learner is waiting for this answer, so the model is to use it at once.
        sent = await self.link.send_tool_responses(records, gen, "INTERRUPT" if self.non_blocking else "")
        if self.running() is not turn or gen != self.link.generation:
            return  # the turn ended, or was asked again on a new upstream
        turn.tools_pending = max(0, turn.tools_pending - 1)
        if sent:
            self.watchdog.arm("tool_response")
        else:
            log.info("tool results owed to a lost upstream; the turn is asked again",
                     extra={"session_id": self.info.session_id})

    async def on_tool_call_cancellation(self, cancel: types.LiveServerToolCallCancellation) -> None:
        """Cancel tool calls the model withdrew."""
        for call_id in cancel.ids or []:
            task = self._tasks.get(call_id)
            if task is not None:
                task.cancel()
                log.info("tool call cancelled", extra={"call_id": call_id, "session_id": self.info.session_id})

    def cancel_all(self) -> None:
        """Cancel every tool still running, at session end."""
        for task in list(self._tasks.values()):
            task.cancel()
