"""OpenTelemetry tracing of the RPCs, when VOXPLANE_TRACING names where spans go (the `tracing` extra).

OpenTelemetry's grpc instrumentation does the work: one server span per RPC, with its method and
status code, continuing the caller's trace when its metadata carries one (W3C traceparent). The OTLP
exporter is configured by OpenTelemetry's own variables (OTEL_EXPORTER_OTLP_ENDPOINT, …), the
service name by OTEL_SERVICE_NAME (default: voxplane).
"""

from __future__ import annotations

import importlib.util
from typing import Literal

Exporter = Literal["off", "otlp", "console"]
EXTRA_MODULES = ("opentelemetry.sdk", "opentelemetry.instrumentation.grpc", "opentelemetry.exporter.otlp")


def enable(exporter: Exporter) -> None:
    """Instruments every grpc.aio server made from now on in this process. Call before building the server."""
    if exporter == "off":
        return
    if any(_missing(name) for name in EXTRA_MODULES):
        raise SystemExit("voxplane: VOXPLANE_TRACING needs the tracing extra: pip install 'voxplane[server,tracing]'")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    spans: SpanExporter = OTLPSpanExporter() if exporter == "otlp" else ConsoleSpanExporter()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # the SDK's when unnamed
        resource = resource.merge(Resource({SERVICE_NAME: "voxplane"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(spans))  # exported off the event loop, in batches
    GrpcAioInstrumentorServer().instrument(tracer_provider=provider)


def _missing(module: str) -> bool:
    try:  # find_spec of a submodule imports its parents, and raises if one is missing
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True
