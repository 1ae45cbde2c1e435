"""Row layout of the `conversations` table and conversions between Turn messages and rows.

Besides turn rows (pk sessionId, sk "<ISO time>#<turnId>") the table holds a few
kinds of bookkeeping rows whose pk starts with "#" (never a valid session id):

- "#stats#<day>#<shard>" / "agg#<row>": per-day counters and latency samples of the turns hashed to the row
  (ADD), anonymous, ttl 400 days; "agg": the summary batches' counters (and, on days before the rows, all).
- "#sessions#<day>#<shard>" / <sessionId>: one row per session and day for listing.
- "#summaries#<day>#<shard>" / <turn sk>: the turn's summary, for ListSummaries.
- "#pending#<shard>" / <turn sk>: turns whose summary has not been made yet.
- "#days" / <day>: days that have rows, so listings skip empty days (ttl 400 days).
- "#optout#<turnId>" / "#": dedupes anonymous counting of opted-out turns.

Counters and listing rows are spread over SHARDS partitions so a busy day
does not make one hot partition.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from google.protobuf import json_format

from kotoba.v1 import conversations_pb2 as pb
from services.tools.declarations import DECLARED_NAMES

SHARDS = 4
# Rows per stats shard-day that turns' counters and latency samples are spread over: DynamoDB bills an update by
# the size of the whole item, so a row holding the whole day's samples would make every turn's write dearer.
STATS_ROWS = 12
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_TEXT = 20_000
MAX_PAYLOAD = 16_000
_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_TOOL_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MIN_YEAR, MAX_YEAR = 2000, 2999
# A turn's started_at may lag (the gateway's turn log retries through an outage) but not by more than this,
# and may lead by clock skew only.
MAX_TURN_AGE = timedelta(days=7)
MAX_TURN_LEAD = timedelta(minutes=10)
# Upper sanity bounds on what one turn can report; far above any real turn.
MAX_MS = 24 * 3600 * 1000.0
MAX_TOKENS = 10_000_000
MAX_COST_USD = 100.0
# Functions a turn may name: every declared function (services/tools/declarations.py, search_dictionary included).
KNOWN_TOOLS = DECLARED_NAMES
UNKNOWN_TOOL = "unknown_function"
_NAME_RE = re.compile(r"[^a-z0-9_]+")

_ser = TypeSerializer()
_de = TypeDeserializer()


class InvalidTurn(ValueError):
    """The turn cannot be stored as given; the message says why."""


def shard(key: str) -> int:
    """The shard of a key, so one day's counters and markers spread over several partitions."""
    return zlib.crc32(key.encode()) % SHARDS


def parse_time(value: str, what: str) -> datetime:
    """A client timestamp as an aware UTC datetime; ValueError when it is not ISO 8601."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTurn(f"{what} must be an RFC 3339 time like 2025-01-31T12:00:00Z, got {value!r}") from None
    # Far from the years this service has data for, date arithmetic (a default range, a day list) overflows.
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidTurn(f"{what} must be between {MIN_YEAR} and {MAX_YEAR}, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def fmt_time(moment: datetime) -> str:
    """The table's sortable UTC timestamp form of a moment."""
    return moment.astimezone(UTC).strftime(TS_FORMAT)


def day_of(ts: str) -> str:
    """The UTC day (YYYY-MM-DD) of a sort key."""
    return ts[:10]


def days_between(start: datetime, end: datetime) -> list[str]:
    """UTC days touched by [start, end), oldest first."""
    days, day = [], start.date()
    last = (end - timedelta(microseconds=1)).date()
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def safe_name(name: str) -> str:
    """A category/tool/mode name usable inside a counter attribute name."""
    return _NAME_RE.sub("_", (name or "unknown").lower())[:48] or "unknown"


def _stats_row_key(day: str, shard_n: int, sk: str) -> dict[str, Any]:
    return {"sessionId": {"S": f"#stats#{day}#{shard_n}"}, "timestamp": {"S": sk}}


