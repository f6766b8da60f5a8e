"""The floor: five no-op activities on the same Temporal server, polled by a worker with
ePay's worker settings and data converter (``python -m tools.bench`` runs it)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.floor import STEPS
from epay.config import Settings
from epay.temporal import connect
from tools.bench.common import WARMUP
from tools.bench.driving import drive, note
from tools.bench.epay_api import gather_limited
from tools.bench.figures import Outcome, events_summary, phase_figures
from tools.bench.processes import ProcessMeter
from workflows.floor import FloorWorkflow


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The slots, pollers and cache ePay's workers run with (``EPAY_WORKER_*``)."""
    return {
        "max_concurrent_workflow_tasks": settings.workflow_task_slots,
        "max_concurrent_activities": settings.activity_slots,
        "max_concurrent_local_activities": settings.local_activity_slots,
        "max_cached_workflows": settings.sticky_cache_size,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.workflow_pollers),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.activity_pollers),
    }


def floor_queue(settings: Settings) -> str:
    return f"{settings.task_queue}-floor"


async def serve_floor() -> None:
    """The floor's worker process (``python -m tools.bench``): polls until SIGTERM."""
    import signal

    settings = Settings.from_env()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    client = await connect(settings)
    async with Worker(
        client,
        task_queue=floor_queue(settings),
        workflows=[FloorWorkflow],
        activities=list(STEPS),
        **worker_settings(settings),
    ):
        print("floor worker polling", flush=True)
        await stop.wait()


@dataclass
class FloorPipeline:
    client: Client
    task_queue: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    serial: int = 0

    async def pay(self, i: int) -> Outcome:
        """Run one floor workflow; its latencies come from its history afterwards."""
        self.serial += 1
        workflow_id = f"floor-{self.run_id}-{self.serial}"
        started = time.time()
        handle = await self.client.start_workflow(
            FloorWorkflow.run, workflow_id, id=workflow_id, task_queue=self.task_queue
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            return Outcome("failed", "floor", started, time.time(), workflow_id=workflow_id)
        return Outcome("succeeded", "floor", started, time.time(), workflow_id=workflow_id)

    async def time_from_histories(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Fill in each floor workflow's latencies from the times its history recorded;
        returns the number of events of each."""
        histories = await gather_limited(
            (
                self.client.get_workflow_handle(o.workflow_id or "").fetch_history()
                for o in outcomes
            ),
            limit=10,
        )
        for outcome, history in zip(outcomes, histories, strict=True):
            done = [
                e.event_time.seconds + e.event_time.nanos / 1e9
                for e in history.events
                if e.HasField("activity_task_completed_event_attributes")
            ]
            if len(done) == len(STEPS):
                outcome.create_to_reserved = done[0] - outcome.started
                outcome.authorise_to_succeeded = done[-1] - done[0]
        return [len(h.events) for h in histories]


async def start_floor_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.bench", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
    if b"polling" not in line:
        raise SystemExit("epay bench: the floor worker did not start")
    return worker


async def run_floor(
    client: Client, payments: int, concurrency: int, temporal_pids: list[int]
) -> dict[str, Any]:
    """The floor phase: its own worker process, a warm-up, then the measured workflows."""
    settings = Settings.from_env()
    note(f"starting the floor's worker on task queue {floor_queue(settings)} ...")
    worker = await start_floor_worker(dict(os.environ))
    floor = FloorPipeline(client, floor_queue(settings))
    try:
        await drive(WARMUP, concurrency, floor.pay)
        meter = ProcessMeter(
            {"worker": [worker.pid], "temporal": temporal_pids, "bench": [os.getpid()]}
        )
        outcomes = await drive(payments, concurrency, floor.pay, "floor")
        processes = meter.report(payments)
    finally:
        worker.terminate()
        await worker.wait()
    events = await floor.time_from_histories([o for o in outcomes if o.state == "succeeded"])
    return phase_figures(outcomes) | {
        "history_events": {"floor": events_summary(events)},
        "processes": processes,
    }
