"""The sweeper's own activities: find stranded payments, forget card data past its use.

Undoing or finishing a stranded payment reuses the payment workflow's activities.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.queues import Role
from domain.refunds import refund_workflow_id
from domain.sweeper import NOT_FOUND, FindStranded, StrandedPayment
from store import refunds, sweeps
from workflows.refund import RefundWorkflow

PAGE = 50  # open payments read, and their workflows described at once, per page


class Sweeps:
    def __init__(self, pool: asyncpg.Pool, client: Client) -> None:
        self.pool = pool
        self.client = client

    @activity.defn
    async def find_stranded_payments(self, req: FindStranded) -> list[StrandedPayment]:
        """Open payments whose workflow is no longer running (or is unknown to Temporal),
        and ended ones whose workflow stopped before the department took the revocation.

        Each payment is read again after its workflow was described: a workflow writes the
        read model before it closes, so a payment still open once its workflow is seen
        closed stays open, and one that a closing workflow has just ended is left alone.
        """
        stranded: list[StrandedPayment] = []
        after = None
        while len(stranded) < req.limit:
            rows = await sweeps.open_payments(
                self.pool,
                quiet_for=timedelta(seconds=req.grace_seconds),
                after=after,
                limit=PAGE,
            )
            if not rows:
                break
            after = (rows[-1].updated_at, rows[-1].id)
            statuses = await asyncio.gather(*(self._status(row.workflow_id) for row in rows))
            for row, status in zip(rows, statuses, strict=True):
                if status is not None:
                    payment = await sweeps.stranded_payment(self.pool, row.id, status)
                    if payment is not None:
                        stranded.append(payment)
            activity.heartbeat(len(stranded))
        pending = await sweeps.revokes_pending(
            self.pool, quiet_for=timedelta(seconds=req.grace_seconds), limit=req.limit
        )
        statuses = await asyncio.gather(*(self._status(row.workflow_id) for row in pending))
        for row, status in zip(pending, statuses, strict=True):
            if status is not None:
                payment = await sweeps.stranded_payment(self.pool, row.id, status)
                if payment is not None:
                    stranded.append(payment)
        return stranded[: req.limit]

    @activity.defn
    async def restart_stranded_refunds(self, req: FindStranded) -> list[str]:
        """Start again the workflow of each pending refund whose workflow has closed without
        it (an operator's Terminate, a defect): the refund workflow is safe to run again
        (its refund at the partner, its journal and its notice are each once per refund)."""
        restarted: list[str] = []
        quiet = timedelta(seconds=req.grace_seconds)
        for refund_id in await refunds.stranded_candidates(self.pool, quiet, req.limit):
            workflow_id = refund_workflow_id(refund_id)
            if await self._status(workflow_id) is None:
                continue  # its workflow is still running it
            again = await refunds.request_for(self.pool, refund_id)
            if again is None:
                continue  # it ended meanwhile
            try:
                await self.client.start_workflow(
                    RefundWorkflow.run,
                    again,
                    id=workflow_id,
                    task_queue=self.workflow_queue(),
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    static_summary=f"refund {again.department} {again.payment_id} (restarted)",
                )
            except WorkflowAlreadyStartedError:
                continue
            activity.logger.info("refund %s: its workflow had closed; restarted", refund_id)
            restarted.append(refund_id)
        return restarted

    def workflow_queue(self) -> str:
        """The workflows' task queue: the records queue is ``<workflow queue>-records``."""
        return activity.info().task_queue.removesuffix(f"-{Role.RECORDS.value}")

    async def _status(self, workflow_id: str) -> str | None:
        """The workflow's status if it is closed (or ``not_found``), None while it runs."""
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return NOT_FOUND
            raise
        status = description.status
        if status is None or status == WorkflowExecutionStatus.RUNNING:
            return None
        return status.name.lower()

    @activity.defn
    async def delete_expired_card_data(self, max_age_seconds: int) -> int:
        """Delete card data older than ``max_age_seconds``: the payment window and a margin,
        after which no authorisation can still need it. Returns how many entries went."""
        return await sweeps.delete_card_data_older_than(
            self.pool, timedelta(seconds=max_age_seconds)
        )
