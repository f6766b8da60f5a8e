"""The HTTP servers' middleware (:class:`RequestTelemetry`): request ids, one masked access
log line a request, the HTTP metrics, and unexpected exceptions answered without details."""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import opentelemetry.baggage
import opentelemetry.context
import opentelemetry.trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.common import MetricMeter

from epay.telemetry.logs import REQUEST_ID_BAGGAGE, RequestContext, _request

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
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return secrets.token_hex(8)


def _route_of(scope: Scope) -> str:
    """The matched route's template (``/v1/payments/{payment_id}``); never the path, which
    is the caller's to fill with anything."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