def stats_key(day: str, turn_id: str) -> dict[str, Any]:
    """The key of the stats row a turn's own counters and latency samples go to: one of STATS_ROWS rows of
    the turn's shard."""
    row = zlib.crc32(turn_id.encode()) // SHARDS % STATS_ROWS
    return _stats_row_key(day, shard(turn_id), f"agg#{row}")


def stats_batch_key(day: str, turn_id: str) -> dict[str, Any]:
    """The key of the stats row of the turn's shard that summary batches add their counters to (no samples)."""
    return _stats_row_key(day, shard(turn_id), "agg")


def stats_keys(day: str) -> list[dict[str, Any]]:
    """The keys of every stats row of one day (SHARDS x (1 + STATS_ROWS))."""
    return [_stats_row_key(day, n, sk)
            for n in range(SHARDS) for sk in ("agg", *(f"agg#{r}" for r in range(STATS_ROWS)))]


def session_day_key(day: str, session_id: str) -> dict[str, Any]:
    """The key of a session's row in the day's sessions index."""
    return {"sessionId": {"S": f"#sessions#{day}#{shard(session_id)}"}, "timestamp": {"S": session_id}}


def summary_key(sk: str) -> dict[str, Any]:
    """The key of a turn's summary row in the day's summaries index."""
    turn_id = sk.split("#", 1)[1]
    return {"sessionId": {"S": f"#summaries#{day_of(sk)}#{shard(turn_id)}"}, "timestamp": {"S": sk}}


def pending_key(sk: str) -> dict[str, Any]:
    """The key of a turn's "summary pending" marker."""
    turn_id = sk.split("#", 1)[1]
    return {"sessionId": {"S": f"#pending#{shard(turn_id)}"}, "timestamp": {"S": sk}}


