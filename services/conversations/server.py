"""`python -m services.conversations`: the Conversations gRPC server."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kotoba.v1 import conversations_pb2, conversations_pb2_grpc
from services.common.auth import TokenVerifier
from services.common.aws import dynamodb_client
from services.common.grpc_server import GrpcService, bootstrap, run_until_signalled
from services.conversations.config import ConversationsConfig
from services.conversations.servicer import Conversations
from services.conversations.store import ConversationStore
from services.conversations.summarise import GeminiSummariser, OfflineSummariser, Summariser
from services.conversations.worker import SummaryWorker

log = logging.getLogger(__name__)
SERVICE_NAME = conversations_pb2.DESCRIPTOR.services_by_name["Conversations"].full_name


def make_summariser(config: ConversationsConfig) -> Summariser:
    """The summariser the configuration names: Gemini, or the offline rules."""
    if config.summary_backend == "gemini":
        return GeminiSummariser(config.gemini_api_key, config.gemini_model, config.gemini_base_url,
                                config.summary_timeout_seconds)
    return OfflineSummariser()


@dataclass
class App:
    """Everything one server instance owns; tests build it in-process with `build()`."""

    config: ConversationsConfig
    service: GrpcService
    servicer: Conversations
    worker: SummaryWorker
    executor: ThreadPoolExecutor

    async def start(self) -> int:
        """Start the gRPC service and the summary worker; the port bound."""
        port = await self.service.start()
        self.worker.start()
        # Turns left pending by a crash (or a full queue) get their summaries now.
        await self.worker.recover()
        await self.service.mark_ready()
        return port

    async def stop(self, grace: float = 0.5) -> None:
        """Stop serving, then let the worker finish (or drop) what it was summarising."""
        await self.service.stop(grace)
        await self.worker.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.servicer.redactor.shutdown(wait=False, cancel_futures=True)


def build(config: ConversationsConfig, summariser: Summariser | None = None, addr: str | None = None) -> App:
    """The conversations service wired to its tables, summariser and worker, ready to serve."""
    # boto3 calls block: they run in this bounded pool (one pooled HTTP connection each). The bound
    # also caps how hard a logging flood can push the store that chat turns read from.
    executor = ThreadPoolExecutor(max_workers=config.db_threads, thread_name_prefix="dynamodb")
    store = ConversationStore(dynamodb_client(config.common.aws), config.table, config.settings_table,
                              config.connections_table, config.usage_table)
    servicer = Conversations(config, store, TokenVerifier(config.common.auth), executor)
    worker = SummaryWorker(store, summariser or make_summariser(config), servicer.io,
                           queue_size=config.summary_queue_size, batch_size=config.summary_batch_size,
                           retries=config.summary_retries, backoff_seconds=config.summary_backoff_seconds,
                           linger_seconds=config.summary_linger_seconds)
    servicer.worker = worker
    service = GrpcService("conversations", addr or config.addr, [SERVICE_NAME], config.common.drain_seconds)
    conversations_pb2_grpc.add_ConversationsServicer_to_server(servicer, service.server)
    return App(config, service, servicer, worker, executor)


async def serve() -> None:
    """Run the conversations service until it is told to stop."""
    common = bootstrap("conversations")
    config = ConversationsConfig.from_env(common=common)
    app = build(config)

    async def ready() -> None:
        app.worker.start()
        await app.worker.recover()

    async def shutdown() -> None:
        await app.worker.stop(drain_seconds=config.common.drain_seconds)

    await run_until_signalled(app.service, ready=ready, shutdown=shutdown)
    app.executor.shutdown(wait=False, cancel_futures=True)


def main() -> None:
    """Entry point of the conversations service process."""
    asyncio.run(serve())
