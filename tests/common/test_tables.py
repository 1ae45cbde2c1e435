import subprocess
import sys
import time

from services.common.aws import dynamodb_client
from services.common.tables import TABLES, batch_get, create_tables, live_rows


def test_create_tables_is_idempotent(config):
    client = dynamodb_client(config.aws)
    first = create_tables(client, config.aws.table_prefix)
    assert set(first.values()) == {"created"}
    second = create_tables(client, config.aws.table_prefix)
    assert set(second.values()) == {"exists"}
    desc = client.describe_table(TableName=config.table("conversations"))["Table"]
    assert {i["IndexName"] for i in desc["GlobalSecondaryIndexes"]} == {"userId-timestamp-index"}
    assert {t.name for t in TABLES} == {"items", "progress", "settings", "conversations", "connections", "usage"}


def test_cli_create_tables(aws_env):
    run = lambda: subprocess.run([sys.executable, "-m", "services.cli", "db", "create-tables", "--json"],  # noqa: E731
                                 env=aws_env, capture_output=True, text=True, check=True)
    assert '"created"' in run().stdout
    assert '"created"' not in run().stdout


def test_expired_rows_filtered_on_read(tables):
    client = dynamodb_client(tables.aws)
    name = tables.table("connections")
    now = int(time.time())
    client.put_item(TableName=name, Item={"sessionId": {"S": "old"}, "userId": {"S": "u"}, "ttl": {"N": str(now - 5)}})
    client.put_item(TableName=name, Item={"sessionId": {"S": "new"}, "userId": {"S": "u"}, "ttl": {"N": str(now + 600)}})
    rows = client.query(TableName=name, IndexName="userId-index", KeyConditionExpression="userId = :u",
                        ExpressionAttributeValues={":u": {"S": "u"}})["Items"]
    assert len(rows) == 2  # the store keeps expired rows (dynalite never deletes them)
    assert [r["sessionId"]["S"] for r in live_rows(rows)] == ["new"]


def test_query_all_follows_every_page(tables):
    """Client and resource Table both page with LastEvaluatedKey; query_all returns every row."""
    from boto3.dynamodb.conditions import Key

    from services.common.aws import dynamodb_resource
    from services.common.tables import query_all

    client = dynamodb_client(tables.aws)
    name = tables.table("progress")
    for i in range(7):
        client.put_item(TableName=name, Item={"userId": {"S": "u"}, "itemId": {"S": f"i{i}"}})
    rows = query_all(client.query, TableName=name, KeyConditionExpression="userId = :u",
                     ExpressionAttributeValues={":u": {"S": "u"}}, Limit=2)  # 4 pages
    assert sorted(r["itemId"]["S"] for r in rows) == [f"i{i}" for i in range(7)]
    table = dynamodb_resource(tables.aws).Table(name)
    rows = query_all(table.query, KeyConditionExpression=Key("userId").eq("u"), Limit=3)
    assert len(rows) == 7


class _Throttling:
    """A BatchGetItem that answers one key per call and leaves the rest unprocessed, as DynamoDB may."""

    def __init__(self) -> None:
        self.calls = 0

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's name
        self.calls += 1
        (table, spec), = RequestItems.items()
        first, *rest = spec["Keys"]
        return {"Responses": {table: [first]}, "UnprocessedKeys": {table: {**spec, "Keys": rest}} if rest else {}}


def test_batch_get_asks_again_for_unprocessed_keys_and_reports_what_is_left():
    keys = [{"id": {"S": str(i)}} for i in range(3)]
    client = _Throttling()
    found, left = batch_get(client, {"t": {"Keys": keys, "ConsistentRead": True}}, attempts=5)
    assert found == {"t": keys} and left == {} and client.calls == 3
    client = _Throttling()
    found, left = batch_get(client, {"t": {"Keys": keys, "ConsistentRead": True}}, attempts=2)
    assert found == {"t": keys[:2]} and left == {"t": {"Keys": keys[2:], "ConsistentRead": True}} and client.calls == 2
