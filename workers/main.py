"""``epay worker --role R``: polls the task queues of its role until told to stop.

Each role (``domain.queues``) is one Temporal Worker on one queue: ``workflows`` runs the
workflows (payments, refunds, the sweeper) and their database steps (local activities) on
``EPAY_TASK_QUEUE``; ``acquirer``, ``issuer``, ``departments`` and ``records`` run the
activities of that queue; ``all`` runs all five in one process, on one Temporal client, one
database pool and one HTTP client. Any number of processes of each role can run. On SIGTERM
or SIGINT every Worker of the process stops polling and lets its tasks in flight finish (up
to the drain timeout) before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.departments import DepartmentSystems
from activities.payment_methods import PaymentMethods
from activities.records import PaymentRecords
from activities.settlement import Settlements
from activities.sweeper import Sweeps
from activities.webhooks import WebhookDeliveries
from domain.queues import Role, roles_in, task_queue
from epay import telemetry
from epay.config import Settings
from epay.db import create_pool
from epay.temporal import connect_when_reachable
from workers.health import serve_health
from workers.webhook_relay import webhook_relay
from workflows.payment import PaymentWorkflow
from workflows.refund import RefundWorkflow
from workflows.settlement import SettlementWorkflow
from workflows.sweeper import SweeperWorkflow
from workflows.webhook import WebhookDeliveryWorkflow

log = logging.getLogger("epay.worker")

DRAIN_TIMEOUT = timedelta(seconds=30)
READY_DB_TIMEOUT = 2.0  # seconds the database has to answer a readiness probe

PAYMENT_METHOD_CALLS = (
    PaymentMethods.authorise,
    PaymentMethods.complete_challenge,
    PaymentMethods.capture,
    PaymentMethods.void_authorisation,
    PaymentMethods.refund,
)
# The activities each role serves. The workflows role runs the payment's and the refund's
# database steps as local activities; the records role runs the sweeper's, which are remote.
SERVED: Mapping[Role, tuple[Callable[..., Any], ...]] = {
    Role.WORKFLOWS: (
        PaymentRecords.reserve_fee,
        PaymentRecords.record_transition,
        PaymentRecords.record_note,
        PaymentRecords.close_unpaid,
        PaymentRecords.release_unanswered_reservation,
        PaymentRecords.settle,
        PaymentRecords.begin_refund,
        PaymentRecords.settle_refund,
        PaymentRecords.fail_refund,
    ),
    Role.ACQUIRER: PAYMENT_METHOD_CALLS,
    Role.ISSUER: PAYMENT_METHOD_CALLS,
    Role.DEPARTMENTS: (
        DepartmentSystems.confirm_with_department,
        DepartmentSystems.revoke_department_confirmation,
        DepartmentSystems.notify_refund,
        WebhookDeliveries.deliver,
    ),
    Role.RECORDS: (
        Settlements.settle_day,
        Sweeps.restart_stranded_refunds,
        Sweeps.find_stranded_payments,
        Sweeps.delete_expired_card_data,
        PaymentRecords.close_unpaid,
        PaymentRecords.record_note,
        PaymentRecords.settle,
    ),
}
PARTNER_ROLES = (Role.ACQUIRER, Role.ISSUER, Role.DEPARTMENTS)  # they call out over HTTP
# The records role reads the partners' settlement files too (the daily settlement).
HTTP_ROLES = (*PARTNER_ROLES, Role.RECORDS)


def rate_limit(role: Role, settings: Settings) -> float | None:
    """Activities per second for the whole task queue (every worker of the role together)."""
    return {
        Role.ACQUIRER: settings.acquirer_rate_limit,
        Role.ISSUER: settings.issuer_rate_limit,
        Role.DEPARTMENTS: settings.departments_rate_limit,
    }.get(role)


def db_pool_size(roles: Sequence[Role], settings: Settings) -> int:
    """``EPAY_DB_POOL_SIZE``, or when it is 0 one connection per task the process can run.

    Every role reads or writes the database: the workflows role in its local activities
    (every step of a payment), the partner roles to open the card vault and find a
    department's URL, the records role in all it does. Sizing the pool to the slots means a
    task never waits for a connection; PostgreSQL must then allow that many per process
    (set ``EPAY_DB_POOL_SIZE`` lower, or put PgBouncer in front, when it cannot).
    """
    if settings.db_pool_size:
        return settings.db_pool_size
    return sum(
        settings.local_activity_slots if role is Role.WORKFLOWS else settings.activity_slots
        for role in roles
    )


def http_limits(roles: Sequence[Role], settings: Settings) -> httpx.Limits | None:
    """One connection per partner call the process can make at once; None: it makes none."""
    calls = settings.activity_slots * sum(role in HTTP_ROLES for role in roles)
    return httpx.Limits(max_connections=calls, max_keepalive_connections=calls) if calls else None


def _bind(definitions: Sequence[Callable[..., Any]], *adapters: object) -> list[Callable[..., Any]]:
    """Each activity definition bound to the adapter whose class defines it."""
    return [
        next(getattr(a, d.__name__) for a in adapters if getattr(type(a), d.__name__, None) is d)
        for d in definitions
    ]


def role_activities(
    role: Role,
    client: Client,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient | None,
    settings: Settings,
) -> list[Callable[..., Any]]:
    """The activities ``role`` serves, bound to the process's connections.

    Each role is given only the secrets its activities use (``epay.config.ROLE_SECRETS``):
    the card vault key to the acquirer and the issuer, the token secret (which seals the
    departments' signing secrets) to the departments role; a process reads no other."""
    adapters: list[object] = [PaymentRecords(pool), Sweeps(pool, client)]
    if role is Role.RECORDS:
        assert http is not None, "the records role reads the partners' settlement files"
        adapters.append(
            Settlements(
                pool, http, acquirer_url=settings.acquirer_url, issuer_url=settings.issuer_url
            )
        )
    if role in (Role.ACQUIRER, Role.ISSUER):
        assert http is not None, f"the {role} role calls out over HTTP"
        adapters.append(
            PaymentMethods(
                pool,
                http,
                vault_key=settings.vault_key,
                acquirer_url=settings.acquirer_url,
                issuer_url=settings.issuer_url,
            )
        )
    if role is Role.DEPARTMENTS:
        assert http is not None, "the departments role calls out over HTTP"
        adapters += [
            DepartmentSystems(
                pool,
                http,
                timeout=settings.department_timeout_seconds,
                token_secret=settings.token_secret,
                secrets_cache_seconds=settings.department_secrets_cache_seconds,
            ),
            WebhookDeliveries(
                pool,
                http,
                token_secret=settings.token_secret,
                timeout=settings.department_timeout_seconds,
                allowlist=settings.webhook_allowlist,
                proxy=settings.webhook_proxy,
            ),
        ]
    return _bind(SERVED[role], *adapters)


def role_worker(
    role: Role,
    client: Client,
    workflow_queue: str,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient | None,
    settings: Settings,
    *,
    single_queue_tasks: bool = False,
) -> Worker:
    """The Worker of ``role`` on its queue, with the slots and pollers of the settings.

    With ``single_queue_tasks`` (the ``all`` role) the workflow queue's Worker also runs
    every remote activity scheduled on the workflow queue itself: the release before worker
    roles put them there, and a capture or a compensation retries where it was scheduled
    until it is done. Upgrading a fleet from that release starts with ``all`` workers.
    """
    activities = role_activities(role, client, pool, http, settings)
    if single_queue_tasks:
        every = (
            a for r in roles_in(Role.ALL) for a in role_activities(r, client, pool, http, settings)
        )
        activities = list({a.__name__: a for a in every}.values())
    common: dict[str, Any] = {
        "task_queue": task_queue(workflow_queue, role),
        "activities": activities,
        "graceful_shutdown_timeout": DRAIN_TIMEOUT,
    }
    if role is Role.WORKFLOWS:
        return Worker(
            client,
            **common,
            workflows=[
                PaymentWorkflow,
                RefundWorkflow,
                SweeperWorkflow,
                WebhookDeliveryWorkflow,
                SettlementWorkflow,
            ],
            no_remote_activities=not single_queue_tasks,
            max_concurrent_workflow_tasks=settings.workflow_task_slots,
            max_concurrent_activities=settings.activity_slots,
            max_concurrent_local_activities=settings.local_activity_slots,
            max_cached_workflows=settings.sticky_cache_size,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.workflow_pollers),
        )
    return Worker(
        client,
        **common,
        max_concurrent_activities=settings.activity_slots,
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.activity_pollers),
        max_task_queue_activities_per_second=rate_limit(role, settings),
    )


