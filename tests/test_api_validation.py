"""Bad input on every endpoint (wrong types, floats, negative or huge amounts, unknown
service, missing fields, malformed JSON, oversize body) gets a 4xx problem+json and changes
nothing: no payment, reservation, vault entry, event or idempotency key is written, nothing
reaches Temporal, and no card number, CVV or PIN comes back.

In-process (tests/support/app.py): the real application on a database of its own, with a
stand-in for Temporal that makes a payment's reservation as its workflow would and refuses
any other call. A request is over when its answer comes, so "nothing changed" is checked at
once. What needs the whole stack (a running workflow, the HTTP server's own parser) stays
end to end in tests/test_bad_input.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import card, e_dirham, new_reference, token_of
from tests.support.app import InProcessApi, in_process_api

PROBLEM_KEYS = ("type", "title", "status", "detail", "code")
JSON = {"Content-Type": "application/json"}


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[InProcessApi]:
    with in_process_api() as in_process:
        yield in_process


def assert_problem(
    response: httpx.Response,
    status: int,
    code: str | None = None,
    fields: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A problem+json of ``status`` (and ``code``), naming ``fields``, echoing no secret."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    for key in PROBLEM_KEYS:
        assert key in body, body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["code"], str)
    assert body["code"]
    if code is not None:
        assert body["code"] == code, body
    if status == 422:
        errors = body.get("errors")
        assert isinstance(errors, list), body
        assert errors, body
        assert all(isinstance(e, dict) and e.get("field") for e in errors), body
        named = {e["field"] for e in errors}
        for field in fields:
            assert field in named, body
    for marker in ("Traceback", 'File "', "site-packages"):
        assert marker not in response.text
    for secret in secrets:
        assert secret not in response.text
    return body


def with_check_digit(body: str) -> str:
    """``body`` with the digit that makes it pass the Luhn check."""
    for d in "0123456789":
        digits = [int(c) for c in reversed(body + d)]
        odd = sum(digits[0::2])
        even = sum(sum(divmod(2 * x, 10)) for x in digits[1::2])
        if (odd + even) % 10 == 0:
            return body + d
    raise AssertionError("unreachable")


def fine(**fields: Any) -> dict[str, Any]:
    """A valid body for the variable-fee parking fine, with ``fields`` replaced."""
    body: dict[str, Any] = {
        "service_code": "PARKING_FINE",
        "reference": new_reference("FINE-"),
        "amount": 15000,
    }
    body.update(fields)
    return body


def without(key: str, body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


# --- POST /v1/payments -------------------------------------------------------------------

CREATE_CASES: list[Any] = [
    pytest.param(fine(amount=1.5), 422, "amount", id="amount-float"),
    pytest.param(fine(amount=100.0), 422, "amount", id="amount-whole-float"),
    pytest.param(fine(amount="100"), 422, "amount", id="amount-string"),
    pytest.param(fine(amount=True), 422, "amount", id="amount-bool"),
    pytest.param(fine(amount=None), 422, "amount", id="amount-null"),
    pytest.param(fine(amount=[100]), 422, "amount", id="amount-list"),
    pytest.param(fine(amount=0), 422, "amount", id="amount-zero"),
    pytest.param(fine(amount=-100), 422, "amount", id="amount-negative"),
    pytest.param(fine(amount=1_000_000_001), 422, "amount", id="amount-over-max"),
    pytest.param(fine(amount=10**40), 422, "amount", id="amount-huge"),
    pytest.param(fine(amount=1e20), 422, "amount", id="amount-exponent"),
    pytest.param(
        fine(service_code="HEALTH_CERT", amount=22000), 422, "amount", id="amount-on-fixed-fee"
    ),
    pytest.param(without("amount", fine()), 422, "amount", id="amount-missing-variable-fee"),
    pytest.param(fine(service_code="NO_SUCH_SERVICE"), 422, "service_code", id="unknown-service"),
    pytest.param(
        fine(service_code="VEHICLE_RENEWAL"), 422, "service_code", id="another-departments-service"
    ),
    pytest.param(fine(service_code="parking_fine"), 422, "service_code", id="service-lowercase"),
    pytest.param(fine(service_code=""), 422, "service_code", id="service-empty"),
    pytest.param(fine(service_code=7), 422, "service_code", id="service-not-a-string"),
    pytest.param(without("service_code", fine()), 422, "service_code", id="service-missing"),
    pytest.param(without("reference", fine()), 422, "reference", id="reference-missing"),
    pytest.param(fine(reference="R" * 65), 422, "reference", id="reference-65-chars"),
    pytest.param(fine(reference=""), 422, "reference", id="reference-empty"),
    pytest.param(fine(reference=12345), 422, "reference", id="reference-not-a-string"),
    pytest.param(fine(reference="INV\n1"), 422, "reference", id="reference-newline"),
    pytest.param(fine(reference="INV\x001"), 422, "reference", id="reference-nul"),
    pytest.param(fine(currency="USD"), 422, "currency", id="unknown-field"),
    pytest.param(
        fine(metadata={f"k{i}": "v" for i in range(16)}), 422, "metadata", id="metadata-16-keys"
    ),
    pytest.param(fine(metadata={"k": 1}), 422, "metadata.k", id="metadata-value-int"),
    pytest.param(fine(metadata={"k": {"x": "y"}}), 422, "metadata.k", id="metadata-value-object"),
    pytest.param(fine(metadata=["k"]), 422, "metadata", id="metadata-list"),
    pytest.param(fine(metadata={"": "v"}), 422, None, id="metadata-empty-key"),
    pytest.param(fine(metadata={"k" * 41: "v"}), 422, None, id="metadata-long-key"),
    pytest.param(fine(metadata={"k": "v" * 501}), 422, "metadata.k", id="metadata-long-value"),
    pytest.param(fine(description="d" * 256), 422, "description", id="description-256-chars"),
    pytest.param(fine(description=5), 422, "description", id="description-not-a-string"),
    pytest.param(fine(payer={"email": "not-an-email"}), 422, "payer.email", id="payer-email"),
    pytest.param(fine(payer={"phone": "call me"}), 422, "payer.phone", id="payer-phone"),
    pytest.param(fine(payer={"nickname": "x"}), 422, "payer.nickname", id="payer-extra-field"),
    pytest.param(fine(payer="Ahmed"), 422, "payer", id="payer-not-an-object"),
    pytest.param(fine(return_url="javascript:alert(1)"), 422, "return_url", id="return-url"),
]


@pytest.mark.parametrize(("body", "status", "field"), CREATE_CASES)
def test_create_payment_refuses_bad_bodies(
    api: InProcessApi, body: dict[str, Any], status: int, field: str | None
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=body)
    assert_problem(response, status, "validation_failed", (field,) if field else ())


@pytest.mark.parametrize(
    ("service_code", "amount", "error_code"),
    [("HEALTH_CERT", 22000, "amount_not_allowed"), ("PARKING_FINE", None, "amount_required")],
)
def test_amount_against_the_catalogue_names_the_reason(
    api: InProcessApi, service_code: str, amount: int | None, error_code: str
) -> None:
    with api.nothing_changes():
        response = api.create(service_code=service_code, amount=amount)
    body = assert_problem(response, 422, "validation_failed", ("amount",))
    assert [e["code"] for e in body["errors"]] == [error_code]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b'{"service_code":', 400, "malformed_json", id="truncated"),
        pytest.param(b"hello", 400, "malformed_json", id="not-json"),
        pytest.param(b"{'service_code': 'PARKING_FINE'}", 400, "malformed_json", id="quotes"),
        pytest.param(b'{"amount": 100,}', 400, "malformed_json", id="trailing-comma"),
        pytest.param(b"\xff\xfe{}", 400, "malformed_json", id="not-utf8"),
        pytest.param(b'[{"service_code": "PARKING_FINE"}]', 422, "validation_failed", id="array"),
        pytest.param(b"null", 422, "validation_failed", id="null"),
        pytest.param(b'"PARKING_FINE"', 422, "validation_failed", id="string"),
        pytest.param(b"42", 422, "validation_failed", id="number"),
        pytest.param(b"", 422, "validation_failed", id="empty"),
    ],
)
def test_create_payment_refuses_malformed_json(
    api: InProcessApi, raw: bytes, status: int, code: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", content=raw, headers=JSON)
    assert_problem(response, status, code)


def test_nan_is_refused(api: InProcessApi) -> None:
    """NaN is not JSON (RFC 8259); Python's parser takes it, and the amount is then refused."""
    raw = json.dumps(fine()).replace("15000", "NaN").encode()
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", content=raw, headers=JSON)
    assert response.status_code in (400, 422), response.text
    assert_problem(response, response.status_code)


