"""The department API: catalogue, payments, their audit trail, cancellation."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from api import schemas, temporal_calls, views
from api.context import Ctx, Department, PaymentId
from api.errors import ApiError, field_error, not_found, problem_body
from domain.cursors import decode_cursor, encode_cursor
from domain.failures import FailureCode
from domain.models import PaymentRequest, ReservationResult
from domain.pricing import PriceRefused, Service, price
from domain.proofs import commitments
from domain.states import CANCELLABLE_STATES, PaymentState
from store import catalogue, idempotency, payments
from store.payments import PaymentRow

router = APIRouter(prefix="/v1", tags=["departments"])

# The errors a call can answer with (the schema is filled in by ``errors.document_problems``).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    **{
        status: {"model": None, "content": {"application/problem+json": {}}}
        for status in (400, 401, 404, 409, 413, 422, 503)
    },
    429: {  # the key's rate limit (api/ratelimit.py)
        "model": None,
        "content": {"application/problem+json": {}},
        "headers": {
            "Retry-After": {
                "description": "Seconds until the key may call again",
                "schema": {"type": "integer"},
            }
        },
    },
}


@router.get("/services", response_model=schemas.ServiceList, responses=PROBLEMS)
async def list_services(ctx: Ctx, dept: Department) -> schemas.ServiceList:
    """The caller's service catalogue."""
    return schemas.ServiceList(
        items=[views.service(r) for r in await catalogue.list_services(ctx.pool, dept)]
    )


def _request_hash(body: schemas.CreatePayment) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _payment_response(ctx: Ctx, dept: str, payment_id: str, status: int) -> JSONResponse:
    row = await payments.get_payment(ctx.pool, dept, payment_id)
    if row is None:
        raise not_found()
    return JSONResponse(views.as_json(views.payment(row, ctx.settings)), status_code=status)


@router.post(
    "/payments",
    status_code=201,
    response_model=schemas.Payment,
    responses={200: {"model": schemas.Payment, "description": "An idempotent replay"}, **PROBLEMS},
)
async def create_payment(
    body: schemas.CreatePayment,
    ctx: Ctx,
    dept: Department,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Start a payment; answers 201 once the fee is reserved."""
    service = await catalogue.get_service(ctx.pool, dept, body.service_code)
    if service is None:
        raise field_error("service_code", "unknown_service", "No such service in your catalogue.")
    try:
        lines = price(Service(service.fee, service.exempt_from_added_fees), body.amount)
    except PriceRefused as refused:
        raise field_error("amount", refused.code, refused.message) from None

    async def reserve(payment_id: str) -> ReservationResult:
        """Start the payment's workflow (or join it) and wait for its reservation."""
        req = PaymentRequest(
            payment_id=payment_id,
            department=dept,
            service_code=body.service_code,
            reference=body.reference,
            lines=lines,
            payment_window_seconds=ctx.settings.payment_window_seconds,
            confirm_deadline_seconds=ctx.settings.department_confirm_deadline_seconds,
            requested_at=time.time(),
            description=body.description,
            return_url=body.return_url,
            metadata=body.metadata or {},
            payer=body.payer.model_dump(exclude_none=True) if body.payer else None,
            update_commitments=commitments(ctx.settings.token_secret, payment_id),
        )
        return await temporal_calls.start_payment(
            ctx.temporal, ctx.settings.task_queue, req, ctx.settings.reservation_wait_seconds
        )

    payment_id = "pay_" + uuid.uuid4().hex
    if idempotency_key is not None:
        replay = await _replay(ctx, dept, idempotency_key, _request_hash(body), payment_id, reserve)
        if replay is not None:
            return replay
    return await _answer(ctx, dept, idempotency_key, payment_id, 201, await reserve(payment_id))


Reserve = Callable[[str], Awaitable[ReservationResult]]

# How often one request may find the payment its key names ended unreserved and move the key
# to a new payment, when concurrent retries with the key move it first.
KEY_MOVES = 3


async def _replay(
    ctx: Ctx, dept: str, key: str, request_hash: str, payment_id: str, reserve: Reserve
) -> JSONResponse | None:
    """The answer to a request whose Idempotency-Key an earlier request holds; None when this
    request is to make ``payment_id`` under the key: the key was free, or the payment it
    named ended without a reservation that the department was ever told of."""
    for _ in range(KEY_MOVES):
        earlier = await idempotency.claim_idempotency_key(
            ctx.pool, dept, key, request_hash, payment_id
        )
        if earlier is None:
            return None
        if earlier.request_hash != request_hash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request in the last 24 hours.",
            )
        if earlier.response_status is not None:
            return JSONResponse(
                earlier.response_body,
                status_code=earlier.response_status,
                media_type="application/problem+json",
            )
        reservation = await _earlier_reservation(ctx, dept, earlier.payment_id, reserve)
        if reservation is not None:
            return await _answer(ctx, dept, key, earlier.payment_id, 200, reservation)
        if await idempotency.move_idempotency_key(
            ctx.pool, dept, key, earlier.payment_id, payment_id
        ):
            return None
    raise _refusal(temporal_calls.RESERVATION_PENDING)


