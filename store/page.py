"""What the payer's page reads besides the payment: the department's and the service's
names, in English and Arabic, and the record of the payer's link being used (exchanged
once for a page session).

The payment itself is ``store.payments.get_payment_any_department`` (a ``PaymentRow``), the
read every payer-side caller shares; this module holds the SQL only the page runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncpg import Pool


@dataclass(frozen=True)
class Names:
    """A payment's department and service as the page and the receipt name them, by
    language (``"en"``, ``"ar"``); a language missing is shown as nothing."""

    department: dict[str, str]
    service: dict[str, str]


async def names_of(pool: Pool, department: str, service_code: str) -> Names:
    """The names of ``department`` and of its service ``service_code``."""
    found = await pool.fetchrow(
        "SELECT d.name_en AS d_en, d.name_ar AS d_ar, s.name_en AS s_en, s.name_ar AS s_ar "
        "FROM departments d JOIN services s ON s.department = d.code "
        "WHERE d.code = $1 AND s.code = $2",
        department,
        service_code,
    )
    if found is None:  # cannot happen (foreign keys); the codes are better than nothing
        return Names({"en": department, "ar": department}, {})
    return Names(
        {"en": found["d_en"], "ar": found["d_ar"]}, {"en": found["s_en"], "ar": found["s_ar"]}
    )


async def exchange_payer_link(pool: Pool, payment_id: str) -> bool:
    """Record that the payment's link has been exchanged for a page session: True for the
    one caller that records it, False when it was already used (or the payment has left
    ``reserved`` meanwhile). One UPDATE, so two browsers opening the link at once cannot
    both win."""
    recorded = await pool.fetchval(
        "UPDATE payments SET payer_link_used_at = now() "
        "WHERE id = $1 AND payer_link_used_at IS NULL AND state = 'reserved' "
        "AND declines = 0 AND last_decline IS NULL RETURNING 1",
        payment_id,
    )
    return recorded is not None


async def payer_link_used(pool: Pool, payment_id: str) -> bool:
    """Whether the payment's link has been exchanged for a page session."""
    used = await pool.fetchval(
        "SELECT payer_link_used_at IS NOT NULL FROM payments WHERE id = $1", payment_id
    )
    return bool(used)