def oversize_body() -> bytes:
    return json.dumps(fine(description="d" * 70_000)).encode()


def test_oversize_body_is_refused_with_413(api: InProcessApi) -> None:
    raw = oversize_body()
    assert len(raw) > 64 * 1024
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", content=raw, headers=JSON)
    assert_problem(response, 413, "payload_too_large")
    assert "d" * 100 not in response.text


def test_oversize_body_without_content_length_is_refused_with_413(api: InProcessApi) -> None:
    """Sent chunked, the size is only known while the body is read: still 413, not 400."""
    raw = oversize_body()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", content=chunks(), headers=JSON)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "key", [pytest.param("k" * 256, id="256-chars"), pytest.param("k" * 4000, id="4000-chars")]
)
def test_overlong_idempotency_key_is_refused(api: InProcessApi, key: str) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=fine(), headers={"Idempotency-Key": key})
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)


def test_bad_body_with_an_idempotency_key_stores_no_key(api: InProcessApi) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post(
            "/v1/payments", json=fine(amount=1.5), headers={"Idempotency-Key": new_reference()}
        )
        assert_problem(response, 422, "validation_failed", ("amount",))
        response = c.post(
            "/v1/payments",
            json=fine(service_code="NO_SUCH_SERVICE"),
            headers={"Idempotency-Key": new_reference()},
        )
        assert_problem(response, 422, "validation_failed", ("service_code",))


@pytest.mark.parametrize(
    "field",
    [
        pytest.param({"description": "a\x00b"}, id="description"),
        pytest.param({"metadata": {"k": "a\x00b"}}, id="metadata-value"),
        pytest.param({"payer": {"name": "a\x00b"}}, id="payer-name"),
    ],
)
def test_nul_characters_are_refused_not_a_server_error(
    api: InProcessApi, field: dict[str, Any]
) -> None:
    """PostgreSQL text cannot hold NUL: the API must say 4xx, not fail or hang on it."""
    with api.nothing_changes(), api.client() as c:
        try:
            response = c.post("/v1/payments", json=fine(**field), timeout=15)
        except httpx.ReadTimeout:
            pytest.fail("POST /v1/payments with a NUL character got no answer in 15 s")
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


# --- authentication and isolation --------------------------------------------------------

ANY_PAYMENT = "pay_" + "0" * 32
DEPARTMENT_CALLS = [
    ("GET", "/v1/services"),
    ("GET", "/v1/payments"),
    ("POST", "/v1/payments"),
    ("GET", f"/v1/payments/{ANY_PAYMENT}"),
    ("GET", f"/v1/payments/{ANY_PAYMENT}/events"),
    ("POST", f"/v1/payments/{ANY_PAYMENT}/cancel"),
]


@pytest.mark.parametrize(("method", "path"), DEPARTMENT_CALLS)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="bearer-no-key"),
        pytest.param("Bearer epk_not_a_real_key", id="wrong-key"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("epk_not_a_real_key", id="no-scheme"),
    ],
)
def test_department_calls_need_a_valid_key(
    api: InProcessApi, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    body = fine() if method == "POST" and path == "/v1/payments" else None
    with api.nothing_changes():
        response = api.anonymous().request(method, path, json=body, headers=headers)
    problem = assert_problem(response, 401, "unauthorised")
    if authorization and authorization.startswith("Bearer epk_"):
        assert "epk_not_a_real_key" not in response.text
    assert problem["title"]


def test_a_near_miss_key_is_refused(api: InProcessApi) -> None:
    wrong = api.keys["DM"][:-4] + ("aaaa" if not api.keys["DM"].endswith("aaaa") else "bbbb")
    with api.nothing_changes():
        response = api.anonymous().get("/v1/payments", headers={"Authorization": f"Bearer {wrong}"})
    assert_problem(response, 401, "unauthorised")
    assert api.keys["DM"] not in response.text


@pytest.fixture
def reserved(api: InProcessApi) -> dict[str, Any]:
    """A fresh DM payment waiting for its payer."""
    payment = api.created()
    assert payment["state"] == "reserved"
    return payment


def assert_untouched(api: InProcessApi, payment: dict[str, Any]) -> None:
    """Still reserved, with no vault entry and no method."""
    now = api.get(payment["id"])
    assert now["state"] == "reserved", now
    assert now["method"] is None
    assert api.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"]) == []


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/events", None),
        ("POST", "/cancel", None),
        ("POST", "/cancel", {"reason": "not mine"}),
        ("GET", "/refunds", None),
        ("POST", "/refunds", {"amount": 100, "reason": "not mine"}),
    ],
)
def test_another_department_sees_nothing(
    api: InProcessApi, reserved: dict[str, Any], method: str, suffix: str, body: Any
) -> None:
    with api.nothing_changes(), api.client("RTA") as c:
        response = c.request(method, f"/v1/payments/{reserved['id']}{suffix}", json=body)
    assert_problem(response, 404)
    assert reserved["reference"] not in response.text
    assert_untouched(api, reserved)


