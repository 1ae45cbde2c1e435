"""Issue 15, finding 1: the gateway's turn log retried DEADLINE_EXCEEDED without end, so one record that
made Conversations time out was resent for good (and, before redaction was fixed, froze it on every try).
A record that keeps timing out while other records get through is now dropped and counted; a real outage
(nothing gets through) is still waited out. Runs against a real gRPC server standing in for Conversations."""

from __future__ import annotations

import asyncio

import grpc

from kotoba.v1 import conversations_pb2, conversations_pb2_grpc
from services.common.config import CommonConfig
from services.gateway.turnlog import ServiceToken, TurnLog


class SlowOnPoison(conversations_pb2_grpc.ConversationsServicer):
    """Answers at once, except for records whose question is "poison": those outlast any deadline."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.poison_attempts = 0
        self.bearers: set[str] = set()
        self.users: set[str] = set()

    async def AppendTurn(self, request, context):
        self.bearers.add(dict(context.invocation_metadata()).get("authorization", ""))
        self.users.add(request.turn.user_id)
        if request.turn.question == "poison":
            self.poison_attempts += 1
            await asyncio.sleep(5)
        self.stored.append(request.turn.turn_id)
        return conversations_pb2.AppendTurnResponse(stored=True)


async def test_a_record_that_keeps_timing_out_is_dropped_not_retried_for_ever():
    server = grpc.aio.server()
    fake = SlowOnPoison()
    conversations_pb2_grpc.add_ConversationsServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    auth = CommonConfig.from_env({}).auth
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            log = TurnLog(conversations_pb2_grpc.ConversationsStub(ch), maxsize=100, suspect_attempts=3,
                          base_delay_s=0.01, max_delay_s=0.02, timeout_s=0.2, senders=2,
                          service_token=ServiceToken(auth))
            log.start()
            log.submit(conversations_pb2.Turn(turn_id="poison", question="poison"), "learner-token",
                       user_id="learner-1")
            for i in range(40):  # steady traffic from other learners: the service is evidently up
                log.submit(conversations_pb2.Turn(turn_id=f"ok-{i}", question="fine"), "learner-token",
                           user_id=f"learner-{i}")
                await asyncio.sleep(0.05)
            await log.close(10)
    finally:
        await server.stop(0)
    assert "poison" not in fake.stored and len([t for t in fake.stored if t.startswith("ok-")]) == 40
    assert log.dropped == 1 and 3 <= fake.poison_attempts <= 6, (log.dropped, fake.poison_attempts)
    # Every record went with the gateway's service token and named its learner (Conversations refuses
    # turn content from learner tokens).
    assert fake.bearers and "Bearer learner-token" not in fake.bearers and "" not in fake.users
