"""The gateway's HTTP layer (aiohttp) against the websockets server it replaced, side by side in one run.

    .venv/bin/python -m bench.gateway.bench_http_layer [--turns 30] [--pings 300] [--idle 50] [--json]
        [--baseline-ref f61f0a1]

One stack (moto, fixture seed, snapshot, retrieval/tools/conversations/local_live) and two gateways in front
of it: this tree's, and the baseline commit's (checked out into a temporary git worktree). Interleaved, so
both see the same machine load:
  - turns: time to first text delta and to turn_complete for the same questions;
  - pings: `ping` → `pong` round trips on an open session (the WebSocket layer alone, no upstream);
  - memory: gateway RSS growth per idle started session.
Reports medians and new/old ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

QUESTIONS = ["What does 泳ぐ mean?", "How do you read 学校?", "What JLPT level is 思う?", "Hello!"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def baseline_tree(ref: str, root: Path) -> Path:
    tree = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    shutil.copytree(REPO / "kotoba", tree / "kotoba")  # generated stubs are git-ignored
    return tree


def start_gateway(stack, tree: Path, name: str) -> tuple[str, subprocess.Popen]:
    from services.common import procs

    addr = f"127.0.0.1:{procs.free_port()}"
    env = stack.env(KOTOBA_GATEWAY_ADDR=addr, PYTHONPATH=str(tree))
    log = open(stack.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, cwd=tree, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    procs.wait_until(lambda: proc.poll() is None and procs.http_ready(addr), 60, name, interval=0.1)
    return addr, proc


async def bench(stack, gateways: dict[str, tuple[str, int]], turns: int, pings: int, idle: int) -> dict:
    from services.gateway.client import ChatClient

    out: dict = {}
    chats = {}
    for name, (addr, _) in gateways.items():
        chats[name] = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token(f"bench-http-{name}"))
        await chats[name].start("text")
    first = {n: [] for n in gateways}
    total = {n: [] for n in gateways}
    for i in range(turns):
        order = list(gateways) if i % 2 == 0 else list(reversed(gateways))
        for name in order:
            r = await chats[name].ask(QUESTIONS[i % len(QUESTIONS)])
            assert not r.errors, r.errors
            first[name].append(r.first_text_s)
            total[name].append(r.total_s)
    rtt = {n: [] for n in gateways}
    for i in range(pings):
        order = list(gateways) if i % 2 == 0 else list(reversed(gateways))
        for name in order:
            started = time.perf_counter()
            await chats[name].send(type="ping")
            assert (await chats[name].recv_json(wait_s=10))["type"] == "pong"
            rtt[name].append(time.perf_counter() - started)
    for c in chats.values():
        await c.close()
    for name in gateways:
        out[name] = {"first_text_ms": round(statistics.median(first[name]) * 1000, 2),
                     "turn_complete_ms": round(statistics.median(total[name]) * 1000, 2),
                     "ping_rtt_us": round(statistics.median(rtt[name]) * 1e6, 1)}
    if idle:
        for name, (addr, pid) in gateways.items():
            await asyncio.sleep(1)
            before = rss_kib(pid)
            clients = []
            for i in range(idle):
                c = await ChatClient.open(f"ws://{addr}/v1/chat", stack.token(f"idle-{name}-{i}"))
                await c.start("text")
                clients.append(c)
            await asyncio.sleep(2)
            after = rss_kib(pid)
            for c in clients:
                await c.close()
            out[name].update(rss_before_mib=round(before / 1024, 1),
                             rss_per_idle_session_kib=round((after - before) / idle, 1))
    new, old = out["aiohttp"], out["websockets"]
    out["ratios_new_over_old"] = {k: round(new[k] / old[k], 3) for k in new if old.get(k)}
    out.update(turns=turns, pings=pings, idle_sessions=idle)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--idle", type=int, default=50)
    ap.add_argument("--baseline-ref", default="f61f0a1", help="commit with the websockets HTTP side")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from devtools import procs
    from tests.support.kotoba_stack import start_stack

    moto, endpoint = procs.start_moto()
    root = Path(tempfile.mkdtemp(prefix="kotoba-bench-http-"))
    stack = tree = None
    try:
        tree = baseline_tree(args.baseline_ref, root)
        (root / "stack").mkdir()
        stack = start_stack(endpoint, root / "stack", KOTOBA_GATEWAY_MESSAGES_PER_MINUTE="100000",
                            KOTOBA_GATEWAY_MAX_SESSIONS_PER_LEARNER="1000", KOTOBA_LOG_LEVEL="WARNING")
        old_addr, old_proc = start_gateway(stack, tree, "gateway-websockets")
        stack.procs["gateway-websockets"] = old_proc
        gateways = {"aiohttp": (stack.gateway_addr, stack.procs["gateway"].pid),
                    "websockets": (old_addr, old_proc.pid)}
        result = asyncio.run(bench(stack, gateways, args.turns, args.pings, args.idle))
    finally:
        if stack is not None:
            stack.stop_all()
        procs.stop(moto)
        if tree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("aiohttp", "websockets", "ratios_new_over_old"):
            print(f"{key:>20}: {json.dumps(result[key])}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
