"""The Temporal Schedule that runs the sweeper, and a sweep run by hand.

``epay sweeper schedule`` creates the schedule or brings an existing one up to date (keeping
whether an operator paused it); ``make run`` does so once its worker is up. In production
run it once per deployment, like ``epay migrate``.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.sweeper import CARD_DATA_MARGIN_SECONDS, SweepRequest, SweepSummary
from epay.config import Settings
from workflows.sweeper import SweeperWorkflow

SWEEPER_SCHEDULE_ID = "epay-sweeper"
SWEEP_EVERY = timedelta(minutes=5)
SUMMARY = "end payments whose workflow closed without them; delete old card data"


def sweep_request(settings: Settings) -> SweepRequest:
    return SweepRequest(
        card_data_max_age_seconds=settings.payment_window_seconds + CARD_DATA_MARGIN_SECONDS
    )


def sweeper_schedule(settings: Settings, every: timedelta = SWEEP_EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SweeperWorkflow.run,
            sweep_request(settings),
            id=SWEEPER_SCHEDULE_ID,  # each run: epay-sweeper-<time>
            task_queue=settings.task_queue,
            static_summary=SUMMARY,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A sweep still running when the next is due (many payments, a partner down): skip.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sweeper_schedule(
    client: Client, settings: Settings, every: timedelta = SWEEP_EVERY
) -> str:
    """Create the schedule, or update it in place; returns ``created`` or ``updated``."""
    schedule = sweeper_schedule(settings, every)
    try:
        await client.create_schedule(SWEEPER_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep the schedule's state: a pause and its note are an operator's to lift.
        return ScheduleUpdate(
            dataclasses.replace(schedule, state=current.description.schedule.state)
        )

    await client.get_schedule_handle(SWEEPER_SCHEDULE_ID).update(update)
    return "updated"


async def sweep_now(client: Client, settings: Settings) -> SweepSummary:
    """Run one sweep now, next to the scheduled ones (sweeps are idempotent)."""
    return await client.execute_workflow(
        SweeperWorkflow.run,
        sweep_request(settings),
        id=f"{SWEEPER_SCHEDULE_ID}-manual-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        static_summary=SUMMARY,
    )
