"""Conversations fixtures: an in-process Conversations gRPC server on a free port over the test moto server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from kotoba.v1 import conversations_pb2 as pb
from kotoba.v1 import conversations_pb2_grpc as pb_grpc
from services.common.auth import auth_metadata
from services.common.aws import dynamodb_client
from services.common.grpc_server import channel
from services.conversations.config import ConversationsConfig
from services.conversations.server import build


@pytest.fixture
def conv_config(tables, aws_env) -> ConversationsConfig:
    env = {**aws_env, "KOTOBA_SUMMARY_BACKOFF_SECONDS": "0.01", "KOTOBA_SUMMARY_RETRIES": "2"}
    return ConversationsConfig.from_env(env, common=tables)


class Harness:
    def __init__(self, app, stub, config: ConversationsConfig, token_for) -> None:
        self.app = app
        self.stub = stub
        self.config = config
        self.token_for = token_for
        self.admin_md = auth_metadata(token_for("admin-1", "admin"))
        self.service_md = auth_metadata(token_for("kotoba-gateway", "service"))
        self.ddb = dynamodb_client(config.common.aws)

    def md(self, user: str, *roles: str):
        return auth_metadata(self.token_for(user, *roles))

    async def append(self, user: str, turn: pb.Turn, *roles: str) -> pb.AppendTurnResponse:
        """As the gateway logs a turn: the service token, the learner named in the record. With roles: a
        token for `user` with those roles, the record as given."""
        if roles:
            return await self.stub.AppendTurn(pb.AppendTurnRequest(turn=turn), metadata=self.md(user, *roles),
                                              timeout=10)
        record = pb.Turn()
        record.CopyFrom(turn)
        record.user_id = user
        return await self.stub.AppendTurn(pb.AppendTurnRequest(turn=record), metadata=self.service_md, timeout=10)

    async def settle(self) -> None:
        await asyncio.wait_for(self.app.worker.idle(), 30)

    def scan(self) -> list[dict]:
        items, args = [], {"TableName": self.config.table}
        while True:
            page = self.ddb.scan(**args)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
async def conv(conv_config, token_for):
    app = build(conv_config, addr="127.0.0.1:0")
    port = await app.start()
    async with channel(f"127.0.0.1:{port}") as ch:
        yield Harness(app, pb_grpc.ConversationsStub(ch), conv_config, token_for)
    await app.stop()


def make_turn(session: str = "", *, question: str = "What does 食べる mean?", answer: str = "食べる means to eat.",
              intent: str = "word_meaning", mode: str = "text", started_at: str = "", tools=(), items=(),
              turn_id: str = "", cost: float = 0.001, total_ms: float = 900.0) -> pb.Turn:
    return pb.Turn(
        turn_id=turn_id or uuid.uuid4().hex, session_id=session or f"s-{uuid.uuid4().hex[:10]}",
        connection_id="c-1", mode=mode, language="en", question=question, answer=answer,
        retrieved_item_ids=list(items), tool_calls=list(tools), intent=intent,
        latencies=pb.Latencies(first_text_ms=total_ms / 3, total_ms=total_ms),
        usage=pb.Usage(text_in_tokens=120, text_out_tokens=40, cost_usd=cost),
        started_at=started_at or datetime.now(UTC).isoformat(),
    )


@pytest.fixture
def new_turn():
    return make_turn
