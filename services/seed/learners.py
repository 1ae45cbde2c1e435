"""Demo learners (`demo-n5`, `demo-n4`, `demo-advanced`): settings, progress rows and per-learner aggregates.

Which items each learner knows, how well, and the review schedule *relative to a base time* come from a
fixed random seed, so every load makes the same learners. The base time is the load time (rounded down to
the minute): "due this evening" has to make sense whatever day the demo runs. A re-load leaves a learner
untouched while its schedule is fresh (younger than `REFRESH_AFTER`) and the selection is unchanged;
otherwise (or with `--reset-learners`) it rewrites the same rows with the schedule shifted to now.

Aggregate rows: `#agg#<type>#<level>` in the learner's partition with `learned` and `learning` counts,
so progress per level is one small Query instead of reading every progress row.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.seed.load import batch_write, level_of

PROFILE_VERSION = 1
REFRESH_AFTER = timedelta(hours=6)
AGG_PREFIX = "#agg#"


@dataclass(frozen=True)
class Stage:
    """Share of one (type, level) group the learner has learned / is learning."""

    item_type: str
    level: str
    learned: float
    learning: float


@dataclass(frozen=True)
class LearnerProfile:
    user_id: str
    display_name: str
    base_level: str
    timezone: str
    language: str
    seed: int
    history_days: int
    stages: tuple[Stage, ...]


def _levels(item_type: str, levels: Iterable[str], learned: float, learning: float) -> tuple[Stage, ...]:
    return tuple(Stage(item_type, level, learned, learning) for level in levels)


PROFILES: tuple[LearnerProfile, ...] = (
    LearnerProfile(
        "demo-n5", "Aiko", "N5", "Europe/Berlin", "en", seed=5005, history_days=21,
        stages=(
            Stage("kana", "none", 0.55, 0.20),
            Stage("word", "N5", 0.12, 0.10),
            Stage("kanji", "N5", 0.08, 0.08),
        ),
    ),
    LearnerProfile(
        "demo-n4", "Ben", "N4", "Asia/Tokyo", "en", seed=4004, history_days=200,
        stages=(
            Stage("kana", "none", 0.95, 0.05),
            Stage("word", "N5", 0.85, 0.10),
            Stage("kanji", "N5", 0.80, 0.12),
            Stage("word", "N4", 0.35, 0.15),
            Stage("kanji", "N4", 0.25, 0.12),
            Stage("sentence", "none", 0.03, 0.02),
        ),
    ),
    LearnerProfile(
        "demo-advanced", "Carmen", "N2", "America/New_York", "en", seed=2002, history_days=900,
        stages=(
            Stage("kana", "none", 1.0, 0.0),
            *_levels("word", ("N5", "N4", "N3"), 0.95, 0.04),
            *_levels("kanji", ("N5", "N4", "N3"), 0.92, 0.05),
            Stage("word", "N2", 0.30, 0.12),
            Stage("kanji", "N2", 0.22, 0.10),
            Stage("sentence", "none", 0.10, 0.04),
        ),
    ),
)
PROFILES_BY_ID = {p.user_id: p for p in PROFILES}


@dataclass(frozen=True)
class PlannedRow:
    item_id: str
    item_type: str
    level: str
    status: str  # learned | learning
    proficiency: int
    next_review_offset: int  # seconds from the base time (negative = overdue)
    learned_offset: int | None  # seconds from the base time, learned rows only


def plan_rows(profile: LearnerProfile, items: Iterable[dict[str, Any]]) -> list[PlannedRow]:
    """The learner's rows, a pure function of the profile and the item ids (fixed seed)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in items:
        groups[(item["type"], level_of(item))].append(item["id"])
    rng = random.Random(profile.seed)
    rows: list[PlannedRow] = []
    for stage in profile.stages:
        ids = sorted(groups.get((stage.item_type, stage.level), []))
        rng.shuffle(ids)
        n_learned = round(len(ids) * stage.learned)
        n_learning = min(len(ids) - n_learned, round(len(ids) * stage.learning))
        for index, item_id in enumerate(ids[:n_learned + n_learning]):
            learned = index < n_learned
            rows.append(PlannedRow(
                item_id=item_id, item_type=stage.item_type, level=stage.level,
                status="learned" if learned else "learning",
                proficiency=rng.randint(60, 100) if learned else rng.randint(5, 59),
                next_review_offset=_review_offset(rng, learned),
                learned_offset=-int(rng.uniform(1, profile.history_days) * 86400) if learned else None,
            ))
    return _with_due_reviews(rows)


def _with_due_reviews(rows: list[PlannedRow]) -> list[PlannedRow]:
    """Every demo learner has something overdue and something due in the next 24 hours, whatever
    the draws gave for this item list ("what should I review today?" always has an answer)."""
    if not rows:
        return rows
    rows = list(rows)
    if not any(r.next_review_offset < 0 for r in rows):
        rows[0] = replace(rows[0], next_review_offset=-3600)
    if not any(0 <= r.next_review_offset < 24 * 3600 for r in rows) and len(rows) > 1:
        rows[1] = replace(rows[1], next_review_offset=3 * 3600)
    return rows


def _review_offset(rng: random.Random, learned: bool) -> int:
    # Some reviews overdue, a good share due within the next 24 hours (spread over hourly slots), the rest later.
    roll = rng.random()
    overdue, today = (0.07, 0.17) if learned else (0.25, 0.60)
    if roll < overdue:
        return -int(rng.uniform(300, (72 if learned else 48) * 3600))
    if roll < today:
        return int(rng.uniform(60, 24 * 3600))
    return int(rng.uniform(1, 45 if learned else 5) * 86400)


