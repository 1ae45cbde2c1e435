"""Reconnection policy for the upstream Live session.

- goAway: reconnect proactively between turns with the latest handle (close first,
  then resume: a handle can be refused while the old socket is still open).
- drop: retry with jittered exponential backoff, resuming with the latest handle.
- resumption impossible (no handle, handle refused, not resumable): a fresh
  session primed with the recent turns, so the conversation still continues.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.genai import types


def backoff_delays(attempts: int, base_s: float, cap_s: float = 5.0) -> Iterator[float]:
    """0 for the first try, then base·2^n with ±50% jitter, capped."""
    for n in range(attempts):
        yield 0.0 if n == 0 else min(cap_s, base_s * 2 ** (n - 1)) * random.uniform(0.5, 1.5)


@dataclass
class ResumptionState:
    handle: str = ""
    resumable: bool = True
    go_away: bool = False
    history: list[dict[str, str]] = field(default_factory=list)  # {"role": "user"|"model", "text": ...}

    def update(self, new_handle: str | None, resumable: bool | None) -> bool:
        """Record a sessionResumptionUpdate; True when the handle changed."""
        if resumable is not None:
            self.resumable = bool(resumable)
        if resumable is not False and new_handle and new_handle != self.handle:
            self.handle = new_handle
            return True
        return False

    def resume_handle(self) -> str | None:
        """The handle to resume the model session with, if it is still usable."""
        return self.handle if self.handle and self.resumable else None

    def remember(self, question: str, answer: str, keep: int = 6) -> None:
        """Keep a short recent history to replay when the model session cannot resume."""
        if question:
            self.history.append({"role": "user", "text": question[:1000]})
        if answer:
            self.history.append({"role": "model", "text": answer[:1000]})
        del self.history[:-2 * keep]


def priming_turns(history: list[dict[str, str]]) -> list[types.Content]:
    """The recent turns as Content, sent with turn_complete=False to seed a fresh upstream session."""
    return [types.Content(role="model" if h["role"] == "model" else "user", parts=[types.Part(text=h["text"])])
            for h in history if h.get("text")]
