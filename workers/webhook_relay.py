"""The webhook relay: one durable delivery workflow for each event the records wrote.

Events are written in the transaction of the outcome they tell of (store/webhooks.py); this
loop, in every process that runs the records role, starts a ``WebhookDeliveryWorkflow`` for
each event not yet dispatched (workflow id ``webhook-<event id>``, so that two relays, or a
relay that restarts between starting a workflow and marking its event, start it once), then
marks the event. An event waits at most ``POLL_SECONDS`` for it. An event that no endpoint
of its department takes when it is dispatched is marked without a delivery: most
departments register none, and a delivery workflow for each of their payments would double
Temporal's work for nothing (``epay webhooks redeliver`` sends such an event later to an
endpoint registered since).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.webhooks import Delivery
from epay.config import Settings
from store import webhooks
from workflows.webhook import WebhookDeliveryWorkflow

log = logging.getLogger("epay.webhooks")
POLL_SECONDS = 1.0


def delivery_workflow_id(event_id: str) -> str:
    return f"webhook-{event_id}"


async def dispatch(pool: asyncpg.Pool, client: Client, settings: Settings) -> int:
    """Start the delivery of every event not yet dispatched; how many were."""
    started = 0
    for row in await webhooks.undispatched(pool):
        if not row.has_endpoint:
            await webhooks.mark_dispatched(pool, row.id)
            continue
        try:
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                Delivery(row.id, settings.webhook_retries),
                id=delivery_workflow_id(row.id),
                task_queue=settings.task_queue,
            )
            started += 1
        except WorkflowAlreadyStartedError:
            pass  # another relay, or this one before a restart, started it
        await webhooks.mark_dispatched(pool, row.id)
    return started


async def webhook_relay(pool: asyncpg.Pool, client: Client, settings: Settings) -> None:
    while True:
        try:
            await dispatch(pool, client, settings)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the database or Temporal is away: try again soon
            log.warning("webhook relay: dispatch failed; retrying", exc_info=False)
        await asyncio.sleep(POLL_SECONDS)
