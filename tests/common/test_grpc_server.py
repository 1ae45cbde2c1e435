"""A skeleton service on the common bootstrap answers health and reflection through real gRPC clients."""

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.grpc_server import GrpcService, channel


async def test_health_and_reflection():
    service = GrpcService("skeleton", "127.0.0.1:0", ["kotoba.v1.Tools"], drain_seconds=0.1)
    port = await service.start()
    async with channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service="kotoba.v1.Tools"), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await service.mark_ready()
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        refl = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for response in refl.ServerReflectionInfo(ask()):
            names.update(s.name for s in response.list_services_response.service)
        assert {"kotoba.v1.Tools", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names

        stop = asyncio.create_task(service.stop(grace=0.5))
        await asyncio.sleep(0.05)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        except grpc.aio.AioRpcError:
            pass  # already closed: also fine
        await stop


async def test_undecodable_request_is_invalid_argument():
    """Invalid UTF-8 in a string field: INVALID_ARGUMENT with a message, not UNKNOWN; the server keeps serving."""
    service = GrpcService("skeleton", "127.0.0.1:0", [], drain_seconds=0.1)
    port = await service.start()
    await service.mark_ready()
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None,
                                   response_deserializer=health_pb2.HealthCheckResponse.FromString)
            bad = b"\x0a\x04\xff\xfe\xc3\x28"  # field 1 (service, a string) with bytes that are not UTF-8
            try:
                await check(bad, timeout=2)
                raise AssertionError("undecodable request was accepted")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
                assert "not a valid message" in err.details()
            reply = await check(health_pb2.HealthCheckRequest().SerializeToString(), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await service.stop(grace=0.1)
