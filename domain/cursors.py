"""The department API's page cursors: where a listing of payments goes on from.

A cursor is the last payment of a page, ``(created_at, id)``, as URL-safe base64 of JSON. It
is the caller's to tamper with, so ``decode_cursor`` lets through only the exact shape
``encode_cursor`` makes.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

# What a payment id looks like (api.context checks the ids in paths against it too).
PAYMENT_ID = re.compile(r"pay_[0-9a-f]{32}")


def encode_cursor(created_at: datetime, payment_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), payment_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not a cursor this API handed out.

    Only the exact shape ``encode_cursor`` makes (base64 of ``[aware ISO time, payment id]``)
    gets through to a query, so that no value can overflow the database's timestamps or
    carry text it cannot store (NUL).
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created, payment_id = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or not PAYMENT_ID.fullmatch(payment_id):
            raise ValueError("not a cursor of ours")
        return at.astimezone(UTC), payment_id
    except Exception as exc:
        raise ValueError("invalid cursor") from exc
