"""``epay ops retry``, ``cancel`` and ``confirm``: the payment workflow's operator updates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from commands.ops.common import REFUSED, OpsError, payment_id_of, ui_url, workflow_id_of
from commands.ops.reading import describe_workflow, payment_status
from domain import search
from epay.config import Settings
from workflows.payment import PaymentWorkflow


@dataclass(frozen=True)
class Action:
    update: Any  # the PaymentWorkflow update that carries it (each takes its own input)
    what: str  # for messages: "<operator> <what> <payment>"


ACTIONS = {
    "retry": Action(PaymentWorkflow.operator_retry_now, "asked for a retry now of"),
    "cancel": Action(PaymentWorkflow.operator_cancel, "cancelled"),
    "confirm": Action(
        PaymentWorkflow.operator_record_confirmation, "recorded the department's confirmation of"
    ),
}


async def act(
    client: Client, settings: Settings, action: str, payment: str, arg: object
) -> dict[str, Any]:
    """Send an operator update; ``OpsError(REFUSED)`` with the validator's message if the
    payment refuses it or has ended."""
    workflow_id = workflow_id_of(payment)
    desc = await describe_workflow(client, settings, workflow_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise _ended(desc)
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.execute_update(ACTIONS[action].update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise OpsError(REFUSED, cause.type or "refused", cause.message) from None
        raise OpsError(REFUSED, "refused", str(cause or err)) from None
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise _ended(await describe_workflow(client, settings, workflow_id)) from None
        raise
    status, note = await payment_status(client, workflow_id)
    return {
        "payment_id": status.payment_id if status else payment_id_of(workflow_id),
        "action": action,
        "status": dataclasses.asdict(status) if status else None,
        "status_note": note,
        "ui_url": ui_url(settings, workflow_id),
    }


def _ended(desc: WorkflowExecutionDescription) -> OpsError:
    state = desc.typed_search_attributes.get(search.PAYMENT_STATE) or "unknown"
    how = desc.status.name.lower() if desc.status else "closed"
    return OpsError(
        REFUSED, "payment_ended", f"the payment has ended ({state}; its workflow {how})"
    )
