"""``epay worker``: polls the payment task queue until told to stop.

Any number of workers can run against the same queue. On SIGTERM or SIGINT a worker stops
polling and lets the tasks in flight finish (up to the drain timeout) before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.departments import DepartmentSystems
from activities.payment_methods import PaymentMethods
from activities.records import PaymentRecords
from activities.sweeper import Sweeps
from epay.config import Settings
from epay.db import create_pool
from epay.temporal import connect
from workflows.payment import PaymentWorkflow
from workflows.sweeper import SweeperWorkflow

log = logging.getLogger("epay.worker")

DRAIN_TIMEOUT = timedelta(seconds=30)


def payment_activities(
    pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings
) -> list[Callable[..., Any]]:
    """Every activity the payment workflow calls, bound to its connections."""
    records = PaymentRecords(pool)
    methods = PaymentMethods(
        pool,
        http,
        vault_key=settings.vault_key,
        acquirer_url=settings.acquirer_url,
        issuer_url=settings.issuer_url,
    )
    departments = DepartmentSystems(pool, http, timeout=settings.department_timeout_seconds)
    return [
        records.reserve_fee,
        records.record_transition,
        records.record_note,
        records.close_unpaid,
        records.release_unanswered_reservation,
        records.settle,
        methods.authorise,
        methods.complete_challenge,
        methods.capture,
        methods.void_authorisation,
        departments.confirm_with_department,
        departments.revoke_department_confirmation,
    ]


def sweeper_activities(client: Client, pool: asyncpg.Pool) -> list[Callable[..., Any]]:
    """The sweeper's own activities; it also calls the payment workflow's."""
    sweeps = Sweeps(pool, client)
    return [sweeps.find_stranded_payments, sweeps.delete_expired_card_data]


def payment_worker(
    client: Client, task_queue: str, pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PaymentWorkflow, SweeperWorkflow],
        activities=[
            *payment_activities(pool, http, settings),
            *sweeper_activities(client, pool),
        ],
        graceful_shutdown_timeout=DRAIN_TIMEOUT,
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(settings.require_database_url(), max_size=10)
    client = await connect(settings)
    async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
        worker = payment_worker(client, settings.task_queue, pool, http, settings)
        log.info("worker polling task queue %s", settings.task_queue)
        async with worker:
            await stop.wait()
            log.info("stopping: draining tasks in flight (up to %s)", DRAIN_TIMEOUT)
    await pool.close()
    log.info("worker stopped")
