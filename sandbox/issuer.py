"""e-Dirham issuer stand-in: PIN-checked holds on government stored-value cards.

The issuer must check PINs, so it keeps a salted sha256 of each card's PIN and looks
cards up by a hash of the card number; responses and listings show last4 only.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import (
    ReversalRequest,
    SandboxError,
    card_key,
    error_body,
    hash_secret,
    last4,
    new_id,
    now_iso,
    require_idempotency_key,
    reversed_outcome,
    secret_matches,
)

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

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "amount": self.amount,
            "reference": self.reference,
            "last4": self.last4,
        }

    def admin(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "amount": self.amount,
            "last4": self.last4,
            "capture_count": self.capture_count,
            "created_at": self.created_at,
        }


@dataclass
class IssuerState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cards: dict[str, Card] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    outcomes: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def put_card(self, card_number: str, pin: str, balance: int, blocked: bool) -> Card:
        salt = secrets.token_hex(8)
        card = Card(
            last4=last4(card_number),
            pin_salt=salt,
            pin_sha256=hash_secret(pin, salt),
            balance=balance,
            blocked=blocked,
        )
        self.cards[card_key(card_number)] = card
        return card

    def available(self, key: str) -> int:
        held = sum(h.amount for h in self.holds.values() if h.card == key and h.status == "held")
        return self.cards[key].balance - held

    def card_view(self, key: str) -> dict[str, Any]:
        card = self.cards[key]
        return {
            "last4": card.last4,
            "balance": card.balance,
            "available": self.available(key),
            "blocked": card.blocked,
            "locked": card.locked,
            "wrong_pin_count": card.wrong_pin_count,
        }


def build_router() -> APIRouter:
    router = APIRouter(prefix="/issuer", tags=["issuer"])
    state = IssuerState()
    for number, pin, balance, blocked in SEED_CARDS:
        state.put_card(number, pin, balance, blocked)

    def get_hold(hold_id: str) -> Hold:
        hold = state.holds.get(hold_id)
        if hold is None:
            raise SandboxError(404, "not_found", "No such hold.")
        return hold

    def decide(req: HoldRequest) -> tuple[int, dict[str, Any]]:
        key = card_key(req.card_number)
        card = state.cards.get(key)
        if card is None:
            return 402, error_body("card_declined", "Unknown card.")
        if card.blocked:
            return 402, error_body("card_blocked", "The card is blocked.")
        if card.locked:
            return 402, error_body("pin_locked", "Too many wrong PINs; the card is locked.")
        if not secret_matches(req.pin, card.pin_salt, card.pin_sha256):
            card.wrong_pin_count += 1
            if card.wrong_pin_count >= MAX_WRONG_PINS:
                card.locked = True
                return 402, error_body("pin_locked", "Too many wrong PINs; the card is locked.")
            return 402, error_body("invalid_pin", "The PIN is incorrect.")
        card.wrong_pin_count = 0
        if state.available(key) < req.amount:
            return 402, error_body("insufficient_funds", "The card balance is too low.")
        hold = Hold(
            id=new_id("hold"),
            card=key,
            reference=req.reference,
            amount=req.amount,
            last4=card.last4,
        )
        state.holds[hold.id] = hold
        return 201, hold.public()

    @router.post("/holds")
    async def create_hold(
        req: HoldRequest,
        idempotency_key: str | None = Header(default=None),
    ) -> JSONResponse:
        key = require_idempotency_key(idempotency_key)
        async with state.lock:
            outcome = state.outcomes.get(key)
            if outcome is None:
                outcome = decide(req)
                state.outcomes[key] = outcome
        return JSONResponse(status_code=outcome[0], content=outcome[1])

    @router.post("/reversals")
    async def reverse(req: ReversalRequest) -> dict[str, Any]:
        """Void the hold a request placed, even if its answer never reached the caller; a
        request still on its way with that key is refused when it arrives."""
        async with state.lock:
            stored = state.outcomes.setdefault(req.idempotency_key, reversed_outcome())
            hold_id = stored[1].get("id")
            if hold_id:
                hold = get_hold(hold_id)
                if hold.status == "held":
                    hold.status = "voided"
                if hold.status == "captured":
                    raise SandboxError(409, "not_voidable", "The hold was captured.")
            return {"idempotency_key": req.idempotency_key, "status": "reversed", "id": hold_id}

    @router.post("/holds/{hold_id}/capture")
    async def capture_hold(hold_id: str) -> dict[str, Any]:
        async with state.lock:
            hold = get_hold(hold_id)
            if hold.status == "held":
                state.cards[hold.card].balance -= hold.amount
                hold.status = "captured"
                hold.capture_count += 1
            if hold.status != "captured":
                raise SandboxError(409, "not_capturable", f"Cannot capture a {hold.status} hold.")
            return hold.public()

    @router.post("/holds/{hold_id}/void")
    async def void_hold(hold_id: str) -> dict[str, Any]:
        async with state.lock:
            hold = get_hold(hold_id)
            if hold.status == "held":
                hold.status = "voided"
            if hold.status != "voided":
                raise SandboxError(409, "not_voidable", f"Cannot void a {hold.status} hold.")
            return hold.public()

    @router.post("/_admin/cards")
    async def put_card(req: CardRequest) -> dict[str, Any]:
        async with state.lock:
            state.put_card(req.card_number, req.pin, req.balance, req.blocked)
            return state.card_view(card_key(req.card_number))

    @router.get("/_admin/cards/{card_number}")
    async def get_card(card_number: str) -> dict[str, Any]:
        key = card_key(card_number)
        if key not in state.cards:
            raise SandboxError(404, "not_found", "No such card.")
        return state.card_view(key)

    @router.get("/_admin/holds")
    async def list_holds(reference: str | None = None) -> dict[str, Any]:
        items = [
            h.admin() for h in state.holds.values() if reference is None or h.reference == reference
        ]
        return {"items": items}

    return router
