"""Delivering webhook events: one attempt at every endpoint still waiting for an event.

Each POST carries the event as its body, ``ePay-Event-Id`` and ``ePay-Signature`` (signed
with the department's active signing secrets, exactly as ePay's calls to the department's
own system: docs/departments.md). A 2xx is acceptance; anything else, or no answer in the
timeout, is logged and retried on the delivery's schedule.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import asyncpg
import httpx
from temporalio import activity

from domain import signing
from domain.webhooks import DeliveryAttempt
from store import department_secrets, webhooks


class WebhookDeliveries:
    def __init__(
        self, pool: asyncpg.Pool, http: httpx.AsyncClient, *, token_secret: bytes, timeout: float
    ) -> None:
        self.pool = pool
        self.http = http
        self.token_secret = token_secret
        self.timeout = timeout

    @activity.defn
    async def deliver(self, attempt: DeliveryAttempt) -> int:
        """POST the event to each endpoint that has not accepted it; how many still wait."""
        event = await webhooks.event(self.pool, attempt.event_id)
        if event is None:
            return 0
        secrets = [
            s.secret
            for s in await department_secrets.active(self.pool, self.token_secret, event.department)
        ]
        body = json.dumps(event.payload, separators=(",", ":")).encode()
        waiting = 0
        for endpoint in await webhooks.pending_endpoints(
            self.pool, attempt.event_id, attempt.since_delivery
        ):
            status: int | None = None
            error: str | None = None
            try:
                parts = urlsplit(endpoint.url)
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                response = await self.http.post(
                    endpoint.url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "ePay-Event-Id": attempt.event_id,
                        signing.HEADER: signing.signature_header(
                            secrets, int(time.time()), "POST", target or "/", body
                        ),
                    },
                    timeout=self.timeout,
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            except ValueError as exc:  # no signing secret for the department
                error = str(exc)
            await webhooks.record_delivery(
                self.pool, attempt.event_id, endpoint.id, attempt.attempt, status, error
            )
            accepted = status is not None and 200 <= status < 300
            waiting += 0 if accepted else 1
            activity.logger.info(
                "webhook %s to %s: %s",
                event.type,
                endpoint.id,
                "accepted" if accepted else f"not accepted ({status or error})",
            )
        return waiting
