"""What the card acquirer and the e-Dirham issuer share.

An operator can take either down, or make its captures slow. Both answer a money-moving
call once per Idempotency-Key: a repeat gets the first final answer, and a repeat that
arrives while the first is still being worked on is refused with 409
`request_in_progress`, as real acquirers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.common import (
    Outcome,
    SandboxError,
    require_idempotency_key,
    reversed_outcome,
    unavailable,
)
from sandbox.state import StateDB, Table


@dataclass
class PartnerSettings:
    up: bool = True
    capture_delay_seconds: float = 0.0


class BehaviourRequest(BaseModel):
    capture_delay_seconds: float = Field(ge=0, allow_inf_nan=False)


def _decided(decide: Callable[[], Outcome]) -> Outcome:
    """What ``decide`` answers, refusals included; a 5xx is transient, so not final."""
    try:
        return decide()
    except SandboxError as exc:
        if exc.status_code >= 500:
            raise
        return Outcome(exc.status_code, exc.body())


class Partner:
    def __init__(self, db: StateDB, system: str) -> None:
        self.db = db
        self.system = system
        self.outcomes = Table(db, f"{system}.outcome", Outcome)
        self._settings = Table(db, "partner_settings", PartnerSettings)
        # Requests whose answer is still on its way. Process memory only: a restart ends
        # every request in flight, and their stored outcomes remain.
        self.in_flight: set[str] = set()

    def settings(self) -> PartnerSettings:
        return self._settings.get(self.system) or PartnerSettings()

    def require_up(self) -> None:
        if not self.settings().up:
            raise unavailable(self.system)

    def calls(self) -> APIRouter:
        """A router for the partner's calls: all refused, changing nothing, while it is down."""
        return APIRouter(dependencies=[Depends(self.require_up)])

    @staticmethod
    def _slot(scope: str, key: str) -> str:
        return f"{scope} {key}"

    async def answer(
        self,
        scope: str,
        key: str | None,
        decide: Callable[[], Outcome],
        *,
        held_for: float = 0.0,
        lost: bool = False,
    ) -> JSONResponse:
        """Answer a call to ``scope`` (its path) once per Idempotency-Key.

        ``decide`` runs, in a transaction, for the first request only, and what it answers
        (or the refusal it raises) is stored. A fresh answer is then held back for
        ``held_for`` seconds, during which the request is in flight: a repeat is told 409.
        With ``lost`` the partner is done and only the answer goes missing on the way, so
        a repeat gets the stored answer at once.
        """
        slot = self._slot(scope, require_idempotency_key(key))
        if slot in self.in_flight:
            raise SandboxError(
                409,
                "request_in_progress",
                "A request with this Idempotency-Key is still being processed; retry later.",
            )
        with self.db.transaction():
            outcome = self.outcomes.get(slot)
            fresh = outcome is None
            if outcome is None:
                outcome = _decided(decide)
                self.outcomes.put(slot, outcome)
        if fresh and held_for > 0:
            if not lost:
                self.in_flight.add(slot)
            try:
                await asyncio.sleep(held_for)
            finally:
                self.in_flight.discard(slot)
        return outcome.response()

    def reverse(self, scope: str, key: str, release: Callable[[str], None]) -> dict[str, Any]:
        """Release what the call to ``scope`` sent with ``key`` made, even if its answer never
        reached the caller; that call, still on its way, is refused when it arrives."""
        slot = self._slot(scope, key)
        with self.db.transaction():
            outcome = self.outcomes.get(slot)
            if outcome is None:
                outcome = reversed_outcome()
                self.outcomes.put(slot, outcome)
            made = outcome.body.get("id")
            if made:
                release(made)
        return {"idempotency_key": key, "status": "reversed", "id": made}

    def admin(self) -> APIRouter:
        """The operator's switches: up, down and the capture delay, all kept in the state."""
        router = APIRouter(prefix="/_admin")

        def status() -> dict[str, Any]:
            return {"system": self.system, "mode": "up" if self.settings().up else "down"}

        def switch(up: bool) -> dict[str, Any]:
            settings = self.settings()
            settings.up = up
            self._settings.put(self.system, settings)
            return status()

        def behaviour() -> dict[str, Any]:
            return {"capture_delay_seconds": self.settings().capture_delay_seconds}

        @router.post("/up")
        async def set_up() -> dict[str, Any]:
            return switch(True)

        @router.post("/down")
        async def set_down() -> dict[str, Any]:
            return switch(False)

        @router.get("/status")
        async def get_status() -> dict[str, Any]:
            return status()

        @router.get("/behaviour")
        async def get_behaviour() -> dict[str, Any]:
            return behaviour()

        @router.post("/behaviour")
        async def set_behaviour(req: BehaviourRequest) -> dict[str, Any]:
            settings = self.settings()
            settings.capture_delay_seconds = req.capture_delay_seconds
            self._settings.put(self.system, settings)
            return behaviour()

        return router
