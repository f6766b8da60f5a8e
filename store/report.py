"""What ``epay report`` reads: payments, their outcomes and refunds over a period, grouped by
department and service, with their subtotals and total, all from one snapshot.

The grouping is SQL's (``GROUPING SETS``); the rows say which group they are by their
``department`` and ``service``: both set, a service; ``service`` None, a department's
subtotal; both None, the total. Sums of fils come back as integers (PostgreSQL sums them as
exact numerics), 0 over no payment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from asyncpg import Pool

METHODS = ("e_dirham", "card")  # the methods the payments query counts, in its columns' order

_PAYMENTS_SQL = """
WITH p AS (
    SELECT p.department, p.service_code, p.state, p.failure_code, p.method_type,
           p.amount_total,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'service_fee') AS service_fee,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'knowledge_fee') AS knowledge_fee,
           (SELECT coalesce(sum((l->>'amount')::bigint), 0) FROM jsonb_array_elements(p.lines) l
             WHERE l->>'code' = 'innovation_fee') AS innovation_fee,
           CASE WHEN p.state = 'succeeded' THEN extract(epoch FROM
               coalesce((SELECT min(e.occurred_at) FROM payment_events e
                          WHERE e.payment_id = p.id AND e.event = 'captured'), p.updated_at)
               - p.created_at)::float8 END AS seconds
      FROM payments p
     WHERE p.created_at >= $1 AND p.created_at < $2 AND ($3::text IS NULL OR p.department = $3)
)
SELECT GROUPING(department, service_code) AS grouping, department, service_code,
       count(*) AS started,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE state = 'expired') AS expired,
       count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'expired'))
           AS open,
       sum(amount_total) FILTER (WHERE state = 'succeeded') AS collected,
       sum(service_fee) FILTER (WHERE state = 'succeeded') AS service_fees,
       sum(knowledge_fee) FILTER (WHERE state = 'succeeded') AS knowledge_fees,
       sum(innovation_fee) FILTER (WHERE state = 'succeeded') AS innovation_fees,
       count(*) FILTER (WHERE state = 'succeeded' AND method_type = 'e_dirham') AS e_dirham_n,
       sum(amount_total) FILTER (WHERE state = 'succeeded' AND method_type = 'e_dirham')
           AS e_dirham_fils,
       count(*) FILTER (WHERE state = 'succeeded' AND method_type = 'card') AS card_n,
       sum(amount_total) FILTER (WHERE state = 'succeeded' AND method_type = 'card') AS card_fils,
       count(seconds) AS timed,
       avg(seconds) AS seconds_avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS seconds_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS seconds_p95
  FROM p
 GROUP BY GROUPING SETS ((department, service_code), (department), ())
"""

_FAILURES_SQL = """
SELECT GROUPING(department, service_code) AS grouping, department, service_code, failure_code,
       count(*) AS payments
  FROM payments
 WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR department = $3)
   AND state IN ('failed', 'cancelled', 'expired') AND failure_code IS NOT NULL
 GROUP BY GROUPING SETS ((department, service_code, failure_code), (department, failure_code),
                         (failure_code))
"""

_REFUNDS_SQL = """
SELECT GROUPING(p.department, p.service_code) AS grouping, p.department, p.service_code,
       count(*) FILTER (WHERE r.state = 'succeeded') AS refunds,
       sum(r.amount) FILTER (WHERE r.state = 'succeeded') AS refunded,
       count(*) FILTER (WHERE r.state = 'pending') AS refunds_pending,
       count(*) FILTER (WHERE r.state = 'failed') AS refunds_failed
  FROM refunds r JOIN payments p ON p.id = r.payment_id
 WHERE r.created_at >= $1 AND r.created_at < $2 AND ($3::text IS NULL OR p.department = $3)
 GROUP BY GROUPING SETS ((p.department, p.service_code), (p.department), ())
