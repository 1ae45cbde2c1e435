"""DynamoDB access for the conversations table (blocking boto3 calls; the servicer runs them in a thread pool)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from services.common.tables import batch_get, chunks, is_expired, query_all
from services.conversations import records, stats
from services.conversations.erase import Erasure, batch_write
from services.conversations.records import TurnKey, from_item, to_attr, to_item

_NAMES = {"#pk": "sessionId", "#sk": "timestamp", "#ttl": "ttl"}
# Anonymous per-day counters and the days index outlive the turns (dashboards compare months), not forever.
STATS_TTL_DAYS = 400


def _stats_ttl() -> int:
    return int(time.time()) + STATS_TTL_DAYS * 86400


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class ConversationStore:
    """The conversations table: privacy settings, turns and their counters, summaries, reads, erasure."""

    def __init__(self, client, table: str, settings_table: str, connections_table: str = "",
                 usage_table: str = "") -> None:
        self.client = client
        self.table = table
        self.settings_table = settings_table
        # The gateway's tables: erased with the learner's logs (resumption rows hold recent turns).
        self.erasure = Erasure(client, table, connections_table, usage_table)
        self._days_marked: set[str] = set()
        self._samples_full: set[tuple[str, str]] = set()  # stats rows holding their share of samples (counters only)

    # ---- settings (privacy) -------------------------------------------------------------
    def get_privacy(self, user_id: str) -> tuple[bool, bool]:
        """(logging_enabled, pseudonymize); read consistently so a change applies from the next turn."""
        reply = self.client.get_item(TableName=self.settings_table, Key={"userId": {"S": user_id}},
                                     ProjectionExpression="loggingEnabled, pseudonymize", ConsistentRead=True)
        row = from_item(reply.get("Item") or {})
        return bool(row.get("loggingEnabled", True)), bool(row.get("pseudonymize", False))

    def set_privacy(self, user_id: str, logging_enabled: bool, pseudonymize: bool) -> None:
        """Store a learner's privacy choices."""
        self.client.update_item(
            TableName=self.settings_table, Key={"userId": {"S": user_id}},
            UpdateExpression="SET loggingEnabled = :l, pseudonymize = :p",
            ExpressionAttributeValues={":l": {"BOOL": logging_enabled}, ":p": {"BOOL": pseudonymize}},
        )

    # ---- writes on AppendTurn ------------------------------------------------------------
    def session_owners(self, session_id: str) -> set[str]:
        """The user ids (or pseudonyms) on the session's newest live turn rows; empty for a new session."""
        page = self.client.query(TableName=self.table, KeyConditionExpression="#pk = :pk", Limit=20,
                                 ScanIndexForward=False, ExpressionAttributeNames={"#pk": "sessionId", "#ttl": "ttl"},
                                 ExpressionAttributeValues={":pk": {"S": session_id}},
                                 ProjectionExpression="userId, #ttl")
        now = time.time()
        return {r["userId"]["S"] for r in page.get("Items", []) if "userId" in r and not is_expired(r, now)}

    def put_turn(self, row: dict[str, Any]) -> bool:
        """Store a new turn; False when this turn id was already stored (idempotent retry)."""
        try:
            self.client.put_item(TableName=self.table, Item=to_item(row),
                                 ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": "sessionId"})
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def add_turn_counters(self, row: dict[str, Any]) -> None:
        """Count the turn in its day's stats row (mode, tools, cost, latency buckets), and keep its latencies
        as exact samples beside the buckets while the row holds fewer than `stats.row_sample_cap()`: one
        UpdateItem for both, the counters alone once the row is known to be full."""
        key = records.stats_key(row["day"], row["turnId"])
        stats_row = (key["sessionId"]["S"], key["timestamp"]["S"])
        samples = None if stats_row in self._samples_full else stats.sample_update(row)
        if samples is not None:
            try:
                self._add(key, stats.turn_counter_adds(row), ttl=_stats_ttl(), samples=samples)
                return
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
            if len(self._samples_full) > 64 * records.STATS_ROWS:  # days gone by
                self._samples_full.clear()
            self._samples_full.add(stats_row)
        self._add(key, stats.turn_counter_adds(row), ttl=_stats_ttl())

    def _add(self, key: dict[str, Any], adds: dict[str, Any], condition: str | None = None,
             ttl: int | None = None, samples: dict[str, Any] | None = None) -> None:
        names = {f"#a{i}": name for i, name in enumerate(adds)}
        values = {f":a{i}": to_attr(value) for i, value in enumerate(adds.values())}
        update = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds)))
        if samples is not None:  # stats.sample_update: ADD #sN :sN, under its own condition
            update += ", " + samples["UpdateExpression"].removeprefix("ADD ")
            names.update(samples["ExpressionAttributeNames"])
            values.update(samples["ExpressionAttributeValues"])
            condition = samples["ConditionExpression"]
        if ttl is not None:
            update += " SET #ttl = :ttl"
            names["#ttl"], values[":ttl"] = "ttl", {"N": str(ttl)}
        args: dict[str, Any] = dict(
            TableName=self.table, Key=key, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            UpdateExpression=update,
        )
        if condition:
            args["ConditionExpression"] = condition
            if "#pk" in condition:
                names["#pk"] = "sessionId"
        self.client.update_item(**args)

    def touch_session_day(self, row: dict[str, Any]) -> None:
        """Create or update the session's row in the day's sessions index."""
        self.client.update_item(
            TableName=self.table, Key=records.session_day_key(row["day"], row["sessionId"]),
            UpdateExpression=("SET learnerId = :u, lastTurnAt = :ts, #ttl = :ttl, #day = :day, "
                              "startedAt = if_not_exists(startedAt, :ts), "
                              "firstQuestion = if_not_exists(firstQuestion, :q), #mode = if_not_exists(#mode, :m) "
                              "ADD turnCount :one"),
            ExpressionAttributeNames={"#ttl": "ttl", "#day": "day", "#mode": "mode"},
            ExpressionAttributeValues={":u": {"S": row["userId"]}, ":ts": {"S": row["startedAt"]},
                                       ":ttl": {"N": str(row["ttl"])}, ":day": {"S": row["day"]},
                                       ":q": {"S": row["question"][:300]}, ":m": {"S": row["mode"]},
                                       ":one": {"N": "1"}},
        )

    def mark_pending(self, row: dict[str, Any]) -> None:
        """Mark the turn as waiting for its summary, so a restart finds it again."""
        key = records.pending_key(row["timestamp"])
        self.client.put_item(TableName=self.table, Item={**key, "turnSessionId": {"S": row["sessionId"]},
                                                         "ttl": {"N": str(row["ttl"])}})

    def mark_day(self, day: str) -> None:
        """Record that a day has rows (once per process), for the days index the admin reads scan."""
        if day in self._days_marked:
            return
        self.client.put_item(TableName=self.table, Item={"sessionId": {"S": "#days"}, "timestamp": {"S": day},
                                                         "ttl": {"N": str(_stats_ttl())}})
        self._days_marked.add(day)

    def count_opted_out(self, turn_id: str, day: str) -> None:
        """Anonymous count (no user id anywhere); a retried turn id is counted once."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"sessionId": {"S": f"#optout#{turn_id}"}, "timestamp": {"S": "#"},
                      "ttl": {"N": str(int(time.time()) + 2 * 86400)}},
                ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": "sessionId"})
        except ClientError as exc:
            if _conditional_failed(exc):
                return
            raise
        self._add(records.stats_key(day, turn_id), {"turns": 1, "optedOut": 1}, ttl=_stats_ttl())
        self.mark_day(day)

    # ---- summaries -----------------------------------------------------------------------
    def get_turn(self, key: TurnKey) -> dict[str, Any] | None:
        """A live turn row by key; None when it is gone or expired."""
        item = self.client.get_item(TableName=self.table, Key=key.item_key(), ConsistentRead=True).get("Item")
        return from_item(item) if item and not is_expired(item) else None

    def save_summary(self, key: TurnKey, summary: dict[str, Any] | None, status: str) -> bool:
        """Write the summary once; False when the turn is gone (erased) or already summarised."""
        try:
            self.client.update_item(
                TableName=self.table, Key=key.item_key(),
                UpdateExpression="SET summary = :s, summaryStatus = :st",
                ConditionExpression="attribute_exists(#pk) AND summaryStatus = :pending",
                ExpressionAttributeNames={"#pk": "sessionId"},
                ExpressionAttributeValues={":s": to_attr(summary or {}), ":st": {"S": status},
                                           ":pending": {"S": "pending"}},
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def after_summaries(self, done: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Counters, summary rows and marker removal for a batch of summarised turns, in few calls:
        one ADD per stats shard and per session-day, BatchWriteItem for the rest."""
        stats_adds: dict[tuple[str, str], dict[str, Any]] = {}
        session_cats: dict[tuple[str, str], set[str]] = {}
        writes: list[dict[str, Any]] = []
        for row, summary in done:
            key = (row["day"], row["turnId"])
            shard_key = (row["day"], str(records.shard(row["turnId"])))
            adds = stats_adds.setdefault(shard_key, {"sumPending": 0, "_turn": key})
            adds["sumPending"] -= 1
            if summary is None:
                adds["sumFailed"] = adds.get("sumFailed", 0) + 1
            else:
                name = f"c_{records.safe_name(summary['category'])}"
                adds[name] = adds.get(name, 0) + 1
                session_cats.setdefault((row["day"], row["sessionId"]), set()).add(summary["category"])
                writes.append({"PutRequest": {"Item": {
                    **records.summary_key(row["timestamp"]),
                    **to_item({"turnSessionId": row["sessionId"], "category": summary["category"], "summary": summary,
                               "startedAt": row["startedAt"], "ttl": row["ttl"]})}}})
            writes.append({"DeleteRequest": {"Key": records.pending_key(row["timestamp"])}})
        for adds in stats_adds.values():
            day, turn_id = adds.pop("_turn")
            self._add(records.stats_batch_key(day, turn_id), adds, ttl=_stats_ttl())
        for (day, session_id), categories in session_cats.items():
            try:
                self._add(records.session_day_key(day, session_id), {"categories": categories},
                          condition="attribute_exists(#pk)")
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
        self._batch_write(writes)

    def pending_keys(self) -> list[TurnKey]:
        """The keys of every turn still waiting for a summary, over all shards."""
        keys: list[TurnKey] = []
        for n in range(records.SHARDS):
            for item in self._query_all(f"#pending#{n}"):
                keys.append(TurnKey(item["turnSessionId"]["S"], item["timestamp"]["S"]))
        return keys

    def drop_pending(self, key: TurnKey) -> None:
        """Remove a turn's "summary pending" marker."""
        self.client.delete_item(TableName=self.table, Key=records.pending_key(key.sk))

    # ---- reads ---------------------------------------------------------------------------
    def _query_all(self, pk: str, projection: str | None = None, **extra: Any) -> list[dict[str, Any]]:
        args: dict[str, Any] = dict(TableName=self.table, KeyConditionExpression="#pk = :pk",
                                    ExpressionAttributeNames={"#pk": "sessionId"},
                                    ExpressionAttributeValues={":pk": {"S": pk}})
        args.update(extra)
        if projection:  # must use both #sk and #ttl: unused attribute names are an error
            args["ProjectionExpression"] = projection
            args["ExpressionAttributeNames"] = {**args["ExpressionAttributeNames"], "#sk": "timestamp", "#ttl": "ttl"}
        return query_all(self.client.query, **args)

    def session_turns(self, session_id: str) -> list[dict[str, Any]]:
        """Every live turn of a session, oldest first."""
        now = time.time()
        return [from_item(i) for i in self._query_all(session_id) if not is_expired(i, now)]

    def days_with_data(self, first: str, last: str) -> list[str]:
        """Days in [first, last] that have rows, newest first."""
        items = self._query_all("#days", KeyConditionExpression="#pk = :pk AND #sk BETWEEN :a AND :b",
                                ExpressionAttributeNames={"#pk": "sessionId", "#sk": "timestamp"},
                                ExpressionAttributeValues={":pk": {"S": "#days"}, ":a": {"S": first},
                                                           ":b": {"S": last}})
        return sorted((i["timestamp"]["S"] for i in items), reverse=True)

    def session_day_rows(self, day: str, projection: str | None = None) -> list[dict[str, Any]]:
        """The day's session rows over all shards, expired ones left out."""
        now = time.time()
        rows = []
        for n in range(records.SHARDS):
            rows.extend(from_item(i) for i in self._query_all(f"#sessions#{day}#{n}", projection)
                        if not is_expired(i, now))
        return rows

    def stats_rows(self, days: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The stats rows of each day, read in batches and retried while throttled."""
        keys = [k for day in days for k in records.stats_keys(day)]
        out: dict[str, list[dict[str, Any]]] = {}
        for batch in chunks(keys, 100):
            rows, _left = batch_get(self.client, {self.table: {"Keys": batch}}, attempts=8)
            for item in rows.get(self.table, []):
                day = item["sessionId"]["S"].split("#")[2]
                out.setdefault(day, []).append(from_item(item))
        return out

    def query_desc(self, pk_value: str, *, index: str | None = None, below: str | None = None,
                   above: str | None = None, want: int, keep: Callable[[dict[str, Any]], bool] | None = None,
                   max_items: int = 5000) -> list[dict[str, Any]]:
        """Up to `want` live rows of one partition with above <= sk < below, newest first."""
        pk_name = "userId" if index else "sessionId"
        cond = "#p = :p"
        values: dict[str, Any] = {":p": {"S": pk_value}}
        if above or below:
            cond += " AND #sk BETWEEN :lo AND :hi"
            values[":lo"] = {"S": above or "0"}
            values[":hi"] = {"S": below or "\uffff"}
        args: dict[str, Any] = dict(TableName=self.table, KeyConditionExpression=cond, ScanIndexForward=False,
                                    ExpressionAttributeNames={"#p": pk_name, **({"#sk": "timestamp"} if above or below else {})},
                                    ExpressionAttributeValues=values, Limit=min(max(want * 2, 10), 200))
        if index:
            args["IndexName"] = index
        out: list[dict[str, Any]] = []
        seen = 0
        now = time.time()
        while len(out) < want and seen < max_items:
            page = self.client.query(**args)
            for item in page.get("Items", []):
                seen += 1
                if below and item["timestamp"]["S"] == below or is_expired(item, now):
                    continue
                row = from_item(item)
                if keep is None or keep(row):
                    out.append(row)
                    if len(out) >= want:
                        break
            if "LastEvaluatedKey" not in page:
                break
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out

    def merged_desc(self, pks: Iterable[str], *, want: int, **kwargs: Any) -> list[dict[str, Any]]:
        """The newest `want` rows over several partitions (shards or user id + pseudonym), by sk."""
        streams = [self.query_desc(pk, want=want, **kwargs) for pk in pks]
        merged = heapq.merge(*streams, key=lambda r: r["timestamp"], reverse=True)
        return [row for _, row in zip(range(want), merged, strict=False)]

    # ---- erase ---------------------------------------------------------------------------
    def delete_user(self, user_ids: Iterable[str]) -> int:
        """Erase the learner's logs everywhere (erase.Erasure says what goes and what stays)."""
        return self.erasure.delete_user(user_ids)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        batch_write(self.client, self.table, requests)