def test_another_departments_list_does_not_show_the_payment(
    api: InProcessApi, reserved: dict[str, Any]
) -> None:
    with api.client("RTA") as c:
        response = c.get("/v1/payments", params={"reference": reserved["reference"]})
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
        response = c.get("/v1/payments", params={"limit": 100})
        assert response.status_code == 200, response.text
        assert reserved["id"] not in response.text
    with api.client("DM") as c:
        response = c.get("/v1/payments", params={"reference": reserved["reference"]})
        assert [p["id"] for p in response.json()["items"]] == [reserved["id"]]


def test_same_reference_in_another_department_is_not_in_progress(
    api: InProcessApi, reserved: dict[str, Any]
) -> None:
    """References are the department's own: RTA's fine of the same number is a new payment."""
    other = api.create(
        service_code="TRAFFIC_FINE", reference=reserved["reference"], amount=5000, department="RTA"
    )
    assert other.status_code == 201, other.text
    assert other.json()["department"] == "RTA"


# --- reading payments --------------------------------------------------------------------


@pytest.mark.parametrize(
    "payment_id",
    [
        pytest.param(ANY_PAYMENT, id="unknown"),
        pytest.param("not-a-payment", id="not-an-id"),
        pytest.param("pay_" + "f" * 500, id="long"),
        pytest.param("%00", id="nul"),
        pytest.param("%27%20OR%201%3D1--", id="sql"),
    ],
)
@pytest.mark.parametrize("suffix", ["", "/events"])
def test_unknown_payment_is_404(api: InProcessApi, payment_id: str, suffix: str) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.get(f"/v1/payments/{payment_id}{suffix}")
    assert_problem(response, 404, "payment_not_found")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"state": "bogus"}, "state"),
        ({"state": "RESERVED"}, "state"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # base64 of "[]": JSON, but not a cursor
        ({"cursor": "WyJ4IiwgInkiXQ"}, "cursor"),  # ["x", "y"]: not a time
        ({"cursor": "x" * 600}, "cursor"),
        ({"created_from": "notadate"}, "created_from"),
        ({"created_to": "2025-13-01"}, "created_to"),
        ({"created_from": "3.718466876186071e-144"}, "created_from"),  # not seconds since 1970
        ({"created_to": "1700000000"}, "created_to"),
        ({"reference": "r" * 65}, "reference"),
    ],
)
def test_list_refuses_bad_query_parameters(
    api: InProcessApi, params: dict[str, str], field: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.get("/v1/payments", params=params)
    body = assert_problem(response, 422, "validation_failed")
    assert any(e["field"].split(".")[-1] == field for e in body["errors"]), body


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"reference": "INV\x00"}, id="reference-nul"),
        pytest.param({"cursor": "WyJcdTAwMDAiLCAieCJd"}, id="cursor-nul"),
    ],
)
def test_list_with_nul_characters_is_not_a_server_error(
    api: InProcessApi, params: dict[str, str]
) -> None:
    with api.client() as c:
        response = c.get("/v1/payments", params=params)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert_problem(response, response.status_code)


