"""OpenTelemetry setup: one tracer/meter provider per process, gRPC interceptors for context propagation.

Exporter: none (default), console, otlp (when OTEL_EXPORTER_OTLP_ENDPOINT is set) or memory (tests).
"""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_configured: dict[str, object] = {}


def setup_telemetry(service: str, exporter: str = "none") -> InMemorySpanExporter | None:
    """Install providers once. Returns the in-memory exporter when exporter == "memory"."""
    if "tracer" in _configured:
        return _configured.get("memory")  # type: ignore[return-value]
    resource = Resource.create({"service.name": f"kotoba-{service}"})
    provider = TracerProvider(resource=resource)
    memory: InMemorySpanExporter | None = None
    metric_readers = []
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        metric_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    elif exporter == "memory":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=metric_readers))
    _configured["tracer"] = provider
    _configured["memory"] = memory
    return memory


def server_interceptors() -> list:
    """The gRPC server interceptors that trace each call."""
    return [aio_server_interceptor()]


def client_interceptors() -> list:
    """The gRPC client interceptors that propagate the trace to the callee."""
    return list(aio_client_interceptors())


def tracer(name: str) -> trace.Tracer:
    """A tracer for spans in this module."""
    return trace.get_tracer(name)
