"""The issuing departments' own systems, reached over HTTP at each department's URL.

Each confirmation attempt counts in ``epay_department_confirmation_attempts_total`` by
department and outcome, and each revocation, once, in ``epay_compensations_total``.
"""

from __future__ import annotations

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import compensation_begun
from domain.failures import FailureCode
from domain.models import DepartmentAnswer, DepartmentRequest
from epay import store
from epay.http import error_code, raise_for_transient


class DepartmentSystems:
    def __init__(self, pool: asyncpg.Pool, http: httpx.AsyncClient, *, timeout: float) -> None:
        self.pool = pool
        self.http = http
        self.timeout = timeout  # departments' own systems may take seconds to grant a service

    @activity.defn
    async def confirm_with_department(self, req: DepartmentRequest) -> DepartmentAnswer:
        """Ask the department to accept the payment (mark the fine paid, issue the service).

        The department keys its confirmation by payment id, so asking twice confirms once.
        """
        outcome = "unavailable"  # until the department answers
        try:
            answer = await self._ask_to_confirm(req)
            outcome = "confirmed" if answer.confirmed else "rejected"
            return answer
        except ApplicationError:
            outcome = "error"
            raise
        finally:
            activity.logger.info("department %s: %s", req.department, outcome)
            activity.metric_meter().create_counter(
                "epay_department_confirmation_attempts",
                "Attempts to confirm a payment with its department, by outcome",
            ).add(1, {"department": req.department, "outcome": outcome})

    async def _ask_to_confirm(self, req: DepartmentRequest) -> DepartmentAnswer:
        url = await store.department_confirm_url(self.pool, req.department)
        response = await self.http.post(
            f"{url}/confirmations",
            json={
                "payment_id": req.payment_id,
                "reference": req.reference,
                "service_code": req.service_code,
                "amount": req.amount,
            },
            headers={"Idempotency-Key": f"{req.payment_id}:confirm"},
            timeout=self.timeout,
        )
        raise_for_transient(response)
        if response.status_code in (200, 201):
            return DepartmentAnswer(
                confirmed=True, confirmation_reference=response.json()["confirmation_reference"]
            )
        if error_code(response) == FailureCode.DEPARTMENT_REJECTED:
            return DepartmentAnswer(confirmed=False, failure_code=FailureCode.DEPARTMENT_REJECTED)
        raise ApplicationError(
            f"department answered {response.status_code}",
            type="department_error",
            non_retryable=True,
        )

    @activity.defn
    async def revoke_department_confirmation(self, req: DepartmentRequest) -> None:
        """Withdraw a confirmation for a payment that will not be captured (a compensation,
        retried until done, like ``void_authorisation``)."""
        compensation_begun(department=req.department)
        url = await store.department_confirm_url(self.pool, req.department)
        response = await self.http.delete(
            f"{url}/confirmations/{req.payment_id}",
            params={"reference": req.reference},
            headers={"Idempotency-Key": f"{req.payment_id}:revoke"},
            timeout=self.timeout,
        )
        raise_for_transient(response)
        if response.status_code not in (200, 204, 404):
            raise ApplicationError(
                f"department answered {response.status_code}", type="revocation_refused"
            )
        activity.logger.info("department %s took the revocation", req.department)
