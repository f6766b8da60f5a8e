"""The webhook delivery workflow's own decisions, in seconds: the real workflow on a
time-skipping Temporal dev server (days of retry schedule pass at once), with a fake
``deliver`` activity registered under the real name on the departments' queue (no database,
no endpoint). tests/test_webhooks.py shows deliveries end to end on the real stack.

An attempt that fails itself (the database away, its worker lost) must not fail the
delivery: the relay has handed the event over and nothing would start it again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.queues import Role, task_queue
from domain.webhooks import Delivery, DeliveryAttempt, DeliveryOutcome
from tests.support import BIN
from workflows.webhook import WebhookDeliveryWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.workflow]

SCHEDULE = [60, 300, 3600, 86400, 172800]  # the default: six attempts over three days
GIVEN_UP = "epay_webhook_deliveries_given_up"

Attempt = Callable[[DeliveryAttempt], Awaitable[int]]


class Env:
    def __init__(self, environment: WorkflowEnvironment, metrics: MetricBuffer) -> None:
        self.environment = environment
        self.metrics = metrics

    @property
    def client(self) -> Client:
        return self.environment.client

    def given_up(self) -> list[dict[str, str | int | float | bool]]:
        return [
            dict(u.attributes) | {"value": u.value}
            for u in self.metrics.retrieve_updates()
            if u.metric.name == GIVEN_UP
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    metrics = MetricBuffer(10_000)
    environment = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            "--log-level",
            "error",
        ],
        runtime=Runtime(telemetry=TelemetryConfig(metrics=metrics)),
    )
    try:
        yield Env(environment, metrics)
    finally:
        await environment.shutdown()


@asynccontextmanager
async def delivering(client: Client, attempt: Attempt) -> AsyncIterator[str]:
    """Workers as ``epay worker`` runs them: the workflow on the workflow queue, ``deliver``
    (here ``attempt``) on the departments' queue. Yields the workflow queue."""
    queue = f"webhook-{uuid.uuid4().hex[:8]}"
    deliver = activity.defn(name="deliver")(attempt)
    async with (
        Worker(client, task_queue=queue, workflows=[WebhookDeliveryWorkflow]),
        Worker(client, task_queue=task_queue(queue, Role.DEPARTMENTS), activities=[deliver]),
    ):
        yield queue


async def deliver(client: Client, queue: str, event_id: str) -> DeliveryOutcome:
    return await client.execute_workflow(
        WebhookDeliveryWorkflow.run,
        Delivery(event_id, SCHEDULE),
        id=f"webhook-{event_id}",
        task_queue=queue,
    )


async def test_a_failed_attempt_is_tried_again_on_the_schedule_until_delivered(
    env: Env,
) -> None:
    made: list[int] = []

    async def attempt(a: DeliveryAttempt) -> int:
        made.append(a.attempt)
        if a.attempt == 1:
            raise ApplicationError("database unreachable")  # an unexpected exception
        if a.attempt == 2:
            raise ConnectionRefusedError("the database is down")  # as asyncpg raises it
        return 0

    # A lost worker (the start-to-close timeout) fails an attempt the same way, as an
    # ActivityError; not shown here, as time does not skip while an activity is in flight.
    async with delivering(env.client, attempt) as queue:
        outcome = await deliver(env.client, queue, f"evt_{uuid.uuid4().hex}")

    assert outcome == DeliveryOutcome(delivered=True, attempts=3)
    assert made == [1, 2, 3]


async def test_a_delivery_never_accepted_is_given_up_logged_and_counted(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    made: list[int] = []

    async def attempt(a: DeliveryAttempt) -> int:
        made.append(a.attempt)
        if a.attempt == len(SCHEDULE) + 1:
            raise ApplicationError("database unreachable")  # even the last attempt's failure
        return 1  # one endpoint has not accepted it

    env.given_up()  # only what this test records
    with caplog.at_level(logging.WARNING, logger="temporalio.workflow"):
        async with delivering(env.client, attempt) as queue:
            outcome = await deliver(env.client, queue, event_id)

    assert outcome == DeliveryOutcome(delivered=False, attempts=6)
    assert made == [1, 2, 3, 4, 5, 6]
    assert any(f"webhook {event_id} given up" in r.getMessage() for r in caplog.records), (
        caplog.text
    )
    [counted] = env.given_up()
    assert counted["value"] == 1
    assert (counted["task_queue"], counted["workflow_type"]) == (queue, "WebhookDeliveryWorkflow")


async def test_a_cancel_in_temporal_still_ends_a_delivery_mid_attempt(env: Env) -> None:
    reached = asyncio.Event()

    async def attempt(a: DeliveryAttempt) -> int:
        reached.set()
        await asyncio.sleep(3600)
        return 0

    async with delivering(env.client, attempt) as queue:
        handle = await env.client.start_workflow(
            WebhookDeliveryWorkflow.run,
            Delivery(f"evt_{uuid.uuid4().hex}", SCHEDULE),
            id=f"webhook-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        await asyncio.wait_for(reached.wait(), timeout=30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=30)
    assert isinstance(failure.value.cause, CancelledError)
    assert env.given_up() == []
