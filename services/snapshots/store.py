"""Snapshot store: immutable version folders under a file:// or s3:// root.

    <root>/<version>/{index.faiss, ids.npy, items.json, lexical.npz, lexical.json, manifest.json}
    <root>/LATEST            the served version's name, written last

Publishing writes every data file, then `manifest.json` (sha256 + size of
each file, model, dim, count, created), then `LATEST`. A crash before the
manifest leaves a folder no reader will touch (no manifest = not a version);
a crash before `LATEST` leaves the old version served. Readers check every
sha256 before using a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from services.common.files import write_atomic

MANIFEST = "manifest.json"
LATEST = "LATEST"
FORMAT = 1


class SnapshotError(Exception):
    """A snapshot is missing, incomplete or fails its checks."""


@dataclass
class Manifest:
    version: str
    model: str
    dim: int
    count: int
    created: str
    files: dict[str, dict[str, object]]  # name -> {"sha256": hex, "bytes": n}
    parent: str = ""
    format: int = FORMAT
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The manifest as JSON bytes."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """A manifest from JSON; CorruptSnapshot when it is not one."""
        try:
            data = json.loads(raw)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"manifest is not valid: {exc}") from exc


def sha256(data: bytes) -> str:
    """The hex SHA-256 of some bytes, for snapshot checksums."""
    return hashlib.sha256(data).hexdigest()


def new_version() -> str:
    """A new snapshot version name: sortable by time, unique across writers."""
    # Sortable by time; the suffix keeps two publishes in one second apart.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + f"-{os.urandom(2).hex()}"


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339, for manifests."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SnapshotStore(ABC):
    uri: str

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes:
        """Raise FileNotFoundError when absent."""

    @abstractmethod
    def _list_versions(self) -> list[str]: ...

    @abstractmethod
    def _delete_version(self, version: str) -> None: ...

    # -- reading
    def latest(self) -> str | None:
        """The version LATEST points at; None when nothing was published."""
        try:
            return self._get(LATEST).decode().strip() or None
        except FileNotFoundError:
            return None

    def manifest(self, version: str) -> Manifest:
        """A version's manifest; CorruptSnapshot when it is missing or unreadable."""
        try:
            return Manifest.from_json(self._get(f"{version}/{MANIFEST}"))
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {version} has no manifest (incomplete or missing)") from None

    def read_file(self, version: str, name: str) -> bytes:
        """One file of a version; CorruptSnapshot when it is missing."""
        try:
            return self._get(f"{version}/{name}")
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {version} lacks {name}") from None

    def read_verified(self, version: str) -> tuple[Manifest, dict[str, bytes]]:
        """Manifest and every file, each checked against its sha256 and size."""
        manifest = self.manifest(version)
        files: dict[str, bytes] = {}
        for name, meta in manifest.files.items():
            data = self.read_file(version, name)
            if len(data) != meta.get("bytes") or sha256(data) != meta.get("sha256"):
                raise SnapshotError(f"snapshot {version}: {name} fails its checksum")
            files[name] = data
        return manifest, files

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first."""
        out = []
        for version in sorted(self._list_versions()):
            try:
                self._get(f"{version}/{MANIFEST}")
                out.append(version)
            except FileNotFoundError:
                continue
        return out

    # -- writing
    def publish(self, files: Mapping[str, bytes], *, model: str, dim: int, count: int, parent: str = "",
                extra: Mapping[str, object] | None = None, keep: int = 5, set_latest: bool = True) -> Manifest:
        """Write a new version's files, then its manifest (so a version with a manifest is complete)."""
        version = new_version()
        for name, data in files.items():
            self._put(f"{version}/{name}", data)
        manifest = Manifest(
            version=version, model=model, dim=dim, count=count, created=now_rfc3339(), parent=parent,
            files={name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()},
            extra=dict(extra or {}),
        )
        self._put(f"{version}/{MANIFEST}", manifest.to_json())
        if set_latest:
            self.set_latest(version)
            self.prune(keep)
        return manifest

    def set_latest(self, version: str) -> None:
        """Point LATEST at a complete version."""
        self.manifest(version)  # never point LATEST at an incomplete folder
        self._put(LATEST, version.encode())

    def previous(self, version: str) -> str | None:
        """The version published before this one; None for the first."""
        older = [v for v in self.versions() if v < version]
        return older[-1] if older else None

    def prune(self, keep: int) -> list[str]:
        """Delete complete versions beyond the newest `keep` (never LATEST) and stale incomplete folders."""
        latest = self.latest()
        complete = self.versions()
        doomed = [v for v in complete[:-keep] if v != latest] if keep > 0 else []
        # Incomplete folders older than an hour are crashed publishes, not publishes in progress.
        cutoff = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y%m%dT%H%M%S")
        doomed += [v for v in self._list_versions() if v not in complete and v < cutoff]
        for version in doomed:
            self._delete_version(version)
        return doomed


class FileStore(SnapshotStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.uri = self.root.resolve().as_uri()

    def _put(self, key: str, data: bytes) -> None:
        # Write-then-rename: a reader never sees half a file, even for LATEST.
        write_atomic(self.root / key, data, fsync=True)

    def _get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def _list_versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]

    def _delete_version(self, version: str) -> None:
        shutil.rmtree(self.root / version, ignore_errors=True)


class S3Store(SnapshotStore):
    def __init__(self, bucket: str, prefix: str, client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def _get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def _list_versions(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/"):
            out += [p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return out

    def _delete_version(self, version: str) -> None:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(version) + "/"):
            keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start:start + 1000]})


def open_store(uri: str, aws=None) -> SnapshotStore:
    """file:///abs/path or s3://bucket/prefix (S3 endpoint from AwsConfig, e.g. moto in tests)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return FileStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from services.common.aws import s3_client

        if aws is None:
            from services.common.config import CommonConfig

            aws = CommonConfig.from_env().aws
        return S3Store(parsed.netloc, parsed.path, s3_client(aws))
    if parsed.scheme == "":
        return FileStore(Path(uri))
    raise SnapshotError(f"KOTOBA_SNAPSHOT_URI: expected file:// or s3://, got {uri!r}")
