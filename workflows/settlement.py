"""The settlement of one business day: reconcile the ledger with the partners' files.

A Temporal Schedule starts one run a day, for the day before (``day`` empty: the previous
business day in Asia/Dubai at the run's start); ``epay settlement run --day D`` starts one for
any day, which replaces that day's earlier result. A partner whose file cannot be had yet is
asked again, backing off, for up to a day.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.steps import call

with workflow.unsafe.imports_passed_through():
    from activities.settlement import Settlements
    from domain.calendar import previous_business_day
    from domain.queues import Role
    from domain.settlement import SettleDay, SettledDay, SettlementRequest

FILE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=30)
)


@workflow.defn
class SettlementWorkflow:
    @workflow.run
    async def run(self, req: SettlementRequest) -> SettledDay:
        day = req.day or previous_business_day(workflow.now()).isoformat()
        return await call(
            Settlements.settle_day,
            SettleDay(day),
            summary=f"settle and reconcile {day}",
            role=Role.RECORDS,
            start_to_close_timeout=timedelta(minutes=10),
            schedule_to_close_timeout=timedelta(days=1),
            retry_policy=FILE_RETRY,
        )
