"""The sandbox card acquirer over real HTTP, against `python -m sandbox`."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests import sandbox_support
from tests.sandbox_support import (
    CVV,
    LOST_ANSWER_DELAY,
    Sandbox,
    admin_auths,
    assert_no_secrets,
    authorise,
    call,
    card_body,
    error_code,
    retry_while_in_flight,
    slow_captures,
    switched_down,
    uid,
)

server, client = sandbox_support.server, sandbox_support.client

Body = dict[str, Any] | None
# The calls on an authorisation, with a body each accepts.
AUTHORISATION_CALLS: list[tuple[str, Body]] = [
    ("3ds", {"otp": "123456"}),
    ("capture", {"amount": 1}),
    ("void", None),
    ("refunds", {"amount": 1}),
]


def test_approved_card(client: httpx.Client) -> None:
    resp = authorise(client, "4242424242424242", amount=12_345)
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"].startswith("auth_")
    assert body["status"] == "authorised"
    assert body["amount"] == 12_345
    assert body["currency"] == "AED"
    assert body["last4"] == "4242"
    assert body["brand"] == "visa"
    [record] = admin_auths(client, body["reference"])
    assert record["id"] == body["id"]
    assert record["status"] == "authorised"
    assert record["capture_count"] == 0
    assert set(record) == {
        "id",
        "reference",
        "status",
        "amount",
        "last4",
        "brand",
        "capture_count",
        "captured_amount",
        "refund_count",
        "refunded_amount",
        "idempotency_key",
        "created_at",
    }


def test_idempotency_key_required(client: httpx.Client) -> None:
    resp = client.post("/acquirer/authorisations", json=card_body("4242424242424242"))
    assert resp.status_code == 400
    assert error_code(resp) == "idempotency_key_required"


@pytest.mark.parametrize(("action", "body"), AUTHORISATION_CALLS)
def test_idempotency_key_required_on_an_authorisation(
    client: httpx.Client, action: str, body: Body
) -> None:
    auth = authorise(client, "4000000000003220").json()
    resp = client.post(f"/acquirer/authorisations/{auth['id']}/{action}", json=body)
    assert resp.status_code == 400
    assert error_code(resp) == "idempotency_key_required"
    assert admin_auths(client, auth["reference"])[0]["status"] == "pending_3ds"


def test_validation_error_does_not_echo_input(client: httpx.Client) -> None:
    body = card_body("4242424242424242", cvv=123, amount=0)
    resp = client.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": uid()})
    assert resp.status_code == 422
    assert error_code(resp) == "validation_error"
    assert "4242424242424242" not in resp.text
    assert "123" not in resp.text


def test_approved_replay_returns_same_authorisation(client: httpx.Client) -> None:
    key = uid()
    reference = f"pay_{uid()}"
    first = authorise(client, "4242424242424242", key=key, reference=reference)
    second = authorise(client, "4242424242424242", key=key, reference=reference)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(admin_auths(client, reference)) == 1


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ("4000000000000002", "card_declined"),
        ("4000000000000069", "card_expired"),
        ("4111111111111111", "card_declined"),
        ("5555555555554444", "card_declined"),
    ],
)
def test_declines(client: httpx.Client, card: str, code: str) -> None:
    key = uid()
    reference = f"pay_{uid()}"
    resp = authorise(client, card, key=key, reference=reference)
    assert resp.status_code == 402
    assert error_code(resp) == code
    replay = authorise(client, card, key=key, reference=reference)
    assert replay.status_code == 402
    assert replay.json() == resp.json()
    assert admin_auths(client, reference) == []


def test_past_expiry_is_expired_even_for_good_card(client: httpx.Client) -> None:
    resp = authorise(client, "4242424242424242", expiry_month=1, expiry_year=2020)
    assert resp.status_code == 402
    assert error_code(resp) == "card_expired"


def test_brands(client: httpx.Client) -> None:
    # Brand shows on approvals only; the approval card is visa. Other brands are
    # checked through the brand rule directly.
    from sandbox.acquirer import brand_of

    assert brand_of("4242424242424242") == "visa"
    assert brand_of("5555555555554444") == "mastercard"
    assert brand_of("3782822463100050") == "card"


def test_transient_errors_then_approved(client: httpx.Client) -> None:
    key = uid()
    reference = f"pay_{uid()}"
    for _ in range(2):
        resp = authorise(client, "4000000000000119", key=key, reference=reference)
        assert resp.status_code == 503
        assert error_code(resp) == "processing_error"
        assert admin_auths(client, reference) == []
    resp = authorise(client, "4000000000000119", key=key, reference=reference)
    assert resp.status_code == 201
    assert resp.json()["status"] == "authorised"
    again = authorise(client, "4000000000000119", key=key, reference=reference)
    assert again.status_code == 201
    assert again.json()["id"] == resp.json()["id"]
    assert len(admin_auths(client, reference)) == 1


def test_transient_counts_are_per_key(client: httpx.Client) -> None:
    assert authorise(client, "4000000000000119").status_code == 503
    assert authorise(client, "4000000000000119").status_code == 503


def test_lost_answer(server: Sandbox, client: httpx.Client) -> None:
    key = uid()
    reference = f"pay_{uid()}"
    body = card_body("4000000000000259", reference=reference)
    with (
        httpx.Client(base_url=server.url, timeout=1.0) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": key})
    # The authorisation exists although nobody heard about it. The acquirer is done with it,
    # so the retry (while the first answer is still held) is not told 409 in flight.
    [record] = admin_auths(client, reference)
    assert record["status"] == "authorised"
    started = time.monotonic()
    retry = client.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": key})
    assert time.monotonic() - started < LOST_ANSWER_DELAY / 2
    assert retry.status_code == 201
    assert retry.json()["id"] == record["id"]
    assert_no_secrets(retry.json(), "4000000000000259", CVV)
    assert len(admin_auths(client, reference)) == 1


def test_3ds_pass(client: httpx.Client) -> None:
    resp = authorise(client, "4000000000003220")
    assert resp.status_code == 201
    body = resp.json()
    assert body["status"] == "requires_action"
    assert body["challenge"] == {"type": "otp", "hint": "use 123456 in the sandbox"}
    [record] = admin_auths(client, body["reference"])
    assert record["status"] == "pending_3ds"
    # Cannot capture before the challenge is passed.
    early = call(client, f"/acquirer/authorisations/{body['id']}/capture", {"amount": 100})
    assert early.status_code == 409
    assert error_code(early) == "not_capturable"

    ok = call(client, f"/acquirer/authorisations/{body['id']}/3ds", {"otp": "123456"})
    assert ok.status_code == 200
    assert ok.json()["status"] == "authorised"
    again = call(client, f"/acquirer/authorisations/{body['id']}/3ds", {"otp": "000000"})
    assert again.status_code == 200
    assert again.json()["status"] == "authorised"
    assert admin_auths(client, body["reference"])[0]["status"] == "authorised"


def test_3ds_fail(client: httpx.Client) -> None:
    body = authorise(client, "4000000000003220").json()
    bad = call(client, f"/acquirer/authorisations/{body['id']}/3ds", {"otp": "111111"})
    assert bad.status_code == 402
    assert error_code(bad) == "three_ds_failed"
    assert admin_auths(client, body["reference"])[0]["status"] == "failed"
    # Even the right OTP cannot revive a failed authorisation.
    again = call(client, f"/acquirer/authorisations/{body['id']}/3ds", {"otp": "123456"})
    assert again.status_code == 402
    assert error_code(again) == "three_ds_failed"
    capture = call(client, f"/acquirer/authorisations/{body['id']}/capture", {"amount": 1})
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    # Voiding it holds nothing to release: a no-op that succeeds, so compensation can finish.
    void = call(client, f"/acquirer/authorisations/{body['id']}/void")
    assert void.status_code == 200
    assert admin_auths(client, body["reference"])[0]["status"] == "failed"


@pytest.mark.parametrize(("action", "body"), AUTHORISATION_CALLS)
def test_unknown_authorisation(client: httpx.Client, action: str, body: Body) -> None:
    resp = call(client, f"/acquirer/authorisations/auth_nope/{action}", body)
    assert resp.status_code == 404
    assert error_code(resp) == "not_found"


def test_capture_once(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242", amount=10_000).json()
    url = f"/acquirer/authorisations/{body['id']}/capture"
    too_much = call(client, url, {"amount": 10_001})
    assert too_much.status_code == 422
    first = call(client, url, {"amount": 10_000})
    assert first.status_code == 200
    assert first.json()["status"] == "captured"
    second = call(client, url, {"amount": 10_000})
    assert second.status_code == 200
    assert second.json() == first.json()
    [record] = admin_auths(client, body["reference"])
    assert record["status"] == "captured"
    assert record["capture_count"] == 1
    assert record["captured_amount"] == 10_000
    void = call(client, f"/acquirer/authorisations/{body['id']}/void")
    assert void.status_code == 409
    assert error_code(void) == "not_voidable"


def test_partial_capture(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242", amount=10_000).json()
    resp = call(client, f"/acquirer/authorisations/{body['id']}/capture", {"amount": 4_000})
    assert resp.status_code == 200
    assert admin_auths(client, body["reference"])[0]["captured_amount"] == 4_000


def test_void(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242").json()
    url = f"/acquirer/authorisations/{body['id']}/void"
    first = call(client, url)
    assert first.status_code == 200
    assert first.json()["status"] == "voided"
    second = call(client, url)
    assert second.status_code == 200
    assert second.json()["status"] == "voided"
    capture = call(client, f"/acquirer/authorisations/{body['id']}/capture", {"amount": 1})
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    [record] = admin_auths(client, body["reference"])
    assert record["status"] == "voided"
    assert record["capture_count"] == 0


def test_void_pending_3ds(client: httpx.Client) -> None:
    body = authorise(client, "4000000000003220").json()
    resp = call(client, f"/acquirer/authorisations/{body['id']}/void")
    assert resp.status_code == 200
    assert resp.json()["status"] == "voided"


def test_a_repeat_gets_the_stored_answer(client: httpx.Client) -> None:
    auth = authorise(client, "4000000000003220", amount=10_000).json()
    url = f"/acquirer/authorisations/{auth['id']}"
    passed = call(client, f"{url}/3ds", {"otp": "123456"}, key="3ds")
    too_much = call(client, f"{url}/capture", {"amount": 10_001}, key="capture")
    assert too_much.status_code == 422
    assert error_code(too_much) == "amount_too_large"
    # The same key is the same request: its refusal stands, even with another amount.
    assert call(client, f"{url}/capture", {"amount": 5_000}, key="capture").json() == (
        too_much.json()
    )
    captured = call(client, f"{url}/capture", {"amount": 5_000})
    assert captured.status_code == 200
    assert captured.json()["captured_amount"] == 5_000
    # A repeat of the challenge answer is the answer it had then, not a new decision.
    repeat = call(client, f"{url}/3ds", {"otp": "000000"}, key="3ds")
    assert repeat.status_code == 200
    assert repeat.json() == passed.json()
    [record] = admin_auths(client, auth["reference"])
    assert record["status"] == "captured"
    assert record["capture_count"] == 1


def test_keys_are_per_call(client: httpx.Client) -> None:
    """The same key on two authorisations' captures is two requests."""
    first, second = (authorise(client, "4242424242424242").json() for _ in range(2))
    key = uid()
    for auth in (first, second):
        resp = call(client, f"/acquirer/authorisations/{auth['id']}/capture", {"amount": 1}, key)
        assert resp.status_code == 200
        assert resp.json()["id"] == auth["id"]


