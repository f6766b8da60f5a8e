"""End-to-end tests of the sandbox over real HTTP, against `python -m sandbox`."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
LOST_ANSWER_DELAY = 2.0
SLOW_SECONDS = 1.0

SECRET_KEYS = {"card_number", "cvv", "pin"}
CVV = "987"


# --------------------------------------------------------------------------- fixtures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    port = _free_port()
    env = dict(
        os.environ,
        SANDBOX_LOST_ANSWER_DELAY=str(LOST_ANSWER_DELAY),
        SANDBOX_SLOW_SECONDS=str(SLOW_SECONDS),
        PYTHONUNBUFFERED="1",
    )
    log = tempfile.NamedTemporaryFile(prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early:\n{Path(log.name).read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not become healthy")
            time.sleep(0.1)
        yield {"base_url": base_url, "log": Path(log.name)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture()
def client(server: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server["base_url"], timeout=10) as c:
        yield c


# --------------------------------------------------------------------------- helpers


def uid() -> str:
    return uuid.uuid4().hex


def assert_no_secrets(payload: Any, *secrets: str) -> None:
    """No secret field names, no secret values, and no full card number anywhere."""
    text = json.dumps(payload)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert not SECRET_KEYS & set(node), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        else:
            assert node not in secrets, node

    walk(payload)
    for secret in secrets:
        if len(secret) >= 12:  # card numbers: not even as a substring
            assert secret not in text


def card_body(card_number: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "card_number": card_number,
        "expiry_month": 12,
        "expiry_year": time.gmtime().tm_year + 3,
        "cvv": CVV,
        "cardholder_name": "Test Holder",
        "amount": 10_000,
        "currency": "AED",
        "reference": f"pay_{uid()}",
    }
    body.update(overrides)
    return body


def authorise(
    client: httpx.Client, card_number: str, key: str | None = None, **overrides: Any
) -> httpx.Response:
    body = card_body(card_number, **overrides)
    resp = client.post(
        "/acquirer/authorisations", json=body, headers={"Idempotency-Key": key or uid()}
    )
    assert_no_secrets(resp.json(), card_number, CVV)
    return resp


def admin_auths(client: httpx.Client, reference: str) -> list[dict[str, Any]]:
    resp = client.get("/acquirer/_admin/authorisations", params={"reference": reference})
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def error_code(resp: httpx.Response) -> str:
    code: str = resp.json()["error"]["code"]
    return code


def new_edirham_card(
    client: httpx.Client, balance: int = 100_000, pin: str = "4321", blocked: bool = False
) -> str:
    number = "7841" + "".join(random.choices("0123456789", k=12))
    while number.endswith(pin):  # the visible last four must never look like the PIN
        number = "7841" + "".join(random.choices("0123456789", k=12))
    resp = client.post(
        "/issuer/_admin/cards",
        json={"card_number": number, "pin": pin, "balance": balance, "blocked": blocked},
    )
    assert resp.status_code == 200, resp.text
    assert_no_secrets(resp.json(), number, pin)
    return number


def hold(
    client: httpx.Client,
    card_number: str,
    pin: str,
    amount: int,
    key: str | None = None,
    reference: str | None = None,
) -> httpx.Response:
    resp = client.post(
        "/issuer/holds",
        json={
            "card_number": card_number,
            "pin": pin,
            "amount": amount,
            "reference": reference or f"pay_{uid()}",
        },
        headers={"Idempotency-Key": key or uid()},
    )
    assert_no_secrets(resp.json(), card_number, pin)
    return resp


def card_view(client: httpx.Client, card_number: str) -> dict[str, Any]:
    resp = client.get(f"/issuer/_admin/cards/{card_number}")
    assert resp.status_code == 200
    view: dict[str, Any] = resp.json()
    assert_no_secrets(view, card_number)
    return view


def confirm(
    client: httpx.Client, dept: str, reference: str, payment_id: str | None = None
) -> httpx.Response:
    return client.post(
        f"/departments/{dept}/confirmations",
        json={
            "payment_id": payment_id or f"pay_{uid()}",
            "reference": reference,
            "service_code": "SVC-1",
            "amount": 15_000,
        },
    )


def dept_records(client: httpx.Client, dept: str, payment_id: str) -> list[dict[str, Any]]:
    resp = client.get(
        f"/departments/{dept}/_admin/confirmations", params={"payment_id": payment_id}
    )
    assert resp.status_code == 200
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


# --------------------------------------------------------------------------- general


def test_healthz(client: httpx.Client) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_unknown_route_is_json_error(client: httpx.Client) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404
    assert error_code(resp) == "not_found"


def test_app_is_importable_in_process() -> None:
    from sandbox.app import create_app

    app = create_app(lost_answer_delay=0.1, slow_seconds=0.1)
    paths = set(app.openapi()["paths"])
    assert "/healthz" in paths
    assert "/acquirer/authorisations" in paths
    assert "/issuer/holds" in paths
    assert "/departments/{dept}/confirmations" in paths


# --------------------------------------------------------------------------- acquirer


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
        "idempotency_key",
        "created_at",
    }


def test_idempotency_key_required(client: httpx.Client) -> None:
    resp = client.post("/acquirer/authorisations", json=card_body("4242424242424242"))
    assert resp.status_code == 400
    assert error_code(resp) == "idempotency_key_required"


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


def test_lost_answer(server: dict[str, Any], client: httpx.Client) -> None:
    key = uid()
    reference = f"pay_{uid()}"
    body = card_body("4000000000000259", reference=reference)
    with (
        httpx.Client(base_url=server["base_url"], timeout=1.0) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": key})
    # The authorisation exists although nobody heard about it.
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
    early = client.post(f"/acquirer/authorisations/{body['id']}/capture", json={"amount": 100})
    assert early.status_code == 409
    assert error_code(early) == "not_capturable"

    ok = client.post(f"/acquirer/authorisations/{body['id']}/3ds", json={"otp": "123456"})
    assert ok.status_code == 200
    assert ok.json()["status"] == "authorised"
    again = client.post(f"/acquirer/authorisations/{body['id']}/3ds", json={"otp": "000000"})
    assert again.status_code == 200
    assert again.json()["status"] == "authorised"
    assert admin_auths(client, body["reference"])[0]["status"] == "authorised"


def test_3ds_fail(client: httpx.Client) -> None:
    body = authorise(client, "4000000000003220").json()
    bad = client.post(f"/acquirer/authorisations/{body['id']}/3ds", json={"otp": "111111"})
    assert bad.status_code == 402
    assert error_code(bad) == "three_ds_failed"
    assert admin_auths(client, body["reference"])[0]["status"] == "failed"
    # Even the right OTP cannot revive a failed authorisation.
    again = client.post(f"/acquirer/authorisations/{body['id']}/3ds", json={"otp": "123456"})
    assert again.status_code == 402
    assert error_code(again) == "three_ds_failed"
    capture = client.post(f"/acquirer/authorisations/{body['id']}/capture", json={"amount": 1})
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    # Voiding it holds nothing to release: a no-op that succeeds, so compensation can finish.
    void = client.post(f"/acquirer/authorisations/{body['id']}/void")
    assert void.status_code == 200
    assert admin_auths(client, body["reference"])[0]["status"] == "failed"


def test_unknown_authorisation(client: httpx.Client) -> None:
    for path, body in [
        ("3ds", {"otp": "123456"}),
        ("capture", {"amount": 1}),
        ("void", None),
    ]:
        resp = client.post(f"/acquirer/authorisations/auth_nope/{path}", json=body)
        assert resp.status_code == 404
        assert error_code(resp) == "not_found"


def test_capture_once(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242", amount=10_000).json()
    url = f"/acquirer/authorisations/{body['id']}/capture"
    too_much = client.post(url, json={"amount": 10_001})
    assert too_much.status_code == 422
    first = client.post(url, json={"amount": 10_000})
    assert first.status_code == 200
    assert first.json()["status"] == "captured"
    second = client.post(url, json={"amount": 10_000})
    assert second.status_code == 200
    assert second.json() == first.json()
    [record] = admin_auths(client, body["reference"])
    assert record["status"] == "captured"
    assert record["capture_count"] == 1
    assert record["captured_amount"] == 10_000
    void = client.post(f"/acquirer/authorisations/{body['id']}/void")
    assert void.status_code == 409
    assert error_code(void) == "not_voidable"


def test_partial_capture(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242", amount=10_000).json()
    resp = client.post(f"/acquirer/authorisations/{body['id']}/capture", json={"amount": 4_000})
    assert resp.status_code == 200
    assert admin_auths(client, body["reference"])[0]["captured_amount"] == 4_000


def test_void(client: httpx.Client) -> None:
    body = authorise(client, "4242424242424242").json()
    url = f"/acquirer/authorisations/{body['id']}/void"
    first = client.post(url)
    assert first.status_code == 200
    assert first.json()["status"] == "voided"
    second = client.post(url)
    assert second.status_code == 200
    assert second.json()["status"] == "voided"
    capture = client.post(f"/acquirer/authorisations/{body['id']}/capture", json={"amount": 1})
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    [record] = admin_auths(client, body["reference"])
    assert record["status"] == "voided"
    assert record["capture_count"] == 0


def test_void_pending_3ds(client: httpx.Client) -> None:
    body = authorise(client, "4000000000003220").json()
    resp = client.post(f"/acquirer/authorisations/{body['id']}/void")
    assert resp.status_code == 200
    assert resp.json()["status"] == "voided"


# --------------------------------------------------------------------------- issuer


def test_seeded_cards(client: httpx.Client) -> None:
    rich = card_view(client, "7840000000000017")
    assert rich["last4"] == "0017"
    assert rich["blocked"] is False
    assert rich["balance"] >= 0
    assert card_view(client, "7840000000000025")["last4"] == "0025"
    assert card_view(client, "7840000000000033")["blocked"] is True
    assert client.get("/issuer/_admin/cards/7849999999999999").status_code == 404


def test_seeded_rich_card_can_hold(client: httpx.Client) -> None:
    resp = hold(client, "7840000000000017", "1234", 100_000)
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"].startswith("hold_")
    assert body["status"] == "held"
    assert body["last4"] == "0017"
    # Release it so the shared seeded card is not drained by this test.
    assert client.post(f"/issuer/holds/{body['id']}/void").status_code == 200


def test_hold_idempotency_key_required(client: httpx.Client) -> None:
    resp = client.post(
        "/issuer/holds",
        json={"card_number": "7840000000000017", "pin": "1234", "amount": 1, "reference": "r"},
    )
    assert resp.status_code == 400
    assert error_code(resp) == "idempotency_key_required"


def test_insufficient_funds_on_0025(client: httpx.Client) -> None:
    resp = hold(client, "7840000000000025", "1234", 5_001)
    assert resp.status_code == 402
    assert error_code(resp) == "insufficient_funds"


def test_blocked_0033(client: httpx.Client) -> None:
    resp = hold(client, "7840000000000033", "1234", 100)
    assert resp.status_code == 402
    assert error_code(resp) == "card_blocked"


def test_unknown_edirham_card(client: httpx.Client) -> None:
    resp = hold(client, "7849999999999999", "1234", 100)
    assert resp.status_code == 402
    assert error_code(resp) == "card_declined"


def test_available_balance_counts_open_holds(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=10_000)
    assert hold(client, card, "4321", 7_000).status_code == 201
    assert card_view(client, card)["available"] == 3_000
    resp = hold(client, card, "4321", 3_001)
    assert resp.status_code == 402
    assert error_code(resp) == "insufficient_funds"
    assert hold(client, card, "4321", 3_000).status_code == 201


def test_pin_lockout(client: httpx.Client) -> None:
    card = new_edirham_card(client, pin="4321")
    first_key = uid()
    first = hold(client, card, "0000", 100, key=first_key)
    assert first.status_code == 402
    assert error_code(first) == "invalid_pin"
    # A replay of the same request is the same outcome and is not counted again.
    replay = hold(client, card, "0000", 100, key=first_key)
    assert replay.json() == first.json()
    assert card_view(client, card)["wrong_pin_count"] == 1
    second = hold(client, card, "0000", 100)
    assert error_code(second) == "invalid_pin"
    assert card_view(client, card)["wrong_pin_count"] == 2
    third = hold(client, card, "0000", 100)
    assert third.status_code == 402
    assert error_code(third) == "pin_locked"
    view = card_view(client, card)
    assert view["locked"] is True
    # Locked now: even the right PIN is refused.
    right = hold(client, card, "4321", 100)
    assert error_code(right) == "pin_locked"
    # The admin endpoint resets the card.
    new_card = client.post(
        "/issuer/_admin/cards",
        json={"card_number": card, "pin": "4321", "balance": 100_000, "blocked": False},
    ).json()
    assert new_card["locked"] is False
    assert new_card["wrong_pin_count"] == 0
    assert hold(client, card, "4321", 100).status_code == 201


def test_correct_pin_resets_wrong_count(client: httpx.Client) -> None:
    card = new_edirham_card(client, pin="4321")
    for _ in range(2):
        assert error_code(hold(client, card, "1111", 100)) == "invalid_pin"
    assert hold(client, card, "4321", 100).status_code == 201
    assert card_view(client, card)["wrong_pin_count"] == 0
    for _ in range(2):
        assert error_code(hold(client, card, "1111", 100)) == "invalid_pin"
    assert card_view(client, card)["locked"] is False


def test_hold_replay_creates_one_hold(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    key = uid()
    reference = f"pay_{uid()}"
    first = hold(client, card, "4321", 20_000, key=key, reference=reference)
    second = hold(client, card, "4321", 20_000, key=key, reference=reference)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    items = client.get("/issuer/_admin/holds", params={"reference": reference}).json()["items"]
    assert len(items) == 1
    assert card_view(client, card)["available"] == 30_000


def test_hold_capture_debits_once(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    reference = f"pay_{uid()}"
    body = hold(client, card, "4321", 12_000, reference=reference).json()
    assert card_view(client, card)["balance"] == 50_000
    url = f"/issuer/holds/{body['id']}/capture"
    first = client.post(url)
    assert first.status_code == 200
    assert first.json()["status"] == "captured"
    second = client.post(url)
    assert second.status_code == 200
    assert second.json() == first.json()
    view = card_view(client, card)
    assert view["balance"] == 38_000
    assert view["available"] == 38_000
    resp = client.get("/issuer/_admin/holds", params={"reference": reference})
    [item] = resp.json()["items"]
    assert item["status"] == "captured"
    assert item["capture_count"] == 1
    assert_no_secrets(resp.json(), card, "4321")
    void = client.post(f"/issuer/holds/{body['id']}/void")
    assert void.status_code == 409
    assert error_code(void) == "not_voidable"


def test_seeded_card_capture_debits_once(client: httpx.Client) -> None:
    before = card_view(client, "7840000000000017")["balance"]
    body = hold(client, "7840000000000017", "1234", 1_000).json()
    for _ in range(2):
        assert client.post(f"/issuer/holds/{body['id']}/capture").status_code == 200
    assert card_view(client, "7840000000000017")["balance"] == before - 1_000


def test_hold_void(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    body = hold(client, card, "4321", 12_000).json()
    assert card_view(client, card)["available"] == 38_000
    url = f"/issuer/holds/{body['id']}/void"
    first = client.post(url)
    assert first.status_code == 200
    assert first.json()["status"] == "voided"
    assert client.post(url).status_code == 200
    view = card_view(client, card)
    assert view["available"] == view["balance"] == 50_000
    capture = client.post(f"/issuer/holds/{body['id']}/capture")
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    assert client.post("/issuer/holds/hold_nope/void").status_code == 404


def test_admin_created_blocked_card(client: httpx.Client) -> None:
    card = new_edirham_card(client, blocked=True)
    assert error_code(hold(client, card, "4321", 100)) == "card_blocked"


# --------------------------------------------------------------------------- departments


def test_department_confirms(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    resp = confirm(client, "rta", f"REF-{uid()}", payment_id)
    assert resp.status_code == 201
    body = resp.json()
    assert body["status"] == "confirmed"
    assert body["payment_id"] == payment_id
    assert body["confirmation_reference"].startswith("RTA-C-")
    suffix = body["confirmation_reference"].removeprefix("RTA-C-")
    assert len(suffix) == 8
    assert suffix == suffix.upper()
    int(suffix, 16)
    again = confirm(client, "rta", body["reference"], payment_id)
    assert again.status_code == 200
    assert again.json()["confirmation_reference"] == body["confirmation_reference"]
    [record] = dept_records(client, "rta", payment_id)
    assert record["status"] == "confirmed"
    assert record["attempts"] == 2
    assert set(record) == {
        "payment_id",
        "reference",
        "status",
        "confirmation_reference",
        "attempts",
        "created_at",
    }


def test_department_reject(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    resp = confirm(client, "DED", f"REJECT-{uid()}", payment_id)
    assert resp.status_code == 422
    assert error_code(resp) == "department_rejected"
    assert resp.json()["error"]["message"]
    [record] = dept_records(client, "DED", payment_id)
    assert record["status"] == "rejected"
    assert record["attempts"] == 1
    assert record["confirmation_reference"] is None


def test_department_flaky(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    reference = f"FLAKY-{uid()}"
    for _ in range(3):
        resp = confirm(client, "DEWA", reference, payment_id)
        assert resp.status_code == 503
        assert error_code(resp) == "unavailable"
    resp = confirm(client, "DEWA", reference, payment_id)
    assert resp.status_code == 201
    assert resp.json()["confirmation_reference"].startswith("DEWA-C-")
    [record] = dept_records(client, "DEWA", payment_id)
    assert record["attempts"] == 4
    assert record["status"] == "confirmed"


def test_department_slow(client: httpx.Client) -> None:
    started = time.monotonic()
    resp = confirm(client, "DM", f"SLOW-{uid()}")
    elapsed = time.monotonic() - started
    assert resp.status_code == 201
    assert elapsed >= SLOW_SECONDS * 0.9


def test_department_down_and_up(client: httpx.Client) -> None:
    dept = f"D{uid()[:6].upper()}"
    assert client.get(f"/departments/{dept}/_admin/status").json() == {
        "department": dept,
        "down_mode": "down",
    }
    payment_id = f"pay_{uid()}"
    reference = f"DOWN-{uid()}"
    resp = confirm(client, dept, reference, payment_id)
    assert resp.status_code == 503
    assert error_code(resp) == "unavailable"
    # Ordinary references are unaffected by down-mode.
    assert confirm(client, dept, f"REF-{uid()}").status_code == 201

    assert client.post(f"/departments/{dept}/_admin/up").status_code == 200
    assert client.get(f"/departments/{dept}/_admin/status").json()["down_mode"] == "up"
    resp = confirm(client, dept, reference, payment_id)
    assert resp.status_code == 201
    # Another department is still down.
    assert confirm(client, "OTHER", f"DOWN-{uid()}").status_code == 503

    assert client.post(f"/departments/{dept}/_admin/down").status_code == 200
    assert client.get(f"/departments/{dept}/_admin/status").json()["down_mode"] == "down"
    assert confirm(client, dept, f"DOWN-{uid()}").status_code == 503
    # The confirmed one stays confirmed.
    assert confirm(client, dept, reference, payment_id).status_code == 200
    [record] = dept_records(client, dept, payment_id)
    assert record["attempts"] == 3


def test_department_revoke(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    assert confirm(client, "RTA", f"REF-{uid()}", payment_id).status_code == 201
    first = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert first.status_code == 200
    assert first.json()["status"] == "revoked"
    second = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert second.status_code == 200
    assert second.json()["status"] == "revoked"
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_revoke_before_the_confirmation_refuses_it(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    early = client.delete(f"/departments/RTA/confirmations/{payment_id}")
    assert early.status_code == 200 and early.json()["status"] == "revoked"
    late = confirm(client, "RTA", f"REF-{uid()}", payment_id)
    assert late.status_code == 409 and error_code(late) == "revoked"


def test_revoke_overtakes_a_slow_confirmation_in_flight(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(confirm, client, "RTA", f"SLOW-{uid()}", payment_id)
        time.sleep(SLOW_SECONDS / 3)
        assert client.delete(f"/departments/RTA/confirmations/{payment_id}").status_code == 200
        assert in_flight.result().status_code == 409
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_revoking_a_rejected_payment_keeps_it_refused(client: httpx.Client) -> None:
    payment_id = f"pay_{uid()}"
    assert confirm(client, "RTA", f"REJECT-{uid()}", payment_id).status_code == 422
    assert client.delete(f"/departments/RTA/confirmations/{payment_id}").status_code == 200
    assert dept_records(client, "RTA", payment_id)[0]["status"] == "revoked"


def test_department_listing_without_filter(client: httpx.Client) -> None:
    dept = f"L{uid()[:6].upper()}"
    confirm(client, dept, f"REF-{uid()}")
    confirm(client, dept, f"REF-{uid()}")
    resp = client.get(f"/departments/{dept}/_admin/confirmations")
    assert resp.status_code == 200
    assert len(resp.json()["items"]) == 2


# --------------------------------------------------------------------------- secrets


def test_no_secrets_in_admin_listings_or_logs(server: dict[str, Any], client: httpx.Client) -> None:
    pans = [
        "4242424242424242",
        "4000000000000002",
        "4000000000003220",
        "4000000000000119",
    ]
    for pan in pans:
        authorise(client, pan)
    card = new_edirham_card(client, pin="8642")
    hold(client, card, "8642", 100)
    hold(client, card, "9999", 100)
    card_view(client, card)

    auths = client.get("/acquirer/_admin/authorisations").json()
    holds = client.get("/issuer/_admin/holds").json()
    assert auths["items"] and holds["items"]
    for payload in (auths, holds):
        assert_no_secrets(payload, *pans, card, CVV, "8642", "9999", "1234")

    time.sleep(0.2)  # let the access log lines reach the file
    log = server["log"].read_text()
    assert "INFO" in log
    for secret in (*pans, card, "7840000000000017"):
        assert secret not in log


# --------------------------------------------------------------------------- reversals


def test_reversal_voids_an_authorisation_whose_answer_was_lost(
    server: dict[str, Any], client: httpx.Client
) -> None:
    key, reference = uid(), f"pay_{uid()}"
    body = card_body("4000000000000259", reference=reference)
    with (
        httpx.Client(base_url=server["base_url"], timeout=1.0) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/acquirer/authorisations", json=body, headers={"Idempotency-Key": key})
    reversal = client.post("/acquirer/reversals", json={"idempotency_key": key})
    assert reversal.status_code == 200 and reversal.json()["id"]
    assert [r["status"] for r in admin_auths(client, reference)] == ["voided"]


def test_a_request_arriving_after_its_reversal_is_refused(client: httpx.Client) -> None:
    key = uid()
    assert client.post("/acquirer/reversals", json={"idempotency_key": key}).status_code == 200
    late = authorise(client, "4242424242424242", key=key)
    assert late.status_code == 402 and error_code(late) == "reversed"


def test_a_captured_authorisation_cannot_be_reversed(client: httpx.Client) -> None:
    key = uid()
    auth = authorise(client, "4242424242424242", key=key).json()
    client.post(f"/acquirer/authorisations/{auth['id']}/capture", json={"amount": 1})
    refused = client.post("/acquirer/reversals", json={"idempotency_key": key})
    assert refused.status_code == 409 and error_code(refused) == "not_voidable"


def test_reversal_voids_an_e_dirham_hold_and_frees_the_balance(client: httpx.Client) -> None:
    number, key, reference = new_edirham_card(client, balance=10_000), uid(), f"pay_{uid()}"
    assert hold(client, number, "4321", 10_000, key=key, reference=reference).status_code == 201
    assert client.post("/issuer/reversals", json={"idempotency_key": key}).status_code == 200
    holds = client.get("/issuer/_admin/holds", params={"reference": reference}).json()["items"]
    assert [h["status"] for h in holds] == ["voided"]
    assert client.get(f"/issuer/_admin/cards/{number}").json()["available"] == 10_000
    late = hold(client, number, "4321", 10_000, key=uid())
    assert late.status_code == 201  # the balance is free again
