"""Stranding a payment as an operator's Terminate does, and running the sweeper on the
stack's worker as its schedule starts it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from commands.schedules import sweep_request
from domain.sweeper import SweepRequest, SweepSummary, SweptPayment
from tests.conftest import Stack
from workflows.sweeper import SweeperWorkflow


def sweep(stack: Stack, *, grace_seconds: int | None = None) -> SweepSummary:
    """One sweep on the stack's worker, as the schedule starts it."""
    req = sweep_request(stack.settings())
    if grace_seconds is not None:
        req = dataclasses.replace(req, grace_seconds=grace_seconds)

    async def run(req: SweepRequest) -> SweepSummary:
        client = await stack.temporal_client()
        return await client.execute_workflow(
            SweeperWorkflow.run,
            req,
            id=f"test-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=stack.env["EPAY_TASK_QUEUE"],
        )

    return asyncio.run(run(req))


def swept(summary: SweepSummary, payment_id: str) -> SweptPayment | None:
    found = [p for p in summary.payments if p.payment_id == payment_id]
    assert len(found) <= 1, found
    return found[0] if found else None


def terminate(stack: Stack, payment: dict[str, Any]) -> None:
    """What an operator's Terminate button does: the workflow stops, no compensation runs."""

    async def run() -> None:
        client = await stack.temporal_client()
        await client.get_workflow_handle(payment["workflow_id"]).terminate(reason="test")

    asyncio.run(run())


def quiet(stack: Stack, payment_id: str) -> None:
    """Age the payment's last change past the sweeper's grace period (two minutes)."""
    stack.fetch(
        "UPDATE payments SET updated_at = now() - interval '10 minutes' WHERE id = $1", payment_id
    )
