"""The sandbox e-Dirham issuer over real HTTP, against `python -m sandbox`."""

from __future__ import annotations

import time

import httpx
import pytest

from tests import sandbox_support
from tests.sandbox_support import (
    Sandbox,
    admin_holds,
    assert_no_secrets,
    call,
    card_view,
    error_code,
    hold,
    new_edirham_card,
    retry_while_in_flight,
    slow_captures,
    switched_down,
    uid,
)

server, client = sandbox_support.server, sandbox_support.client


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
    assert call(client, f"/issuer/holds/{body['id']}/void").status_code == 200


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
    assert len(admin_holds(client, reference)) == 1
    assert card_view(client, card)["available"] == 30_000


def test_hold_capture_debits_once(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    reference = f"pay_{uid()}"
    body = hold(client, card, "4321", 12_000, reference=reference).json()
    assert card_view(client, card)["balance"] == 50_000
    url = f"/issuer/holds/{body['id']}/capture"
    first = call(client, url)
    assert first.status_code == 200
    assert first.json()["status"] == "captured"
    second = call(client, url)
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
    void = call(client, f"/issuer/holds/{body['id']}/void")
    assert void.status_code == 409
    assert error_code(void) == "not_voidable"


def test_seeded_card_capture_debits_once(client: httpx.Client) -> None:
    before = card_view(client, "7840000000000017")["balance"]
    body = hold(client, "7840000000000017", "1234", 1_000).json()
    for _ in range(2):
        assert call(client, f"/issuer/holds/{body['id']}/capture").status_code == 200
    assert card_view(client, "7840000000000017")["balance"] == before - 1_000


def test_hold_void(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    body = hold(client, card, "4321", 12_000).json()
    assert card_view(client, card)["available"] == 38_000
    url = f"/issuer/holds/{body['id']}/void"
    first = call(client, url)
    assert first.status_code == 200
    assert first.json()["status"] == "voided"
    assert call(client, url).status_code == 200
    view = card_view(client, card)
    assert view["available"] == view["balance"] == 50_000
    capture = call(client, f"/issuer/holds/{body['id']}/capture")
    assert capture.status_code == 409
    assert error_code(capture) == "not_capturable"
    assert call(client, "/issuer/holds/hold_nope/void").status_code == 404


def test_admin_created_blocked_card(client: httpx.Client) -> None:
    card = new_edirham_card(client, blocked=True)
    assert error_code(hold(client, card, "4321", 100)) == "card_blocked"


@pytest.mark.parametrize("action", ["capture", "void"])
def test_idempotency_key_required_on_a_hold(client: httpx.Client, action: str) -> None:
    card = new_edirham_card(client, balance=10_000)
    reference = f"pay_{uid()}"
    body = hold(client, card, "4321", 1_000, reference=reference).json()
    resp = client.post(f"/issuer/holds/{body['id']}/{action}")
    assert resp.status_code == 400
    assert error_code(resp) == "idempotency_key_required"
    assert admin_holds(client, reference)[0]["status"] == "held"
    assert card_view(client, card)["balance"] == 10_000


def test_a_repeated_void_gets_the_stored_answer(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=10_000)
    body = hold(client, card, "4321", 1_000).json()
    key = uid()
    voided = call(client, f"/issuer/holds/{body['id']}/void", key=key)
    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    refused = call(client, f"/issuer/holds/{body['id']}/capture")
    assert refused.status_code == 409
    assert error_code(refused) == "not_capturable"
    assert call(client, f"/issuer/holds/{body['id']}/void", key=key).json() == voided.json()


def test_issuer_down_refuses_everything_and_changes_nothing(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=10_000)
    open_hold = hold(client, card, "4321", 1_000).json()
    key, reference = uid(), f"pay_{uid()}"
    with switched_down(client, "issuer"):
        assert client.get("/issuer/_admin/status").json() == {"system": "issuer", "mode": "down"}
        refused = [
            hold(client, card, "4321", 1_000, key=key, reference=reference),
            hold(client, card, "0000", 1_000),  # a wrong PIN is not even counted
            call(client, f"/issuer/holds/{open_hold['id']}/capture"),
            call(client, f"/issuer/holds/{open_hold['id']}/void"),
            client.post("/issuer/reversals", json={"idempotency_key": key}),
        ]
        for resp in refused:
            assert resp.status_code == 503
            assert error_code(resp) == "unavailable"
        assert admin_holds(client, reference) == []
        view = card_view(client, card)
        assert (view["balance"], view["available"], view["wrong_pin_count"]) == (10_000, 9_000, 0)
    assert client.get("/issuer/_admin/status").json()["mode"] == "up"
    assert hold(client, card, "4321", 1_000, key=key, reference=reference).status_code == 201
    assert call(client, f"/issuer/holds/{open_hold['id']}/capture").status_code == 200
    assert card_view(client, card)["balance"] == 9_000


def test_slow_capture_is_in_flight_then_answers_from_the_store(
    server: Sandbox, client: httpx.Client
) -> None:
    delay = 1.5
    card = new_edirham_card(client, balance=10_000)
    reference = f"pay_{uid()}"
    body = hold(client, card, "4321", 4_000, reference=reference).json()
    url = f"/issuer/holds/{body['id']}/capture"
    key = uid()
    with slow_captures(client, "issuer", delay):
        assert client.get("/issuer/_admin/behaviour").json() == {"capture_delay_seconds": delay}
        started = time.monotonic()
        with (
            server.client(timeout=0.5) as impatient,
            pytest.raises(httpx.TimeoutException),
        ):
            call(impatient, url, key=key)
        # Debited at once, although the caller has not heard so.
        assert card_view(client, card)["balance"] == 6_000
        refused, answer = retry_while_in_flight(client, url, None, key, delay * 3)
    assert refused >= 1
    assert time.monotonic() - started >= delay * 0.9
    assert answer.status_code == 200
    assert answer.json()["status"] == "captured"
    [record] = admin_holds(client, reference)
    assert record["capture_count"] == 1
    assert card_view(client, card)["balance"] == 6_000


# --------------------------------------------------------------------------- reversals


def test_reversal_voids_an_e_dirham_hold_and_frees_the_balance(client: httpx.Client) -> None:
    number, key, reference = new_edirham_card(client, balance=10_000), uid(), f"pay_{uid()}"
    assert hold(client, number, "4321", 10_000, key=key, reference=reference).status_code == 201
    assert client.post("/issuer/reversals", json={"idempotency_key": key}).status_code == 200
    assert [h["status"] for h in admin_holds(client, reference)] == ["voided"]
    assert client.get(f"/issuer/_admin/cards/{number}").json()["available"] == 10_000
    late = hold(client, number, "4321", 10_000, key=uid())
    assert late.status_code == 201  # the balance is free again


def test_refunds_credit_the_card_and_never_pass_the_hold(client: httpx.Client) -> None:
    card = new_edirham_card(client, balance=50_000)
    reference = f"pay_{uid()}"
    body = hold(client, card, "4321", 12_000, reference=reference).json()
    url = f"/issuer/holds/{body['id']}/refunds"
    early = call(client, url, {"amount": 1_000})
    assert early.status_code == 409
    assert error_code(early) == "not_refundable"
    assert call(client, f"/issuer/holds/{body['id']}/capture").status_code == 200
    assert card_view(client, card)["balance"] == 38_000
    key = uid()
    first = call(client, url, {"amount": 7_000}, key=key)
    assert first.status_code == 201, first.text
    assert call(client, url, {"amount": 7_000}, key=key).json() == first.json()
    assert card_view(client, card)["balance"] == 45_000
    too_much = call(client, url, {"amount": 5_001})
    assert too_much.status_code == 409
    assert error_code(too_much) == "refund_exceeds_captured"
    assert call(client, url, {"amount": 5_000}).status_code == 201
    view = card_view(client, card)
    assert view["balance"] == view["available"] == 50_000
    [item] = admin_holds(client, reference)
    assert (item["refund_count"], item["refunded_amount"]) == (2, 12_000)
    assert item["status"] == "captured"
