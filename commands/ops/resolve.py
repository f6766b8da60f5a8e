"""``epay ops resolve``: what the sweeper left to an operator, ended on the database and
the partners (the payment's workflow has closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.departments import DepartmentSystems
from activities.payment_methods import PaymentMethods
from commands.ops.common import (
    NOT_FOUND,
    REFUSED,
    UNREACHABLE,
    OpsError,
    payment_id_of,
    who_and_why,
    workflow_id_of,
)
from domain.failures import FailureCode
from domain.models import AuditEntry, DepartmentRequest, FundsRequest, Transition
from domain.states import Actor, AuditNote, PaymentEvent, PaymentState
from domain.sweeper import StrandedPayment
from epay.config import Settings
from epay.db import create_pool
from epay.http import TransientError
from epay.temporal import connect, payment_workflow_id
from store import payments, sweeps


async def resolve(settings: Settings, payment: str, operator: str, reason: str) -> dict[str, Any]:
    """End what was left to an operator: a payment the sweeper marked ``needs_operator``
    (capture decided, its authorisation unknown) or whose void a partner refused for good
    (``void_refused``), once the operator has looked at it with the partner.

    Acts on the database and the partners, with no workflow: every method the payment may
    have authorised is voided or reversed under its own keys (a refusal is reported, and
    recorded, not fatal: the operator has checked); an open payment has the department's
    confirmation revoked and ends ``failed`` (``capture_failed``), releasing its
    reservation; a revocation still owed is made. The operator and reason go into the audit
    trail (``operator_resolved``) with what was done. Nothing is recorded as resolved while
    a partner or the department cannot be reached: run it again.
    """
    payment_id = payment_id_of(workflow_id_of(payment))
    operator, reason = who_and_why(operator, reason)
    said = f"{operator}: {reason}"
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
            try:
                p, revoke_owed, left = await sweeps.left_to_operator(pool, payment_id)
            except LookupError:
                raise OpsError(NOT_FOUND, "payment_not_found", f"no payment {payment_id}") from None
            state = PaymentState(p.state)
            if not left:
                raise OpsError(
                    REFUSED,
                    "nothing_to_resolve",
                    f"{payment_id} ({state}) has nothing left to an operator "
                    "(no needs_operator or void_refused since it was last resolved)",
                )
            if (
                not state.is_terminal and AuditNote.NEEDS_OPERATOR not in left
            ) or await _workflow_running(settings, p.payment_id):
                raise OpsError(
                    REFUSED,
                    "workflow_running",
                    f"{payment_id} is {state} and its workflow is still running it: "
                    "use epay ops cancel, or wait for the sweeper",
                )
            # A payment that succeeded keeps the method that paid it: only the methods
            # declined before it are released (one of those is what was refused).
            done = await _release_at_partners(
                settings, pool, http, p, paid=state == PaymentState.SUCCEEDED
            )
            department = DepartmentRequest(
                p.payment_id, p.department, p.reference, p.service_code, p.amount
            )
            if not state.is_terminal or revoke_owed:
                departments = DepartmentSystems(
                    pool,
                    http,
                    timeout=settings.department_timeout_seconds,
                    token_secret=settings.token_secret,
                )
                await _partner_step("the department", departments.revoke(department))
                done.append("department confirmation revoked")
            if not state.is_terminal:
                state = PaymentState(
                    await payments.close_unpaid(
                        pool,
                        Transition(
                            p.payment_id,
                            PaymentEvent.FAILED,
                            actor=Actor.OPERATOR,
                            failure_code=FailureCode.CAPTURE_FAILED,
                            detail=f"{said}; {'; '.join(done)}",
                        ),
                    )
                )
            key = datetime.now(UTC).isoformat()
            if revoke_owed:
                await payments.record_note(
                    pool,
                    AuditEntry(
                        p.payment_id,
                        AuditNote.DEPARTMENT_REVOKED,
                        Actor.OPERATOR,
                        f"{said}: revoked",
                        key=f"resolve:{key}",
                    ),
                )
            await payments.record_note(
                pool,
                AuditEntry(
                    p.payment_id,
                    AuditNote.OPERATOR_RESOLVED,
                    Actor.OPERATOR,
                    f"{said} ({'; '.join(done) or 'nothing was open at the partners'})",
                    key=key,
                ),
            )
    finally:
        await pool.close()
    return {
        "payment_id": payment_id,
        "action": "resolve",
        "resolved": sorted(left),
        "state": state.value,
        "done": done,
    }


async def _release_at_partners(
    settings: Settings,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    p: StrandedPayment,
    *,
    paid: bool,
) -> list[str]:
    """Void or reverse every method the payment may have authorised, as the sweeper does
    (for a ``paid`` payment, those before the one that paid it). A final refusal is
    reported (the operator has checked it with the partner), but for the method of an open
    payment: the partner saying it captured that one means the payment was paid, and
    nothing is changed."""
    methods = PaymentMethods(
        pool,
        http,
        vault_key=b"",  # voids need no card data
        acquirer_url=settings.acquirer_url,
        issuer_url=settings.issuer_url,
    )
    open_payment = not PaymentState(p.state).is_terminal
    done = []
    # The method the payment is on first: its refusal stops the command before any change.
    for method, authorisation_id in reversed(p.methods_to_release()):
        current = bool(p.method_type) and method.attempt == p.attempt
        if paid and current:
            continue
        what = "voided" if authorisation_id else "authorising call reversed"
        request = FundsRequest(
            p.payment_id, method.method_type, authorisation_id, p.amount, method.attempt
        )
        try:
            await _partner_step(f"the {method.method_type} partner", methods.void(request))
        except ApplicationError as err:  # a final refusal (_partner_step raised the rest)
            if open_payment and current:
                raise OpsError(
                    REFUSED,
                    "partner_refused",
                    f"the {method.method_type} partner refused for good to release the "
                    f"method {p.payment_id} is on ({err}): if it captured it, the payment "
                    "was paid: nothing was changed; escalate to engineering to settle it",
                ) from None
            what = f"refused for good ({err}), as the operator found"
        done.append(f"method {method.attempt} ({method.method_type}): {what}")
    return done[::-1]


async def _workflow_running(settings: Settings, payment_id: str) -> bool:
    """Whether Temporal runs the payment's workflow; False when Temporal cannot be reached
    within seconds (resolve needs only the database and the partners: the notes it acts on
    were written once the workflow had closed)."""
    try:
        client = await asyncio.wait_for(connect(settings), timeout=10)
        handle = client.get_workflow_handle(payment_workflow_id(payment_id))
        description = await asyncio.wait_for(handle.describe(), timeout=10)
    except (RPCError, RuntimeError, TimeoutError):  # unknown to Temporal, or unreachable
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


async def _partner_step(partner: str, call: Awaitable[None]) -> None:
    """A partner call that ends the command with exit 5 when the partner cannot answer, and
    4 when it refuses (a department's refusal included)."""
    try:
        await call
    except (TransientError, httpx.TransportError) as err:
        raise OpsError(
            UNREACHABLE,
            "partner_unreachable",
            f"{partner} could not be reached ({err}): nothing is recorded as resolved yet; "
            "run it again",
        ) from None
    except ApplicationError as err:
        if partner == "the department" or not err.non_retryable:
            raise OpsError(
                REFUSED,
                "partner_refused",
                f"{partner} refused ({err}): nothing is recorded as resolved",
            ) from None
        raise