def aggregates(rows: Iterable[PlannedRow]) -> Counter:
    """Count rows per (item type, level, status), for the learner's progress aggregates."""
    counts: Counter = Counter()
    for row in rows:
        counts[(row.item_type, row.level, row.status)] += 1
    return counts


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selection_hash(rows: list[PlannedRow]) -> str:
    text = "\n".join(f"{r.item_id}|{r.status}|{r.proficiency}|{r.next_review_offset}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def progress_items(user_id: str, rows: list[PlannedRow], base: datetime) -> list[dict[str, dict]]:
    """Progress rows as DynamoDB items for the progress table."""
    out = []
    for row in rows:
        attrs = {
            "userId": {"S": user_id}, "itemId": {"S": row.item_id}, "type": {"S": row.item_type},
            "level": {"S": row.level}, "status": {"S": row.status}, "proficiency": {"N": str(row.proficiency)},
            "nextReview": {"S": _iso(base + timedelta(seconds=row.next_review_offset))},
        }
        if row.learned_offset is not None:
            attrs["learnedAt"] = {"S": _iso(base + timedelta(seconds=row.learned_offset))}
        out.append(attrs)
    counts = aggregates(rows)
    for item_type, level in sorted({(t, lv) for t, lv, _ in counts}):
        out.append({
            "userId": {"S": user_id}, "itemId": {"S": f"{AGG_PREFIX}{item_type}#{level}"},
            "type": {"S": item_type}, "level": {"S": level},
            "learned": {"N": str(counts[(item_type, level, "learned")])},
            "learning": {"N": str(counts[(item_type, level, "learning")])},
        })
    return out


def _existing_keys(client, table: str, user_id: str) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="userId = :u", ProjectionExpression="itemId",
        ExpressionAttributeValues={":u": {"S": user_id}},
    ):
        keys.update(row["itemId"]["S"] for row in page.get("Items", []))
    return keys


def ensure_learner(client, prefix: str, profile: LearnerProfile, items: list[dict[str, Any]],
                   now: datetime | None = None, reset: bool = False, threads: int = 4) -> dict[str, Any]:
    """Create or refresh one demo learner; returns what happened (for the load report)."""
    settings_table, progress_table = prefix + "settings", prefix + "progress"
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    rows = plan_rows(profile, items)
    selection = _selection_hash(rows)
    current = client.get_item(TableName=settings_table, Key={"userId": {"S": profile.user_id}},
                              ConsistentRead=True).get("Item")
    demo = (current or {}).get("demo", {}).get("M", {})
    if not reset and demo:
        fresh = now - datetime.fromisoformat(demo["scheduleBase"]["S"].replace("Z", "+00:00")) < REFRESH_AFTER
        same = demo.get("version", {}).get("N") == str(PROFILE_VERSION) and demo.get("selection", {}).get("S") == selection
        if fresh and same:
            return {"user": profile.user_id, "rows": len(rows), "action": "unchanged", "written": 0}

    wanted = progress_items(profile.user_id, rows, now)
    stale = _existing_keys(client, progress_table, profile.user_id) - {w["itemId"]["S"] for w in wanted}
    requests = [{"PutRequest": {"Item": w}} for w in wanted]
    requests += [{"DeleteRequest": {"Key": {"userId": {"S": profile.user_id}, "itemId": {"S": k}}}}
                 for k in sorted(stale)]
    result = batch_write(client, progress_table, requests, threads=threads)
    if result.errors:
        raise RuntimeError(f"{profile.user_id}: {len(result.errors)} progress writes failed: {result.errors[:3]}")
    # Settings last: their `demo` marker says the rows above are complete.
    client.put_item(TableName=settings_table, Item={
        "userId": {"S": profile.user_id},
        "baseLevel": {"S": profile.base_level},
        "language": {"S": profile.language},
        "timezone": {"S": profile.timezone},
        "displayName": {"S": profile.display_name},
        "loggingEnabled": {"BOOL": True},
        "pseudonymize": {"BOOL": False},
        "demo": {"M": {
            "version": {"N": str(PROFILE_VERSION)},
            "selection": {"S": selection},
            "scheduleBase": {"S": _iso(now)},
        }},
    })
    return {"user": profile.user_id, "rows": len(rows), "action": "reset" if current else "created",
            "written": result.written}


def learners_fresh(client, prefix: str, now: datetime | None = None) -> bool:
    """Every demo learner exists with this profile version and a schedule younger than REFRESH_AFTER (what
    `ensure_learner` would leave unchanged for an unchanged seed) — one read per learner."""
    now = now or datetime.now(UTC)
    for profile in PROFILES:
        row = client.get_item(TableName=prefix + "settings", Key={"userId": {"S": profile.user_id}},
                              ConsistentRead=True, ProjectionExpression="demo").get("Item") or {}
        demo = row.get("demo", {}).get("M", {})
        if not demo or demo.get("version", {}).get("N") != str(PROFILE_VERSION):
            return False
        if now - datetime.fromisoformat(demo["scheduleBase"]["S"].replace("Z", "+00:00")) >= REFRESH_AFTER:
            return False
    return True


def ensure_learners(client, prefix: str, items: list[dict[str, Any]], *, reset: bool = False,
                    now: datetime | None = None, threads: int = 4) -> list[dict[str, Any]]:
    """Create (or reset) every demo learner profile."""
    return [ensure_learner(client, prefix, p, items, now=now, reset=reset, threads=threads) for p in PROFILES]
