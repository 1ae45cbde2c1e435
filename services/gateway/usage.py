"""Usage, cost and limits: tokens by modality per turn, the daily `usage` row, budgets and rate limits."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from google.genai import types

from services.common.learner_settings import with_defaults
from services.common.tables import batch_get
from services.common.waits import wait_event
from services.gateway.config import Prices

log = logging.getLogger(__name__)

# Daily usage rows serve today's budget check and cost reconciliation: kept 13 months, then expire
# (docs/data-model.md, Retention).
USAGE_TTL_DAYS = 400


@dataclass
class TurnUsage:
    text_in_tokens: int = 0
    text_out_tokens: int = 0
    audio_in_tokens: int = 0
    audio_out_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: TurnUsage) -> None:
        """Add another report's token counts to this turn."""
        self.text_in_tokens += other.text_in_tokens
        self.text_out_tokens += other.text_out_tokens
        self.audio_in_tokens += other.audio_in_tokens
        self.audio_out_tokens += other.audio_out_tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, Any]:
        """The usage as JSON-ready data with a rounded cost."""
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 8)
        return out


def _by_modality(details: list[types.ModalityTokenCount] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in details or []:
        name = (d.modality.value if hasattr(d.modality, "value") else str(d.modality or "TEXT")).upper()
        out[name] = out.get(name, 0) + int(d.token_count or 0)
    return out


def from_metadata(meta: types.UsageMetadata, prices: Prices) -> TurnUsage:
    """Tokens by modality from usageMetadata; undetailed counts are taken as text. Text the learner read from
    an audio-only model's transcription arrives as AUDIO response tokens and is billed at the audio price."""
    prompt = _by_modality(meta.prompt_tokens_details)
    response = _by_modality(meta.response_tokens_details)
    if not prompt and meta.prompt_token_count:
        prompt = {"TEXT": int(meta.prompt_token_count)}
    if not response and meta.response_token_count:
        response = {"TEXT": int(meta.response_token_count)}
    usage = TurnUsage(
        text_in_tokens=prompt.get("TEXT", 0) + prompt.get("IMAGE", 0) + prompt.get("VIDEO", 0),
        audio_in_tokens=prompt.get("AUDIO", 0),
        text_out_tokens=response.get("TEXT", 0),
        audio_out_tokens=response.get("AUDIO", 0),
    )
    # Frames are counted with text input (the ledger has no video column) but priced as what they are.
    video = prompt.get("IMAGE", 0) + prompt.get("VIDEO", 0)
    usage.cost_usd = cost(usage, prices) + video * (getattr(prices, "video_in", prices.text_in) - prices.text_in) / 1e6
    return usage


def cost(u: TurnUsage, prices: Prices) -> float:
    """The turn's price in USD from per-million-token prices."""
    return (u.audio_in_tokens * prices.audio_in + u.audio_out_tokens * prices.audio_out
            + u.text_in_tokens * prices.text_in + u.text_out_tokens * prices.text_out) / 1_000_000


def today() -> str:
    """Today's UTC date, the key of the daily spend."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


@dataclass
class _Owed:
    """Turns of one learner and day not yet in the usage row."""

    usage: TurnUsage = field(default_factory=TurnUsage)
    turns: int = 0

    def add(self, u: TurnUsage) -> _Owed:
        self.usage.add(u)
        self.turns += 1
        return self


@dataclass(frozen=True)
class LearnerSettings:
    """The learner's language and JLPT level from their settings row (defaults where it has none)."""

    language: str
    base_level: str


@dataclass(frozen=True)
class DayFigures:
    spent_usd: float
    budget_usd: float | None  # the learner's own daily budget; None: the gateway's
    settings: LearnerSettings


class UsageStore:
    """The `usage` table (pk userId, sk day): ADD counters per turn; reads for the budget check."""

    def __init__(self, client, table: str, settings_table: str) -> None:
        self.client = client
        self.table = table
        self.settings_table = settings_table

    async def day_figures(self, user_id: str) -> DayFigures:
        """Today's spend and the learner's settings row in one BatchGetItem over the usage and settings rows:
        a session open reads both, and on a single-threaded store every request queues."""
        usage_key = {"userId": {"S": user_id}, "day": {"S": today()}}
        settings_key = {"userId": {"S": user_id}}

        def get() -> DayFigures:
            request: dict[str, Any] = {
                self.table: {"Keys": [usage_key], "ProjectionExpression": "costUsd", "ConsistentRead": True},
                self.settings_table: {"Keys": [settings_key],
                                      "ProjectionExpression": "dailyBudgetUsd, #lang, baseLevel",
                                      "ExpressionAttributeNames": {"#lang": "language"}},
            }
            found, left = batch_get(self.client, request, attempts=5)
            if left:
                raise RuntimeError("usage and settings rows not read: keys left unprocessed")
            spent = next(iter(found.get(self.table, [])), {}).get("costUsd", {}).get("N", "0")
            settings = next(iter(found.get(self.settings_table, [])), {})
            budget = settings.get("dailyBudgetUsd", {}).get("N")
            learner = with_defaults({k: settings.get(k, {}).get("S") for k in ("language", "baseLevel")})
            return DayFigures(float(spent), float(budget) if budget is not None else None,
                              LearnerSettings(learner["language"], learner["baseLevel"]))

        return await asyncio.to_thread(get)

    async def logging_enabled(self, user_id: str) -> bool:
        """The learner's privacy choice (Conversations' `settings.loggingEnabled`, default on), read
        consistently so an opt-out applies from the next write."""
        def get() -> bool:
            row = self.client.get_item(TableName=self.settings_table, Key={"userId": {"S": user_id}},
                                       ProjectionExpression="loggingEnabled", ConsistentRead=True).get("Item") or {}
            return bool(row.get("loggingEnabled", {}).get("BOOL", True))

        return await asyncio.to_thread(get)

    async def add(self, user_id: str, u: TurnUsage, *, turns: int = 1, day: str | None = None) -> None:
        """Add turns' tokens and cost to the learner's daily row (`day`, today by default)."""
        def update() -> None:
            self.client.update_item(
                TableName=self.table, Key={"userId": {"S": user_id}, "day": {"S": day or today()}},
                UpdateExpression="ADD turns :one, textInTokens :ti, textOutTokens :to, audioInTokens :ai, "
                                 "audioOutTokens :ao, costUsd :c SET #ttl = :ttl",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":ttl": {"N": str(int(time.time()) + USAGE_TTL_DAYS * 86400)},
                    ":one": {"N": str(turns)}, ":ti": {"N": str(u.text_in_tokens)}, ":to": {"N": str(u.text_out_tokens)},
                    ":ai": {"N": str(u.audio_in_tokens)}, ":ao": {"N": str(u.audio_out_tokens)},
                    ":c": {"N": str(Decimal(repr(u.cost_usd)).quantize(Decimal("1e-10")))},
                })

        await asyncio.to_thread(update)


