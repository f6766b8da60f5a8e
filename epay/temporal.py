"""The one place a Temporal client is made, so every client and worker converts data alike."""

from __future__ import annotations

from temporalio.client import Client

from epay.config import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


def payment_workflow_id(payment_id: str) -> str:
    return f"payment-{payment_id}"
