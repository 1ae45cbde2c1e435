"""Async gRPC server bootstrap shared by every service.

Health starts NOT_SERVING and flips to SERVING only after the service's
`ready` coroutine has finished (e.g. the first snapshot is loaded). On
SIGTERM the health flips back to NOT_SERVING, the server drains for
`drain_seconds` and stops with a grace period, so in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import metrics, telemetry
from services.common.config import CommonConfig
from services.common.grpc_tls import GrpcTls, make_channel, reflection_enabled
from services.common.signals import stop_on_signals

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
    # gRPC's default reconnect backoff grows to 120 s: a backend back after a long outage would stay unused
    # that long. Capped at 5 s, a restarted service is found within seconds. (Not the min backoff: gRPC also
    # uses it as the connect timeout, and a short one fails calls to a slow-to-handshake backend at once.)
    ("grpc.max_reconnect_backoff_ms", 5000),
)


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the handler can refuse it."""

    def __init__(self, error: str) -> None:
        self.error = error


class RequestDecodeGuard(grpc.aio.ServerInterceptor):
    """Undecodable requests (e.g. invalid UTF-8 in a string field) get INVALID_ARGUMENT.

    grpc-python deserialises before the handler runs and answers a DecodeError with UNKNOWN,
    which tells a client nothing. This wraps each unary handler's deserializer so the error
    reaches the handler, which aborts with a clear status.
    """

    async def intercept_service(self, continuation, handler_call_details):
        """Wrap unary handlers so an undecodable request is answered INVALID_ARGUMENT, not UNKNOWN."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        deserialize, behaviour = handler.request_deserializer, handler.unary_unary

        def safe_deserialize(data: bytes):
            try:
                return deserialize(data)
            except DecodeError as exc:
                return _Undecodable(str(exc))

        async def guarded(request, context):
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"the request is not a valid message: {request.error}")
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=safe_deserialize, response_serializer=handler.response_serializer)


class ErrorCounter(grpc.aio.ServerInterceptor):
    """Every RPC that ends with a status other than OK adds one to `kotoba.errors{component, code}`."""

    def __init__(self, component: str) -> None:
        self.component = component

    async def intercept_service(self, continuation, handler_call_details):
        """Wrap unary handlers so every RPC ending in a status other than OK is counted."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        async def counted(request, context):
            try:
                response = await behaviour(request, context)
            except asyncio.CancelledError:  # the caller gave up (deadline, learner left)
                self._count(grpc.StatusCode.CANCELLED)
                raise
            except BaseException:  # an abort (its code is set) or an unexpected error (UNKNOWN)
                self._count(context.code() or grpc.StatusCode.UNKNOWN)
                raise
            if context.code() not in (None, grpc.StatusCode.OK):
                self._count(context.code())
            return response

        return grpc.unary_unary_rpc_method_handler(
            counted, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _count(self, code: grpc.StatusCode) -> None:
        metrics.errors.add(1, {"component": self.component, "code": code.name})


class GrpcService:
    """One service's gRPC server: servicers, health, reflection, telemetry, graceful stop."""

    def __init__(self, name: str, addr: str, service_names: Sequence[str], drain_seconds: float = 5.0) -> None:
        self.name = name
        self.addr = addr
        self.service_names = list(service_names)
        self.drain_seconds = drain_seconds
        # The decode guard sits innermost, so telemetry and the error count see the status it sets.
        self.server = grpc.aio.server(interceptors=[*telemetry.server_interceptors(), ErrorCounter(name),
                                                    RequestDecodeGuard()],
                                      options=SERVER_OPTIONS)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if reflection_enabled():
            reflection.enable_server_reflection(
                [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME],
                self.server,
            )
        self.port = 0

    async def _set_health(self, status: int) -> None:
        for service in ["", *self.service_names]:
            await self.health.set(service, status)

    async def start(self) -> int:
        """Bind the port (TLS when configured) and start serving; the port bound."""
        creds = GrpcTls.from_env().server_credentials()
        self.port = self.server.add_secure_port(self.addr, creds) if creds else self.server.add_insecure_port(self.addr)
        if self.port == 0:
            raise RuntimeError(f"{self.name}: cannot listen on {self.addr}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info("listening", extra={"addr": self.addr, "port": self.port, "grpc_service": self.name})
        return self.port

    async def mark_ready(self) -> None:
        """Report SERVING on the health service: load balancers may now send traffic."""
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("ready", extra={"grpc_service": self.name})

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, then let calls in flight finish within the grace period."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace if grace is not None else self.drain_seconds)
        log.info("stopped", extra={"grpc_service": self.name})


async def run_until_signalled(service: GrpcService, ready: Callable[[], Awaitable[None]] | None = None,
                              shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
    """Start, run `ready`, serve until SIGTERM/SIGINT, drain, run `shutdown`, stop."""
    stop = stop_on_signals()
    await service.start()
    if ready is not None:
        await ready()
    await service.mark_ready()
    await stop.wait()
    log.info("draining", extra={"grpc_service": service.name, "seconds": service.drain_seconds})
    await service._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    if shutdown is not None:
        await shutdown()
    await service.stop()


def channel(addr: str) -> grpc.aio.Channel:
    """Client channel with telemetry (trace context rides in gRPC metadata)."""
    return make_channel(addr, CHANNEL_OPTIONS, telemetry.client_interceptors())


def bootstrap(service: str) -> CommonConfig:
    """Read config, set up logs and telemetry. Call first in every `python -m services.<name>`."""
    from services.common.logs import setup_logging

    config = CommonConfig.from_env()
    setup_logging(service, config.log_level)
    telemetry.setup_telemetry(service, config.otel_exporter)
    return config
