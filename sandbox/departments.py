"""Government department systems stand-in.

Departments confirm that a paid fee was received. The payment reference's prefix
picks the behaviour (REJECT-, FLAKY-, SLOW-, DOWN-) so the gateway's retries,
timeouts and compensations can be driven from a test.

Like a real department, each refuses a call that ePay did not sign (domain/signing.py): no
signature, a malformed one, one older than five minutes, or one made with no secret the
department holds answers 401. The secrets are handed over through
``PUT /departments/{dept}/_admin/signing-secrets`` (``epay seed`` and ``epay departments
create-signing-secret`` do it for the sandbox's departments).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from domain import signing
from sandbox.common import SandboxError, now_iso, unavailable
from sandbox.state import StateDB, Table

FLAKY_FAILURES = 3
SYSTEM = "department system"


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


class RefundNoticeRequest(BaseModel):
    payment_id: str = Field(min_length=1)
    refund_id: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    amount: int = Field(gt=0)


@dataclass
class RefundNotice:
    """ePay's word that part or all of a payment went back to the payer."""

    department: str
    payment_id: str
    refund_id: str
    reference: str
    amount: int
    notices: int = 0  # how often ePay sent it (recorded once)
    created_at: str = field(default_factory=now_iso)

    def admin(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "refund_id": self.refund_id,
            "reference": self.reference,
            "amount": self.amount,
            "notices": self.notices,
            "created_at": self.created_at,
        }


@dataclass
class SigningSecrets:
    """The secrets a department accepts ePay's signatures under (more than one while a
    rotation overlaps)."""

    secrets: list[str]


class SigningSecretsBody(BaseModel):
    secrets: list[str] = Field(min_length=1)


@dataclass
class Switch:
    """A department switched "up" confirms DOWN- references; every other one refuses them."""

    up: bool


