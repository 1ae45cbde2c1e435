import subprocess
import sys
import time

from services.common.aws import dynamodb_client
from services.common.tables import TABLES, create_tables, live_rows


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
