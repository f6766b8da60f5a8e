"""The partners' settlement files: what the acquirer and the issuer say they moved, by day.

Each capture and each refund a partner makes is one line of its settlement for the business
day (Asia/Dubai) it happened on, with ePay's reference (the payment id it was sent). ePay's
daily settlement (domain/settlement.py) matches the file against its ledger.
``GET /{system}/settlements/{day}`` serves a day's file; ``POST
/{system}/_admin/settlement-lines`` adds a line that the partner never made (for a test of
what ePay does with a capture its ledger lacks).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from domain import calendar
from sandbox.common import SandboxError, now_iso
from sandbox.state import StateDB, Table


@dataclass
class SettlementLine:
    system: str
    day: str  # YYYY-MM-DD, Asia/Dubai
    kind: str  # capture | refund
    reference: str  # ePay's payment id
    authorisation_id: str
    amount: int
    at: str = field(default_factory=now_iso)


class ExtraLine(BaseModel):
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    kind: str = Field(pattern="^(capture|refund)$")
    reference: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0)


def business_day(at: datetime | None = None) -> str:
    return calendar.business_day(at or datetime.now(UTC)).isoformat()


class Settlement:
    def __init__(self, db: StateDB, system: str) -> None:
        self.system = system
        self.lines = Table(db, f"{system}.settlement", SettlementLine)

    def record(self, kind: str, reference: str, authorisation_id: str, amount: int) -> None:
        """One more line of today's file (inside the caller's transaction)."""
        line = SettlementLine(
            self.system, business_day(), kind, reference, authorisation_id, amount
        )
        self.lines.add(uuid.uuid4().hex, line)

    def routes(self, calls: APIRouter, admin: APIRouter) -> None:
        @calls.get("/settlements/{day}")
        async def settlement_file(day: str) -> dict[str, Any]:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise SandboxError(422, "invalid_day", "A day is YYYY-MM-DD.") from None
            lines = self.lines.find(day=day)
            return {
                "system": self.system,
                "day": day,
                "lines": [
                    {k: v for k, v in vars(line).items() if k not in ("system", "day")}
                    for line in lines
                ],
                "captured": sum(line.amount for line in lines if line.kind == "capture"),
                "refunded": sum(line.amount for line in lines if line.kind == "refund"),
            }

        @admin.post("/settlement-lines")
        async def add_line(line: ExtraLine) -> dict[str, Any]:
            made = SettlementLine(
                self.system, line.day, line.kind, line.reference, "injected", line.amount
            )
            self.lines.add(uuid.uuid4().hex, made)
            return vars(made)
