"""How stored rows become API bodies."""

from __future__ import annotations

from typing import Any

from api import schemas
from domain.states import PaymentState
from epay import crypto
from epay.config import Settings
from store.catalogue import ServiceRow
from store.payments import EventRow, PaymentRow


def payment(row: PaymentRow, settings: Settings) -> schemas.Payment:
    state = row.state
    next_url = None
    if not state.is_terminal:
        token = crypto.payer_token(settings.token_secret, row.id)
        next_url = f"{settings.public_url}/pay/{row.id}?token={token}"
    receipt = None
    if row.receipt_number and row.receipt_issued_at:  # one receipts row: both or neither
        receipt = schemas.ReceiptOut(
            number=row.receipt_number, issued_at=row.receipt_issued_at.isoformat()
        )
    # refunded: what went back; available: what is left once the refunds in progress are done
    captured = row.amount_total if state == PaymentState.SUCCEEDED else 0
    return schemas.Payment(
        id=row.id,
        department=row.department,
        service_code=row.service_code,
        reference=row.reference,
        state=state.value,
        failure=(
            schemas.Failure(code=row.failure_code, message=row.failure_message)
            if row.failure_code
            else None
        ),
        amount=schemas.Amount(
            total=row.amount_total,
            currency=row.currency,
            lines=[schemas.Line(**line) for line in row.lines],
        ),
        method=(
            schemas.Method(type=row.method_type, brand=row.method_brand, last4=row.method_last4)
            if row.method_type
            else None
        ),
        department_confirmation=row.department_confirmation,
        receipt=receipt,
        refund_summary=schemas.RefundSummary(
            refunded=row.refunded, available=captured - row.refunds_held
        ),
        description=row.description,
        return_url=row.return_url,
        metadata=row.metadata or {},
        next_url=next_url,
        expires_at=row.expires_at.isoformat(),
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
        workflow_id=row.workflow_id,
    )


def event(row: EventRow) -> schemas.Event:
    return schemas.Event(
        event=row.event,
        from_state=row.from_state,
        to_state=row.to_state,
        actor=row.actor,
        detail=row.detail,
        occurred_at=row.occurred_at.isoformat(),
    )


def service(row: ServiceRow) -> schemas.Service:
    return schemas.Service(
        code=row.code,
        name={"en": row.name_en, "ar": row.name_ar},
        fee=row.fee,
        exempt_from_added_fees=row.exempt_from_added_fees,
    )


def as_json(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = model.model_dump(mode="json")
    return result
