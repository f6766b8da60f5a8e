"""A card number hidden in the department's text is refused wherever that text goes.

``domain.cards.holds_card_number`` reads any Luhn-valid run of 13 to 19 digits as a card,
whatever parts its groups (spaces, dashes, ``.``, ``/``, ``:``, ``_``, no-break and other
Unicode spaces). Every free-text field of a create is checked with it, the payer's name,
e-mail and phone and the return URL as much as the description, reference and metadata: a
create carrying one is 422 ``card_number_in_text``, names the field, never repeats the
number, and writes nothing (in-process, tests/support/app.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import new_reference
from tests.support.app import InProcessApi, in_process_api


@pytest.fixture(scope="module")
def api() -> Iterator[InProcessApi]:
    with in_process_api() as in_process:
        yield in_process


def fine(**fields: Any) -> dict[str, Any]:
    """A valid body for the variable-fee parking fine, with ``fields`` replaced."""
    body: dict[str, Any] = {
        "service_code": "PARKING_FINE",
        "reference": new_reference("FINE-"),
        "amount": 15000,
    }
    body.update(fields)
    return body


def assert_refused(response: httpx.Response, field: str) -> None:
    """422 problem+json naming ``field`` as holding a card number, and nothing else."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "validation_failed", body
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, "card_number_in_text")], (
        body
    )
    assert "Traceback" not in response.text


DOTTED = "4242.4242.4242.4242"
SLASHED = "4000/0000/0000/0002"
NBSP = "\u00a0".join(["4242"] * 4)
NARROW_NBSP = "\u202f".join(["5555", "5555", "5555", "4444"])

HIDDEN = [
    pytest.param({"payer": {"name": "4242424242424242"}}, "payer.name", id="payer-name"),
    pytest.param({"payer": {"name": f"Ali {DOTTED}"}}, "payer.name", id="payer-name-dotted"),
    pytest.param({"payer": {"name": f"Ali{NBSP}"}}, "payer.name", id="payer-name-nbsp"),
    pytest.param(
        {"payer": {"email": f"{DOTTED}@example.ae"}}, "payer.email", id="payer-email-dotted"
    ),
    pytest.param({"payer": {"phone": "4242 4242 4242 4242"}}, "payer.phone", id="payer-phone"),
    pytest.param({"description": f"Paid by {DOTTED}"}, "description", id="description-dotted"),
    pytest.param({"description": f"card {SLASHED}"}, "description", id="description-slashed"),
    pytest.param({"description": "4242:4242:4242:4242"}, "description", id="description-colons"),
    pytest.param(
        {"description": f"card {NARROW_NBSP}"}, "description", id="description-narrow-nbsp"
    ),
    pytest.param(
        {"description": "\u2009".join(["3782", "822463", "10005"])},
        "description",
        id="description-thin-space-amex",
    ),
    pytest.param({"reference": "INV_4242_4242_4242_4242"}, "reference", id="reference-underscore"),
    pytest.param({"reference": "INV/4242/4242/4242/4242"}, "reference", id="reference-slashed"),
    pytest.param({"metadata": {"note": f"x{NBSP}"}}, "metadata.note", id="metadata-nbsp"),
    pytest.param(
        {"return_url": f"https://dm.example.ae/back?card={DOTTED}"},
        "return_url",
        id="return-url",
    ),
]


@pytest.mark.parametrize(("fields", "field"), HIDDEN)
def test_a_hidden_card_number_in_a_create_is_422_and_nothing_written(
    api: InProcessApi, fields: dict[str, Any], field: str
) -> None:
    with api.nothing_changes(), api.client() as c:
        response = c.post("/v1/payments", json=fine(**fields))
    assert_refused(response, field)
    for number in (DOTTED, SLASHED, NBSP, NARROW_NBSP, "4242424242424242"):
        assert number not in response.text
        assert number[-4:] + '"' not in response.text


def test_a_hidden_card_number_in_a_refund_reason_is_422(api: InProcessApi) -> None:
    payment = api.created()
    with api.nothing_changes(), api.client() as c:
        response = c.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": 100, "reason": f"refund to {SLASHED}"},
        )
    assert_refused(response, "reason")


def test_a_hidden_card_number_in_a_cancel_reason_is_422(api: InProcessApi) -> None:
    payment = api.created()
    with api.nothing_changes(), api.client() as c:
        response = c.post(f"/v1/payments/{payment['id']}/cancel", json={"reason": NBSP})
    assert_refused(response, "reason")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"reference": "Fine 2024/7"}, id="fine-slash"),
        pytest.param({"reference": "INV 2026/07/0012"}, id="invoice-date"),
        pytest.param({"description": "Hearing 15.07.2026 at 10:30, room 4"}, id="date-time"),
        pytest.param(
            {"payer": {"name": "Fatima Al Mansoori", "phone": "+971 50 123 4567"}}, id="payer"
        ),
        pytest.param(
            {"payer": {"name": "J.\u00a0Smith", "email": "j.smith.2026@example.ae"}},
            id="payer-nbsp",
        ),
        pytest.param({"return_url": "https://dm.example.ae/2026/07/15/back?r=12:30"}, id="url"),
    ],
)
def test_text_with_slashes_dots_and_spaces_but_no_card_number_passes(
    api: InProcessApi, fields: dict[str, Any]
) -> None:
    if "reference" in fields:
        fields = {**fields, "reference": f"{fields['reference']}-X{uuid.uuid4().hex[:6]}"}
    with api.client() as c:
        response = c.post("/v1/payments", json=fine(**fields))
    assert response.status_code == 201, response.text