# --- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b'{"reason":', 400, "malformed_json", id="truncated"),
        pytest.param(b"not json", 400, "malformed_json", id="not-json"),
        pytest.param(b'{"reason": 5}', 422, "validation_failed", id="reason-int"),
        pytest.param(b'{"why": "x"}', 422, "validation_failed", id="unknown-field"),
        pytest.param(b'["x"]', 422, "validation_failed", id="array"),
        pytest.param(
            json.dumps({"reason": "r" * 256}).encode(), 422, "validation_failed", id="long-reason"
        ),
    ],
)
def test_cancel_refuses_malformed_bodies(
    api: InProcessApi, reserved: dict[str, Any], raw: bytes, status: int, code: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post(f"/v1/payments/{reserved['id']}/cancel", content=raw, headers=JSON)
    assert_problem(response, status, code)
    assert_untouched(api, reserved)


def test_cancel_of_an_unknown_payment_is_404(api: InProcessApi) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post(f"/v1/payments/{ANY_PAYMENT}/cancel", json={"reason": "x"})
        assert_problem(response, 404, "payment_not_found")
        response = c.post(f"/v1/payments/{ANY_PAYMENT}/cancel")
        assert_problem(response, 404, "payment_not_found")


# --- the payer's authorise call ----------------------------------------------------------

BAD_LUHN = "4242424242424241"
E_DIRHAM_17 = with_check_digit("7840000000000001")  # Luhn-valid, but 17 digits
E_DIRHAM_15 = "784000000000001"
AMEX = "378282246310005"  # Luhn-valid; its security code has four digits


def card_with(**fields: Any) -> dict[str, Any]:
    body = card("4242424242424242")
    body.update(fields)
    return body


AUTHORISE_CASES: list[Any] = [
    pytest.param(card(BAD_LUHN), "card_number", (BAD_LUHN,), id="card-luhn"),
    pytest.param(card("4242 4242 4242 4241"), "card_number", ("4242 4241",), id="card-luhn-spaced"),
    pytest.param(card("4242424242"), "card_number", ("4242424242",), id="card-too-short"),
    pytest.param(card("4" * 24), "card_number", ("4" * 24,), id="card-too-long"),
    pytest.param(card("4242abcd42424242"), "card_number", ("4242abcd",), id="card-letters"),
    pytest.param(card_with(card_number=4242424242424242), "card_number", (), id="card-int"),
    pytest.param(card_with(expiry_year=2020), "expiry", (), id="expiry-past"),
    pytest.param(card_with(expiry_month=13), "expiry", (), id="expiry-month-13"),
    pytest.param(card_with(expiry_month=0), "expiry", (), id="expiry-month-0"),
    pytest.param(card_with(expiry_month="12"), "expiry_month", (), id="expiry-month-string"),
    pytest.param(card_with(expiry_year=31), "expiry", (), id="expiry-two-digit-year"),
    pytest.param(card_with(expiry_year=2031.0), "expiry_year", (), id="expiry-year-float"),
    pytest.param(card("4242424242424242", cvv="12"), "cvv", ("12",), id="cvv-short"),
    pytest.param(card("4242424242424242", cvv="abcd"), "cvv", ("abcd",), id="cvv-letters"),
    pytest.param(card("4242424242424242", cvv="98765"), "cvv", ("98765",), id="cvv-long"),
    pytest.param(card("4242424242424242", cvv="7373"), "cvv", ("7373",), id="cvv-4-on-visa"),
    pytest.param(card(AMEX, cvv="737"), "cvv", (AMEX,), id="cvv-3-on-amex"),
    pytest.param(card_with(cvv=737), "cvv", ("737",), id="cvv-int"),
    pytest.param(without("cvv", card("4242424242424242")), "cvv", (), id="cvv-missing"),
    pytest.param(
        without("cardholder_name", card("4242424242424242")),
        "cardholder_name",
        (),
        id="cardholder-missing",
    ),
    pytest.param(
        without("card_number", card("4242424242424242")), "card_number", (), id="number-missing"
    ),
    pytest.param(card_with(pin="1234"), "pin", ("1234",), id="card-with-pin"),
    pytest.param(e_dirham("7840000000000017", "12"), "pin", ("12",), id="pin-short"),
    pytest.param(e_dirham("7840000000000017", "abcd"), "pin", ("abcd",), id="pin-letters"),
    pytest.param(e_dirham("7840000000000017", "1234567"), "pin", ("1234567",), id="pin-long"),
    pytest.param(
        {"method": "e_dirham", "card_number": "7840000000000017", "pin": 1234},
        "pin",
        ("1234",),
        id="pin-int",
    ),
    pytest.param(
        without("pin", e_dirham("7840000000000017")), "pin", ("7840000000000017",), id="pin-missing"
    ),
    pytest.param(e_dirham(E_DIRHAM_15), "card_number", (E_DIRHAM_15,), id="e-dirham-15-digits"),
    pytest.param(e_dirham(E_DIRHAM_17), "card_number", (E_DIRHAM_17,), id="e-dirham-17-digits"),
    pytest.param(
        e_dirham("7840000000000018"), "card_number", ("7840000000000018",), id="e-dirham-luhn"
    ),
    pytest.param(
        e_dirham("7840000000000017") | {"cvv": "737"}, "cvv", ("737", "1234"), id="e-dirham-cvv"
    ),
    pytest.param(card_with(method="paypal"), "method", ("4242424242424242",), id="method-unknown"),
    pytest.param(
        without("method", card("4242424242424242")), "method", ("4242424242424242",), id="no-method"
    ),
    pytest.param(card_with(method=None), "method", (), id="method-null"),
    pytest.param(
        card("4242424242424\u00b242"), "card_number", ("4242424242424",), id="card-superscript"
    ),
]


@pytest.mark.parametrize(("body", "field", "secrets"), AUTHORISE_CASES)
def test_authorise_refuses_bad_payment_methods(
    api: InProcessApi,
    reserved: dict[str, Any],
    body: dict[str, Any],
    field: str,
    secrets: tuple[str],
) -> None:
    with api.nothing_changes():
        response = api.authorise(reserved, body)
    problem = assert_problem(response, 422, "validation_failed", secrets=secrets)
    named = [e["field"].split(".")[-1] for e in problem["errors"]]
    # a missing or unknown method fails the discriminated union as a whole: "body"
    accepted = (field, "body") if field == "method" else (field,)
    assert any(n.startswith(accepted) for n in named), problem
    for key in ("card_number", "cvv", "pin"):
        value = body.get(key)
        if isinstance(value, str) and len(value) >= 2:
            assert value not in response.text
    assert_untouched(api, reserved)


def test_card_errors_name_the_field_as_sent(api: InProcessApi, reserved: dict[str, Any]) -> None:
    """The errors name the body's own fields (``cvv``), as the Luhn error does (``card_number``),
    not a path through the discriminated union (``card.cvv``) that the body does not have."""
    with api.nothing_changes():
        luhn = api.authorise(reserved, card(BAD_LUHN)).json()
        cvv = api.authorise(reserved, card("4242424242424242", cvv="12")).json()
        pin = api.authorise(reserved, e_dirham("7840000000000017", "12")).json()
    assert [e["field"] for e in luhn["errors"]] == ["card_number"]
    assert [e["field"] for e in cvv["errors"]] == ["cvv"], cvv
    assert [e["field"] for e in pin["errors"]] == ["pin"], pin


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(card_with(method="paypal"), id="unknown"),
        pytest.param(without("method", card("4242424242424242")), id="missing"),
    ],
)
def test_a_bad_method_is_named_as_the_method_field(
    api: InProcessApi, reserved: dict[str, Any], body: dict[str, Any]
) -> None:
    """The field at fault is ``method``, not the whole ``body``."""
    with api.nothing_changes():
        response = api.authorise(reserved, body)
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["method"], problem


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b'{"method": "card", "card_number": "4242', 400, "malformed_json", id="cut"),
        pytest.param(b"card=4242424242424242", 400, "malformed_json", id="form"),
        pytest.param(b"[]", 422, "validation_failed", id="array"),
        pytest.param(b"{}", 422, "validation_failed", id="empty-object"),
        pytest.param(b"", 422, "validation_failed", id="empty"),
    ],
)
def test_authorise_refuses_malformed_json(
    api: InProcessApi, reserved: dict[str, Any], raw: bytes, status: int, code: str
) -> None:
    with api.nothing_changes():
        response = api.anonymous().post(
            f"/v1/payments/{reserved['id']}/authorise",
            content=raw,
            headers={"X-Payment-Token": token_of(reserved), **JSON},
        )
    assert_problem(response, status, code, secrets=("4242424242424242",))
    assert_untouched(api, reserved)


def test_authorise_refuses_an_oversize_body(api: InProcessApi, reserved: dict[str, Any]) -> None:
    body = card("4242424242424242") | {"cardholder_name": "n" * 70_000}
    with api.nothing_changes():
        response = api.anonymous().post(
            f"/v1/payments/{reserved['id']}/authorise",
            content=json.dumps(body).encode(),
            headers={"X-Payment-Token": token_of(reserved), **JSON},
        )
    assert_problem(response, 413, "payload_too_large", secrets=("4242424242424242",))
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    "how",
    ["no-token", "wrong-token", "empty-token", "other-payments-token", "token-in-wrong-header"],
)
@pytest.mark.parametrize("method", ["card", "e_dirham"])
def test_authorise_needs_the_payments_own_token(
    api: InProcessApi, reserved: dict[str, Any], how: str, method: str
) -> None:
    body = card("4242424242424242") if method == "card" else e_dirham("7840000000000017")
    headers: dict[str, str] = {}
    url = f"/v1/payments/{reserved['id']}/authorise"
    if how == "wrong-token":
        headers["X-Payment-Token"] = token_of(reserved)[:-2] + "xx"
    elif how == "empty-token":
        url += "?token="
    elif how == "other-payments-token":
        other = api.created()
        url += f"?token={token_of(other)}"
    elif how == "token-in-wrong-header":
        headers["Authorization"] = f"Bearer {token_of(reserved)}"
    with api.nothing_changes():
        response = api.anonymous().post(url, json=body, headers=headers)
    assert_problem(response, 404, secrets=("4242424242424242", "7840000000000017", "1234", "737"))
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("/authorise", card("4242424242424242")),
        ("/3ds", {"otp": "123456"}),
        ("/cancel", None),
    ],
)
def test_a_nul_payment_id_is_404_on_posts(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any
) -> None:
    headers = {"X-Payment-Token": token_of(reserved)}
    if suffix == "/cancel":
        headers = {"Authorization": f"Bearer {api.keys['DM']}"}
    with api.nothing_changes():
        response = api.anonymous().post(f"/v1/payments/%00{suffix}", json=body, headers=headers)
    assert_problem(response, 404, secrets=("4242424242424242",))


