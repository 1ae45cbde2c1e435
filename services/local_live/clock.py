"""The engine's model clock: session rules are stated in model seconds, and tests run it faster
(KOTOBA_LIVE_CLOCK_SPEED=600 turns a 10-minute connection into one real second)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelClock:
    speed: float = 1.0  # model seconds per real second

    def now(self) -> float:
        """Model time now: real time sped up, so hour-long session limits can be tested in seconds."""
        return time.monotonic() * self.speed

    def real(self, model_seconds: float) -> float:
        """The real seconds this many model seconds take."""
        return max(0.0, model_seconds) / self.speed

    async def sleep(self, model_seconds: float) -> None:
        """Sleep for this many model seconds."""
        await asyncio.sleep(self.real(model_seconds))
