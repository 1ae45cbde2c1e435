"""Storage faults: DynamoDB unreachable for ~10 s under live sessions, and a corrupted snapshot published."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest

from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.common.auth import auth_metadata
from services.gateway.client import ChatClient

OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def behind_proxy(stack, kit):
    """Tools, conversations and a gateway whose DynamoDB endpoint is a pausable proxy in front of moto."""
    proxy = kit.TcpProxy(stack.base_env["AWS_ENDPOINT_URL_DYNAMODB"]).start()
    side = kit.derived_stack(stack, "dynamo-outage", AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint,
                             KOTOBA_TOOLS_ADDR=kit.new_addr(), KOTOBA_CONVERSATIONS_ADDR=kit.new_addr())
    try:
        side.start_service("tools")
        side.start_service("conversations")
        side.gateway_addr = side.start_gateway()
        yield side, proxy
    finally:
        side.stop_all()
        proxy.stop()


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
async def test_dynamodb_unreachable_for_ten_seconds(behind_proxy, stack, kit, mode):
    side, proxy = behind_proxy
    own = await asyncio.to_thread(kit.progress_fingerprint, stack, "demo-n4")
    sessions: dict[str, int] = {}

    async def ask(client: ChatClient, text: str):
        result = await client.ask(text, wait_s=60)
        assert result.usage or result.errors, result.as_dict()
        if result.usage:
            sessions[client.session["session_id"]] = sessions.get(client.session["session_id"], 0) + 1
        for e in result.errors:
            assert e.get("code") and e.get("message"), e  # a clear error, never a silent failure
        return result

    client = await ChatClient.open(side.url, side.token("demo-n4"))
    async with client:
        first = await ask(client, "How is my N5 progress?")
        assert kit.mentions(first.text, own), first.text
        proxy.pause(mode)
        outage_started = time.monotonic()
        try:
            during = await ask(client, "How is my N5 progress?")
            if not during.errors:
                assert not kit.mentions(during.text, "3 of 22")  # nothing invented or borrowed
            await ask(client, "What does 泳ぐ mean?")
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        finally:
            proxy.resume()
        # Back without manual steps.
        for _ in range(30):
            again = await ask(client, "How is my N5 progress?")
            if kit.mentions(again.text, own):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("the learner's data never came back after the outage")
    for session, sent in sessions.items():
        await kit.assert_all_turns_stored(side, sent, session_id=session, within_s=30)


async def test_new_session_while_dynamodb_is_unreachable_gets_a_clear_answer(behind_proxy, kit):
    side, proxy = behind_proxy
    proxy.pause("refuse")
    try:
        async with await ChatClient.open(side.url, side.token(kit.learner("flt-dyn-new"))) as late:
            await late.send(type="text", text="What does 泳ぐ mean?")
            frame = await late.recv_json(wait_s=45)
            assert frame["type"] in ("session", "error"), frame
            if frame["type"] == "error":
                assert frame.get("code") and frame["code"] != "internal", frame
            else:
                result = await late.collect(time.perf_counter(), wait_s=60)
                assert result.usage or all(e.get("code") for e in result.errors), result.as_dict()
    finally:
        proxy.resume()


# ---------------------------------------------------------------------- corrupted snapshot

def _info(addr: str, token: str) -> retrieval_pb2.GetIndexInfoResponse:
    with grpc.insecure_channel(addr) as ch:
        return retrieval_pb2_grpc.RetrievalStub(ch).GetIndexInfo(retrieval_pb2.GetIndexInfoRequest(),
                                                                 metadata=auth_metadata(token), timeout=5)


def _search(addr: str, token: str) -> retrieval_pb2.SearchResponse:
    with grpc.insecure_channel(addr) as ch:
        return retrieval_pb2_grpc.RetrievalStub(ch).Search(retrieval_pb2.SearchRequest(query="泳ぐ", top_k=3),
                                                           metadata=auth_metadata(token), timeout=10)


def _clone(root: Path, good: str, name: str) -> Path:
    target = root / name
    shutil.copytree(root / good, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = name
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _rehash(folder: Path, file: str) -> None:
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / file).read_bytes()
    manifest["files"][file] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_corrupted_snapshots_are_refused_and_the_old_one_keeps_serving(stack, kit, tmp_path):
    src = Path(urlparse(stack.base_env["KOTOBA_SNAPSHOT_URI"]).path)
    root = tmp_path / "snapshots"
    shutil.copytree(src, root)
    good = (root / "LATEST").read_text().strip()
    side = kit.derived_stack(stack, "corrupt-snapshot", KOTOBA_RETRIEVAL_ADDR=kit.new_addr(),
                             KOTOBA_SNAPSHOT_URI=root.as_uri(), KOTOBA_SNAPSHOT_WATCH_SECONDS="0.2")
    token = stack.token("flt-snap")
    addr = side.addr("retrieval")
    try:
        side.start_service("retrieval")
        assert _info(addr, token).version == good

        def publish(name: str, corrupt) -> None:
            folder = _clone(root, good, f"{good}-{name}")
            corrupt(folder)
            (root / "LATEST").write_text(folder.name)

        def flip(folder: Path) -> None:  # bit rot: the checksum no longer matches
            data = bytearray((folder / "index.faiss").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (folder / "index.faiss").write_bytes(bytes(data))

        def truncated_rehashed(folder: Path) -> None:  # a broken writer that hashed what it wrote
            data = (folder / "index.faiss").read_bytes()
            (folder / "index.faiss").write_bytes(data[: len(data) // 3])
            _rehash(folder, "index.faiss")

        def ids_truncated(folder: Path) -> None:
            data = (folder / "ids.npy").read_bytes()
            (folder / "ids.npy").write_bytes(data[: len(data) // 2])
            _rehash(folder, "ids.npy")

        def garbage_everywhere(folder: Path) -> None:  # every data file replaced, manifest "consistent"
            for name in json.loads((folder / "manifest.json").read_text())["files"]:
                (folder / name).write_bytes(b"\x00garbage" * 10)
                _rehash(folder, name)

        def no_manifest(folder: Path) -> None:
            (folder / "manifest.json").unlink()

        def bad_manifest(folder: Path) -> None:
            (folder / "manifest.json").write_text("{not json")

        for name, corrupt in [("flip", flip), ("trunc", truncated_rehashed), ("ids", ids_truncated),
                              ("garbage", garbage_everywhere), ("nomanifest", no_manifest),
                              ("badmanifest", bad_manifest)]:
            publish(name, corrupt)
            time.sleep(1.5)  # several watch cycles
            assert _info(addr, token).version == good, f"retrieval switched to a corrupted snapshot ({name})"
            reply = _search(addr, token)
            assert reply.hits and reply.snapshot_version == good
        (root / "LATEST").write_text("does-not-exist")
        time.sleep(1.0)
        assert _info(addr, token).version == good
        # The watcher still works after refusals: a good new version is picked up by itself.
        fresh = _clone(root, good, f"{good}-zgood")
        (root / "LATEST").write_text(fresh.name)
        kit.wait_for(lambda: _info(addr, token).version == fresh.name, 30, "good snapshot served")
        assert _search(addr, token).hits
        log = (side.logs / "retrieval.log").read_text()
        assert "refused" in log
    finally:
        side.stop_all()


def test_undecodable_snapshot_is_refused_once_not_retried_forever(stack, kit, tmp_path):
    src = Path(urlparse(stack.base_env["KOTOBA_SNAPSHOT_URI"]).path)
    root = tmp_path / "snapshots"
    shutil.copytree(src, root)
    good = (root / "LATEST").read_text().strip()
    side = kit.derived_stack(stack, "undecodable-snapshot", KOTOBA_RETRIEVAL_ADDR=kit.new_addr(),
                             KOTOBA_SNAPSHOT_URI=root.as_uri(), KOTOBA_SNAPSHOT_WATCH_SECONDS="0.1")
    try:
        side.start_service("retrieval")
        folder = _clone(root, good, f"{good}-undecodable")
        data = (folder / "index.faiss").read_bytes()
        (folder / "index.faiss").write_bytes(data[: len(data) // 3])
        _rehash(folder, "index.faiss")
        (root / "LATEST").write_text(folder.name)
        time.sleep(2.0)  # ~20 watch cycles
        assert _info(side.addr("retrieval"), stack.token("flt-snap")).version == good
        log = (side.logs / "retrieval.log").read_text()
        attempts = log.count("snapshot watch failed") + log.count("snapshot refused")
        assert attempts <= 2, f"the same broken snapshot was tried {attempts} times in 2 s"
    finally:
        side.stop_all()
