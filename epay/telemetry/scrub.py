"""Scrubbing: card-number-like digits and query-string secrets masked out of text
(:func:`masked`, used by the log formatters), and span attributes, names, events and
statuses scrubbed before a span leaves the process (:class:`ScrubbingExporter`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

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
        return [masked(v) if isinstance(v, str) else v for v in value]
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
