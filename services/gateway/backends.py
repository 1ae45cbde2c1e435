"""gRPC stubs for the services the gateway calls, on channels with the telemetry interceptors."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kotoba.v1 import conversations_pb2_grpc, retrieval_pb2_grpc, tools_pb2_grpc
from services.common.config import CommonConfig
from services.common.grpc_server import channel


@dataclass
class Backends:
    tools: tools_pb2_grpc.ToolsStub
    retrieval: retrieval_pb2_grpc.RetrievalStub
    conversations: conversations_pb2_grpc.ConversationsStub
    channels: list[grpc.aio.Channel]

    @classmethod
    def connect(cls, common: CommonConfig) -> Backends:
        """Open one channel each to the tools, retrieval and conversations services."""
        tools_ch, retrieval_ch, conv_ch = (channel(common.addr(n)) for n in ("tools", "retrieval", "conversations"))
        return cls(tools_pb2_grpc.ToolsStub(tools_ch), retrieval_pb2_grpc.RetrievalStub(retrieval_ch),
                   conversations_pb2_grpc.ConversationsStub(conv_ch), [tools_ch, retrieval_ch, conv_ch])

    async def close(self) -> None:
        """Close the backend channels at shutdown."""
        for ch in self.channels:
            await ch.close()
