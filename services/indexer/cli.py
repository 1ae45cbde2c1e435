"""`kotoba index build|update|verify|rollback|watch`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from services.snapshots.store import SnapshotError


def _indexer(args: argparse.Namespace, progress: bool = True):
    from services.common.config import CommonConfig
    from services.snapshots.job import Indexer, IndexerConfig

    common = CommonConfig.from_env()
    config = IndexerConfig.from_env(batch_size=getattr(args, "batch_size", None))
    return Indexer(common, config, progress=progress and not args.json)


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    errors = report.get("errors") or []
    print(f"{report['action']}: snapshot {report['version']} ({report['count']} items, model {report['model']}); "
          f"reused {report['reused']}, from seed {report['from_seed']}, embedded {report['embedded']}, "
          f"changed {report['changed']}, removed {report['removed']}, {report['seconds']}s")
    if errors:
        print(f"{len(errors)} item errors:", file=sys.stderr)
        for err in errors[:50]:
            print(f"  {err['id']}: {err['error']}", file=sys.stderr)


def _build(args: argparse.Namespace) -> int:
    indexer = _indexer(args)
    if getattr(args, "if_changed", False):
        why = indexer.up_to_date()
        if why:
            print(json.dumps({"action": "skipped", "reason": why}) if args.json else f"index: {why}; skipped")
            return 0
    report = indexer.build().to_dict()
    _print_report(report, args.json)
    return 1 if report["errors"] else 0


def _update(args: argparse.Namespace) -> int:
    report = _indexer(args).update().to_dict()
    _print_report(report, args.json)
    return 1 if report["errors"] else 0


def _verify(args: argparse.Namespace) -> int:
    from services.embeddings.base import make_embedder
    from services.retrieval.canary import canary_check

    indexer = _indexer(args)

    def canary(snap):
        embedder = make_embedder(indexer.config.embedder)
        return canary_check(snap, lambda text: embedder.embed_queries([text])[0])

    result = indexer.verify(canary=canary)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(("OK" if result["ok"] else "FAILED") + f": snapshot {result.get('version')} "
              f"({result.get('count')} items, DynamoDB {result.get('dynamodb_count')}, load {result.get('load_ms')} ms)")
        for problem in result["problems"]:
            print(f"  problem: {problem}")
    return 0 if result["ok"] else 1


def _rollback(args: argparse.Namespace) -> int:
    try:
        result = _indexer(args).rollback()
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else f"LATEST: {result['from']} -> {result['to']}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    """Run `update` whenever items are dirty: a changed item is searchable within seconds."""
    from services.snapshots import items as ddb

    logging.basicConfig(level=logging.INFO)
    indexer = _indexer(args, progress=False)
    while True:
        try:
            if ddb.dirty_keys(indexer.client, indexer.table):
                _print_report(indexer.update().to_dict(), args.json)
                sys.stdout.flush()
        except Exception as exc:  # noqa: BLE001 - keep watching; the next round retries
            print(f"update failed: {exc}", file=sys.stderr)
        if args.once:
            return 0
        time.sleep(args.interval)


def register(cli) -> None:
    """Add the indexer commands (build, update, verify, rollback, watch) under `kotoba index`."""
    for name, handler, help_text in (
        ("build", _build, "Embed what is missing and publish a full snapshot."),
        ("update", _update, "Apply changed (dirty) items to LATEST and publish a new version."),
        ("verify", _verify, "Check LATEST: checksums, counts against DynamoDB, a canary query."),
        ("rollback", _rollback, "Point LATEST at the previous version."),
        ("watch", _watch, "Keep running `update` whenever items change."),
    ):
        p = cli.subcommand("index", name, help_text, handler)
        p.add_argument("--json", action="store_true")
        if name in ("build", "update", "watch"):
            p.add_argument("--batch-size", type=int, default=None, help="passages per embedding call")
        if name == "build":
            p.add_argument("--if-changed", action="store_true",
                           help="skip when LATEST was built by this model from the seed the table holds and no "
                                "item changed since")
        if name == "watch":
            p.add_argument("--interval", type=float, default=10.0, help="seconds between checks")
            p.add_argument("--once", action="store_true")