class TokenBucket:
    """Per-learner rate limit: `rate` units per minute, bursting to one minute's worth."""

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        """Spend tokens if enough have refilled; False when over the rate."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait_s(self, amount: float = 1.0) -> float:
        """Seconds until `amount` can be taken (0 when it can now)."""
        return max(0.0, (amount - self.tokens) / self.rate) if self.rate else 0.0


class Limits:
    """Rate limits shared by all of a learner's connections in this process; budget from the usage table."""

    def __init__(self, store: UsageStore | None, messages_per_minute: int, audio_seconds_per_minute: float,
                 daily_budget_usd: float, *, usage_linger_s: float = 0.0) -> None:
        self.store = store
        self.usage_linger_s = usage_linger_s
        self.messages_per_minute = messages_per_minute
        self.audio_seconds_per_minute = audio_seconds_per_minute
        self.daily_budget_usd = daily_budget_usd
        self._messages: dict[str, TokenBucket] = {}
        self._audio: dict[str, TokenBucket] = {}
        self._spent: dict[tuple[str, str], float] = {}
        self._budget: dict[str, float] = {}
        # Usage writes belong to the gateway, not to a session: a learner who closes right after an answer is
        # still billed (a session's own background tasks are cancelled when it ends).
        self._writes: set[asyncio.Task] = set()
        # Turns waiting for their learner's next usage-row write, by (learner, day): several turns, one write.
        self._owed: dict[tuple[str, str], _Owed] = {}
        self._draining = asyncio.Event()

    def allow_message(self, user_id: str) -> bool:
        """Whether the learner may send another message this minute."""
        return self._messages.setdefault(user_id, TokenBucket(self.messages_per_minute)).take()

    def message_wait_s(self, user_id: str) -> float:
        """Seconds until the learner may send another message (the client shows it as retry_after)."""
        bucket = self._messages.get(user_id)
        return bucket.wait_s() if bucket else 0.0

    def allow_audio(self, user_id: str, seconds: float) -> bool:
        """Whether the learner may send this many more seconds of audio this minute."""
        return self._audio.setdefault(user_id, TokenBucket(self.audio_seconds_per_minute)).take(seconds)

    async def load(self, user_id: str) -> LearnerSettings | None:
        """Read today's spend and any per-learner budget once per session (the store is then kept current);
        returns the learner's language and level from the same read, None when there is no store or it
        could not be read."""
        if self.store is None:
            return None
        try:
            figures = await self.store.day_figures(user_id)
        except Exception:  # noqa: BLE001 - an unreadable usage table must not block learning
            log.warning("usage unreadable; budget check uses in-process figures", exc_info=True)
            return None
        key = (user_id, today())
        self._spent[key] = max(self._spent.get(key, 0.0), figures.spent_usd)
        if figures.budget_usd is not None:
            self._budget[user_id] = figures.budget_usd
        return figures.settings

    async def logging_enabled(self, user_id: str) -> bool:
        """Whether the learner lets their words be kept; False when unknown (an unreadable settings table
        must not put words of a learner who opted out into storage)."""
        if self.store is None:
            return True
        try:
            return await self.store.logging_enabled(user_id)
        except Exception:  # noqa: BLE001
            log.warning("privacy settings unreadable; keeping no turns", exc_info=True)
            return False

    def over_budget(self, user_id: str) -> bool:
        """Whether the learner has spent their daily budget."""
        budget = self._budget.get(user_id, self.daily_budget_usd)
        return self._spent.get((user_id, today()), 0.0) >= budget

    def record_soon(self, user_id: str, u: TurnUsage) -> None:
        """Count a turn's cost in the learner's spend at once, and write it to the usage row in the
        background (outliving the session that spent it) together with the learner's other turns of the
        next `usage_linger_s`."""
        key = (user_id, today())
        self._spent[key] = self._spent.get(key, 0.0) + u.cost_usd
        if self.store is None:
            return
        if (owed := self._owed.get(key)) is not None:
            owed.add(u)
            return
        self._owed[key] = _Owed().add(u)
        task = asyncio.create_task(self._write(key))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def forget(self, user_id: str) -> None:
        """A learner erased their data: their turns not yet in the usage row are not written."""
        for key in [k for k in self._owed if k[0] == user_id]:
            del self._owed[key]

    async def drain(self, timeout_s: float) -> None:
        """Write what is owed now and wait (bounded) for usage writes still in flight, at shutdown."""
        self._draining.set()
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=timeout_s)

    async def _write(self, key: tuple[str, str]) -> None:
        user_id, day = key
        if self.usage_linger_s and not self._draining.is_set():
            await wait_event(self._draining, self.usage_linger_s)
        if (owed := self._owed.pop(key, None)) is None:
            return  # forgotten
        try:
            await self.store.add(user_id, owed.usage, turns=owed.turns, day=day)
        except Exception:  # noqa: BLE001
            log.warning("usage row not updated", extra={"turns": owed.turns}, exc_info=True)