def test_authorise_on_an_unknown_payment_is_404(
    api: InProcessApi, reserved: dict[str, Any]
) -> None:
    with api.nothing_changes():
        response = api.anonymous().post(
            f"/v1/payments/{ANY_PAYMENT}/authorise",
            json=card("4242424242424242"),
            headers={"X-Payment-Token": token_of(reserved)},
        )
    assert_problem(response, 404, secrets=("4242424242424242",))


# --- the payer's 3-D Secure call ---------------------------------------------------------


def post_3ds(
    api: InProcessApi, payment: dict[str, Any], body: Any, token: str | None
) -> httpx.Response:
    headers = {"X-Payment-Token": token} if token is not None else {}
    return api.anonymous().post(f"/v1/payments/{payment['id']}/3ds", json=body, headers=headers)


def test_3ds_without_an_open_challenge_is_409(api: InProcessApi, reserved: dict[str, Any]) -> None:
    with api.nothing_changes():
        response = api.three_d_secure(reserved, "123456")
    assert_problem(response, 409, "not_awaiting_challenge", secrets=("123456",))
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"otp": "abc"}, id="letters"),
        pytest.param({"otp": "12"}, id="short"),
        pytest.param({"otp": "1" * 11}, id="long"),
        pytest.param({"otp": 123456}, id="int"),
        pytest.param({}, id="missing"),
        pytest.param({"otp": "123456", "extra": 1}, id="extra-field"),
        pytest.param(["123456"], id="array"),
    ],
)
def test_3ds_refuses_bad_otps(api: InProcessApi, reserved: dict[str, Any], body: Any) -> None:
    with api.nothing_changes():
        response = post_3ds(api, reserved, body, token_of(reserved))
    assert_problem(response, 422, "validation_failed")
    assert_untouched(api, reserved)


def test_3ds_refuses_malformed_json(api: InProcessApi, reserved: dict[str, Any]) -> None:
    with api.nothing_changes():
        response = api.anonymous().post(
            f"/v1/payments/{reserved['id']}/3ds",
            content=b'{"otp": "12',
            headers={"X-Payment-Token": token_of(reserved), **JSON},
        )
    assert_problem(response, 400, "malformed_json")
    assert_untouched(api, reserved)


@pytest.mark.parametrize("token", [None, "", "nope"])
def test_3ds_needs_the_payments_token(
    api: InProcessApi, reserved: dict[str, Any], token: str | None
) -> None:
    with api.nothing_changes():
        response = post_3ds(api, reserved, {"otp": "123456"}, token)
    assert_problem(response, 404)
    assert_untouched(api, reserved)


# --- routes and the OpenAPI document -----------------------------------------------------


def test_unknown_routes_and_methods_are_problems(api: InProcessApi) -> None:
    with api.nothing_changes(), api.client() as c:
        assert_problem(c.get("/v1/nothing-here"), 404)
        assert_problem(c.delete("/v1/payments"), 405)
        assert_problem(c.put(f"/v1/payments/{ANY_PAYMENT}", json={}), 405)


def test_openapi_document_is_served(api: InProcessApi) -> None:
    response = api.anonymous().get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    for path in (
        "/v1/payments",
        "/v1/payments/{payment_id}",
        "/v1/payments/{payment_id}/events",
        "/v1/payments/{payment_id}/cancel",
        "/v1/payments/{payment_id}/authorise",
        "/v1/payments/{payment_id}/3ds",
        "/v1/services",
    ):
        assert path in paths, sorted(paths)
    assert "post" in paths["/v1/payments"]
    assert "get" in paths["/v1/payments"]


# --- hostile input -----------------------------------------------------------------------
# What an attacker sends rather than what a careless client does: every one of these is a
# 4xx problem, never a 500, and changes nothing.

CARD_IN_TEXT = "4242424242424242"


def payer_post(
    api: InProcessApi,
    payment: dict[str, Any],
    suffix: str,
    body: Any,
    *,
    params: dict[str, str] | httpx.QueryParams | None = None,
    headers: dict[str, Any] | None = None,
) -> httpx.Response:
    return api.anonymous().post(
        f"/v1/payments/{payment['id']}{suffix}",
        json=body,
        params=params,
        headers=headers,
    )


PAYER_CALLS = [
    pytest.param("/authorise", card("4242424242424242"), id="authorise"),
    pytest.param("/3ds", {"otp": "123456"}, id="3ds"),
]
NON_ASCII_TOKENS = [
    pytest.param("é", id="accented"),
    pytest.param("токен-" + "x" * 37, id="cyrillic"),
    pytest.param("\U0001f4b3", id="emoji"),
]


@pytest.mark.parametrize(("suffix", "body"), PAYER_CALLS)
@pytest.mark.parametrize("token", NON_ASCII_TOKENS)
def test_a_non_ascii_token_in_the_query_is_404(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any, token: str
) -> None:
    """``hmac.compare_digest`` raises on a str that is not ASCII: a 500 until the token was
    compared as bytes."""
    with api.nothing_changes():
        response = payer_post(api, reserved, suffix, body, params={"token": token})
        also_real = payer_post(
            api, reserved, suffix, body, params={"token": token_of(reserved) + token}
        )
    assert_problem(response, 404, "payment_not_found", secrets=("4242424242424242",))
    assert_problem(also_real, 404, "payment_not_found")
    assert_untouched(api, reserved)


@pytest.mark.parametrize(("suffix", "body"), PAYER_CALLS)
@pytest.mark.parametrize(
    "raw", [pytest.param(b"\xc3\xa9", id="utf-8"), pytest.param(b"\xff" * 43, id="latin-1")]
)
def test_a_non_ascii_token_header_is_404(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any, raw: bytes
) -> None:
    """A header's bytes beyond ASCII reach the API decoded as Latin-1: a wrong token too."""
    with api.nothing_changes():
        response = payer_post(api, reserved, suffix, body, headers={"X-Payment-Token": raw})
    assert_problem(response, 404, "payment_not_found")
    assert_untouched(api, reserved)


def listed(api: InProcessApi, **params: str) -> httpx.Response:
    with api.client() as c:
        return c.get("/v1/payments", params=params)


def ids_listed(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["items"]]


def test_list_dates_at_the_ends_of_the_calendar_are_answered(
    api: InProcessApi, reserved: dict[str, Any]
) -> None:
    """The first and last instants Python and PostgreSQL share, in UTC, are valid filters."""
    ref = {"reference": reserved["reference"]}
    first, last = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"
    assert ids_listed(listed(api, created_from=first, **ref)) == [reserved["id"]]
    assert ids_listed(listed(api, created_to=last, **ref)) == [reserved["id"]]
    assert ids_listed(listed(api, created_from=first, created_to=last, **ref)) == [reserved["id"]]
    assert ids_listed(listed(api, created_from=last, **ref)) == []
    assert ids_listed(listed(api, created_to=first, **ref)) == []
    assert ids_listed(listed(api, created_from="0001-01-01", **ref)) == [reserved["id"]]


