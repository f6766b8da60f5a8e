"""Government department systems stand-in.

Departments confirm that a paid fee was received. The payment reference's prefix
picks the behaviour (REJECT-, FLAKY-, SLOW-, DOWN-) so the gateway's retries,
timeouts and compensations can be driven from a test.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import SandboxError, now_iso

FLAKY_FAILURES = 3


class ConfirmationRequest(BaseModel):
    payment_id: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    amount: int = Field(gt=0)


@dataclass
class Confirmation:
    department: str
    payment_id: str
    reference: str
    service_code: str
    amount: int
    status: str = "pending"  # pending | confirmed | rejected | revoked
    confirmation_reference: str | None = None
    attempts: int = 0
    created_at: str = field(default_factory=now_iso)

    def public(self) -> dict[str, Any]:
        return {
            "confirmation_reference": self.confirmation_reference,
            "status": self.status,
            "payment_id": self.payment_id,
            "reference": self.reference,
            "department": self.department,
            "service_code": self.service_code,
            "amount": self.amount,
        }

    def admin(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "reference": self.reference,
            "status": self.status,
            "confirmation_reference": self.confirmation_reference,
            "attempts": self.attempts,
            "created_at": self.created_at,
        }


@dataclass
class DepartmentsState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # (DEPT, payment_id) -> confirmation
    confirmations: dict[tuple[str, str], Confirmation] = field(default_factory=dict)
    # Departments switched "up"; DOWN- references fail for every other department.
    up: set[str] = field(default_factory=set)


def unavailable() -> SandboxError:
    return SandboxError(503, "unavailable", "The department system is unavailable.")


def build_router(*, slow_seconds: float) -> APIRouter:
    router = APIRouter(prefix="/departments/{dept}", tags=["departments"])
    state = DepartmentsState()

    def confirm(rec: Confirmation) -> JSONResponse:
        if rec.status != "confirmed":
            rec.status = "confirmed"
            rec.confirmation_reference = f"{rec.department}-C-{secrets.token_hex(4).upper()}"
        return JSONResponse(status_code=201, content=rec.public())

    @router.post("/confirmations")
    async def create_confirmation(dept: str, req: ConfirmationRequest) -> JSONResponse:
        dept = dept.upper()
        key = (dept, req.payment_id)
        async with state.lock:
            rec = state.confirmations.get(key)
            if rec is None:
                rec = Confirmation(
                    department=dept,
                    payment_id=req.payment_id,
                    reference=req.reference,
                    service_code=req.service_code,
                    amount=req.amount,
                )
                state.confirmations[key] = rec
            rec.attempts += 1
            if rec.status == "confirmed":
                return JSONResponse(status_code=200, content=rec.public())
            if rec.status == "revoked":
                raise SandboxError(409, "revoked", "This confirmation was revoked.")
            ref = rec.reference
            if ref.startswith("REJECT-"):
                rec.status = "rejected"
                raise SandboxError(
                    422, "department_rejected", "The department refused this payment."
                )
            if ref.startswith("FLAKY-") and rec.attempts <= FLAKY_FAILURES:
                raise unavailable()
            if ref.startswith("DOWN-") and dept not in state.up:
                raise unavailable()
            if not ref.startswith("SLOW-"):
                return confirm(rec)
        await asyncio.sleep(slow_seconds)
        async with state.lock:
            if rec.status == "revoked":
                raise SandboxError(409, "revoked", "This confirmation was revoked.")
            return confirm(rec)

    @router.delete("/confirmations/{payment_id}")
    async def revoke_confirmation(dept: str, payment_id: str) -> dict[str, Any]:
        """Revoke, whatever the confirmation's state: a revoke that overtakes its own
        confirmation (still in flight, or not yet sent) leaves a tombstone that refuses it."""
        async with state.lock:
            key = (dept.upper(), payment_id)
            rec = state.confirmations.get(key)
            if rec is None:
                rec = Confirmation(dept.upper(), payment_id, "", "", 0)
                state.confirmations[key] = rec
            rec.status = "revoked"
            return rec.public()

    @router.get("/_admin/confirmations")
    async def list_confirmations(dept: str, payment_id: str | None = None) -> dict[str, Any]:
        dept = dept.upper()
        items = [
            c.admin()
            for (d, pid), c in state.confirmations.items()
            if d == dept and (payment_id is None or pid == payment_id)
        ]
        return {"items": items}

    @router.post("/_admin/up")
    async def set_up(dept: str) -> dict[str, Any]:
        state.up.add(dept.upper())
        return {"department": dept.upper(), "down_mode": "up"}

    @router.post("/_admin/down")
    async def set_down(dept: str) -> dict[str, Any]:
        state.up.discard(dept.upper())
        return {"department": dept.upper(), "down_mode": "down"}

    @router.get("/_admin/status")
    async def status(dept: str) -> dict[str, Any]:
        dept = dept.upper()
        return {"department": dept, "down_mode": "up" if dept in state.up else "down"}

    return router