def test_acquirer_down_refuses_everything_and_changes_nothing(client: httpx.Client) -> None:
    auth = authorise(client, "4242424242424242").json()
    key, reference = uid(), f"pay_{uid()}"
    with switched_down(client, "acquirer"):
        assert client.get("/acquirer/_admin/status").json() == {
            "system": "acquirer",
            "mode": "down",
        }
        refused = [
            authorise(client, "4242424242424242", key=key, reference=reference),
            call(client, f"/acquirer/authorisations/{auth['id']}/capture", {"amount": 1}),
            call(client, f"/acquirer/authorisations/{auth['id']}/void"),
            client.post("/acquirer/reversals", json={"idempotency_key": key}),
        ]
        for resp in refused:
            assert resp.status_code == 503
            assert error_code(resp) == "unavailable"
        assert admin_auths(client, reference) == []
        assert admin_auths(client, auth["reference"])[0]["status"] == "authorised"
    assert client.get("/acquirer/_admin/status").json()["mode"] == "up"
    # Nothing was stored for the refused key: it authorises now.
    assert authorise(client, "4242424242424242", key=key, reference=reference).status_code == 201
    captured = call(client, f"/acquirer/authorisations/{auth['id']}/capture", {"amount": 1})
    assert captured.status_code == 200


def test_behaviour_settings(client: httpx.Client) -> None:
    assert client.get("/acquirer/_admin/behaviour").json() == {"capture_delay_seconds": 0.0}
    with slow_captures(client, "acquirer", 0.25):
        assert client.get("/acquirer/_admin/behaviour").json() == {"capture_delay_seconds": 0.25}
    for bad in (-1, "slow", None):
        resp = client.post("/acquirer/_admin/behaviour", json={"capture_delay_seconds": bad})
        assert resp.status_code == 422
    assert client.get("/acquirer/_admin/behaviour").json() == {"capture_delay_seconds": 0.0}


