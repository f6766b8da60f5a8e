"""The department API's refunds: full or partial, several per payment, each a workflow.

``POST /v1/payments/{id}/refunds`` checks what is available and inserts the refund in one
transaction holding the payment's row (store/refunds.py), so concurrent requests never
refund more than the payment's total; then it starts the refund's workflow
(workflows/refund.py), which returns the money, posts the reversing journal and tells the
department.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import schemas
from api.context import Ctx, Department, PaymentId
from api.errors import ApiError, not_found
from domain.money import CURRENCY, format_aed
from domain.refunds import (
    RefundFailure,
    RefundRequest,
    failure_message,
    idempotency_scope,
    refund_workflow_id,
)
from store import idempotency, payments, refunds
from store.refunds import Refund
from workflows.refund import RefundWorkflow

log = logging.getLogger("epay.api")

router = APIRouter(prefix="/v1", tags=["refunds"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": None, "content": {"application/problem+json": {}}}
    for status in (400, 401, 404, 409, 413, 422, 503)
}
START_TIMEOUT = timedelta(seconds=10)


def refund_view(row: Refund) -> schemas.Refund:
    return schemas.Refund(
        id=row.id,
        payment_id=row.payment_id,
        amount=row.amount,
        currency=CURRENCY,
        reason=row.reason,
        state=row.state,
        failure=(
            schemas.Failure(code=row.failure_code, message=failure_message(row.failure_code))
            if row.failure_code
            else None
        ),
        lines=[schemas.RefundLine(code=line.code, amount=line.amount) for line in row.lines],
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
    )


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    response_model=schemas.Refund,
    responses={200: {"model": schemas.Refund, "description": "An idempotent replay"}, **PROBLEMS},
)
async def create_refund(
    payment_id: PaymentId,
    body: schemas.CreateRefund,
    ctx: Ctx,
    dept: Department,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Refund part or all of a succeeded payment. 409 `refund_exceeds_available` when the
    payment's refunds (those not failed) would pass its total, however many arrive at once;
    409 `not_refundable` unless the payment succeeded. With `Idempotency-Key`, the same key
    and body return the same refund (200)."""
    created = await refunds.create(
        ctx.pool,
        department=dept,
        payment_id=payment_id,
        refund_id="rf_" + uuid.uuid4().hex,
        amount=body.amount,
        reason=body.reason,
        idempotency_key=idempotency_key,
    )
    if created.refused is not None:
        raise _refusal(created)
    assert created.refund is not None
    assert created.request is not None
    refund = created.refund
    if refund.state == "pending" and not await _start(ctx, created.request):
        if idempotency_key is not None:  # nothing was refunded: a retry starts afresh
            await idempotency.release_idempotency_key(
                ctx.pool, dept, idempotency_scope(idempotency_key)
            )
        raise ApiError(
            503,
            "temporarily_unavailable",
            "The refund could not be started; nothing was refunded. Retry the request.",
            title="Service unavailable",
        )
    row = await refunds.get(ctx.pool, refund.id)
    assert row is not None
    return JSONResponse(
        refund_view(row).model_dump(mode="json"), status_code=200 if created.replayed else 201
    )


async def _start(ctx: Ctx, req: RefundRequest) -> bool:
    """Start the refund's workflow (a replay finds it started). False when it could not be
    started and the refund was failed for it, so that its amount is free again; a workflow
    that did start (its answer lost) has taken the refund, which is then left to it."""
    try:
        await ctx.temporal.start_workflow(
            RefundWorkflow.run,
            req,
            id=refund_workflow_id(req.refund_id),
            task_queue=ctx.settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            rpc_timeout=START_TIMEOUT,
            static_summary=f"refund {req.department} {req.payment_id} {format_aed(req.amount)}",
        )
    except WorkflowAlreadyStartedError:
        return True
    except Exception as exc:  # noqa: BLE001 - Temporal unreachable, a timeout: not started
        log.error("refund %s: its workflow could not be started: %s", req.refund_id, type(exc))
        failed = await refunds.fail_unstarted(ctx.pool, req.refund_id, RefundFailure.NOT_STARTED)
        return not failed
    return True


def _refusal(created: refunds.Created) -> ApiError:
    if created.refused == "payment_not_found":
        return not_found()
    if created.refused == "idempotency_key_reused":
        return ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request in the last 24 hours.",
        )
    if created.refused == "not_refundable":
        return ApiError(
            409,
            "not_refundable",
            f"A {created.payment_state} payment cannot be refunded: only a succeeded one.",
        )
    return ApiError(
        409,
        "refund_exceeds_available",
        f"The refunds would pass the payment's total: {format_aed(created.available)} "
        "is available to refund.",
    )


@router.get(
    "/payments/{payment_id}/refunds",
    response_model=schemas.RefundList,
    responses=PROBLEMS,
)
async def list_refunds(payment_id: PaymentId, ctx: Ctx, dept: Department) -> schemas.RefundList:
    """The payment's refunds with their states (`pending`, `succeeded`, `failed`), newest
    first."""
    if await payments.get_payment(ctx.pool, dept, payment_id) is None:
        raise not_found()
    rows = await refunds.list_for_payment(ctx.pool, payment_id)
    return schemas.RefundList(items=[refund_view(r) for r in rows])