@asynccontextmanager
async def payment_worker(
    client: Client,
    workflow_queue: str,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient | None,
    settings: Settings,
    role: Role = Role.ALL,
) -> AsyncIterator[list[Worker]]:
    """Every Worker of ``role`` on the queues derived from ``workflow_queue``, started when
    the block is entered (each checks the namespace, then polls); on leaving the block they
    all drain at once."""
    workers = [
        role_worker(
            single,
            client,
            workflow_queue,
            pool,
            http,
            settings,
            single_queue_tasks=role is Role.ALL,
        )
        for single in roles_in(role)
    ]
    async with AsyncExitStack() as started:
        for worker in workers:
            await started.enter_async_context(worker)
        try:
            yield workers
        finally:
            await asyncio.gather(*(worker.shutdown() for worker in workers))


async def run_worker(
    settings: Settings, *, role: str | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the Workers of ``role`` (default ``EPAY_WORKER_ROLE``) until SIGTERM or SIGINT,
    answering probes on ``EPAY_HEALTH_PORT`` if set. A process that runs the records role
    also counts the stuck payments (``epay_payments_stuck``) from the read model."""
    chosen = Role(role) if role else settings.worker_role
    process = telemetry.setup(settings, telemetry.worker_service(chosen.value))
    roles = roles_in(chosen)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running: list[Worker] = []
    draining = False
    # Lazily connected: a worker whose database is away starts, and says it is not ready.
    pool = await create_pool(
        settings.require_database_url(), min_size=0, max_size=db_pool_size(roles, settings)
    )

    async def ready() -> bool:
        if draining or not running or not all(worker.is_running for worker in running):
            return False
        try:
            async with asyncio.timeout(READY_DB_TIMEOUT):
                await pool.fetchval("SELECT 1")
        except Exception:  # noqa: BLE001 - whatever the trouble, the database does not answer
            return False
        return True

    health = await serve_health(settings.health_port, ready) if settings.health_port else None
    limits = http_limits(roles, settings)
    stuck = None
    if Role.RECORDS in roles:
        stuck = asyncio.create_task(telemetry.report_stuck_payments(pool, process.meter))
    try:
        client = await connect_when_reachable(settings, runtime=process.runtime)
        async with AsyncExitStack() as opened:
            http = None
            if limits is not None:
                http = await opened.enter_async_context(
                    httpx.AsyncClient(timeout=settings.http_timeout_seconds, limits=limits)
                )
            workers = await opened.enter_async_context(
                payment_worker(client, settings.task_queue, pool, http, settings, chosen)
            )
            running.extend(workers)
            for single, worker in zip(roles, workers, strict=True):
                log.info("worker polling task queue %s (role %s)", worker.task_queue, single)
            if Role.RECORDS in roles:
                relay = asyncio.create_task(webhook_relay(pool, client, settings))
                opened.callback(relay.cancel)
            await stop.wait()
            draining = True
            log.info("stopping: draining tasks in flight (up to %s)", DRAIN_TIMEOUT)
    finally:
        if stuck is not None:
            stuck.cancel()
        await pool.close()
        if health is not None:
            health.close()
        process.shutdown()
    log.info("worker stopped")
