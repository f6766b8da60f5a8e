"""The Temporal Schedules that run the sweeper and the daily settlement, and each run by
hand.

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
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.settlement import SettledDay, SettlementRequest
from domain.sweeper import CARD_DATA_MARGIN_SECONDS, SweepRequest, SweepSummary
from epay.config import Settings
from workflows.settlement import SettlementWorkflow
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
    return await _ensure(client, SWEEPER_SCHEDULE_ID, sweeper_schedule(settings, every))


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create ``schedule``, or update it in place; returns ``created`` or ``updated``."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep the schedule's state: a pause and its note are an operator's to lift.
        return ScheduleUpdate(
            dataclasses.replace(schedule, state=current.description.schedule.state)
        )

    await client.get_schedule_handle(schedule_id).update(update)
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


# --- the daily settlement ------------------------------------------------------------------

SETTLEMENT_SCHEDULE_ID = "epay-settlement"
# 02:00 in Dubai (UTC+4, no daylight saving): the day before has closed, its late captures in.
SETTLEMENT_AT = ScheduleCalendarSpec(hour=[ScheduleRange(22)], minute=[ScheduleRange(0)])
SETTLEMENT_SUMMARY = "settle and reconcile the previous business day (Asia/Dubai)"


def settlement_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SettlementWorkflow.run,
            SettlementRequest(),  # the previous business day, as of the run
            id=SETTLEMENT_SCHEDULE_ID,
            task_queue=settings.task_queue,
            static_summary=SETTLEMENT_SUMMARY,
        ),
        spec=ScheduleSpec(calendars=[SETTLEMENT_AT]),
        # A day still settling (a partner's file late) when the next is due: run both.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL),
    )


async def ensure_settlement_schedule(client: Client, settings: Settings) -> str:
    """Create the daily schedule, or update it in place keeping an operator's pause."""
    return await _ensure(client, SETTLEMENT_SCHEDULE_ID, settlement_schedule(settings))


async def settle_day(client: Client, settings: Settings, day: str) -> SettledDay:
    """Settle ``day`` now (again, if it was): its result replaces the day's earlier one."""
    return await client.execute_workflow(
        SettlementWorkflow.run,
        SettlementRequest(day),
        id=f"{SETTLEMENT_SCHEDULE_ID}-{day}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        static_summary=f"settle and reconcile {day}",
    )