def test_slow_capture_is_in_flight_then_answers_from_the_store(
    server: Sandbox, client: httpx.Client
) -> None:
    delay = 1.5
    auth = authorise(client, "4242424242424242", amount=10_000).json()
    url = f"/acquirer/authorisations/{auth['id']}/capture"
    key = uid()
    with slow_captures(client, "acquirer", delay):
        started = time.monotonic()
        with (
            server.client(timeout=0.5) as impatient,
            pytest.raises(httpx.TimeoutException),
        ):
            call(impatient, url, {"amount": 10_000}, key=key)
        # Captured at once, although the caller has not heard so.
        [record] = admin_auths(client, auth["reference"])
        assert record["status"] == "captured"
        assert record["capture_count"] == 1
        refused, answer = retry_while_in_flight(client, url, {"amount": 3_000}, key, delay * 3)
    assert refused >= 1
    assert time.monotonic() - started >= delay * 0.9
    assert answer.status_code == 200
    assert answer.json()["status"] == "captured"
    assert answer.json()["captured_amount"] == 10_000
    [record] = admin_auths(client, auth["reference"])
    assert record["capture_count"] == 1
    assert record["captured_amount"] == 10_000


# --------------------------------------------------------------------------- reversals


def test_reversal_voids_an_authorisation_whose_answer_was_lost(
    server: Sandbox, client: httpx.Client
) -> None:
    key, reference = uid(), f"pay_{uid()}"
    body = card_body("4000000000000259", reference=reference)
    with (
        httpx.Client(base_url=server.url, timeout=1.0) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": key})
    reversal = client.post("/acquirer/reversals", json={"idempotency_key": key})
    assert reversal.status_code == 200
    assert reversal.json()["id"]
    assert [r["status"] for r in admin_auths(client, reference)] == ["voided"]


def test_a_request_arriving_after_its_reversal_is_refused(client: httpx.Client) -> None:
    key = uid()
    assert client.post("/acquirer/reversals", json={"idempotency_key": key}).status_code == 200
    late = authorise(client, "4242424242424242", key=key)
    assert late.status_code == 402
    assert error_code(late) == "reversed"


def test_a_captured_authorisation_cannot_be_reversed(client: httpx.Client) -> None:
    key = uid()
    auth = authorise(client, "4242424242424242", key=key).json()
    call(client, f"/acquirer/authorisations/{auth['id']}/capture", {"amount": 1})
    refused = client.post("/acquirer/reversals", json={"idempotency_key": key})
    assert refused.status_code == 409
    assert error_code(refused) == "not_voidable"


def _captured(client: httpx.Client, amount: int = 10_000) -> dict[str, Any]:
    body = authorise(client, "4242424242424242", amount=amount).json()
    url = f"/acquirer/authorisations/{body['id']}/capture"
    assert call(client, url, {"amount": amount}).status_code == 200
    return body


def test_refunds_of_a_capture_never_pass_it(client: httpx.Client) -> None:
    auth = _captured(client, 10_000)
    url = f"/acquirer/authorisations/{auth['id']}/refunds"
    first = call(client, url, {"amount": 6_000})
    assert first.status_code == 201, first.text
    assert first.json()["id"].startswith("refund_")
    assert first.json()["refunded_amount"] == 6_000
    too_much = call(client, url, {"amount": 4_001})
    assert too_much.status_code == 409
    assert error_code(too_much) == "refund_exceeds_captured"
    rest = call(client, url, {"amount": 4_000})
    assert rest.status_code == 201
    [record] = admin_auths(client, auth["reference"])
    assert record["refund_count"] == 2
    assert record["refunded_amount"] == 10_000
    assert record["captured_amount"] == 10_000
    assert call(client, url, {"amount": 1}).status_code == 409


def test_a_refund_is_made_once_per_idempotency_key(client: httpx.Client) -> None:
    auth = _captured(client, 10_000)
    url = f"/acquirer/authorisations/{auth['id']}/refunds"
    key = uid()
    first = call(client, url, {"amount": 2_500}, key=key)
    again = call(client, url, {"amount": 2_500}, key=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    [record] = admin_auths(client, auth["reference"])
    assert (record["refund_count"], record["refunded_amount"]) == (1, 2_500)
    public = client.get("/acquirer/_admin/authorisations", params={"reference": auth["reference"]})
    assert public.status_code == 200


@pytest.mark.parametrize("card_number", ["4242424242424242", "4000000000003220"])
def test_only_a_captured_authorisation_is_refunded(client: httpx.Client, card_number: str) -> None:
    auth = authorise(client, card_number).json()
    resp = call(client, f"/acquirer/authorisations/{auth['id']}/refunds", {"amount": 100})
    assert resp.status_code == 409
    assert error_code(resp) == "not_refundable"
    [record] = admin_auths(client, auth["reference"])
    assert record["refunded_amount"] == 0
