"""When two department references are the same invoice or fine.

A department may send one reference as ``INV-1``, ``inv-1``, ``INV-1 `` or ``inv 1``: these
are one invoice, and must not each get a live or paid payment. ``reference_key`` is the one
rule that says so; the reservation's uniqueness and the list filter use it, while the payment
keeps the reference exactly as the department sent it.

The API accepts references of ASCII letters, digits, space and ``. _ / : # -``
(``api.schemas.REFERENCE_PATTERN``). On those the rule comes down to: drop the spaces and
upper-case the letters. Punctuation is kept, so ``INV-1`` and ``INV1`` stay different
references. Migration ``002_reference_key.sql`` applies the same rule in SQL to the rows
written before it, as ``upper(regexp_replace(normalize(reference, NFKC), '\\s', '', 'g'))``;
the two agree on every reference the API accepts.
"""

from __future__ import annotations

import unicodedata


def reference_key(reference: str) -> str:
    """The reference's comparison key: Unicode NFKC, without whitespace, upper-cased."""
    compatible = unicodedata.normalize("NFKC", reference)
    return "".join(compatible.split()).upper()
