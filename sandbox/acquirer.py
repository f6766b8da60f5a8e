"""Card acquirer stand-in.

Magic card numbers trigger the awkward cases a real acquirer produces (declines,
transient errors, 3-D Secure, lost answers) so the gateway's retry and recovery
paths can be exercised deterministically.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import (
    ReversalRequest,
    SandboxError,
    error_body,
    last4,
    new_id,
    now_iso,
    require_idempotency_key,
    reversed_outcome,
)

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
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
        }


@dataclass
class AcquirerState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    authorisations: dict[str, Authorisation] = field(default_factory=dict)
    # Idempotency-Key -> (status code, body) of the first final answer.
    outcomes: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # Idempotency-Key -> transient failures already served (not stored as outcomes).
    transient_counts: dict[str, int] = field(default_factory=dict)


def brand_of(card_number: str) -> str:
    if card_number.startswith("4"):
        return "visa"
    if card_number.startswith("5"):
        return "mastercard"
    return "card"


def is_expired(month: int, year: int) -> bool:
    today = datetime.now(UTC)
    return (year, month) < (today.year, today.month)


def build_router(*, lost_answer_delay: float) -> APIRouter:
    """A router with its own state, so each app instance is an independent acquirer."""
    router = APIRouter(prefix="/acquirer", tags=["acquirer"])
    state = AcquirerState()

    def get_auth(auth_id: str) -> Authorisation:
        auth = state.authorisations.get(auth_id)
        if auth is None:
            raise SandboxError(404, "not_found", "No such authorisation.")
        return auth

    def create(req: AuthorisationRequest, key: str, status: str) -> Authorisation:
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
        state.authorisations[auth.id] = auth
        return auth

    def decide(req: AuthorisationRequest, key: str) -> tuple[int, dict[str, Any]] | None:
        """The final outcome for a new request, or None for a transient failure."""
        pan = req.card_number
        if pan == CARD_EXPIRED or is_expired(req.expiry_month, req.expiry_year):
            return 402, error_body("card_expired", "The card has expired.")
        if pan == CARD_TRANSIENT:
            served = state.transient_counts.get(key, 0)
            if served < TRANSIENT_FAILURES:
                state.transient_counts[key] = served + 1
                return None
            return 201, create(req, key, "authorised").public()
        if pan in (CARD_APPROVED, CARD_LOST_ANSWER):
            return 201, create(req, key, "authorised").public()
        if pan == CARD_3DS:
            return 201, create(req, key, "pending_3ds").public()
        return 402, error_body("card_declined", "The card issuer declined the payment.")

    @router.post("/authorisations")
    async def authorise(
        req: AuthorisationRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        key = require_idempotency_key(idempotency_key)
        async with state.lock:
            stored = state.outcomes.get(key)
            if stored is not None:
                return JSONResponse(status_code=stored[0], content=stored[1])
            outcome = decide(req, key)
            if outcome is None:
                raise SandboxError(503, "processing_error", "Temporary processing error; retry.")
            state.outcomes[key] = outcome
        if req.card_number == CARD_LOST_ANSWER:
            # The authorisation exists, but the caller gives up before hearing about it.
            await asyncio.sleep(lost_answer_delay)
        return JSONResponse(status_code=outcome[0], content=outcome[1])

    @router.post("/reversals")
    async def reverse(req: ReversalRequest) -> dict[str, Any]:
        """Void the authorisation a request made, even if its answer never reached the
        caller; a request still on its way with that key is refused when it arrives."""
        async with state.lock:
            stored = state.outcomes.setdefault(req.idempotency_key, reversed_outcome())
            auth_id = stored[1].get("id")
            if auth_id:
                auth = get_auth(auth_id)
                if auth.status in ("authorised", "pending_3ds"):
                    auth.status = "voided"
                if auth.status == "captured":
                    raise SandboxError(409, "not_voidable", "The authorisation was captured.")
            return {"idempotency_key": req.idempotency_key, "status": "reversed", "id": auth_id}

    @router.post("/authorisations/{auth_id}/3ds")
    async def three_ds(auth_id: str, req: ThreeDSRequest) -> dict[str, Any]:
        async with state.lock:
            auth = get_auth(auth_id)
            if auth.status == "pending_3ds":
                auth.status = "authorised" if req.otp == OTP_OK else "failed"
            if auth.status == "failed":
                raise SandboxError(402, "three_ds_failed", "3-D Secure authentication failed.")
            if auth.status == "voided":
                raise SandboxError(409, "not_pending", "The authorisation was voided.")
            return auth.public()

    @router.post("/authorisations/{auth_id}/capture")
    async def capture(auth_id: str, req: CaptureRequest) -> dict[str, Any]:
        async with state.lock:
            auth = get_auth(auth_id)
            if auth.status == "captured":
                return auth.public()
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
            return auth.public()

    @router.post("/authorisations/{auth_id}/void")
    async def void(auth_id: str) -> dict[str, Any]:
        async with state.lock:
            auth = get_auth(auth_id)
            if auth.status in ("authorised", "pending_3ds"):
                auth.status = "voided"
            # A failed challenge holds nothing: voiding it is a no-op, as at real acquirers.
            if auth.status not in ("voided", "failed"):
                raise SandboxError(
                    409, "not_voidable", f"Cannot void an authorisation in {auth.status}."
                )
            return auth.public()

    @router.get("/_admin/authorisations")
    async def list_authorisations(reference: str | None = None) -> dict[str, Any]:
        items = [
            a.admin()
            for a in state.authorisations.values()
            if reference is None or a.reference == reference
        ]
        return {"items": items}

    return router
