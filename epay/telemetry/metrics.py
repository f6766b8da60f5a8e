"""Metrics: the Temporal runtime that serves Prometheus (the SDK's metrics and ePay's) and
forwards Core's log lines, and the ``epay_payments_stuck`` gauge read from the read model."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from temporalio.common import MetricMeter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from domain.states import TERMINAL_STATES, PaymentState

# Buckets for durations that run from milliseconds (a database step) to the 90-minute
# payment window (a payer who pays late).
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 5400)


def temporal_runtime(metrics_port: int | None) -> Runtime:
    """The process's Temporal runtime: Core's log lines forwarded into Python's logging (so
    they are JSON too) and, with ``metrics_port``, Prometheus on ``0.0.0.0:<port>/metrics``
    (counters end in ``_total``, durations in seconds)."""
    metrics = None
    if metrics_port:
        metrics = PrometheusConfig(
            bind_address=f"0.0.0.0:{metrics_port}",
            counters_total_suffix=True,
            durations_as_seconds=True,
            histogram_bucket_overrides={"epay_payment_step_seconds": STEP_BUCKETS},
        )
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
            metrics=metrics,
        )
    )


STUCK_AFTER = timedelta(minutes=10)  # as `epay ops stuck`'s default
STUCK_REFRESH = timedelta(seconds=15)
PAYER_STEPS = (PaymentState.RESERVED, PaymentState.REQUIRES_ACTION)
OPEN_STEPS = tuple(s for s in PaymentState if s not in TERMINAL_STATES)

# A payment waiting for its payer is stuck once its payment window has closed (it should
# have expired); one waiting for a partner or the database, once its step has lasted
# STUCK_AFTER. The predicate of the payments_open index keeps this a small scan.
STUCK_PAYMENTS_SQL = f"""
    SELECT state, department, count(*) AS stuck FROM payments
    WHERE state NOT IN ({", ".join(f"'{s}'" for s in TERMINAL_STATES)})
      AND CASE WHEN state IN ({", ".join(f"'{s}'" for s in PAYER_STEPS)})
               THEN expires_at < clock_timestamp() - interval '1 minute'
               ELSE updated_at < clock_timestamp() - $1::interval END
    GROUP BY state, department"""


async def report_stuck_payments(
    pool: asyncpg.Pool, meter: MetricMeter, *, every: timedelta = STUCK_REFRESH
) -> None:
    """Set ``epay_payments_stuck{step, department}`` from the read model every ``every``,
    for every open step of every department (0 when none is stuck), until cancelled."""
    gauge = meter.create_gauge(
        "epay_payments_stuck",
        "Open payments stuck in a step: past their payment window while waiting for the "
        "payer, or unchanged for 10 minutes while waiting for a partner or the database",
    )
    while True:
        try:
            with suppress_instrumentation():  # a query every few seconds is not worth a trace
                departments = [r["code"] for r in await pool.fetch("SELECT code FROM departments")]
                rows = await pool.fetch(STUCK_PAYMENTS_SQL, STUCK_AFTER)
        except Exception as err:  # noqa: BLE001 - the database may be away: try again later
            logging.getLogger("epay.telemetry").warning(
                "stuck payments not counted: %s", type(err).__name__
            )
        else:
            stuck = {(r["state"], r["department"]): int(r["stuck"]) for r in rows}
            for department in departments:
                for step in OPEN_STEPS:
                    count = stuck.get((step.value, department), 0)
                    gauge.set(count, {"step": step.value, "department": department})
        await asyncio.sleep(every.total_seconds())
