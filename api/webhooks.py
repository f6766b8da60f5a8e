"""The department's webhooks: its endpoints and the log of every delivery (store/webhooks.py).

A department registers an endpoint (``POST /v1/webhooks``) and is sent, signed like every
call from ePay (docs/departments.md), each event of its payments and refunds that the
endpoint takes, retried until accepted; ``GET /v1/webhooks/deliveries`` shows every attempt.
An endpoint must lead to the public internet (domain/destinations.py, docs/security.md,
"Webhook destinations"): the API checks at registration, the delivery activity again before
each POST.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.context import Ctx, Department
from api.departments import PROBLEMS
from api.errors import ApiError, field_error, not_found
from domain.destinations import DESTINATION_REFUSED
from domain.webhooks import EVENT_TYPES
from epay import egress
from store import webhooks
from store.webhooks import DeliveryRecord, WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
RESOLVE_TIMEOUT_SECONDS = 3.0
"""How long registration waits for the endpoint's name to resolve (unresolved: refused)."""

# Escaped: the types' dots are dots, not "any character" (which let "payment\x00failed" in).
EventType = Annotated[str, Field(pattern="^(" + "|".join(re.escape(t) for t in EVENT_TYPES) + ")$")]


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        min_length=8,
        max_length=2048,
        description="Where ePay POSTs the events: https (http too outside production), on a "
        "public name or address (`destination_not_allowed` otherwise)",
    )
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="The event types the endpoint takes (default: all)",
    )


class Endpoint(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime


class EndpointList(BaseModel):
    items: list[Endpoint]


class Delivery(BaseModel):
    """One attempt to deliver one event to one endpoint."""

    id: int
    event_id: str
    type: str
    payment_id: str
    refund_id: str | None
    endpoint_id: str
    url: str
    attempt: int
    status_code: int | None = Field(description="The endpoint's HTTP status; null: none came")
    outcome: Literal["delivered", "failed"] = Field(
        description="`delivered`: the endpoint accepted the event (a 2xx); `failed`: it did not"
    )
    error: Literal["no_answer", "destination_not_allowed"] | None = Field(
        description="Why no status came: `no_answer` (nothing came in time, or the connection "
        "failed), `destination_not_allowed` (not sent: the endpoint's name resolved to an "
        "address that is not public); null when a status came"
    )
    created_at: datetime


def _delivery(row: DeliveryRecord) -> Delivery:
    """What the department is shown of an attempt: the outcome and the HTTP status, never
    why a connection failed (how far it got would map ePay's own network for the caller)."""
    error: Literal["no_answer", "destination_not_allowed"] | None = None
    if row.status_code is None:
        error = "destination_not_allowed" if row.error == DESTINATION_REFUSED else "no_answer"
    fields = asdict(row) | {"error": error}
    return Delivery(**fields)


class DeliveryList(BaseModel):
    items: list[Delivery]


def _endpoint(row: WebhookEndpoint) -> Endpoint:
    return Endpoint(id=row.id, url=row.url, events=list(row.events), created_at=row.created_at)


@router.post("", status_code=201, response_model=Endpoint, responses=PROBLEMS)
async def create_endpoint(body: EndpointBody, ctx: Ctx, dept: Department) -> Endpoint:
    """Register an endpoint for the department's events (signed with its signing secrets)."""
    allowed = ("https",) if ctx.settings.production else ("https", "http")
    if not _absolute_url(body.url, allowed):
        raise field_error(
            "url",
            "invalid_url",
            "Give an absolute " + ("https" if ctx.settings.production else "http(s)") + " URL.",
        )
    try:
        await egress.check(body.url, ctx.settings.webhook_allowlist, RESOLVE_TIMEOUT_SECONDS)
    except egress.DestinationRefused:
        raise field_error(
            "url",
            "destination_not_allowed",
            "The URL must lead to the public internet: a host name whose every address is "
            "public, or a public IP address (not private, loopback, link-local, multicast, "
            "shared or reserved, nor a cluster-internal name).",
        ) from None
    cap = ctx.settings.webhook_endpoints_per_department
    row = await webhooks.create_endpoint_within(
        ctx.pool, dept, body.url, sorted(set(body.events)), cap
    )
    if row is None:
        raise ApiError(
            409,
            "endpoint_limit_reached",
            f"A department may have {cap} active webhook endpoints; delete one first.",
            title="Endpoint limit reached",
        )
    return _endpoint(row)


def _absolute_url(url: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:  # not a URL at all, e.g. an IPv6 host left open ("http://[::1")
        return False
    return parts.scheme in schemes and bool(parts.netloc) and "\x00" not in url


@router.get("", response_model=EndpointList, responses=PROBLEMS)
async def list_endpoints(ctx: Ctx, dept: Department) -> EndpointList:
    """The department's active endpoints."""
    return EndpointList(items=[_endpoint(r) for r in await webhooks.list_endpoints(ctx.pool, dept)])


@router.delete("/{endpoint_id}", status_code=204, responses=PROBLEMS)
async def delete_endpoint(endpoint_id: str, ctx: Ctx, dept: Department) -> Response:
    """Stop sending events to an endpoint (its deliveries stay in the log)."""
    if len(endpoint_id) > 64 or not await webhooks.disable_endpoint(ctx.pool, dept, endpoint_id):
        raise not_found("webhook")
    return Response(status_code=204)


@router.get("/deliveries", response_model=DeliveryList, responses=PROBLEMS)
async def list_deliveries(
    ctx: Ctx,
    dept: Department,
    event_id: Annotated[str | None, Query(max_length=64, pattern=r"^evt_[0-9a-f]{32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """Every delivery attempt of the department's events, newest first (one event's with
    ``event_id``)."""
    if event_id is not None:
        event = await webhooks.event(ctx.pool, event_id)
        if event is None or event.department != dept:  # another's answers as none does
            raise ApiError(404, "event_not_found", "No such event.", title="Not found")
    rows = await webhooks.list_deliveries(ctx.pool, dept, event_id, limit)
    return DeliveryList(items=[_delivery(r) for r in rows])
