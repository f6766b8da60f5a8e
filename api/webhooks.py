"""The department's webhooks: its endpoints and the log of every delivery (store/webhooks.py).

A department registers an endpoint (``POST /v1/webhooks``) and is sent, signed like every
call from ePay (docs/departments.md), each event of its payments and refunds that the
endpoint takes, retried until accepted; ``GET /v1/webhooks/deliveries`` shows every attempt.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.context import Ctx, Department
from api.departments import PROBLEMS
from api.errors import ApiError, field_error, not_found
from domain.webhooks import EVENT_TYPES
from store import webhooks
from store.webhooks import WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

# Escaped: the types' dots are dots, not "any character" (which let "payment\x00failed" in).
EventType = Annotated[str, Field(pattern="^(" + "|".join(re.escape(t) for t in EVENT_TYPES) + ")$")]


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2048, description="Where ePay POSTs the events")
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
    status_code: int | None = Field(description="The endpoint's answer; null: none came")
    outcome: str = Field(description="`delivered` (a 2xx) or `failed`")
    error: str | None = Field(description="Why no answer came (the error's kind)")
    created_at: datetime


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
    row = await webhooks.create_endpoint(ctx.pool, dept, body.url, sorted(set(body.events)))
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
    rows = await webhooks.list_deliveries(ctx.pool, dept, event_id, limit)
    if event_id is not None and not rows and await webhooks.event(ctx.pool, event_id) is None:
        raise ApiError(404, "event_not_found", "No such event.", title="Not found")
    return DeliveryList(items=[Delivery(**asdict(r)) for r in rows])
