"""Logs: the HTTP request a line is about (:class:`RequestContext`, and the payment its
Temporal calls name), the context filter that puts payment, workflow, run, activity and
request on every record, the JSON and text formatters, and :func:`configure_logging`."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import opentelemetry.baggage
import opentelemetry.trace
import temporalio.activity
import temporalio.client
import temporalio.workflow

from epay.telemetry.scrub import masked


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
