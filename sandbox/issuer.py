"""e-Dirham issuer stand-in: PIN-checked holds on government stored-value cards.

The issuer must check PINs, so it keeps a salted sha256 of each card's PIN and looks
cards up by a hash of the card number; responses and listings show last4 only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import (
    Outcome,
    ReversalRequest,
    SandboxError,
    card_key,
    hash_secret,
    last4,
    new_id,
    now_iso,
    secret_matches,
)
from sandbox.partners import Partner
from sandbox.settlement import Settlement
from sandbox.state import StateDB, Table

MAX_WRONG_PINS = 3

# (card number, PIN, balance in fils, blocked)
SEED_CARDS: tuple[tuple[str, str, int, bool], ...] = (
    ("7840000000000017", "1234", 500_000, False),
    ("7840000000000025", "1234", 5_000, False),
    ("7840000000000033", "1234", 0, True),
)


class HoldRequest(BaseModel):
    card_number: str = Field(pattern=r"^\d{12,19}$")
    pin: str = Field(pattern=r"^\d{4,12}$")
    amount: int = Field(gt=0)
    reference: str = Field(min_length=1)


class RefundRequest(BaseModel):
    amount: int = Field(gt=0)


class CardRequest(BaseModel):
    card_number: str = Field(pattern=r"^\d{12,19}$")
    pin: str = Field(pattern=r"^\d{4,12}$")
    balance: int = Field(ge=0)
    blocked: bool = False


@dataclass
class Card:
    last4: str
    pin_salt: str
    pin_sha256: str
    balance: int
    blocked: bool = False
    locked: bool = False
    wrong_pin_count: int = 0


@dataclass
class Hold:
    id: str
    card: str  # card_key(), not the card number
    reference: str
    amount: int
    last4: str
    status: str = "held"  # held | captured | voided
    capture_count: int = 0
    created_at: str = field(default_factory=now_iso)
    # Refunds credited back to the card, several allowed, never more than the hold's amount.
    refund_count: int = 0
    refunded_amount: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "amount": self.amount,
            "reference": self.reference,
            "last4": self.last4,
            "refunded_amount": self.refunded_amount,
        }

    def admin(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "amount": self.amount,
            "last4": self.last4,
            "capture_count": self.capture_count,
            "refund_count": self.refund_count,
            "refunded_amount": self.refunded_amount,
            "created_at": self.created_at,
        }


def new_card(card_number: str, pin: str, balance: int, blocked: bool) -> Card:
    salt = secrets.token_hex(8)
    return Card(
        last4=last4(card_number),
        pin_salt=salt,
        pin_sha256=hash_secret(pin, salt),
        balance=balance,
        blocked=blocked,
    )


def build_router(db: StateDB) -> APIRouter:
    """The issuer's endpoints, keeping what it knows in ``db``; the seed cards are created
    when missing, never reset."""
    partner = Partner(db, "issuer")
    cards = Table(db, "card", Card)  # by card_key()
    holds = Table(db, "hold", Hold)
    calls = partner.calls()
    admin = partner.admin()
    settlement = Settlement(db, "issuer")
    settlement.routes(calls, admin)
    with db.transaction():
        for number, pin, balance, blocked in SEED_CARDS:
            cards.add(card_key(number), new_card(number, pin, balance, blocked))

    def available(key: str, card: Card) -> int:
        return card.balance - sum(h.amount for h in holds.find(card=key, status="held"))

    def get_card(key: str) -> Card:
        card = cards.get(key)
        if card is None:
            raise SandboxError(404, "not_found", "No such card.")
        return card

    def card_view(key: str) -> dict[str, Any]:
        card = get_card(key)
        return {
            "last4": card.last4,
            "balance": card.balance,
            "available": available(key, card),
            "blocked": card.blocked,
            "locked": card.locked,
            "wrong_pin_count": card.wrong_pin_count,
        }

    def get_hold(hold_id: str) -> Hold:
        hold = holds.get(hold_id)
        if hold is None:
            raise SandboxError(404, "not_found", "No such hold.")
        return hold

    def check_pin(key: str, card: Card, pin: str) -> None:
        if card.blocked:
            raise SandboxError(402, "card_blocked", "The card is blocked.")
        if card.locked:
            raise SandboxError(402, "pin_locked", "Too many wrong PINs; the card is locked.")
        right = secret_matches(pin, card.pin_salt, card.pin_sha256)
        card.wrong_pin_count = 0 if right else card.wrong_pin_count + 1
        card.locked = card.wrong_pin_count >= MAX_WRONG_PINS
        cards.put(key, card)
        if card.locked:
            raise SandboxError(402, "pin_locked", "Too many wrong PINs; the card is locked.")
        if not right:
            raise SandboxError(402, "invalid_pin", "The PIN is incorrect.")

    def decide(req: HoldRequest) -> Outcome:
        key = card_key(req.card_number)
        card = cards.get(key)
        if card is None:
            raise SandboxError(402, "card_declined", "Unknown card.")
        check_pin(key, card, req.pin)
        if available(key, card) < req.amount:
            raise SandboxError(402, "insufficient_funds", "The card balance is too low.")
        hold = Hold(
            id=new_id("hold"),
            card=key,
            reference=req.reference,
            amount=req.amount,
            last4=card.last4,
        )
        holds.put(hold.id, hold)
        return Outcome(201, hold.public())

    @calls.post("/holds")
    async def create_hold(
        req: HoldRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        return await partner.answer("/holds", idempotency_key, lambda: decide(req))

    @calls.post("/reversals")
    async def reverse(req: ReversalRequest) -> dict[str, Any]:
        def release(hold_id: str) -> None:
            hold = get_hold(hold_id)
            if hold.status == "held":
                hold.status = "voided"
                holds.put(hold.id, hold)
            if hold.status == "captured":
                raise SandboxError(409, "not_voidable", "The hold was captured.")

        return partner.reverse("/holds", req.idempotency_key, release)

    @calls.post("/holds/{hold_id}/capture")
    async def capture_hold(
        hold_id: str, idempotency_key: str | None = Header(default=None)
    ) -> JSONResponse:
        def decide() -> Outcome:
            hold = get_hold(hold_id)
            if hold.status == "held":
                card = get_card(hold.card)
                card.balance -= hold.amount
                cards.put(hold.card, card)
                hold.status = "captured"
                hold.capture_count += 1
                holds.put(hold.id, hold)
                settlement.record("capture", hold.reference, hold.id, hold.amount)
            if hold.status != "captured":
                raise SandboxError(409, "not_capturable", f"Cannot capture a {hold.status} hold.")
            return Outcome(200, hold.public())

        return await partner.answer(
            f"/holds/{hold_id}/capture",
            idempotency_key,
            decide,
            held_for=partner.settings().capture_delay_seconds,
        )

    @calls.post("/holds/{hold_id}/refunds")
    async def refund_hold(
        hold_id: str,
        req: RefundRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        """Credit part of a captured hold back to its card, once per Idempotency-Key; the
        refunds of a hold never pass its amount."""

        def decide() -> Outcome:
            hold = get_hold(hold_id)
            if hold.status != "captured":
                raise SandboxError(409, "not_refundable", f"Cannot refund a {hold.status} hold.")
            if hold.refunded_amount + req.amount > hold.amount:
                raise SandboxError(
                    409, "refund_exceeds_captured", "The refunds would pass the captured amount."
                )
            card = get_card(hold.card)
            card.balance += req.amount
            cards.put(hold.card, card)
            hold.refund_count += 1
            hold.refunded_amount += req.amount
            holds.put(hold.id, hold)
            settlement.record("refund", hold.reference, hold.id, req.amount)
            return Outcome(
                201,
                {
                    "id": new_id("refund"),
                    "hold_id": hold.id,
                    "amount": req.amount,
                    "status": "succeeded",
                    "refunded_amount": hold.refunded_amount,
                },
            )

        return await partner.answer(f"/holds/{hold_id}/refunds", idempotency_key, decide)

    @calls.post("/holds/{hold_id}/void")
    async def void_hold(
        hold_id: str, idempotency_key: str | None = Header(default=None)
    ) -> JSONResponse:
        def decide() -> Outcome:
            hold = get_hold(hold_id)
            if hold.status == "held":
                hold.status = "voided"
                holds.put(hold.id, hold)
            if hold.status != "voided":
                raise SandboxError(409, "not_voidable", f"Cannot void a {hold.status} hold.")
            return Outcome(200, hold.public())

        return await partner.answer(f"/holds/{hold_id}/void", idempotency_key, decide)

    @admin.post("/cards")
    async def put_card(req: CardRequest) -> dict[str, Any]:
        key = card_key(req.card_number)
        cards.put(key, new_card(req.card_number, req.pin, req.balance, req.blocked))
        return card_view(key)

    @admin.get("/cards/{card_number}")
    async def show_card(card_number: str) -> dict[str, Any]:
        return card_view(card_key(card_number))

    @admin.get("/holds")
    async def list_holds(reference: str | None = None) -> dict[str, Any]:
        return {"items": [h.admin() for h in holds.find(reference=reference)]}

    router = APIRouter(prefix="/issuer", tags=["issuer"])
    router.include_router(calls)
    router.include_router(admin)
    return router
