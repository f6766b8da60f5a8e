"""The issuing departments' own systems, reached over HTTP at each department's URL.

Each confirmation attempt counts in ``epay_department_confirmation_attempts_total`` by
department and outcome, and each revocation, once, in ``epay_compensations_total``. Every
request is signed with the department's active signing secrets (domain/signing.py), so that
the department can refuse one that is not ePay's.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import compensation_begun
from domain import signing
from domain.failures import ErrorType, FailureCode
from domain.models import DepartmentAnswer, DepartmentRequest
from domain.refunds import RefundNotice
from epay.http import error_code, raise_for_transient
from store import catalogue, department_secrets, refunds


class DepartmentSystems:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        token_secret: bytes,
        secrets_cache_seconds: float = 30.0,
    ) -> None:
        self.pool = pool
        self.http = http
        self.timeout = timeout  # departments' own systems may take seconds to grant a service
        self.token_secret = token_secret  # unseals the departments' signing secrets
        self.secrets_cache_seconds = secrets_cache_seconds
        self._secrets: dict[str, tuple[float, list[str]]] = {}

    async def _signing_secrets(self, department: str) -> list[str]:
        cached = self._secrets.get(department)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = [
            s.secret
            for s in await department_secrets.active(self.pool, self.token_secret, department)
        ]
        if not found:  # a configuration fault: retried until an operator adds a secret
            raise ApplicationError(
                f"department {department} has no signing secret "
                f"(epay departments create-signing-secret {department})",
                type="department_not_configured",
            )
        self._secrets[department] = (time.monotonic() + self.secrets_cache_seconds, found)
        return found

    async def _send(
        self,
        department: str,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str,
    ) -> httpx.Response:
        """One signed request to the department's system. A department that refuses the
        signature may already hold a secret this worker has not read yet (a rotation): the
        secrets are read again and the request signed and sent once more."""
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        if params:
            url = f"{url}?{urlencode(params)}"
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for fresh in (False, True):
            if fresh:
                self._secrets.pop(department, None)
            headers = {
                "Idempotency-Key": idempotency_key,
                signing.HEADER: signing.signature_header(
                    await self._signing_secrets(department),
                    int(time.time()),
                    method,
                    target,
                    content,
                ),
            }
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = await self.http.request(
                method, url, content=content, headers=headers, timeout=self.timeout
            )
            if response.status_code != 401:
                break
        return response

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
        url = await catalogue.department_confirm_url(self.pool, req.department)
        response = await self._send(
            req.department,
            "POST",
            f"{url}/confirmations",
            body={
                "payment_id": req.payment_id,
                "reference": req.reference,
                "service_code": req.service_code,
                "amount": req.amount,
            },
            idempotency_key=f"{req.payment_id}:confirm",
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
            type=ErrorType.DEPARTMENT_ERROR,
            non_retryable=True,
        )

    @activity.defn
    async def revoke_department_confirmation(self, req: DepartmentRequest) -> None:
        """Withdraw a confirmation for a payment that will not be captured (a compensation,
        retried until done, like ``void_authorisation``)."""
        compensation_begun(department=req.department)
        await self.revoke(req)
        activity.logger.info("department %s took the revocation", req.department)

    async def revoke(self, req: DepartmentRequest) -> None:
        """``revoke_department_confirmation`` outside an activity (``epay ops resolve``)."""
        url = await catalogue.department_confirm_url(self.pool, req.department)
        response = await self._send(
            req.department,
            "DELETE",
            f"{url}/confirmations/{req.payment_id}",
            params={"reference": req.reference},
            idempotency_key=f"{req.payment_id}:revoke",
        )
        raise_for_transient(response)
        if response.status_code not in (200, 204, 404):
            raise ApplicationError(
                f"department answered {response.status_code}", type="revocation_refused"
            )

    @activity.defn
    async def notify_refund(self, notice: RefundNotice) -> None:
        """Tell the department that part or all of a payment was refunded (the money is
        back with the payer by now). Retried until the department takes it; it keys the
        notice by refund id, so telling it twice records it once."""
        url = await catalogue.department_confirm_url(self.pool, notice.department)
        response = await self._send(
            notice.department,
            "POST",
            f"{url}/refunds",
            body={
                "payment_id": notice.payment_id,
                "refund_id": notice.refund_id,
                "reference": notice.reference,
                "amount": notice.amount,
            },
            idempotency_key=f"{notice.refund_id}:notice",
        )
        raise_for_transient(response)
        if response.status_code not in (200, 201):
            raise ApplicationError(
                f"department answered {response.status_code} ({error_code(response)})",
                type="refund_notice_refused",
            )
        await refunds.department_notified(self.pool, notice.refund_id)
        activity.logger.info("department %s took the refund notice", notice.department)