def build_router(db: StateDB, *, slow_seconds: float) -> APIRouter:
    router = APIRouter(prefix="/departments/{dept}", tags=["departments"])
    confirmations = Table(db, "confirmation", Confirmation)  # by "DEPT/payment id"
    switches = Table(db, "department", Switch)
    signing_secrets = Table(db, "signing_secrets", SigningSecrets)
    refund_notices = Table(db, "refund_notice", RefundNotice)  # by "DEPT/refund id"

    async def require_signature(request: Request, dept: str) -> None:
        """Refuse a call that ePay did not sign for this department, or signed too long ago."""
        held = signing_secrets.get(dept)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        refused = signing.verify(
            request.headers.get(signing.HEADER),
            held.secrets if held else [],
            request.method,
            target,
            await request.body(),
            int(time.time()),
        )
        if refused is not None:
            raise SandboxError(
                401, refused, "The request is not signed by ePay for this department."
            )

    def is_up(dept: str) -> bool:
        switch = switches.get(dept)
        return switch is not None and switch.up

    def set_switch(dept: str, up: bool) -> dict[str, Any]:
        switches.put(dept, Switch(up))
        return {"department": dept, "down_mode": "up" if up else "down"}

    def confirm(rec: Confirmation) -> JSONResponse:
        if rec.status != "confirmed":
            rec.status = "confirmed"
            rec.confirmation_reference = f"{rec.department}-C-{secrets.token_hex(4).upper()}"
        return JSONResponse(status_code=201, content=rec.public())

    def attempt(rec: Confirmation) -> JSONResponse | None:
        """The answer to one more attempt, or None when a SLOW- department takes its time."""
        rec.attempts += 1
        if rec.status == "confirmed":
            return JSONResponse(status_code=200, content=rec.public())
        if rec.status == "revoked":
            raise SandboxError(409, "revoked", "This confirmation was revoked.")
        ref = rec.reference
        if ref.startswith("REJECT-"):
            rec.status = "rejected"
            raise SandboxError(422, "department_rejected", "The department refused this payment.")
        if ref.startswith("FLAKY-") and rec.attempts <= FLAKY_FAILURES:
            raise unavailable(SYSTEM)
        if ref.startswith("DOWN-") and not is_up(rec.department):
            raise unavailable(SYSTEM)
        if ref.startswith("SLOW-"):
            return None
        return confirm(rec)

    @router.post("/confirmations")
    async def create_confirmation(
        dept: str, req: ConfirmationRequest, request: Request
    ) -> JSONResponse:
        dept = dept.upper()
        await require_signature(request, dept)
        cid = f"{dept}/{req.payment_id}"
        with db.transaction():
            rec = confirmations.get(cid) or Confirmation(
                department=dept,
                payment_id=req.payment_id,
                reference=req.reference,
                service_code=req.service_code,
                amount=req.amount,
            )
            try:
                answer = attempt(rec)
            finally:  # the attempt counts, whatever its answer
                confirmations.put(cid, rec)
        if answer is not None:
            return answer
        await asyncio.sleep(slow_seconds)
        with db.transaction():
            rec = confirmations.get(cid) or rec
            if rec.status == "revoked":
                raise SandboxError(409, "revoked", "This confirmation was revoked.")
            answer = confirm(rec)
            confirmations.put(cid, rec)
            return answer

    @router.delete("/confirmations/{payment_id}")
    async def revoke_confirmation(
        dept: str, payment_id: str, request: Request, reference: str | None = None
    ) -> dict[str, Any]:
        """Revoke, whatever the confirmation's state: a revoke that overtakes its own
        confirmation (still in flight, or not yet sent) leaves a tombstone that refuses it.
        A DOWN- payment's department, while down, cannot revoke either; ``reference`` says
        whether a payment it has no record of is one."""
        dept = dept.upper()
        await require_signature(request, dept)
        cid = f"{dept}/{payment_id}"
        with db.transaction():
            rec = confirmations.get(cid) or Confirmation(dept, payment_id, reference or "", "", 0)
            if rec.reference.startswith("DOWN-") and not is_up(dept):
                raise unavailable(SYSTEM)
            rec.status = "revoked"
            confirmations.put(cid, rec)
            return rec.public()

    @router.post("/refunds")
    async def take_refund_notice(
        dept: str, req: RefundNoticeRequest, request: Request
    ) -> JSONResponse:
        """Record ePay's notice of a refund, once per refund id (201, then 200). A DOWN-
        payment's department, while down, cannot take it either."""
        dept = dept.upper()
        await require_signature(request, dept)
        if req.reference.startswith("DOWN-") and not is_up(dept):
            raise unavailable(SYSTEM)
        nid = f"{dept}/{req.refund_id}"
        with db.transaction():
            found = refund_notices.get(nid)
            rec = found or RefundNotice(
                dept, req.payment_id, req.refund_id, req.reference, req.amount
            )
            rec.notices += 1
            refund_notices.put(nid, rec)
        return JSONResponse(status_code=201 if found is None else 200, content=rec.admin())

    @router.get("/_admin/refunds")
    async def list_refund_notices(dept: str, payment_id: str | None = None) -> dict[str, Any]:
        items = refund_notices.find(department=dept.upper(), payment_id=payment_id)
        return {"items": [n.admin() for n in items]}

    @router.get("/_admin/confirmations")
    async def list_confirmations(dept: str, payment_id: str | None = None) -> dict[str, Any]:
        items = confirmations.find(department=dept.upper(), payment_id=payment_id)
        return {"items": [c.admin() for c in items]}

    @router.put("/_admin/signing-secrets")
    async def set_signing_secrets(dept: str, body: SigningSecretsBody) -> dict[str, Any]:
        """Hand the department the secrets it accepts (replacing what it held)."""
        signing_secrets.put(dept.upper(), SigningSecrets(list(body.secrets)))
        return {"department": dept.upper(), "secrets": len(body.secrets)}

    @router.post("/_admin/up")
    async def set_up(dept: str) -> dict[str, Any]:
        return set_switch(dept.upper(), True)

    @router.post("/_admin/down")
    async def set_down(dept: str) -> dict[str, Any]:
        return set_switch(dept.upper(), False)

    @router.get("/_admin/status")
    async def status(dept: str) -> dict[str, Any]:
        dept = dept.upper()
        return {"department": dept, "down_mode": "up" if is_up(dept) else "down"}

    return router