# The answers of a workflow that gave up its payment before it was reserved for good.
UNRESERVED = frozenset({FailureCode.RESERVATION_FAILED, temporal_calls.PAYMENT_CLOSED})


async def _earlier_reservation(
    ctx: Ctx, dept: str, payment_id: str, reserve: Reserve
) -> ReservationResult | None:
    """What became of the reservation of the payment an earlier request with the key started
    (a 503 told the caller to retry, or the request is still waiting): its workflow's answer,
    or None if the payment ended unreserved, its workflow having closed before reserving or
    released a reservation whose answer came too late."""
    row = await payments.get_payment(ctx.pool, dept, payment_id)
    if row is not None and row.state != PaymentState.RESERVED:
        return None if _released_too_late(row) else ReservationResult(ok=True)
    # Not reserved yet, or reserved: its workflow says whether the reservation stands.
    reservation = await reserve(payment_id)
    if reservation.ok or reservation.code not in UNRESERVED:
        return reservation
    row = await payments.get_payment(ctx.pool, dept, payment_id)
    # A reservation its workflow is still releasing: 503 again, the key kept for the retry.
    return None if row is None or _released_too_late(row) else reservation


def _released_too_late(payment: PaymentRow) -> bool:
    """The payment's workflow ended it because its reservation's answer came too late."""
    return (
        payment.state == PaymentState.FAILED
        and payment.failure_code == FailureCode.RESERVATION_FAILED
    )


async def _answer(
    ctx: Ctx,
    dept: str,
    key: str | None,
    payment_id: str,
    status: int,
    reservation: ReservationResult,
) -> JSONResponse:
    """The payment once reserved; else a 409, which the key keeps, or a 503, after which the
    key still names the payment, so that a retry with it learns what became of the payment."""
    # A workflow that ended (stopped in Temporal) before it answered may have reserved the
    # fee first: the read model says.
    if reservation.ok or (
        reservation.code == temporal_calls.PAYMENT_CLOSED
        and await payments.get_payment(ctx.pool, dept, payment_id) is not None
    ):
        return await _payment_response(ctx, dept, payment_id, status)
    error = _refusal(reservation.code)
    if key is not None and error.status == 409:
        await idempotency.remember_idempotent_response(
            ctx.pool, dept, key, 409, problem_body(error)
        )
    raise error


def _refusal(code: str | None) -> ApiError:
    if code == "reference_already_paid":
        return ApiError(409, code, "This reference has already been paid.")
    if code == "reference_in_progress":
        return ApiError(409, code, "This reference has a payment in progress.")
    # reservation_failed / reservation_pending / payment_closed: nothing was promised; with
    # the same Idempotency-Key a retry returns the payment if the reservation did go through,
    # or makes a new one if it did not.
    return ApiError(
        503,
        "reservation_unavailable",
        "The fee could not be reserved just now. Retry with the same Idempotency-Key.",
        title="Service unavailable",
    )