def test_a_list_date_without_an_offset_is_utc(api: InProcessApi, reserved: dict[str, Any]) -> None:
    created = datetime.fromisoformat(reserved["created_at"]).astimezone(UTC)
    before = (created - timedelta(seconds=1)).replace(tzinfo=None).isoformat()
    after = (created + timedelta(seconds=1)).replace(tzinfo=None).isoformat()
    ref = {"reference": reserved["reference"]}
    assert ids_listed(listed(api, created_from=before, **ref)) == [reserved["id"]]
    assert ids_listed(listed(api, created_from=after, **ref)) == []
    assert ids_listed(listed(api, created_to=after, **ref)) == [reserved["id"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        # in range as written, out of it in UTC: the database's overflow, a 500 until checked
        ({"created_from": "0001-01-01T00:00:00+23:59"}, "out_of_range"),
        ({"created_to": "0001-01-01T03:00:00+04:00"}, "out_of_range"),
        ({"created_to": "9999-12-31T23:59:59-23:59"}, "out_of_range"),
        ({"created_from": "9999-12-31T22:00:00-04:00"}, "out_of_range"),
        # not a time Python can hold
        ({"created_from": "10000-01-01"}, None),
        ({"created_from": "10000-01-01T00:00:00Z"}, None),
        ({"created_from": "0000-01-01T00:00:00Z"}, None),
        ({"created_to": "2025-01-01T00:00:00+99:00"}, None),
        ({"created_to": "2025-01-01T00:00:00+24:00"}, None),
        ({"created_from": "20000000000000000"}, None),
        ({"created_from": "-0001-01-01T00:00:00Z"}, None),
    ],
)
def test_list_dates_beyond_the_calendar_are_422(
    api: InProcessApi, params: dict[str, str], code: str | None
) -> None:
    with api.nothing_changes():
        response = listed(api, **params)
    (field,) = params
    body = assert_problem(response, 422, "validation_failed", (field,))
    if code is not None:
        assert [e["code"] for e in body["errors"]] == [code], body
    assert params[field] not in response.text


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_of(value: Any) -> str:
    return b64(json.dumps(value).encode())


A_PAYMENT_ID = "pay_" + "0" * 32
TAMPERED_CURSORS = [
    pytest.param(b64(bytes(range(7, 250, 7))), id="random-bytes"),
    pytest.param(b64(b"{not json"), id="garbage-json"),
    pytest.param(b64(b"\xff\xfe\x00"), id="not-utf8"),
    pytest.param(cursor_of({"at": "2025-01-01T00:00:00+00:00"}), id="object"),
    pytest.param(cursor_of([1, 2]), id="numbers"),
    pytest.param(cursor_of([None, None]), id="nulls"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00"]), id="one-item"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00", A_PAYMENT_ID, 3]), id="three-items"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00", 5]), id="id-a-number"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00", ["x"]]), id="id-a-list"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00", "pay_\u0000"]), id="id-nul"),
    pytest.param(cursor_of(["2025-01-01T00:00:00+00:00", "x" * 300]), id="id-long"),
    pytest.param(cursor_of(["0001-01-01T00:00:00+05:00", A_PAYMENT_ID]), id="time-underflows"),
    pytest.param(cursor_of(["9999-12-31T23:00:00-05:00", A_PAYMENT_ID]), id="time-overflows"),
    pytest.param(cursor_of(["2025-01-01T00:00:00", A_PAYMENT_ID]), id="time-naive"),
    pytest.param(cursor_of(["2025-01-01\u0000", A_PAYMENT_ID]), id="time-nul"),
    pytest.param(cursor_of([[], A_PAYMENT_ID]), id="time-a-list"),
    pytest.param(b64(b"[" * 300), id="deep-nesting"),
    pytest.param("A" * 512, id="very-long-base64"),
    pytest.param("A" * 4000, id="over-the-limit"),
    pytest.param("W10=", id="padded"),
    pytest.param("W1*0", id="not-base64"),
    pytest.param("é" * 10, id="non-ascii"),
    pytest.param("W10\u0000", id="nul"),
]


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
def test_a_tampered_cursor_is_422(api: InProcessApi, cursor: str) -> None:
    with api.nothing_changes():
        response = listed(api, cursor=cursor)
    assert_problem(response, 422, "validation_failed", ("cursor",))


def test_a_cursor_the_api_gave_out_still_pages(api: InProcessApi) -> None:
    for _ in range(3):
        api.created()
    first = listed(api, limit="2")
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["has_more"]
    assert page["next_cursor"]
    second = listed(api, limit="2", cursor=page["next_cursor"])
    ids = ids_listed(second)
    assert ids
    assert not set(ids) & {p["id"] for p in page["items"]}


NUL = "a\u0000b"
NUL_FIELDS = [
    pytest.param({"service_code": NUL}, "service_code", id="service_code"),
    pytest.param({"reference": NUL}, "reference", id="reference"),
    pytest.param({"description": NUL}, "description", id="description"),
    pytest.param({"payer": {"name": NUL}}, "payer.name", id="payer-name"),
    pytest.param({"payer": {"email": f"{NUL}@example.ae"}}, "payer.email", id="payer-email"),
    pytest.param({"payer": {"phone": "+971\u00005551234"}}, "payer.phone", id="payer-phone"),
    pytest.param({"metadata": {NUL: "v"}}, "metadata", id="metadata-key"),
    pytest.param({"metadata": {"k": NUL}}, "metadata", id="metadata-value"),
    pytest.param({"return_url": f"https://example.ae/{NUL}"}, "return_url", id="return_url"),
]


@pytest.mark.parametrize(("fields", "field"), NUL_FIELDS)
def test_nul_in_any_text_field_is_422(
    api: InProcessApi, fields: dict[str, Any], field: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=fine(**fields), timeout=15)
    assert_problem(response, 422, "validation_failed", (field,))
    assert "\u0000" not in response.text
    assert "\\u0000" not in response.text


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        pytest.param("/authorise", card_with(cardholder_name=NUL), id="cardholder-name"),
        pytest.param("/authorise", card_with(card_number="4242\u00004242424242424"), id="card"),
        pytest.param("/authorise", e_dirham("7840000000000017", "12\u000034"), id="pin"),
        pytest.param("/3ds", {"otp": "123\u0000456"}, id="otp"),
    ],
)
def test_nul_in_payer_bodies_is_422(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any
) -> None:
    with api.nothing_changes():
        response = payer_post(
            api, reserved, suffix, body, headers={"X-Payment-Token": token_of(reserved)}
        )
    assert_problem(response, 422, "validation_failed", secrets=("4242424242424",))
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"reference": NUL}, id="reference"),
        pytest.param({"state": NUL}, id="state"),
        pytest.param({"cursor": NUL}, id="cursor"),
        pytest.param({"created_from": f"2025-01-01{NUL}"}, id="created_from"),
        pytest.param({"limit": "1\u0000"}, id="limit"),
    ],
)
def test_nul_in_list_query_parameters_is_422(api: InProcessApi, params: dict[str, str]) -> None:
    with api.nothing_changes():
        response = listed(api, **params)
    assert_problem(response, 422, "validation_failed", tuple(params))


