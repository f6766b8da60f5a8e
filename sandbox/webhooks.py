"""A department's webhook receiver, as a department would run one.

``POST /departments/{dept}/webhooks`` takes ePay's events: it refuses (401) one not signed
by ePay for the department (the secrets it was handed: sandbox/departments.py), answers 503
while switched down (``_admin/webhooks/down`` / ``up``: a department whose system is away),
and otherwise keeps each event once by its id, counting how often it came. What it kept:
``GET /departments/{dept}/_admin/webhooks``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from domain import signing
from sandbox.common import SandboxError, now_iso, unavailable
from sandbox.departments import SigningSecrets
from sandbox.state import StateDB, Table


@dataclass
class Received:
    department: str
    event_id: str
    type: str
    payment_id: str | None
    deliveries: int = 0  # how many times it came (ePay may send it again)
    first_at: str = field(default_factory=now_iso)
    last_at: str = field(default_factory=now_iso)


@dataclass
class ReceiverSwitch:
    up: bool


def build_router(db: StateDB) -> APIRouter:
    router = APIRouter(prefix="/departments/{dept}", tags=["department webhooks"])
    received = Table(db, "webhook_received", Received)
    switches = Table(db, "webhook_receiver", ReceiverSwitch)
    signing_secrets = Table(db, "signing_secrets", SigningSecrets)

    @router.post("/webhooks")
    async def receive(dept: str, request: Request) -> JSONResponse:
        dept = dept.upper()
        body = await request.body()
        held = signing_secrets.get(dept)
        refused = signing.verify(
            request.headers.get(signing.HEADER),
            held.secrets if held else [],
            "POST",
            request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            body,
            int(time.time()),
        )
        if refused is not None:
            raise SandboxError(401, refused, "The event is not signed by ePay for this department.")
        switch = switches.get(dept)
        if switch is not None and not switch.up:
            raise unavailable("webhook receiver")
        event = json.loads(body)
        data = event.get("data", {})
        payment_id = (data.get("payment") or {}).get("id") or (data.get("refund") or {}).get(
            "payment_id"
        )
        key = f"{dept}/{event['id']}"
        with db.transaction():
            rec = received.get(key) or Received(dept, event["id"], event["type"], payment_id)
            rec.deliveries += 1
            rec.last_at = now_iso()
            received.put(key, rec)
        return JSONResponse({"received": event["id"]}, status_code=200)

    @router.get("/_admin/webhooks")
    async def list_received(dept: str, payment_id: str | None = None) -> dict[str, Any]:
        items = received.find(department=dept.upper(), payment_id=payment_id)
        return {"items": [vars(r) for r in items]}

    @router.post("/_admin/webhooks/down")
    async def down(dept: str) -> dict[str, Any]:
        switches.put(dept.upper(), ReceiverSwitch(False))
        return {"department": dept.upper(), "webhooks": "down"}

    @router.post("/_admin/webhooks/up")
    async def up(dept: str) -> dict[str, Any]:
        switches.put(dept.upper(), ReceiverSwitch(True))
        return {"department": dept.upper(), "webhooks": "up"}

    return router
