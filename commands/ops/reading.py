"""``epay ops stuck`` and ``show``: a payment as Temporal and its ``status`` query see it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from commands.ops.common import (
    CONCURRENT_LOOKUPS,
    NOT_FOUND,
    STATUS_QUERY_TIMEOUT,
    OpsError,
    PaymentView,
    PendingActivity,
    StuckFilter,
    payment_id_of,
    step_started_at,
    stuck_query,
    timestamp,
    ui_url,
    workflow_id_of,
)
from domain import search
from domain.models import PaymentStatus
from domain.money import format_aed
from domain.states import PaymentState
from epay.config import Settings
from epay.db import create_pool
from store import payments
from workflows.payment import PaymentWorkflow


async def find_stuck(
    client: Client, settings: Settings, f: StuckFilter, limit: int
) -> tuple[list[PaymentView], int]:
    """The ``limit`` longest-stuck payments the filter finds, and how many it found."""
    query = stuck_query(f, datetime.now(UTC))
    found = [wf async for wf in client.list_workflows(query)]
    found.sort(key=step_started_at)
    gate = asyncio.Semaphore(CONCURRENT_LOOKUPS)

    async def look(wf: WorkflowExecution) -> PaymentView:
        async with gate:
            return await _view(client, settings, wf)

    return list(await asyncio.gather(*(look(wf) for wf in found[:limit]))), len(found)


async def _view(client: Client, settings: Settings, wf: WorkflowExecution) -> PaymentView:
    attrs = wf.typed_search_attributes
    handle = client.get_workflow_handle_for(PaymentWorkflow.run, wf.id)
    desc = await handle.describe()
    status, note = await payment_status(client, wf.id)
    pending = await pending_activities(client, desc)
    since = attrs.get(search.STEP_STARTED_AT)
    amount = status.amount if status else attrs.get(search.AMOUNT_FILS)
    waiting_for = status.waiting_for if status else attrs.get(search.WAITING_FOR)
    confirming = status if status and status.state == PaymentState.CONFIRMING else None
    why = [f"waiting for {waiting_for}"] if waiting_for else []
    if confirming and confirming.attempt:
        why.append(f"confirmation attempt {confirming.attempt}")
        if confirming.last_error:
            why[-1] += f", last error {confirming.last_error}"
    return PaymentView(
        payment_id=status.payment_id if status else payment_id_of(wf.id),
        workflow_id=wf.id,
        state=status.state if status else attrs.get(search.PAYMENT_STATE),
        waiting_for=waiting_for,
        step=status.doing if status else None,
        why="; ".join(why + [p.line() for p in pending] + ([note] if note else [])),
        since=status.step_started_at if status else (since.isoformat() if since else None),
        gives_up_at=status.gives_up_at if status else None,
        department=status.department if status else attrs.get(search.DEPARTMENT),
        reference=status.reference if status else attrs.get(search.PAYMENT_REFERENCE),
        amount_fils=amount,
        amount=format_aed(amount) if amount is not None else None,
        confirmation_attempt=confirming.attempt if confirming else None,
        last_error=confirming.last_error if confirming else None,
        pending_activities=pending,
        ui_url=ui_url(settings, wf.id),
    )


async def payment_status(
    client: Client, workflow_id: str
) -> tuple[PaymentStatus | None, str | None]:
    """The payment's ``status`` query, or None and why it was not answered."""
    handle = client.get_workflow_handle_for(PaymentWorkflow.run, workflow_id)
    try:
        return await handle.query(PaymentWorkflow.status, rpc_timeout=STATUS_QUERY_TIMEOUT), None
    except (RPCError, WorkflowQueryFailedError) as err:
        if isinstance(err, RPCError) and err.status == RPCStatusCode.UNAVAILABLE:
            raise
        return None, f"status query not answered (is a worker running?): {err}"


async def pending_activities(
    client: Client, desc: WorkflowExecutionDescription
) -> list[PendingActivity]:
    return [await _pending(client, p) for p in desc.raw_description.pending_activities]


async def _pending(client: Client, p: PendingActivityInfo) -> PendingActivity:
    state = PendingActivityState.Name(p.state).removeprefix("PENDING_ACTIVITY_STATE_").lower()
    has_failure = p.HasField("last_failure")
    return PendingActivity(
        activity=p.activity_type.name,
        state=state,
        attempt=p.attempt,
        maximum_attempts=p.maximum_attempts or None,
        last_failure=await _failure_message(client, p.last_failure) if has_failure else None,
        last_failed_at=timestamp(p.last_attempt_complete_time) if has_failure else None,
        next_attempt_at=(
            timestamp(p.next_attempt_schedule_time)
            if p.HasField("next_attempt_schedule_time")
            else None
        ),
    )


async def _failure_message(client: Client, failure: Failure) -> str:
    """The failure's message, decoded through the client's codec (failure messages are
    encrypted in history); as Temporal has it if this client cannot decode it."""
    copy = Failure()
    copy.CopyFrom(failure)
    try:
        return str(await client.data_converter.decode_failure(copy))
    except Exception as err:  # noqa: BLE001 - e.g. a key this client does not hold
        return f"{failure.message} (not decoded: {err})"


async def show(client: Client, settings: Settings, payment: str) -> dict[str, Any]:
    """Everything known about one payment: status, pending activities, audit trail."""
    workflow_id = workflow_id_of(payment)
    desc = await describe_workflow(client, settings, workflow_id)
    status, note = await payment_status(client, workflow_id)
    payment_id = status.payment_id if status else payment_id_of(workflow_id)
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        events = await payments.list_events(pool, payment_id)
    finally:
        await pool.close()
    return {
        "payment_id": payment_id,
        "workflow_id": workflow_id,
        "workflow_status": desc.status.name.lower() if desc.status else None,
        "status": dataclasses.asdict(status) if status else None,
        "status_note": note,
        "pending_activities": [
            dataclasses.asdict(p) for p in await pending_activities(client, desc)
        ],
        "events": [
            {**dataclasses.asdict(e), "occurred_at": e.occurred_at.astimezone(UTC).isoformat()}
            for e in events
        ],
        "ui_url": ui_url(settings, workflow_id),
    }


async def describe_workflow(
    client: Client, settings: Settings, workflow_id: str
) -> WorkflowExecutionDescription:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise OpsError(
                NOT_FOUND,
                "payment_not_found",
                f"no payment workflow {workflow_id} in namespace {settings.temporal_namespace}",
            ) from None
        raise
