"""Issue 19: a Tools restart starts from the words of its last full build (KOTOBA_TOOLS_PREFIX_CACHE) instead
of scanning the items table before SERVING, and rebuilds at once in the background, so a word written since
the cache still gets its prefix matches a moment later. A missing or broken cache means a scan, as before."""

from __future__ import annotations

import json

import grpc

from devtools import procs
from kotoba.v1 import tools_pb2 as t
from kotoba.v1 import tools_pb2_grpc


def _search(channel: grpc.Channel, md, query: str) -> list[str]:
    reply = tools_pb2_grpc.ToolsStub(channel).SearchWords(t.SearchWordsRequest(query=query, limit=50), metadata=md)
    return [item.id for item in reply.items]


def test_a_restart_starts_from_the_cache_then_catches_up(tools_env, start_tools, tmp_path):
    cache = tmp_path / "prefix.json"
    env = {**tools_env.env, "KOTOBA_TOOLS_ADDR": f"127.0.0.1:{procs.free_port()}",
           "KOTOBA_TOOLS_PREFIX_CACHE": str(cache)}
    md = tools_env.md("demo-n5")
    proc, channel = start_tools(env, tmp_path / "first.log")  # no cache yet: scans, then writes it
    try:
        procs.wait_until(cache.exists, 30, "prefix cache written")
    finally:
        channel.close()
        procs.stop(proc)
    saved = json.loads(cache.read_text(encoding="utf-8"))
    assert saved["table"] == f"{tools_env.prefix}items" and len(saved["rows"]) > 10

    # A word written behind the service's back (not through UpsertItem, not marked dirty).
    table = f"{tools_env.prefix}items"
    some = next(r for r in saved["rows"] if r["reading"])
    row = tools_env.client.get_item(TableName=table, Key={"id": {"S": some["id"]}})["Item"]
    row.update({"id": {"S": "word:ぬぬぬぬ:ぬぬぬぬ"}, "written": {"S": "ぬぬぬぬ"}, "reading": {"S": "ぬぬぬぬ"},
                "romaji": {"S": "nunununu"}})
    row.pop("dirty", None)
    tools_env.client.put_item(TableName=table, Item=row)
    proc, channel = start_tools(env, tmp_path / "second.log")
    try:
        assert "prefix index loaded from cache" in (tmp_path / "second.log").read_text()
        assert some["id"] in _search(channel, md, some["reading"])  # served from the cache at once
        procs.wait_until(lambda: "word:ぬぬぬぬ:ぬぬぬぬ" in _search(channel, md, "ぬぬぬ"), 30,
                         "the background rebuild to find the new word")
    finally:
        channel.close()
        procs.stop(proc)
        tools_env.client.delete_item(TableName=table, Key={"id": {"S": "word:ぬぬぬぬ:ぬぬぬぬ"}})


def test_a_broken_cache_means_a_scan(tools_env, start_tools, tmp_path):
    cache = tmp_path / "prefix.json"
    cache.write_text('{"version": 1, "table": "', encoding="utf-8")
    env = {**tools_env.env, "KOTOBA_TOOLS_ADDR": f"127.0.0.1:{procs.free_port()}",
           "KOTOBA_TOOLS_PREFIX_CACHE": str(cache)}
    proc, channel = start_tools(env, tmp_path / "tools.log")
    try:
        log = (tmp_path / "tools.log").read_text()
        assert "prefix cache unreadable" in log and "prefix index built" in log
        reading = next(r for r in json.loads(cache.read_text(encoding="utf-8"))["rows"] if r["reading"])["reading"]
        assert _search(channel, tools_env.md("demo-n5"), reading)
    finally:
        channel.close()
        procs.stop(proc)
