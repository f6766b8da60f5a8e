"""What SREs see of an ePay process: Prometheus metrics, OpenTelemetry traces, JSON logs.

Each process (``epay api``, ``epay worker``, ``epay codec-server``) calls :func:`setup` once,
before it makes its Temporal client:

- metrics: the Temporal SDK's runtime serves ``/metrics`` on ``EPAY_METRICS_PORT``: the SDK's
  own ``temporal_*`` metrics and ePay's ``epay_*`` ones, which workflows record through
  ``workflow.metric_meter()``, activities through ``activity.metric_meter()`` and the rest
  of the process through :attr:`Telemetry.meter` (``docs/observability.md`` lists them);
- traces: an OpenTelemetry tracer provider, exported over OTLP/HTTP when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, with httpx, asyncpg and the FastAPI apps
  instrumented and Temporal's ``TracingInterceptor`` on every client (``epay.temporal``), so
  that one trace follows a payment from the department's ``POST /v1/payments`` through its
  workflow and activities to the partners' HTTP calls and the SQL statements;
- logs: one JSON object a line (``EPAY_LOG_FORMAT=text`` for people at a terminal) with the
  payment, workflow, run, activity and request each line is about.

Card data, PINs, OTPs and payer tokens travel in request bodies and headers, which are never
logged nor put on spans; query strings (``?token=``) and anything shaped like a card number
are scrubbed from span attributes and log lines all the same.

One module a concern, their names all re-exported here: ``scrub`` (card-like data out of
text and spans), ``traces`` (tracer provider, exporters, instrumentation, Temporal
interceptors), ``logs`` (request context, formatters, :func:`configure_logging`),
``metrics`` (the Temporal runtime with Prometheus, the stuck-payments gauge) and
``middleware`` (:class:`RequestTelemetry` of the HTTP servers).
"""

from __future__ import annotations

from dataclasses import dataclass

import opentelemetry.trace
from opentelemetry.sdk.trace import TracerProvider
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime

from epay.config import Settings
from epay.telemetry.logs import (
    CONTEXT_FIELDS,
    EXTRA_FIELDS,
    PAYMENT_ID,
    REQUEST_ID_BAGGAGE,
    JsonFormatter,
    LogContext,
    RequestContext,
    TextFormatter,
    adopt_server_logs,
    configure_logging,
    note_payment,
)
from epay.telemetry.metrics import (
    OPEN_STEPS,
    PAYER_STEPS,
    STEP_BUCKETS,
    STUCK_AFTER,
    STUCK_PAYMENTS_SQL,
    STUCK_REFRESH,
    report_stuck_payments,
    temporal_runtime,
)
from epay.telemetry.middleware import HEALTH_PATHS, RequestTelemetry, access_log
from epay.telemetry.scrub import (
    ScrubbingExporter,
    masked,
    scrubbed_attributes,
    scrubbed_span,
)
from epay.telemetry.traces import (
    instrument_app,
    instrument_libraries,
    temporal_interceptors,
    tracer_provider,
)

__all__ = [
    "CONTEXT_FIELDS",
    "EXTRA_FIELDS",
    "HEALTH_PATHS",
    "OPEN_STEPS",
    "PAYER_STEPS",
    "PAYMENT_ID",
    "REQUEST_ID_BAGGAGE",
    "SERVICE_API",
    "SERVICE_CODEC_SERVER",
    "STEP_BUCKETS",
    "STUCK_AFTER",
    "STUCK_PAYMENTS_SQL",
    "STUCK_REFRESH",
    "JsonFormatter",
    "LogContext",
    "RequestContext",
    "RequestTelemetry",
    "ScrubbingExporter",
    "Telemetry",
    "TextFormatter",
    "access_log",
    "adopt_server_logs",
    "configure_logging",
    "instrument_app",
    "instrument_libraries",
    "masked",
    "note_payment",
    "report_stuck_payments",
    "scrubbed_attributes",
    "scrubbed_span",
    "setup",
    "temporal_interceptors",
    "temporal_runtime",
    "tracer_provider",
    "worker_service",
]

SERVICE_API = "epay-api"
SERVICE_CODEC_SERVER = "epay-codec-server"


def worker_service(role: str) -> str:
    """A worker's service name: ``epay-worker-<role>`` (``all``, ``workflows``, ...)."""
    return f"epay-worker-{role}"


# --- the process --------------------------------------------------------------------------


@dataclass
class Telemetry:
    service: str
    runtime: Runtime
    provider: TracerProvider

    @property
    def meter(self) -> MetricMeter:
        """ePay's metrics outside workflows and activities (a no-op without a metrics port)."""
        return self.runtime.metric_meter

    def shutdown(self) -> None:
        """Send the spans still buffered."""
        self.provider.shutdown()


_process: list[Telemetry] = []  # the one setup of this process


def setup(settings: Settings, service: str) -> Telemetry:
    """Logging, tracing and the Temporal runtime of this process, once: a second call
    returns the first one's."""
    if _process:
        return _process[0]
    configure_logging(settings.log_format, service)
    provider = tracer_provider(service, settings.otlp_endpoint)
    opentelemetry.trace.set_tracer_provider(provider)
    instrument_libraries(provider)
    runtime = temporal_runtime(settings.metrics_port)
    _process.append(Telemetry(service, runtime, provider))
    return _process[0]
