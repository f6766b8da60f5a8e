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
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import opentelemetry.baggage
import opentelemetry.context
import opentelemetry.trace
import temporalio.activity
import temporalio.client
import temporalio.workflow
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.common import MetricMeter
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from domain.states import TERMINAL_STATES, PaymentState
from epay.config import Settings

SERVICE_API = "epay-api"
SERVICE_CODEC_SERVER = "epay-codec-server"


def worker_service(role: str) -> str:
    """A worker's service name: ``epay-worker-<role>`` (``all``, ``workflows``, ...)."""
    return f"epay-worker-{role}"


# --- scrubbing ----------------------------------------------------------------------------

# 13 to 19 digits, maybe grouped by spaces or dashes: anything that may be a card number.
_CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_QUERY_SECRET = re.compile(r"(?i)\b(token|otp|pin|cvv|card_number)=[^&\s\"'>]*")


def masked(text: str) -> str:
    """``text`` with card-number-like digits reduced to their last four and secrets in query
    strings (``?token=...``) replaced."""
    text = _CARD_NUMBER.sub(lambda m: "[card ..." + re.sub(r"\D", "", m.group())[-4:] + "]", text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + "=***", text)


# Span attributes dropped whatever their value: a query string may carry the payer's token,
# headers and statement parameters may carry anything, and an exception's message and stack
# are not ours to vouch for (its type is kept).
_DROPPED_ATTRIBUTES = frozenset(
    {"url.query", "db.statement.parameters", "exception.message", "exception.stacktrace"}
)
_DROPPED_PREFIXES = ("http.request.header.", "http.response.header.")
_URL_ATTRIBUTES = frozenset({"http.url", "http.target", "url.full"})


