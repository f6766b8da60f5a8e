"""The floor: a bare workflow that takes a payment's five happy-path steps as remote no-op
activities, one after the other. ``epay bench`` measures ePay against it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.floor import STEPS

STEP_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, payment_id: str) -> None:
        for step in STEPS:
            await workflow.execute_activity(step, payment_id, start_to_close_timeout=STEP_TIMEOUT)
