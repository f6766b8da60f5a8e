"""The department API's page cursors (domain/cursors.py): what encode makes, decode takes
back, and nothing else gets through to a query."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.cursors import PAYMENT_ID, decode_cursor, encode_cursor

A_PAYMENT = "pay_" + "0123456789abcdef" * 2


def _cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_a_cursor_decodes_to_the_time_in_utc_and_the_payment_it_was_made_of() -> None:
    at = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=4)))
    decoded = decode_cursor(encode_cursor(at, A_PAYMENT))
    assert decoded == (at, A_PAYMENT)
    assert decoded[0].tzinfo == UTC


def test_a_cursor_is_url_safe_without_padding() -> None:
    cursor = encode_cursor(datetime(2025, 1, 1, tzinfo=UTC), A_PAYMENT)
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64!", id="not-base64"),
        pytest.param(_cursor_of(["2025-01-01T00:00:00", A_PAYMENT]), id="naive-time"),
        pytest.param(_cursor_of(["2025-01-01T00:00:00+00:00", "pay_1"]), id="not-a-payment"),
        pytest.param(_cursor_of(["2025-01-01T00:00:00+00:00", A_PAYMENT, 3]), id="three-items"),
        pytest.param(_cursor_of(["9999-12-31T23:00:00-05:00", A_PAYMENT]), id="time-overflows"),
        pytest.param(_cursor_of(["2025-01-01\u0000", A_PAYMENT]), id="time-nul"),
        pytest.param(_cursor_of({"at": "2025-01-01T00:00:00+00:00"}), id="an-object"),
    ],
)
def test_anything_else_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_a_payment_id_is_pay_and_32_hex_digits() -> None:
    assert PAYMENT_ID.fullmatch(A_PAYMENT)
    assert not PAYMENT_ID.fullmatch(A_PAYMENT.upper())
    assert not PAYMENT_ID.fullmatch(A_PAYMENT + "0")
