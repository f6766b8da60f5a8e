"""The floor's activities: one no-op per step of a happy-path payment.

``epay bench`` runs them beside ePay's pipeline to show what Temporal itself costs on the
same server and worker settings: five remote activities and nothing else.
"""

from __future__ import annotations

from temporalio import activity


@activity.defn(name="floor_reserve")
async def reserve(payment_id: str) -> None:
    """Stands for reserving the fee."""


@activity.defn(name="floor_authorise")
async def authorise(payment_id: str) -> None:
    """Stands for authorising the payment method."""


@activity.defn(name="floor_confirm")
async def confirm(payment_id: str) -> None:
    """Stands for confirming with the department."""


@activity.defn(name="floor_capture")
async def capture(payment_id: str) -> None:
    """Stands for capturing the funds."""


@activity.defn(name="floor_settle")
async def settle(payment_id: str) -> None:
    """Stands for posting the ledger and issuing the receipt."""


STEPS = (reserve, authorise, confirm, capture, settle)
"""In the order a payment takes them."""
