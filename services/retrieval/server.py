"""`python -m services.retrieval`: the Retrieval gRPC server."""

from __future__ import annotations

import logging

from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.common.auth import TokenVerifier
from services.common.config import CommonConfig
from services.common.grpc_server import GrpcService, bootstrap, run_until_signalled
from services.embeddings.base import Embedder, EmbedderConfig, make_embedder
from services.retrieval.config import RetrievalConfig
from services.retrieval.service import RetrievalService
from services.snapshots.store import open_store

log = logging.getLogger(__name__)
SERVICE_NAME = retrieval_pb2.DESCRIPTOR.services_by_name["Retrieval"].full_name


def create(common: CommonConfig, config: RetrievalConfig,
           embedder: Embedder | None = None) -> tuple[GrpcService, RetrievalService]:
    """The retrieval service and its servicer, serving the newest snapshot."""
    import faiss

    # Single queries on one thread: a second one only fights the query embedder for the other core.
    faiss.omp_set_num_threads(1)
    embedder = embedder or make_embedder(EmbedderConfig.from_env(threads=1))
    servicer = RetrievalService(config, embedder, open_store(config.snapshot_uri, common.aws),
                                TokenVerifier(common.auth))
    grpc_service = GrpcService("retrieval", config.addr, [SERVICE_NAME], common.drain_seconds)
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(servicer, grpc_service.server)
    return grpc_service, servicer


def fallback_builder(common: CommonConfig, servicer: RetrievalService):
    """A builder for the first snapshot when the store has none yet (indexing in-process)."""
    def build():
        from services.snapshots.job import Indexer, IndexerConfig

        return Indexer(common, IndexerConfig.from_env(), embedder=servicer.embedder, store=servicer.store,
                       progress=False).build()

    return build


async def serve() -> None:
    """Run the retrieval service until it is told to stop."""
    common = bootstrap("retrieval")
    config = RetrievalConfig.from_env()
    grpc_service, servicer = create(common, config)

    async def ready() -> None:
        await servicer.start(build=fallback_builder(common, servicer))

    await run_until_signalled(grpc_service, ready=ready, shutdown=servicer.stop)