"""


@dataclass(frozen=True, slots=True)
class DepartmentName:
    code: str
    name_en: str
    name_ar: str


@dataclass(frozen=True, slots=True)
class ServiceName:
    department: str
    code: str
    name_en: str
    name_ar: str


@dataclass(frozen=True, slots=True)
class PaymentGroup:
    """The payments created in the period of a service, a department or all. Amounts in
    fils, of the succeeded payments; seconds from creation to capture, of those too."""

    department: str | None
    service: str | None
    started: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int
    open: int
    collected: int
    service_fees: int
    knowledge_fees: int
    innovation_fees: int
    by_method: dict[str, tuple[int, int]]  # method: succeeded payments, fils
    timed: int
    seconds_avg: float | None
    seconds_p50: float | None
    seconds_p95: float | None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """The payments of a group that ended with ``failure_code``."""

    department: str | None
    service: str | None
    failure_code: str
    payments: int


@dataclass(frozen=True, slots=True)
class RefundGroup:
    """The refunds requested in the period of a group's payments; ``refunded`` in fils."""

    department: str | None
    service: str | None
    refunds: int  # succeeded
    refunded: int
    refunds_pending: int
    refunds_failed: int


@dataclass(frozen=True, slots=True)
class ReportRows:
    departments: list[DepartmentName]
    services: list[ServiceName]
    payments: list[PaymentGroup]
    failures: list[FailureGroup]
    refunds: list[RefundGroup]


def _fils(total: Decimal | int | None) -> int:
    """A sum of fils as read: a numeric (Decimal, whole) or NULL when nothing was summed."""
    return int(total or 0)


def _group(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(department, service) of a grouped row: (d, None) a department, (None, None) the total."""
    bits = row["grouping"]
    return (None if bits & 2 else row["department"], None if bits & 1 else row["service_code"])


def _payments(row: Mapping[str, Any]) -> PaymentGroup:
    department, service = _group(row)
    return PaymentGroup(
        department=department,
        service=service,
        started=row["started"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        expired=row["expired"],
        open=row["open"],
        collected=_fils(row["collected"]),
        service_fees=_fils(row["service_fees"]),
        knowledge_fees=_fils(row["knowledge_fees"]),
        innovation_fees=_fils(row["innovation_fees"]),
        by_method={m: (row[f"{m}_n"], _fils(row[f"{m}_fils"])) for m in METHODS},
        timed=row["timed"],
        seconds_avg=row["seconds_avg"],
        seconds_p50=row["seconds_p50"],
        seconds_p95=row["seconds_p95"],
    )


async def read(
    pool: Pool, start: datetime, end: datetime, department: str | None
) -> ReportRows | None:
    """The payments created from ``start`` (included) to ``end`` (excluded), of
    ``department`` or all, and the refunds requested then, in one read-only repeatable-read
    transaction, so that the groups agree with each other while payments go on. None if
    ``department`` is not a department."""
    args = (start, end, department)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        departments = [
            DepartmentName(r["code"], r["name_en"], r["name_ar"])
            for r in await conn.fetch("SELECT code, name_en, name_ar FROM departments")
        ]
        if department is not None and department not in {d.code for d in departments}:
            return None
        services = [
            ServiceName(r["department"], r["code"], r["name_en"], r["name_ar"])
            for r in await conn.fetch("SELECT department, code, name_en, name_ar FROM services")
        ]
        payments = [_payments(r) for r in await conn.fetch(_PAYMENTS_SQL, *args)]
        failures = [
            FailureGroup(*_group(r), failure_code=r["failure_code"], payments=r["payments"])
            for r in await conn.fetch(_FAILURES_SQL, *args)
        ]
        has_refunds = await conn.fetchval("SELECT to_regclass('refunds') IS NOT NULL")
        refunds = [
            RefundGroup(
                *_group(r),
                refunds=r["refunds"],
                refunded=_fils(r["refunded"]),
                refunds_pending=r["refunds_pending"],
                refunds_failed=r["refunds_failed"],
            )
            for r in (await conn.fetch(_REFUNDS_SQL, *args) if has_refunds else [])
        ]
    return ReportRows(departments, services, payments, failures, refunds)