def to_attr(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute (floats as decimals)."""
    return _ser.serialize(_decimals(value))


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A row as a DynamoDB item, leaving out None values."""
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values (decimals as int or float)."""
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(round(value, 6)))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decimals(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    return value


@dataclass(frozen=True)
class TurnKey:
    session_id: str
    sk: str

    @property
    def turn_id(self) -> str:
        """The turn id part of the sort key."""
        return self.sk.split("#", 1)[1]

    @property
    def day(self) -> str:
        """The UTC day the turn was logged on."""
        return day_of(self.sk)

    def item_key(self) -> dict[str, Any]:
        """The turn row's primary key."""
        return {"sessionId": {"S": self.session_id}, "timestamp": {"S": self.sk}}


def validate_turn(turn: pb.Turn, now: datetime) -> datetime:
    """Checks ids and mode; returns the turn's start time (now when absent)."""
    if not _ID_RE.match(turn.turn_id):
        raise InvalidTurn("turn_id is required: 1-128 letters, digits or _.:@-")
    if not _ID_RE.match(turn.session_id):
        raise InvalidTurn("session_id is required: 1-128 letters, digits or _.:@-")
    if turn.connection_id and not _ID_RE.match(turn.connection_id):
        raise InvalidTurn("connection_id must be 1-128 letters, digits or _.:@-")
    if turn.mode not in ("", "text", "voice"):
        raise InvalidTurn(f"mode must be text or voice, got {turn.mode!r}")
    if turn.language not in ("", "en", "ja"):
        raise InvalidTurn(f"language must be en or ja, got {turn.language!r}")
    _check_numbers(turn)
    for call in turn.tool_calls:
        if not _TOOL_RE.match(call.name):
            raise InvalidTurn(f"tool_calls.name must be a function name (a-z, 0-9, _), got {call.name[:80]!r}")
    started = parse_time(turn.started_at, "started_at") if turn.started_at else now
    if not now - MAX_TURN_AGE <= started <= now + MAX_TURN_LEAD:
        raise InvalidTurn(f"started_at must be within {MAX_TURN_AGE.days} days before now and "
                          f"{int(MAX_TURN_LEAD.total_seconds() // 60)} minutes after, got {turn.started_at!r}")
    return started


def _check_numbers(turn: pb.Turn) -> None:
    checks: list[tuple[str, float, float]] = [
        (f"latencies.{f.name}", getattr(turn.latencies, f.name), MAX_MS) for f in turn.latencies.DESCRIPTOR.fields]
    checks += [(f"usage.{f.name}", getattr(turn.usage, f.name), MAX_COST_USD if f.name == "cost_usd" else MAX_TOKENS)
               for f in turn.usage.DESCRIPTOR.fields]
    checks += [("tool_calls.latency_ms", c.latency_ms, MAX_MS) for c in turn.tool_calls]
    for name, value, limit in checks:
        if not math.isfinite(value) or not 0 <= value <= limit:
            raise InvalidTurn(f"{name} must be a finite number in 0..{limit:g}, got {value!r}")


def known_tool(name: str) -> str:
    """The name counted and stored for a function call: a model can call a function nobody declared."""
    return name if name in KNOWN_TOOLS else UNKNOWN_TOOL


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…[truncated]"


def turn_row(turn: pb.Turn, user_id: str, started: datetime, ttl: int, pseudonymous: bool) -> dict[str, Any]:
    """The row for an (already redacted) turn."""
    ts = fmt_time(started)
    sk = f"{ts}#{turn.turn_id}"
    return {
        "sessionId": turn.session_id,
        "timestamp": sk,
        "turnId": turn.turn_id,
        "userId": user_id,
        "pseudonymous": pseudonymous,
        "connectionId": turn.connection_id,
        "mode": turn.mode or "text",
        "language": turn.language,
        "question": _clip(turn.question, MAX_TEXT),
        "answer": _clip(turn.answer, MAX_TEXT),
        "intent": turn.intent[:128],
        "retrievedItemIds": list(turn.retrieved_item_ids)[:100],
        "toolCalls": [
            {"name": known_tool(c.name), "argsJson": _clip(c.args_json, MAX_PAYLOAD), "resultJson": _clip(c.result_json, MAX_PAYLOAD),
             "error": c.error, "latencyMs": c.latency_ms}
            for c in turn.tool_calls[:32]
        ],
        "latencies": json_format.MessageToDict(turn.latencies, preserving_proto_field_name=True),
        "usage": json_format.MessageToDict(turn.usage, preserving_proto_field_name=True),
        "startedAt": ts,
        "day": ts[:10],
        "summaryStatus": "pending",
        "ttl": ttl,
    }


def row_to_turn(row: dict[str, Any]) -> pb.Turn:
    """A stored turn row as the Turn message the RPCs return."""
    summary = row.get("summary") or {}
    usage = dict(row.get("usage") or {})
    for key in ("text_in_tokens", "text_out_tokens", "audio_in_tokens", "audio_out_tokens"):
        if key in usage:
            usage[key] = str(usage[key])
    return pb.Turn(
        turn_id=row.get("turnId", ""),
        session_id=row.get("sessionId", ""),
        connection_id=row.get("connectionId", ""),
        user_id=row.get("userId", ""),
        mode=row.get("mode", ""),
        language=row.get("language", ""),
        question=row.get("question", ""),
        answer=row.get("answer", ""),
        retrieved_item_ids=row.get("retrievedItemIds") or [],
        tool_calls=[
            pb.ToolCall(name=c.get("name", ""), args_json=c.get("argsJson", ""), result_json=c.get("resultJson", ""),
                        error=c.get("error", ""), latency_ms=float(c.get("latencyMs") or 0))
            for c in row.get("toolCalls") or []
        ],
        latencies=json_format.ParseDict(row.get("latencies") or {}, pb.Latencies(), ignore_unknown_fields=True),
        usage=json_format.ParseDict(usage, pb.Usage(), ignore_unknown_fields=True),
        started_at=row.get("startedAt", ""),
        summary=summary_message(summary),
        summary_status=row.get("summaryStatus", ""),
        intent=row.get("intent", ""),
    )


def summary_message(summary: dict[str, Any]) -> pb.Summary:
    """A stored summary as the Summary message."""
    return pb.Summary(
        category=summary.get("category", ""),
        topics=summary.get("topics") or [],
        response_type=summary.get("response_type", ""),
        key_points=summary.get("key_points") or [],
    )