@pytest.mark.parametrize(("suffix", "body"), PAYER_CALLS)
def test_nul_in_the_token_query_is_422(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any
) -> None:
    with api.nothing_changes():
        response = payer_post(api, reserved, suffix, body, params={"token": NUL})
        with_real = payer_post(
            api, reserved, suffix, body, params={"token": token_of(reserved) + "\u0000"}
        )
    for answer in (response, with_real):
        problem = assert_problem(answer, 422, "validation_failed", ("token",))
        assert [e["code"] for e in problem["errors"]] == ["nul_character"]
    assert token_of(reserved) not in with_real.text
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("DELETE", "/v1/webhooks/%00", id="webhook"),
        pytest.param("DELETE", "/v1/webhooks/wh_%00x", id="webhook-inside"),
        pytest.param("GET", "/v1/payments/pay_%00/refunds", id="refunds"),
    ],
)
def test_nul_in_any_path_parameter_is_404(api: InProcessApi, method: str, path: str) -> None:
    """A NUL names nothing PostgreSQL can hold: every route's path parameter, not only a
    payment id, is then simply not found (it was a 500 where the id reached a query)."""
    with api.nothing_changes(), api.client() as c:
        response = c.request(method, path)
    assert_problem(response, 404)


@pytest.mark.parametrize(
    "key", [pytest.param("clé-é", id="latin-1"), pytest.param("\xff" * 10, id="high-bytes")]
)
def test_a_non_ascii_idempotency_key_is_a_key_like_any(api: InProcessApi, key: str) -> None:
    """Bytes beyond ASCII are allowed in a header value (obs-text): the key works."""
    body = fine()
    with api.client() as c:
        headers = {b"Idempotency-Key": key.encode("latin-1")}
        first = c.post("/v1/payments", json=body, headers=headers)
        again = c.post("/v1/payments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


# A Luhn-valid run of digits in text the department sends is refused, named, never echoed.
CARD_SPACED = "4242 4242 4242 4242"
CARD_DASHED = "4000-0000-0000-0002"
CARD_TEXT = [
    pytest.param({"reference": f"INV-{CARD_IN_TEXT}"}, "reference", CARD_IN_TEXT, id="reference"),
    pytest.param({"reference": CARD_SPACED}, "reference", CARD_SPACED, id="reference-spaced"),
    pytest.param(
        {"description": f"Paid by card {CARD_DASHED} on the phone"},
        "description",
        CARD_DASHED,
        id="description",
    ),
    pytest.param(
        {"description": "e-Dirham 7840000000000017"},
        "description",
        "7840000000000017",
        id="e-dirham",
    ),
    pytest.param(
        {"metadata": {"note": f"card {CARD_IN_TEXT}"}}, "metadata.note", CARD_IN_TEXT, id="metadata"
    ),
    pytest.param({"metadata": {CARD_IN_TEXT: "x"}}, "metadata", CARD_IN_TEXT, id="metadata-key"),
    pytest.param(
        {"description": "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"}, "description", "٤٢٤٢٤٢٤٢", id="arabic-indic-digits"
    ),
]


@pytest.mark.parametrize(("fields", "field", "card_number"), CARD_TEXT)
def test_a_card_number_in_department_text_is_422(
    api: InProcessApi, fields: dict[str, Any], field: str, card_number: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=fine(**fields))
    body = assert_problem(response, 422, "validation_failed", (field,), secrets=(card_number,))
    assert [e["code"] for e in body["errors"]] == ["card_number_in_text"], body
    digits = "".join(ch for ch in card_number if ch.isdigit())
    assert digits not in response.text
    assert digits[-4:] + '"' not in response.text


def test_a_card_number_in_a_cancel_reason_is_422(
    api: InProcessApi, reserved: dict[str, Any]
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post(
            f"/v1/payments/{reserved['id']}/cancel", json={"reason": f"card {CARD_IN_TEXT}"}
        )
    body = assert_problem(response, 422, "validation_failed", ("reason",), secrets=(CARD_IN_TEXT,))
    assert [e["code"] for e in body["errors"]] == ["card_number_in_text"]
    assert_untouched(api, reserved)


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param("1234567890123456", id="16-digits-not-luhn"),
        pytest.param("FINE-4242424242424241", id="card-like-not-luhn"),
        pytest.param("2026 1234 5678 9012", id="grouped-not-luhn"),
        pytest.param("FINE-2026-0012345", id="ordinary-fine"),
        pytest.param("424242424242", id="12-digits"),
        pytest.param("4" * 30, id="30-digits"),
    ],
)
def test_long_numeric_references_that_are_not_card_numbers_pass(
    api: InProcessApi, reference: str
) -> None:
    reference = f"{reference}-X{uuid.uuid4().hex[:6]}"  # X: no digits joined on
    response = api.create(service_code="PARKING_FINE", amount=15000, reference=reference)
    assert response.status_code == 201, response.text
    assert response.json()["reference"] == reference


# Unknown fields: their names are the caller's own strings. A short identifier-like name is
# named back (the usual typo); any other is counted, never repeated.
UNSAFE_NAMES = [
    pytest.param("<script>alert(1)</script>", id="markup"),
    pytest.param(CARD_IN_TEXT, id="card-number"),
    pytest.param("a" * 42, id="too-long"),
    pytest.param("naïve", id="non-ascii"),
    pytest.param("two words", id="space"),
    pytest.param("1st", id="leading-digit"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_an_unknown_fields_odd_name_is_not_echoed(api: InProcessApi, name: str) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=fine(**{name: "x"}))
    body = assert_problem(response, 422, "validation_failed", ("body",))
    assert body["errors"] == [
        {
            "field": "body",
            "code": "unknown_field",
            "message": body["errors"][0]["message"],
            "count": 1,
        }
    ], body
    if name:
        assert name not in response.text
        assert json.dumps(name)[1:-1] not in response.text


def test_unknown_fields_are_counted_where_they_are(api: InProcessApi) -> None:
    body = fine(
        **{"<a>": 1, "<b>": 2, "<c>": 3, "currency": "AED"},
        payer={"name": "Ahmed", "4111111111111111": "x"},
        metadata={"<k>": 5},
    )
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=body)
    problem = assert_problem(response, 422, "validation_failed", secrets=("4111111111111111",))
    by_field = {(e["field"], e["code"]): e for e in problem["errors"]}
    assert by_field[("body", "unknown_field")]["count"] == 3, problem
    assert by_field[("payer", "unknown_field")]["count"] == 1, problem
    assert by_field[("currency", "unknown_field")].get("count") is None, problem
    assert ("metadata", "string_type") in by_field, problem
    for name in ("<a>", "<b>", "<c>", "<k>", "\\u003c"):
        assert name not in response.text


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        pytest.param("/authorise", card("4242424242424242") | {CARD_IN_TEXT: 1}, id="authorise"),
        pytest.param("/3ds", {"otp": "123456", "<img src=x>": 1}, id="3ds"),
    ],
)
def test_unknown_fields_on_payer_calls_are_not_echoed(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any
) -> None:
    with api.nothing_changes():
        response = payer_post(
            api, reserved, suffix, body, headers={"X-Payment-Token": token_of(reserved)}
        )
    problem = assert_problem(response, 422, "validation_failed", ("body",))
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("body", "unknown_field")]
    assert "4242424242424242" not in response.text
    assert "img" not in response.text
    assert_untouched(api, reserved)


