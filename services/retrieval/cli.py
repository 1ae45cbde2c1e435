"""`kotoba search QUERY` and `kotoba eval retrieval --queries FILE`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _local_engine():
    from services.common.config import CommonConfig
    from services.embeddings.base import EmbedderConfig, make_embedder
    from services.retrieval.config import RetrievalConfig
    from services.retrieval.engine import SearchEngine
    from services.snapshots.files import load_version
    from services.snapshots.store import SnapshotError, open_store

    common = CommonConfig.from_env()
    config = RetrievalConfig.from_env()
    store = open_store(config.snapshot_uri, common.aws)
    latest = store.latest()
    if latest is None:
        raise SnapshotError(f"no snapshot in {store.uri}: run `kotoba index build` first")
    snap = load_version(store, latest)
    embedder = make_embedder(EmbedderConfig.from_env(threads=1))
    if snap.manifest.model != embedder.model:
        raise SnapshotError(f"snapshot model {snap.manifest.model} != embedder {embedder.model}")
    return SearchEngine(snap, lambda text: embedder.embed_queries([text])[0])


def _bearer(args: argparse.Namespace, config) -> str:
    """--token or KOTOBA_TOKEN; in a local run a short-lived token is minted with the dev secret."""
    import os

    from services.common.auth import mint_token
    from services.common.config import ConfigError

    token = args.token or os.environ.get("KOTOBA_TOKEN", "")
    if token:
        return token
    if config.environment == "local":
        return mint_token(config.auth, "kotoba-cli", ttl_seconds=300)
    raise ConfigError("KOTOBA_TOKEN", "retrieval needs a token: --token or KOTOBA_TOKEN")


def _search(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from services.retrieval.service import item_proto

    query = " ".join(args.query)
    hits: list[dict] = []
    source = "local"
    if not args.local:
        import grpc

        from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
        from services.common.auth import auth_metadata
        from services.common.config import CommonConfig

        common = CommonConfig.from_env()
        addr = common.addr("retrieval")
        try:
            with grpc.insecure_channel(addr) as channel:
                reply = retrieval_pb2_grpc.RetrievalStub(channel).Search(retrieval_pb2.SearchRequest(
                    query=query, top_k=args.top_k, types=args.type or [], levels=args.level or []), timeout=5,
                    metadata=auth_metadata(_bearer(args, common)))
            hits = [{**MessageToDict(h.item, preserving_proto_field_name=True), "score": h.score,
                     "matched_by": h.matched_by} for h in reply.hits]
            source, intent = f"grpc {addr}", reply.intent
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                print(f"error: {exc.details()}", file=sys.stderr)
                return 2
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            args.local = True
    if args.local:
        engine = _local_engine()
        result = engine.search(query, args.top_k, args.type or [], args.level or [])
        intent = result.intent
        hits = [{**MessageToDict(item_proto(engine.snap.items[h.pos]), preserving_proto_field_name=True),
                 "score": h.score, "matched_by": "+".join(h.matched_by)} for h in result.hits]
    if args.json:
        print(json.dumps({"query": query, "intent": intent, "source": source, "hits": hits}, ensure_ascii=False))
        return 0
    print(f"intent: {intent}  ({source})")
    for n, hit in enumerate(hits, 1):
        reading = f" 【{hit.get('reading')}】" if hit.get("reading") and hit.get("reading") != hit.get("written") else ""
        meaning = "; ".join(hit.get("meanings", [])[:3])
        print(f"{n:2}. [{hit['type']}{' ' + hit['level'] if hit.get('level') else ''}] {hit['written']}{reading}"
              f" {hit.get('romaji', '')} — {meaning}  ({hit['score']:.3f} {hit['matched_by']})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from services.retrieval.evaluation import evaluate, read_queries

    queries = read_queries(args.queries)
    started = time.monotonic()
    engine = _local_engine()

    def search(q):
        result = engine.search(q.query, 10, q.types, q.levels, q.learner_level)
        return [engine.snap.items[h.pos] for h in result.hits]

    report = evaluate(queries, search)
    report["snapshot"] = engine.snap.version
    report["seconds"] = round(time.monotonic() - started, 2)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"{len(queries)} queries on snapshot {engine.snap.version} ({report['seconds']}s)")
    print(f"{'kind':18} {'n':>4} {'R@1':>6} {'R@5':>6} {'MRR':>6}")
    for kind, row in [*report["by_kind"].items(), ("ALL", report)]:
        print(f"{kind:18} {row['n']:>4} {row['recall_at_1']:>6.3f} {row['recall_at_5']:>6.3f} {row['mrr']:>6.3f}")
    if args.misses:
        for miss in report["misses"]:
            print(f"  miss rank={miss['rank']} [{miss['kind']}] {miss['query']!r} top={miss['top']}")
    return 0


def register(cli) -> None:
    """Add the retrieval commands (search, and the retrieval evaluation) to the command line."""
    p = cli.command("search", "Search the dictionary (via the retrieval service, or locally with --local).", _search)
    p.add_argument("query", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--type", action="append", help="word, kanji, sentence or kana (repeatable)")
    p.add_argument("--level", action="append", help="N5..N1 (repeatable)")
    p.add_argument("--local", action="store_true", help="load the LATEST snapshot in this process")
    p.add_argument("--token", help="bearer token (default: $KOTOBA_TOKEN; minted locally in a local run)")
    p.add_argument("--json", action="store_true")
    p = cli.subcommand("eval", "retrieval", "Recall@1/@5 and MRR of a labelled query set on the LATEST snapshot.",
                       _eval)
    p.add_argument("--queries", type=Path, default=Path("tests/eval/retrieval.jsonl"))
    p.add_argument("--misses", action="store_true", help="list the queries not answered at rank 1")
    p.add_argument("--json", action="store_true")
