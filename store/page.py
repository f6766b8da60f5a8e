"""What the payer's page reads besides the payment: the department's and the service's
names, in English and Arabic.

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