def _scrubbed_value(key: str, value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        if key in _URL_ATTRIBUTES:
            value = value.split("?", 1)[0]
        return masked(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [masked(v) if isinstance(v, str) else v for v in value]  # type: ignore[return-value]
    return value


def scrubbed_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, Any]:
    return {
        key: _scrubbed_value(key, value)
        for key, value in (attributes or {}).items()
        if key not in _DROPPED_ATTRIBUTES and not key.startswith(_DROPPED_PREFIXES)
    }


def scrubbed_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` fit to leave the process (see :func:`scrubbed_attributes`)."""
    status = span.status
    if status.description:
        status = Status(status.status_code, masked(status.description))
    return ReadableSpan(
        name=masked(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrubbed_attributes(span.attributes),
        events=[Event(e.name, scrubbed_attributes(e.attributes), e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter(SpanExporter):
    """Exports scrubbed copies of the spans through ``exporter``."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([scrubbed_span(s) for s in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


# --- traces -------------------------------------------------------------------------------


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

    for instrumentor in (HTTPXClientInstrumentor(), AsyncPGInstrumentor(capture_parameters=False)):
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


# --- logs ---------------------------------------------------------------------------------


@dataclass
class RequestContext:
    """What an HTTP request's log lines and server span say about it: mutable, so that a
    payment named deeper down (in a task of its own) still reaches the request's access
    log line."""

    request_id: str
    span: opentelemetry.trace.Span
    payment_id: str | None = None

    def __post_init__(self) -> None:
        self.span.set_attribute("epay.request_id", self.request_id)
        if self.payment_id:
            self.name_payment(self.payment_id)

    def name_payment(self, payment_id: str) -> None:
        self.payment_id = payment_id
        self.span.set_attribute("epay.payment_id", payment_id)


_request: ContextVar[RequestContext | None] = ContextVar("epay_request", default=None)

PAYMENT_ID = re.compile(r"pay_[0-9a-f]{32}")
REQUEST_ID_BAGGAGE = "epay.request_id"
CONTEXT_FIELDS = ("payment_id", "workflow_id", "run_id", "activity", "request_id")


def _payment_of(workflow_id: str | None) -> str | None:
    if workflow_id and workflow_id.startswith("payment-"):
        return workflow_id.removeprefix("payment-")
    return None


def note_payment(workflow_id: str) -> None:
    """The current request is about the payment whose workflow is ``workflow_id``."""
    request = _request.get()
    payment_id = _payment_of(workflow_id)
    if request is not None and request.payment_id is None and payment_id:
        request.name_payment(payment_id)


class _PaymentOfRequest(temporalio.client.Interceptor):
    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _PaymentOfRequestOutbound(next)


class _PaymentOfRequestOutbound(temporalio.client.OutboundInterceptor):
    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        note_payment(input.id)
        return await super().start_workflow(input)

    async def start_update_with_start_workflow(
        self, input: temporalio.client.StartWorkflowUpdateWithStartInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        note_payment(input.start_workflow_input.id)
        return await super().start_update_with_start_workflow(input)

    async def start_workflow_update(
        self, input: temporalio.client.StartWorkflowUpdateInput
    ) -> temporalio.client.WorkflowUpdateHandle[Any]:
        note_payment(input.id)
        return await super().start_workflow_update(input)


def _log_context(record: logging.LogRecord) -> dict[str, str]:
    """The payment, workflow, run, activity and request a log line is about, from the SDK's
    workflow and activity loggers' details, the running activity, the HTTP request, the
    request that started the payment (OpenTelemetry baggage), or the one payment the
    message names."""
    found: dict[str, str] = {}
    activity: Mapping[str, Any] | None = getattr(record, "temporal_activity", None)
    if activity is None and temporalio.activity.in_activity():
        info = temporalio.activity.info()
        activity = {
            "activity_type": info.activity_type,
            "workflow_id": info.workflow_id,
            "workflow_run_id": info.workflow_run_id,
        }
    workflow: Mapping[str, Any] | None = getattr(record, "temporal_workflow", None)
    if activity:
        found["activity"] = activity.get("activity_type") or ""
        found["workflow_id"] = activity.get("workflow_id") or ""
        found["run_id"] = activity.get("workflow_run_id") or ""
    elif workflow:
        found["workflow_id"] = workflow.get("workflow_id") or ""
        found["run_id"] = workflow.get("run_id") or ""
    request = _request.get()
    if request is not None:
        found["request_id"] = request.request_id
        found["payment_id"] = request.payment_id or ""
    else:
        found["request_id"] = str(opentelemetry.baggage.get_baggage(REQUEST_ID_BAGGAGE) or "")
    if not found.get("payment_id"):
        found["payment_id"] = _payment_of(found.get("workflow_id")) or ""
    if not found["payment_id"]:
        named = set(PAYMENT_ID.findall(record.getMessage()))
        found["payment_id"] = named.pop() if len(named) == 1 else ""
    return {k: v for k, v in found.items() if v}


class LogContext(logging.Filter):
    """Puts :data:`CONTEXT_FIELDS` on every record that has them (see ``_log_context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _log_context(record).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        span = opentelemetry.trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


# Fields of a line besides its context: what ``extra=`` may add to an access log line.
EXTRA_FIELDS = ("http_method", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, service, the context fields,
    trace and span ids, and an exception's type and traceback (masked like the message)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked(record.getMessage()),
            "service": self.service,
        }
        for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS, "trace_id", "span_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = masked(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [payment_id=... ...]`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        line = masked(super().format(record))
        return f"{line} [{context}]" if context else line


def configure_logging(log_format: str, service: str) -> None:
    """Every log line of the process through one handler on stderr, JSON or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter())
    handler.addFilter(LogContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # A request line per partner call is the trace's job; the fields carry the SDK's details.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    temporalio.workflow.logger.workflow_info_on_message = False
    temporalio.activity.logger.activity_info_on_message = False
    adopt_server_logs()


def adopt_server_logs() -> None:
    """Route uvicorn's own lines through the process's handler, and silence its access log,
    which prints query strings (``?token=``): :class:`RequestTelemetry` logs each request.
    Uvicorn configures its loggers when it starts, so a server calls this again once it has
    (at application startup)."""
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


# --- metrics ------------------------------------------------------------------------------

# Buckets for durations that run from milliseconds (a database step) to the 90-minute
# payment window (a payer who pays late).
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 5400)


def temporal_runtime(metrics_port: int | None) -> Runtime:
    """The process's Temporal runtime: Core's log lines forwarded into Python's logging (so
    they are JSON too) and, with ``metrics_port``, Prometheus on ``0.0.0.0:<port>/metrics``
    (counters end in ``_total``, durations in seconds)."""
    metrics = None
    if metrics_port:
        metrics = PrometheusConfig(
            bind_address=f"0.0.0.0:{metrics_port}",
            counters_total_suffix=True,
            durations_as_seconds=True,
            histogram_bucket_overrides={"epay_payment_step_seconds": STEP_BUCKETS},
        )
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
            metrics=metrics,
        )
    )


STUCK_AFTER = timedelta(minutes=10)  # as `epay ops stuck`'s default
STUCK_REFRESH = timedelta(seconds=15)
PAYER_STEPS = (PaymentState.RESERVED, PaymentState.REQUIRES_ACTION)
OPEN_STEPS = tuple(s for s in PaymentState if s not in TERMINAL_STATES)

# A payment waiting for its payer is stuck once its payment window has closed (it should
# have expired); one waiting for a partner or the database, once its step has lasted
# STUCK_AFTER. The predicate of the payments_open index keeps this a small scan.
STUCK_PAYMENTS_SQL = f"""
    SELECT state, department, count(*) AS stuck FROM payments
    WHERE state NOT IN ({", ".join(f"'{s}'" for s in TERMINAL_STATES)})
      AND CASE WHEN state IN ({", ".join(f"'{s}'" for s in PAYER_STEPS)})
               THEN expires_at < clock_timestamp() - interval '1 minute'
               ELSE updated_at < clock_timestamp() - $1::interval END
    GROUP BY state, department"""


async def report_stuck_payments(
    pool: asyncpg.Pool, meter: MetricMeter, *, every: timedelta = STUCK_REFRESH
) -> None:
    """Set ``epay_payments_stuck{step, department}`` from the read model every ``every``,
    for every open step of every department (0 when none is stuck), until cancelled."""
    gauge = meter.create_gauge(
        "epay_payments_stuck",
        "Open payments stuck in a step: past their payment window while waiting for the "
        "payer, or unchanged for 10 minutes while waiting for a partner or the database",
    )
    while True:
        try:
            with suppress_instrumentation():  # a query every few seconds is not worth a trace
                departments = [r["code"] for r in await pool.fetch("SELECT code FROM departments")]
                rows = await pool.fetch(STUCK_PAYMENTS_SQL, STUCK_AFTER)
        except Exception as err:  # noqa: BLE001 - the database may be away: try again later
            logging.getLogger("epay.telemetry").warning(
                "stuck payments not counted: %s", type(err).__name__
            )
        else:
            stuck = {(r["state"], r["department"]): int(r["stuck"]) for r in rows}
            for department in departments:
                for step in OPEN_STEPS:
                    count = stuck.get((step.value, department), 0)
                    gauge.set(count, {"step": step.value, "department": department})
        await asyncio.sleep(every.total_seconds())


# --- HTTP servers -------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PAYMENT_PATH = re.compile(r"/v1/payments/(pay_[0-9a-f]{32})(?:/|$)")
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})

access_log = logging.getLogger("epay.access")


@dataclass
class RequestTelemetry:
    """ASGI middleware of the API and the codec server: a request id (the caller's
    ``X-Request-Id`` if it is a plain one, else a new one; echoed in the answer) on every
    log line and span of the request; one access log line a request, with the route's
    template rather than the path, no query string and no header (the payer's token is in
    one or the other); ``epay_http_requests_total`` and ``epay_http_request_seconds``; and an
    unexpected exception answered with ``internal_error`` (a 500) and logged with its type
    and the request id alone: no body, no traceback (Starlette's own handler would log
    it with one, and with the exception's message)."""

    app: ASGIApp
    meter: MetricMeter
    internal_error: bytes
    internal_error_type: str = "application/problem+json"
    _requests: Any = field(init=False)
    _seconds: Any = field(init=False)

    def __post_init__(self) -> None:
        self._requests = self.meter.create_counter(
            "epay_http_requests", "HTTP requests answered, by route and status"
        )
        self._seconds = self.meter.create_histogram_timedelta(
            "epay_http_request_seconds", "Time to answer an HTTP request, by route", "s"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_of(scope)
        paid = _PAYMENT_PATH.match(scope.get("path", ""))
        span = opentelemetry.trace.get_current_span()  # the server's, if traced
        request = RequestContext(request_id, span, paid.group(1) if paid else None)
        reset = _request.set(request)
        attached = opentelemetry.context.attach(
            opentelemetry.baggage.set_baggage(REQUEST_ID_BAGGAGE, request_id)
        )
        started = time.monotonic()
        status = 500
        answered = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:  # noqa: BLE001 - answered and logged without its details
            access_log.error(
                "unhandled %s on %s %s", type(exc).__name__, scope["method"], _route_of(scope)
            )
            if not answered:
                await self._answer_internal_error(send_with_request_id)
        finally:
            self._record(scope, status, time.monotonic() - started)
            opentelemetry.context.detach(attached)
            _request.reset(reset)

    def _record(self, scope: Scope, status: int, took: float) -> None:
        route = _route_of(scope)
        labels = {"route": f"{scope['method']} {route}", "status": str(status)}
        self._requests.add(1, labels)
        self._seconds.record(timedelta(seconds=took), {"route": labels["route"]})
        if scope.get("path") in HEALTH_PATHS and status < 400:
            return  # probes every few seconds: their metrics suffice
        access_log.info(
            "%s %s %d",
            scope["method"],
            route,
            status,
            extra={
                "http_method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(took * 1000, 1),
            },
        )

    async def _answer_internal_error(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", self.internal_error_type.encode()),
                    (b"content-length", str(len(self.internal_error)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.internal_error})


def _request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return secrets.token_hex(8)


def _route_of(scope: Scope) -> str:
    """The matched route's template (``/v1/payments/{payment_id}``); never the path, which
    is the caller's to fill with anything."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


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
