"""The per-day stats rows stay small however busy the day is: DynamoDB bills an UpdateItem by the size of the
whole item it changes (1 write unit per KB, the larger of before and after), and every logged turn updates a
stats row, so a row that collects the day's latency samples would make each turn's write dearer all day long.

Item sizes follow DynamoDB's published rules (attribute name bytes + value bytes; a number is about one byte per
two significant digits plus one; a set the sum of its elements)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from kotoba.v1 import conversations_pb2 as pb
from services.conversations import records, stats

from .conftest import make_turn

KB = 1024


def _number_bytes(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _value_bytes(value: dict) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_bytes(v)
    if kind == "NS":
        return sum(_number_bytes(x) for x in v)
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_bytes(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_value_bytes(x) + 1 for x in v)
    return 1


def item_bytes(item: dict) -> int:
    """An item's size as DynamoDB counts it for write units."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _turn_ids_of_shard(n: int, want: int) -> list[str]:
    ids, i = [], 0
    while len(ids) < want:
        turn_id = f"busy-{i:06d}"
        if records.shard(turn_id) == n:
            ids.append(turn_id)
        i += 1
    return ids


def test_the_row_limits_keep_a_turns_stats_write_under_eight_write_units():
    """With the real limits: the samples a row may hold (two sets; a sample under 100 s is 0.1 ms plus six
    digits, at most 12 significant digits = 7 bytes) and ~2 KB of counters beside them stay under 8 KB."""
    per_row = stats.row_sample_cap()
    assert per_row * 2 * _number_bytes("99999.9999999") + 2 * KB < 8 * KB
    assert per_row * records.STATS_ROWS >= stats.SAMPLE_CAP  # the shard-day still keeps SAMPLE_CAP samples


async def test_a_busy_days_stats_rows_each_stay_small(conv, monkeypatch):
    """A shard-day past its sample cap (480 here, to keep the test quick): the rows a turn's counters and samples
    are written to each stay under 2 KB (one row holding them all: ~6 KB), yet every turn is counted and the
    admin stats still add up."""
    monkeypatch.setattr(stats, "SAMPLE_CAP", 480)
    store = conv.app.servicer.store
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    started = datetime.now(UTC)
    rows = []
    for i, turn_id in enumerate(_turn_ids_of_shard(0, 600)):
        turn = make_turn(turn_id=turn_id, total_ms=100.0 + i % 900)
        rows.append(records.turn_row(turn, "busy-learner", started, 0, False))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store.add_turn_counters, rows))
    day_rows = [item for item in conv.scan() if item["sessionId"]["S"] == f"#stats#{day}#0"]
    assert day_rows
    sizes = sorted(item_bytes(item) for item in day_rows)
    assert sizes[-1] < 2 * KB, sizes
    assert sum(int(item["turns"]["N"]) for item in day_rows) == 600
    kept = sum(len(item.get(stats.TOTAL_SAMPLES, {}).get("NS", [])) for item in day_rows)
    assert 0 < kept <= 480
    reply = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert reply.turns == 600
    assert 100 <= reply.total_ms.p50 <= 1000


async def test_a_day_written_before_the_rows_were_split_is_still_counted(conv, new_turn):
    """Days before the `agg#<n>` rows kept everything in the shard's `agg` row: GetStats adds both."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    conv.ddb.update_item(
        TableName=conv.config.table, Key={"sessionId": {"S": f"#stats#{day}#0"}, "timestamp": {"S": "agg"}},
        UpdateExpression="ADD turns :two, tt_08 :two, fts :ft, tts :tt",
        ExpressionAttributeValues={":two": {"N": "2"}, ":ft": {"NS": ["20.0000001", "30.0000002"]},
                                   ":tt": {"NS": ["60.0000001", "70.0000002"]}})
    assert (await conv.append("learner-1", new_turn(total_ms=65.0))).stored
    reply = await conv.stub.GetStats(pb.GetStatsRequest(), metadata=conv.admin_md)
    assert reply.turns == 3
    assert reply.total_ms.p50 == 65.0  # exact over the old row's samples and the new turn's
