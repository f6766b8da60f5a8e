"""Traces: the process's tracer provider and its exporters (scrubbed, OTLP/HTTP), the
httpx, asyncpg and FastAPI instrumentation, and the interceptors of every Temporal client."""

from __future__ import annotations

from typing import Any

import temporalio.client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from epay.telemetry.logs import _PaymentOfRequest
from epay.telemetry.scrub import ScrubbingExporter


def tracer_provider(
    service: str, otlp_endpoint: str | None, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    """The process's tracer provider: spans scrubbed, then sent over OTLP/HTTP to
    ``<otlp_endpoint>/v1/traces`` in batches and, for tests, to ``exporter`` one by one.
    Sampling follows the SDK's ``OTEL_TRACES_SAMPLER`` (default: every trace)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(otlp)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(ScrubbingExporter(exporter)))
    return provider


def instrument_libraries(provider: TracerProvider) -> None:
    """Spans for every HTTP call (httpx) and SQL statement (asyncpg, without parameters)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    asyncpg_instrumentor = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
    for instrumentor in (HTTPXClientInstrumentor(), asyncpg_instrumentor):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


def instrument_app(app: Any, provider: TracerProvider) -> None:
    """A server span for every request to a FastAPI app, health probes aside."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/healthz,/readyz",
        exclude_spans=["receive", "send"],
    )


def temporal_interceptors() -> list[temporalio.client.Interceptor]:
    """Interceptors of every Temporal client, and so of the workers made from one: the SDK's
    OpenTelemetry tracing (through the global tracer provider) and the payment a request's
    Temporal calls are about, for its log lines."""
    return [TracingInterceptor(), _PaymentOfRequest()]