MARKER = "zq7-marker-7qz"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/payments", {"json": fine(amount=MARKER)}),
        ("POST", "/v1/payments", {"json": fine(payer=MARKER)}),
        ("POST", "/v1/payments", {"json": fine(metadata=MARKER)}),
        ("POST", "/v1/payments", {"json": fine(metadata={"k": [MARKER]})}),
        ("POST", "/v1/payments", {"json": fine(service_code=[MARKER])}),
        ("POST", "/v1/payments", {"json": fine(description=MARKER * 20)}),
        ("POST", "/v1/payments", {"json": fine(return_url=MARKER)}),
        ("POST", "/v1/payments", {"json": fine(payer={"email": MARKER})}),
        ("POST", "/v1/payments", {"json": [MARKER]}),
        ("POST", "/v1/payments", {"json": MARKER}),
        ("GET", "/v1/payments", {"params": {"state": MARKER}}),
        ("GET", "/v1/payments", {"params": {"limit": MARKER}}),
        ("GET", "/v1/payments", {"params": {"created_from": MARKER}}),
        ("GET", "/v1/payments", {"params": {"reference": MARKER + "!"}}),
        ("GET", "/v1/payments", {"params": {"cursor": MARKER}}),
        ("POST", "/v1/payments", {"json": fine(), "headers": {"Idempotency-Key": MARKER * 20}}),
    ],
)
def test_no_error_repeats_a_value_sent(
    api: InProcessApi, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Neither pydantic's ``input`` nor its ``ctx`` (which can hold the value) reaches an answer."""
    with api.nothing_changes(), api.client() as c:
        response = c.request(method, path, **kwargs)
    assert_problem(response, 422, "validation_failed")
    assert MARKER not in response.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param((("limit", "1"), ("limit", "2")), "limit", id="limit"),
        pytest.param(
            (("created_to", "2025-01-01T00:00:00Z"), ("created_to", "0.25")),
            "created_to",
            id="created_to",
        ),
        pytest.param((("state", "reserved"), ("state", "reserved")), "state", id="same-twice"),
        pytest.param((("<b>", "1"), ("<b>", "2")), "query", id="odd-name"),
    ],
)
def test_a_repeated_query_parameter_is_422(
    api: InProcessApi, params: tuple[tuple[str, str], ...], field: str
) -> None:
    """FastAPI reads a repeated parameter's last value, where a proxy may read its first."""
    with api.nothing_changes(), api.client() as c:
        response = c.get("/v1/payments", params=httpx.QueryParams(params))
    body = assert_problem(response, 422, "validation_failed", (field,))
    assert [e["code"] for e in body["errors"]] == ["repeated_parameter"]
    assert "<b>" not in response.text


@pytest.mark.parametrize(("suffix", "body"), PAYER_CALLS)
def test_a_repeated_token_is_422(
    api: InProcessApi, reserved: dict[str, Any], suffix: str, body: Any
) -> None:
    token = token_of(reserved)
    with api.nothing_changes():
        response = payer_post(
            api,
            reserved,
            suffix,
            body,
            params=httpx.QueryParams([("token", "x"), ("token", token)]),
        )
    assert_problem(response, 422, "validation_failed", ("token",), secrets=(token,))
    assert_untouched(api, reserved)


LOCAL_RECEIVER = "http://127.0.0.1:9/webhooks"  # the discard port: nothing listens


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"url": "http://[::1/x"}, "url", id="ipv6-left-open"),
        pytest.param({"url": "http://[abc"}, "url", id="bracket"),
        pytest.param({"url": "http://127.0.0.1:99999999/x"}, "url", id="port-out-of-range"),
        pytest.param({"url": "http://127.0.0.1:port/x"}, "url", id="port-not-a-number"),
        pytest.param(
            {"url": LOCAL_RECEIVER, "events": ["payment\u0000failed"]},
            "events.0",
            id="event-nul",
        ),
        pytest.param(
            {"url": LOCAL_RECEIVER, "events": ["paymentXsucceeded"]},
            "events.0",
            id="event-any-dot",
        ),
    ],
)
def test_a_malformed_webhook_is_422(api: InProcessApi, body: dict[str, Any], field: str) -> None:
    """Each was a 500 (urlsplit's ValueError; an event type's pattern whose dots matched any
    character, a NUL included, for PostgreSQL to refuse) or taken. (Every URL is on this
    machine: one taken by mistake sends nothing out.)"""
    with api.client() as c:
        before = c.get("/v1/webhooks").json()["items"]
        response = c.post("/v1/webhooks", json=body)
        after = c.get("/v1/webhooks").json()["items"]
    assert_problem(response, 422, "validation_failed", (field,))
    assert after == before


# --- a reservation its workflow could not make -------------------------------------------


def test_a_reservation_its_workflow_could_not_make_is_a_503_and_a_retry_starts_afresh(
    api: InProcessApi,
) -> None:
    """The workers were away past the reservation's start limit, so the payment's workflow
    ended it unreserved (tests/test_workflow_saga.py::
    test_a_late_first_task_does_not_reserve_and_releases): the caller hears 503
    ``reservation_unavailable`` and nothing is reserved; the same Idempotency-Key then starts
    a new payment once the workers are back."""
    reference, key = new_reference(), uuid.uuid4().hex
    api.temporal.late_references.add(reference)
    with api.client() as c:
        refused = c.post(
            "/v1/payments",
            json={"service_code": "HEALTH_CERT", "reference": reference},
            headers={"Idempotency-Key": key},
        )
    assert_problem(refused, 503, "reservation_unavailable")
    assert api.fetch("SELECT 1 FROM payments WHERE reference = $1", reference) == []
    assert api.fetch("SELECT 1 FROM fee_reservations WHERE reference = $1", reference) == []

    api.temporal.late_references.discard(reference)  # the workers are back
    retry = api.create(reference=reference, headers={"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    assert retry.json()["state"] == "reserved"
