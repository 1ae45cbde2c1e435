"""Snapshot store: file:// and s3:// (moto), manifests with checksums, LATEST last, prune, rollback."""

from __future__ import annotations

import uuid

import pytest

from services.common.aws import s3_client
from services.snapshots.store import FileStore, SnapshotError, open_store


def _publish(store, n: int = 1, **kw):
    return store.publish({"a.bin": b"alpha" * n, "b.bin": b"beta"}, model="m", dim=4, count=n, **kw)


def test_file_store_publish_read_verify(tmp_path):
    store = open_store((tmp_path / "snaps").as_uri())
    assert store.latest() is None
    m = _publish(store)
    assert store.latest() == m.version
    manifest, files = store.read_verified(m.version)
    assert files == {"a.bin": b"alpha", "b.bin": b"beta"}
    assert manifest.model == "m" and manifest.dim == 4 and manifest.files["a.bin"]["bytes"] == 5


def test_crash_before_manifest_keeps_latest(tmp_path):
    store = FileStore(tmp_path)
    good = _publish(store)

    class Crash(Exception):
        pass

    original = store._put

    def crashing_put(key, data):
        if key.endswith("manifest.json"):
            raise Crash()
        original(key, data)

    store._put = crashing_put
    with pytest.raises(Crash):
        _publish(store, 2)
    store._put = original
    assert store.latest() == good.version
    assert store.versions() == [good.version]  # the half-written folder is not a version
    with pytest.raises(SnapshotError):
        store.set_latest(sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name != good.version)[0])


def test_bad_checksum_is_refused(tmp_path):
    store = FileStore(tmp_path)
    m = _publish(store)
    (tmp_path / m.version / "a.bin").write_bytes(b"alphA")
    with pytest.raises(SnapshotError, match="checksum"):
        store.read_verified(m.version)


def test_prune_and_rollback(tmp_path):
    store = FileStore(tmp_path)
    versions = [_publish(store, n, keep=3).version for n in range(1, 6)]
    assert store.versions() == versions[-3:]
    assert store.previous(versions[-1]) == versions[-2]
    store.set_latest(store.previous(store.latest()))
    assert store.latest() == versions[-2]


def test_s3_store_on_moto(moto_endpoint, config):
    bucket = f"snap-{uuid.uuid4().hex[:8]}"
    s3_client(config.aws).create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/kotoba/snapshots", config.aws)
    assert store.latest() is None
    first = _publish(store)
    second = _publish(store, 2, keep=2)
    third = _publish(store, 3, keep=2)
    assert store.latest() == third.version
    assert store.versions() == [second.version, third.version]
    _, files = store.read_verified(third.version)
    assert files["a.bin"] == b"alpha" * 3
    assert first.version not in store.versions()
