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
from domain.destinations import DESTINATION_REFUSED, Allowlist, ip_literal
from domain.webhooks import DeliveryAttempt
from epay import egress
from store import department_secrets, webhooks


class WebhookDeliveries:
    def __init__(
        self,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        *,
        token_secret: bytes,
        timeout: float,
        allowlist: Allowlist | None = None,
        proxy: str | None = None,
    ) -> None:
        self.pool = pool
        self.token_secret = token_secret
        self.timeout = timeout
        self.allowlist = allowlist or Allowlist()
        # Through the egress proxy when one is set: a client of its own, as the shared one
        # also calls the departments' confirmation URLs, which ePay's operators chose.
        self.proxied = proxy is not None
        self.http = httpx.AsyncClient(proxy=proxy, trust_env=False) if proxy else http

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
                status = await self._post(endpoint.url, attempt.event_id, secrets, body)
            except egress.DestinationRefused as refused:
                error = DESTINATION_REFUSED
                activity.logger.warning(
                    "webhook %s to %s not sent: destination refused (%s)",
                    event.type,
                    endpoint.id,
                    refused.reason,
                )
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

    async def _post(self, url: str, event_id: str, secrets: list[str], body: bytes) -> int:
        """POST the event to ``url`` once its destination is judged again (the name resolved
        now, so that one rebound to an inside address since registration is refused), and
        answer the status. Without a proxy the connection goes to the address that was
        checked, with the URL's name as Host and as TLS server name (the certificate is
        checked against the name): a second lookup by the client cannot lead elsewhere."""
        destination = await egress.check(url, self.allowlist, self.timeout)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "ePay-Event-Id": event_id,
            signing.HEADER: signing.signature_header(
                secrets, int(time.time()), "POST", target or "/", body
            ),
        }
        request_url = httpx.URL(url)
        extensions: dict[str, object] = {}
        pinned = destination.address
        if pinned is not None and not self.proxied and ip_literal(destination.host) is None:
            headers["Host"] = request_url.netloc.decode("ascii").rpartition("@")[2]
            request_url = request_url.copy_with(host=str(pinned))
            if request_url.scheme == "https":
                extensions["sni_hostname"] = destination.host
        response = await self.http.post(
            request_url,
            content=body,
            headers=headers,
            timeout=self.timeout,
            extensions=extensions,
            follow_redirects=False,
        )
        return response.status_code
