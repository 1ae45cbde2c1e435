"""gRPC stubs for the services the gateway calls, on channels with the telemetry interceptors."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kotoba.v1 import conversations_pb2_grpc, retrieval_pb2_grpc, tools_pb2_grpc
from services.common import telemetry
from services.common.config import CommonConfig
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.grpc_tls import make_channel

# gRPC's default reconnect backoff grows to 120 s: a backend back after a long outage would stay unused
# that long. Capped at 5 s, a restarted service is found within seconds. (Not the min backoff: gRPC also
# uses it as the connect timeout, and a short one fails calls to a slow-to-handshake backend at once.)
RECONNECT_OPTIONS = (("grpc.max_reconnect_backoff_ms", 5000),)


def channel(addr: str) -> grpc.aio.Channel:
    return make_channel(addr, CHANNEL_OPTIONS + RECONNECT_OPTIONS, telemetry.client_interceptors())


@dataclass
class Backends:
    tools: tools_pb2_grpc.ToolsStub
    retrieval: retrieval_pb2_grpc.RetrievalStub
    conversations: conversations_pb2_grpc.ConversationsStub
    channels: list[grpc.aio.Channel]

    @classmethod
    def connect(cls, common: CommonConfig) -> Backends:
        tools_ch, retrieval_ch, conv_ch = (channel(common.addr(n)) for n in ("tools", "retrieval", "conversations"))
        return cls(tools_pb2_grpc.ToolsStub(tools_ch), retrieval_pb2_grpc.RetrievalStub(retrieval_ch),
                   conversations_pb2_grpc.ConversationsStub(conv_ch), [tools_ch, retrieval_ch, conv_ch])

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()
