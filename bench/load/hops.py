"""The hops of a session open, each timed alone after a pause: how much of an open is the machine waking up.

    .venv/bin/python -m bench.load.hops [--calls 20] [--json OUT]     # ~3.5 min on 2 cores

Starts its own bench stack (fixture seed, temp dynalite, free ports) and, for each pause before a call
(0, 50 ms, 1.5 s: hot, a learner's pace, the `gapped` opens of `python -m bench --only opens`), takes the p50
of what an open crosses, one hop at a time:

- `ws_handshake`: a learner's WebSocket upgrade on `/v1/chat` (token checked, socket admitted), beside the same
  upgrade on a bare aiohttp WebSocket server in its own process (the baseline: ratio gateway / bare). Every
  gateway connection starts its learner's reads at once, so hot (no pause) upgrades also share the machine
  with the previous connection's reads and teardown;
- `grpc_health`: a gRPC Health.Check on Tools (the hop alone);
- `tools_context`: Tools.GetUserContext for a fresh learner (the hop plus its three DynamoDB reads);
- `dynamodb_get` and `dynamodb_3_reads`: one settings GetItem, and three reads at once, straight to the store.

Ratios: each hop after a pause against the same hop hot. Figures depend on the machine; compare runs on one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import connect

from bench.load.burst import open_cost
from bench.load.stack import BenchStack
from devtools import procs
from kotoba.v1 import tools_pb2, tools_pb2_grpc
from services.gateway.client import ChatClient

PAUSES_S = (0.0, 0.05, 1.5)

BARE_SERVER = textwrap.dedent("""
    import sys
    from aiohttp import web
    async def chat(request):
        ws = web.WebSocketResponse(protocols=("kotoba.v1",))
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws
    app = web.Application()
    app.router.add_get("/v1/chat", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
""")


async def _p50_ms(call: Callable[[int], Awaitable[Any]], calls: int, pause_s: float) -> float:
    took = []
    for i in range(calls):
        await asyncio.sleep(pause_s)
        started = time.perf_counter()
        await call(i)
        took.append(time.perf_counter() - started)
    return round(statistics.median(took) * 1000, 2)


async def measure(stack: BenchStack, bare_url: str, calls: int) -> dict[str, Any]:
    env = stack.base_env
    tools_channel = grpc.aio.insecure_channel(stack.addr("tools"))
    health = health_pb2_grpc.HealthStub(tools_channel)
    tools = tools_pb2_grpc.ToolsStub(tools_channel)
    store = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")
    settings, progress = env["KOTOBA_TABLE_PREFIX"] + "settings", env["KOTOBA_TABLE_PREFIX"] + "progress"
    pool = ThreadPoolExecutor(3)
    loop = asyncio.get_running_loop()

    def get(user: str) -> Any:
        return store.get_item(TableName=settings, Key={"userId": {"S": user}})

    def query(user: str) -> Any:
        return store.query(TableName=progress, KeyConditionExpression="userId = :u",
                           ExpressionAttributeValues={":u": {"S": user}}, Limit=20)

    async def gateway_ws(i: int) -> None:
        client = await ChatClient.open(stack.url, stack.token(f"bench-hops-ws-{i}"))
        await client.close()

    async def bare_ws(_i: int) -> None:
        async with connect(bare_url, subprotocols=["kotoba.v1"]):
            pass

    async def context(i: int) -> None:
        await tools.GetUserContext(tools_pb2.GetUserContextRequest(),
                                   metadata=(("authorization", "Bearer " + stack.token(f"bench-hops-{i}-{time.time_ns()}")),))

    async def three_reads(i: int) -> None:
        user = f"bench-hops-{i}"
        await asyncio.gather(loop.run_in_executor(pool, get, user), loop.run_in_executor(pool, query, user),
                             loop.run_in_executor(pool, query, user))

    hops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "ws_handshake": gateway_ws, "ws_handshake_bare": bare_ws,
        "grpc_health": lambda _i: health.Check(health_pb2.HealthCheckRequest()),
        "tools_context": context,
        "dynamodb_get": lambda i: loop.run_in_executor(pool, get, f"bench-hops-{i}"),
        "dynamodb_3_reads": three_reads,
    }
    out: dict[str, Any] = {}
    try:
        for name, call in hops.items():
            await _p50_ms(call, 5, 0.0)  # warm
            out[name] = {f"{pause}s": await _p50_ms(call, calls, pause) for pause in PAUSES_S}
            print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    finally:
        await tools_channel.close()
        pool.shutdown()
    return out


def report(hops: dict[str, Any]) -> dict[str, Any]:
    hot = f"{PAUSES_S[0]}s"
    ratios = {name: {p: round(v / by[hot], 2) for p, v in by.items() if p != hot and by[hot]} for name, by in hops.items()}
    ws, bare = hops["ws_handshake"], hops["ws_handshake_bare"]
    return {"p50_ms": hops, "ratio_to_hot": ratios,
            "ws_gateway_to_bare": {p: round(ws[p] / bare[p], 2) for p in ws if bare[p]}}


def run(calls: int) -> dict[str, Any]:
    stack = BenchStack.create({})
    bare_port = procs.free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
    try:
        stack.prepare(fixture=True)
        stack.cold_start()

        async def timed() -> dict[str, Any]:
            await open_cost(stack, 3, prefix="bench-hops-warm")
            return await measure(stack, f"ws://127.0.0.1:{bare_port}/v1/chat", calls)

        return report(asyncio.run(timed()))
    finally:
        bare.terminate()
        bare.wait(10)
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per hop and pause")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = run(args.calls)
    print(f"p50 ms per hop after a pause of {', '.join(f'{p} s' for p in PAUSES_S)} (ratio to hot):")
    for name, by in result["p50_ms"].items():
        ratios = result["ratio_to_hot"][name]
        print(f"  {name:18s} " + "  ".join(f"{p}: {v:6.2f}" + (f" ({ratios[p]}x)" if p in ratios else "")
                                          for p, v in by.items()))
    print(f"  gateway WebSocket upgrade vs a bare aiohttp one: {result['ws_gateway_to_bare']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
