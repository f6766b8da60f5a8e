"""One event's delivery to its department's webhook endpoints (store/webhooks.py).

attempt -> wait (about 1 min, 5 min, 1 h, 1 day, 2 days) -> attempt ... until every endpoint
that takes the event has accepted it, or the schedule is spent and the delivery is given up
(a warning with the event's id, and ``epay_webhook_deliveries_given_up_total``, which an
alert watches). Each attempt is one activity on the departments' queue that POSTs the event,
signed, to the endpoints still waiting for it and logs each answer; the waits are durable
timers, so a delivery outlives any restart. An operator can skip the wait (``deliver_now``,
what ``epay webhooks redeliver`` sends to a delivery still in progress).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.steps import ONE_ATTEMPT, call, count, stopped_by_cancel

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookDeliveries
    from domain.queues import Role
    from domain.webhooks import Delivery, DeliveryAttempt, DeliveryOutcome


@workflow.defn
class WebhookDeliveryWorkflow:
    def __init__(self) -> None:
        self._now = False

    @workflow.run
    async def run(self, delivery: Delivery) -> DeliveryOutcome:
        waits = [0, *delivery.retry_after_seconds]
        for attempt, wait in enumerate(waits, start=1):
            if wait:
                self._now = False
                with contextlib.suppress(TimeoutError):  # the wait is over, or skipped
                    await workflow.wait_condition(
                        lambda: self._now, timeout=timedelta(seconds=wait)
                    )
            if await self._attempt(delivery, attempt):
                return DeliveryOutcome(delivered=True, attempts=attempt)
        workflow.logger.warning(
            "webhook %s given up: not accepted after %d attempts", delivery.event_id, len(waits)
        )
        count("epay_webhook_deliveries_given_up", "Webhook deliveries given up after every attempt")
        return DeliveryOutcome(delivered=False, attempts=len(waits))

    async def _attempt(self, delivery: Delivery, attempt: int) -> bool:
        """One try at every endpoint still waiting: whether none waits any longer.

        The relay has marked the event handed over, so nothing would start this delivery
        again if it failed: an attempt that fails itself (an exception such as the database
        being away, or its worker lost and its start-to-close timeout reached) is a failed
        attempt like an endpoint's refusal, tried again on the schedule. Only a cancel in
        Temporal ends the delivery early."""
        try:
            waiting = await call(
                WebhookDeliveries.deliver,
                DeliveryAttempt(delivery.event_id, attempt, delivery.since_delivery),
                summary=f"deliver {delivery.event_id} (attempt {attempt})",
                role=Role.DEPARTMENTS,
                start_to_close_timeout=timedelta(minutes=2),
                # One try at every waiting endpoint: the schedule, not the activity, retries.
                retry_policy=ONE_ATTEMPT,
            )
        except ActivityError as failed:
            # No patch needed: a failed attempt used to fail the workflow, so no delivery
            # still running has one in its history.
            if stopped_by_cancel(failed):
                raise
            workflow.logger.warning(
                "webhook %s: attempt %d failed before its end", delivery.event_id, attempt
            )
            return False
        return waiting == 0

    @workflow.signal
    def deliver_now(self) -> None:
        """Skip the current wait: attempt again at once."""
        self._now = True
