"""Card acquirer stand-in.

Magic card numbers trigger the awkward cases a real acquirer produces (declines,
transient errors, 3-D Secure, lost answers) so the gateway's retry and recovery
paths can be exercised deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import (
    Outcome,
    ReversalRequest,
    SandboxError,
    last4,
    new_id,
    now_iso,
    require_idempotency_key,
)
from sandbox.partners import Partner
from sandbox.settlement import Settlement
from sandbox.state import StateDB, Table

CARD_APPROVED = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_EXPIRED = "4000000000000069"
CARD_TRANSIENT = "4000000000000119"
CARD_3DS = "4000000000003220"
CARD_LOST_ANSWER = "4000000000000259"

OTP_OK = "123456"
TRANSIENT_FAILURES = 2


class AuthorisationRequest(BaseModel):
    card_number: str = Field(pattern=r"^\d{12,19}$")
    expiry_month: int = Field(ge=1, le=12)
    expiry_year: int = Field(ge=1000, le=9999)
    cvv: str = Field(pattern=r"^\d{3,4}$")
    cardholder_name: str = Field(min_length=1)
    amount: int = Field(gt=0)
    currency: Literal["AED"]
    reference: str = Field(min_length=1)


class ThreeDSRequest(BaseModel):
    otp: str


class CaptureRequest(BaseModel):
    amount: int = Field(gt=0)


class RefundRequest(BaseModel):
    amount: int = Field(gt=0)


@dataclass
class Authorisation:
    """What the acquirer remembers: last4 only, never the card number or CVV."""

    id: str
    reference: str
    status: str  # authorised | pending_3ds | failed | captured | voided
    amount: int
    currency: str
    last4: str
    brand: str
    idempotency_key: str
    created_at: str = field(default_factory=now_iso)
    capture_count: int = 0
    captured_amount: int = 0
    # Refunds of the captured amount, several allowed (defaults: stored state still loads).
    refund_count: int = 0
    refunded_amount: int = 0

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": "requires_action" if self.status == "pending_3ds" else self.status,
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "last4": self.last4,
            "brand": self.brand,
            "captured_amount": self.captured_amount,
            "refunded_amount": self.refunded_amount,
        }
        if self.status == "pending_3ds":
            body["challenge"] = {"type": "otp", "hint": f"use {OTP_OK} in the sandbox"}
        return body

    def admin(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "amount": self.amount,
            "last4": self.last4,
            "brand": self.brand,
            "capture_count": self.capture_count,
            "captured_amount": self.captured_amount,
            "refund_count": self.refund_count,
            "refunded_amount": self.refunded_amount,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
        }


@dataclass
class Attempts:
    """Transient failures already served for one Idempotency-Key (not final answers)."""

    served: int = 0


def brand_of(card_number: str) -> str:
    if card_number.startswith("4"):
        return "visa"
    if card_number.startswith("5"):
        return "mastercard"
    return "card"


def is_expired(month: int, year: int) -> bool:
    today = datetime.now(UTC)
    return (year, month) < (today.year, today.month)


def build_router(db: StateDB, *, lost_answer_delay: float) -> APIRouter:
    """The acquirer's endpoints, keeping what it knows in ``db``."""
    partner = Partner(db, "acquirer")
    authorisations = Table(db, "authorisation", Authorisation)
    transient = Table(db, "acquirer.transient", Attempts)
    calls = partner.calls()
    admin = partner.admin()
    settlement = Settlement(db, "acquirer")
    settlement.routes(calls, admin)

    def get_auth(auth_id: str) -> Authorisation:
        auth = authorisations.get(auth_id)
        if auth is None:
            raise SandboxError(404, "not_found", "No such authorisation.")
        return auth

    def create(req: AuthorisationRequest, key: str, status: str) -> Outcome:
        auth = Authorisation(
            id=new_id("auth"),
            reference=req.reference,
            status=status,
            amount=req.amount,
            currency=req.currency,
            last4=last4(req.card_number),
            brand=brand_of(req.card_number),
            idempotency_key=key,
        )
        authorisations.put(auth.id, auth)
        return Outcome(201, auth.public())

    def decide(req: AuthorisationRequest, key: str) -> Outcome:
        pan = req.card_number
        if pan == CARD_EXPIRED or is_expired(req.expiry_month, req.expiry_year):
            raise SandboxError(402, "card_expired", "The card has expired.")
        if pan == CARD_TRANSIENT:
            attempts = transient.get(key) or Attempts()
            if attempts.served < TRANSIENT_FAILURES:
                attempts.served += 1
                transient.put(key, attempts)
                raise SandboxError(503, "processing_error", "Temporary processing error; retry.")
            return create(req, key, "authorised")
        if pan in (CARD_APPROVED, CARD_LOST_ANSWER):
            return create(req, key, "authorised")
        if pan == CARD_3DS:
            return create(req, key, "pending_3ds")
        raise SandboxError(402, "card_declined", "The card issuer declined the payment.")

    @calls.post("/authorisations")
    async def authorise(
        req: AuthorisationRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        key = require_idempotency_key(idempotency_key)
        # A lost answer: the authorisation exists, but the caller gives up before hearing.
        lost_for = lost_answer_delay if req.card_number == CARD_LOST_ANSWER else 0.0
        return await partner.answer(
            "/authorisations", key, lambda: decide(req, key), held_for=lost_for, lost=True
        )

    @calls.post("/reversals")
    async def reverse(req: ReversalRequest) -> dict[str, Any]:
        def release(auth_id: str) -> None:
            auth = get_auth(auth_id)
            if auth.status in ("authorised", "pending_3ds"):
                auth.status = "voided"
                authorisations.put(auth.id, auth)
            if auth.status == "captured":
                raise SandboxError(409, "not_voidable", "The authorisation was captured.")

        return partner.reverse("/authorisations", req.idempotency_key, release)

    @calls.post("/authorisations/{auth_id}/3ds")
    async def three_ds(
        auth_id: str,
        req: ThreeDSRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        def decide() -> Outcome:
            auth = get_auth(auth_id)
            if auth.status == "pending_3ds":
                auth.status = "authorised" if req.otp == OTP_OK else "failed"
                authorisations.put(auth.id, auth)
            if auth.status == "failed":
                raise SandboxError(402, "three_ds_failed", "3-D Secure authentication failed.")
            if auth.status == "voided":
                raise SandboxError(409, "not_pending", "The authorisation was voided.")
            return Outcome(200, auth.public())

        return await partner.answer(f"/authorisations/{auth_id}/3ds", idempotency_key, decide)

    @calls.post("/authorisations/{auth_id}/capture")
    async def capture(
        auth_id: str,
        req: CaptureRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        def decide() -> Outcome:
            auth = get_auth(auth_id)
            if auth.status == "captured":
                return Outcome(200, auth.public())
            if auth.status != "authorised":
                raise SandboxError(
                    409, "not_capturable", f"Cannot capture an authorisation in {auth.status}."
                )
            if req.amount > auth.amount:
                raise SandboxError(
                    422, "amount_too_large", "Capture amount exceeds the authorised amount."
                )
            auth.status = "captured"
            auth.capture_count += 1
            auth.captured_amount = req.amount
            authorisations.put(auth.id, auth)
            settlement.record("capture", auth.reference, auth.id, req.amount)
            return Outcome(200, auth.public())

        return await partner.answer(
            f"/authorisations/{auth_id}/capture",
            idempotency_key,
            decide,
            held_for=partner.settings().capture_delay_seconds,
        )

    @calls.post("/authorisations/{auth_id}/refunds")
    async def refund(
        auth_id: str,
        req: RefundRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        """Return part of a captured amount, once per Idempotency-Key; the refunds of an
        authorisation never pass what was captured."""

        def decide() -> Outcome:
            auth = get_auth(auth_id)
            if auth.status != "captured":
                raise SandboxError(
                    409, "not_refundable", f"Cannot refund an authorisation in {auth.status}."
                )
            if auth.refunded_amount + req.amount > auth.captured_amount:
                raise SandboxError(
                    409,
                    "refund_exceeds_captured",
                    "The refunds would pass the captured amount.",
                )
            auth.refund_count += 1
            auth.refunded_amount += req.amount
            authorisations.put(auth.id, auth)
            settlement.record("refund", auth.reference, auth.id, req.amount)
            return Outcome(
                201,
                {
                    "id": new_id("refund"),
                    "authorisation_id": auth.id,
                    "amount": req.amount,
                    "status": "succeeded",
                    "refunded_amount": auth.refunded_amount,
                },
            )

        return await partner.answer(f"/authorisations/{auth_id}/refunds", idempotency_key, decide)

    @calls.post("/authorisations/{auth_id}/void")
    async def void(
        auth_id: str, idempotency_key: str | None = Header(default=None)
    ) -> JSONResponse:
        def decide() -> Outcome:
            auth = get_auth(auth_id)
            if auth.status in ("authorised", "pending_3ds"):
                auth.status = "voided"
                authorisations.put(auth.id, auth)
            # A failed challenge holds nothing: voiding it is a no-op, as at real acquirers.
            if auth.status not in ("voided", "failed"):
                raise SandboxError(
                    409, "not_voidable", f"Cannot void an authorisation in {auth.status}."
                )
            return Outcome(200, auth.public())

        return await partner.answer(f"/authorisations/{auth_id}/void", idempotency_key, decide)

    @admin.get("/authorisations")
    async def list_authorisations(reference: str | None = None) -> dict[str, Any]:
        return {"items": [a.admin() for a in authorisations.find(reference=reference)]}

    router = APIRouter(prefix="/acquirer", tags=["acquirer"])
    router.include_router(calls)
    router.include_router(admin)
    return router
