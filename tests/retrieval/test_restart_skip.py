"""`make run` with nothing changed: `seed load --if-changed` and `index build --if-changed` skip, and they do
not skip when anything changed — the seed files (new stamp), or one item edited as the admin API does it
(`dirty`). Against moto, with the fixture seed."""

from __future__ import annotations

import gzip
import json
import shutil

from services import cli
from services.common.aws import dynamodb_client
from tests.retrieval.conftest import FIXTURE


def _kotoba(monkeypatch, capsys, aws_env: dict[str, str], tmp_path, *argv: str) -> str:
    for key, value in {**aws_env, "KOTOBA_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(key, value)
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_restart_skips_seed_and_index_only_while_nothing_changed(tables, aws_env, make_indexer, monkeypatch,
                                                                  capsys, tmp_path):
    seed = tmp_path / "seed"
    shutil.copytree(FIXTURE, seed)
    load = ("seed", "load", "--seed-dir", str(seed), "--if-changed", "--no-progress")
    first = _kotoba(monkeypatch, capsys, aws_env, tmp_path, *load)
    assert "skipped" not in first and "written" in first
    indexer = make_indexer(tables)
    assert indexer.up_to_date() == ""  # no snapshot yet
    built = indexer.build()
    assert not built.errors and built.count > 0

    # Nothing changed: both skip.
    assert "skipped" in _kotoba(monkeypatch, capsys, aws_env, tmp_path, *load)
    assert indexer.up_to_date().startswith(f"LATEST {built.version}")

    # One item edited the way the admin API does it: the index is rebuilt, and then matches again.
    client = dynamodb_client(tables.aws)
    client.update_item(TableName=tables.table("items"), Key={"id": {"S": "kana:あ"}},
                       UpdateExpression="SET dirty = :d", ExpressionAttributeValues={":d": {"S": "1"}})
    assert indexer.up_to_date() == ""
    indexer.update()
    assert indexer.up_to_date() != ""

    # The seed files changed: the load runs (new stamp) and the index no longer matches.
    words = seed / "words.jsonl.gz"
    rows = [json.loads(line) for line in gzip.decompress(words.read_bytes()).decode().splitlines()]
    rows[0]["meanings"] = [*rows[0].get("meanings", []), "a meaning added for this test"]
    words.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
    again = _kotoba(monkeypatch, capsys, aws_env, tmp_path, *load)
    assert "skipped" not in again and "1 written" in again
    assert indexer.up_to_date() == ""
    rebuilt = indexer.build()
    assert rebuilt.version != built.version and indexer.up_to_date() != ""

    # A different seed (the store was loaded from another directory) is not mistaken for this one.
    assert "skipped" not in _kotoba(monkeypatch, capsys, aws_env, tmp_path, "seed", "load", "--fixture",
                                    "--if-changed", "--no-progress")
    assert indexer.up_to_date() == ""
