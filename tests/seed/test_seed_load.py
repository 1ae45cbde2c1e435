"""`kotoba seed load` against the moto server: idempotence, catalog totals, demo learners, progress output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.common.aws import dynamodb_client
from services.seed.learners import PROFILES, ensure_learners, plan_rows
from services.seed.load import CATALOG_USER, FIXTURE_DIR, level_of, load_items
from services.seed.reader import iter_items


def _all_rows(client, table: str) -> list[dict]:
    rows: list[dict] = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        rows.extend(page["Items"])
    return rows


def _rows_of(client, table: str, user: str) -> list[dict]:
    rows: list[dict] = []
    for page in client.get_paginator("query").paginate(
            TableName=table, KeyConditionExpression="userId = :u", ExpressionAttributeValues={":u": {"S": user}}):
        rows.extend(page["Items"])
    return rows


def test_load_twice_is_idempotent_and_second_run_writes_nothing(tables):
    client = dynamodb_client(tables.aws)
    prefix = tables.aws.table_prefix
    items = list(iter_items(FIXTURE_DIR))
    first = load_items(client, prefix, FIXTURE_DIR, items=items, progress=False)
    assert first.written == len(items) and not first.errors
    learners1 = ensure_learners(client, prefix, items)
    stored1 = _all_rows(client, prefix + "items")
    progress1 = _all_rows(client, prefix + "progress")

    second = load_items(client, prefix, FIXTURE_DIR, items=items, progress=False)
    learners2 = ensure_learners(client, prefix, items)
    assert second.written == 0 and second.unchanged == len(items)
    assert all(learner["action"] == "unchanged" and learner["written"] == 0 for learner in learners2)
    assert [x["rows"] for x in learners1] == [x["rows"] for x in learners2]
    assert len(_all_rows(client, prefix + "items")) == len(stored1) == len(items)
    assert len(_all_rows(client, prefix + "progress")) == len(progress1)

    # Items without shipped vectors wait for the indexer.
    by_id = {row["id"]["S"]: row for row in stored1}
    assert all(row.get("dirty", {}).get("S") == "1" or "embedding" in row for row in by_id.values())
    # Empty GSI keys are left out rather than stored as "".
    assert all(row.get(k, {}).get("S", "x") != "" for row in stored1 for k in ("written", "reading", "romaji"))


def test_changed_item_is_rewritten_and_catalog_counts_match(tables):
    client = dynamodb_client(tables.aws)
    prefix = tables.aws.table_prefix
    items = list(iter_items(FIXTURE_DIR))
    load_items(client, prefix, FIXTURE_DIR, items=items, progress=False)
    changed = [dict(items[0], meanings=["changed meaning"]), *items[1:]]
    again = load_items(client, prefix, FIXTURE_DIR, items=changed, progress=False)
    assert again.written == 1

    expected = Counter((it["type"], level_of(it)) for it in items)
    catalog = {row["itemId"]["S"]: int(row["total"]["N"]) for row in _rows_of(client, prefix + "progress", CATALOG_USER)}
    for (item_type, level), count in expected.items():
        assert catalog[f"#total#{item_type}#{level}"] == count
    assert sum(catalog.values()) == len(items)


def test_demo_learners_rows_aggregates_and_schedule(tables):
    client = dynamodb_client(tables.aws)
    prefix = tables.aws.table_prefix
    items = list(iter_items(FIXTURE_DIR))
    load_items(client, prefix, FIXTURE_DIR, items=items, progress=False)
    now = datetime.now(UTC)
    ensure_learners(client, prefix, items, now=now)
    item_ids = {it["id"] for it in items}
    for profile in PROFILES:
        rows = _rows_of(client, prefix + "progress", profile.user_id)
        plain = [r for r in rows if not r["itemId"]["S"].startswith("#")]
        aggs = {r["itemId"]["S"]: r for r in rows if r["itemId"]["S"].startswith("#agg#")}
        assert len(plain) == len(plan_rows(profile, items)) > 0
        assert {r["itemId"]["S"] for r in plain} <= item_ids
        counts = Counter((r["type"]["S"], r["level"]["S"], r["status"]["S"]) for r in plain)
        for (item_type, level, status), n in counts.items():
            assert int(aggs[f"#agg#{item_type}#{level}"][status]["N"]) == n
        reviews = [datetime.fromisoformat(r["nextReview"]["S"].replace("Z", "+00:00")) for r in plain]
        assert any(t < now for t in reviews), profile.user_id
        assert any(now <= t < now + timedelta(hours=24) for t in reviews), profile.user_id
        settings = client.get_item(TableName=prefix + "settings", Key={"userId": {"S": profile.user_id}})["Item"]
        assert settings["timezone"]["S"] == profile.timezone and settings["baseLevel"]["S"] == profile.base_level

    # The advanced learner knows more N5 words than the N4 learner, who knows more than the beginner.
    def learned(user: str) -> int:
        return sum(1 for r in _rows_of(client, prefix + "progress", user) if r.get("status", {}).get("S") == "learned")
    assert learned("demo-advanced") > learned("demo-n4") > learned("demo-n5") > 0


def test_reset_learners_shifts_schedule_and_keeps_rows(tables):
    client = dynamodb_client(tables.aws)
    prefix = tables.aws.table_prefix
    items = list(iter_items(FIXTURE_DIR))
    base = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    ensure_learners(client, prefix, items, now=base)
    before = {r["itemId"]["S"]: r for r in _rows_of(client, prefix + "progress", "demo-n4")}
    # A stale schedule (older than the refresh window) is moved to the new base; the rows stay the same.
    later = base + timedelta(days=3)
    result = ensure_learners(client, prefix, items, now=later)
    after = {r["itemId"]["S"]: r for r in _rows_of(client, prefix + "progress", "demo-n4")}
    assert set(before) == set(after)
    assert {x["action"] for x in result} == {"reset"}
    some = next(k for k in before if not k.startswith("#"))
    shift = (datetime.fromisoformat(after[some]["nextReview"]["S"].replace("Z", "+00:00"))
             - datetime.fromisoformat(before[some]["nextReview"]["S"].replace("Z", "+00:00")))
    assert shift == timedelta(days=3)


def test_cli_seed_load_prints_progress_and_json(aws_env, tables, tmp_path):
    env = dict(aws_env, KOTOBA_DATA_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "services.cli", "seed", "load", "--fixture"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "seed items" in run.stderr and "item/s" in run.stderr and "100%" in run.stderr
    assert "written" in run.stdout and "demo-advanced" in run.stdout
    again = subprocess.run([sys.executable, "-m", "services.cli", "seed", "load", "--fixture", "--json"],
                           env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(again.stdout)
    assert report["written"] == 0 and report["unchanged"] == report["items"] > 0
    assert json.loads((tmp_path / "seed-load.json").read_text())["items"] == report["items"]