@router.get("/payments/{payment_id}", response_model=schemas.Payment, responses=PROBLEMS)
async def get_payment(payment_id: PaymentId, ctx: Ctx, dept: Department) -> JSONResponse:
    return await _payment_response(ctx, dept, payment_id, 200)


def _written_time(value: object) -> object:
    """A list filter's time as the document says, ISO 8601 text: a bare number, which the
    parser would take for seconds since 1970 (``1.5e-144``, ``1700000000``), is refused."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("give an ISO 8601 date or time, not a number")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
WrittenTime = Annotated[datetime | None, BeforeValidator(_written_time)]


@router.get("/payments", response_model=schemas.PaymentList, responses=PROBLEMS)
async def list_payments(
    ctx: Ctx,
    dept: Department,
    state: PaymentState | None = None,
    reference: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=schemas.REFERENCE_PATTERN,
            description="Payments whose reference differs from this one at most in case and spaces",
        ),
    ] = None,
    created_from: WrittenTime = None,
    created_to: WrittenTime = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> schemas.PaymentList:
    """The department's payments, newest first, a page at a time."""
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError:
        raise field_error(
            "cursor", "invalid_cursor", "The cursor is not one this API gave out."
        ) from None
    rows = await payments.list_payments(
        ctx.pool,
        dept,
        state=state.value if state else None,
        reference=reference,
        created_from=_in_utc("created_from", created_from),
        created_to=_in_utc("created_to", created_to),
        limit=limit,
        after=after,
    )
    page, more = rows[:limit], len(rows) > limit
    return schemas.PaymentList(
        items=[views.payment(r, ctx.settings) for r in page],
        has_more=more,
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


def _in_utc(name: str, value: datetime | None) -> datetime | None:
    """A list filter's time in UTC; one given without an offset is a UTC time. The database
    keeps the years 1 to 9999 in UTC: a time that is outside them once moved to UTC
    (``0001-01-01T00:00:00+04:00``) is refused rather than sent to overflow there."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise field_error(
            name, "out_of_range", "Give a time between the years 1 and 9999 in UTC."
        ) from None


@router.get("/payments/{payment_id}/events", response_model=schemas.EventList, responses=PROBLEMS)
async def list_events(payment_id: PaymentId, ctx: Ctx, dept: Department) -> schemas.EventList:
    """The payment's audit trail: every state change, with time and actor."""
    if await payments.get_payment(ctx.pool, dept, payment_id) is None:
        raise not_found()
    return schemas.EventList(
        items=[views.event(r) for r in await payments.list_events(ctx.pool, payment_id)]
    )


@router.post(
    "/payments/{payment_id}/cancel",
    status_code=202,
    response_model=schemas.Payment,
    responses=PROBLEMS,
)
async def cancel_payment(
    payment_id: PaymentId, ctx: Ctx, dept: Department, body: schemas.CancelBody | None = None
) -> JSONResponse:
    """Cancel a payment before capture; its compensations run and it ends ``cancelled``."""
    row = await payments.get_payment(ctx.pool, dept, payment_id)
    if row is None:
        raise not_found()
    if row.state not in CANCELLABLE_STATES:
        raise ApiError(
            409, "not_cancellable", f"A payment in state {row.state} cannot be cancelled."
        )
    try:
        reason = (body.reason if body else None) or ""
        await temporal_calls.cancel(ctx.temporal, ctx.settings.token_secret, payment_id, reason)
    except temporal_calls.UpdateRejected:
        raise ApiError(
            409, "not_cancellable", f"This payment ({row.state}) can no longer be cancelled."
        ) from None
    return await _payment_response(ctx, dept, payment_id, 202)
