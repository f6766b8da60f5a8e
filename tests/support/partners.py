"""The sandbox partners as the tests look at them and switch them: the card acquirer's
authorisations, the e-Dirham issuer's holds and cards, the DM department's confirmations."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import httpx

from domain.cards import with_check_digit
from tests.conftest import Stack
from tests.support import BIN


def acquirer_records(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.sandbox(
        f"/acquirer/_admin/authorisations?reference={payment_id}"
    )["items"]
    return items


def acquirer_record(stack: Stack, payment_id: str) -> dict[str, Any]:
    """The payment's one authorisation at the acquirer."""
    [record] = stack.sandbox(f"/acquirer/_admin/authorisations?reference={payment_id}")["items"]
    return dict(record)


def issuer_holds(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.sandbox(f"/issuer/_admin/holds?reference={payment_id}")[
        "items"
    ]
    return items


def fresh_e_dirham_card(
    stack: Stack, *, pin: str = "4321", balance: int = 1_000_000, number: str = ""
) -> str:
    """A new e-Dirham card at the sandbox issuer (16 digits, Luhn-valid), so that a test's
    payments, wrong PINs and lockouts touch no shared card; or ``number`` again as new: the
    issuer's wrong-PIN count back to 0, as after a right PIN given elsewhere."""
    number = number or with_check_digit("784" + str(uuid.uuid4().int)[:12])
    response = httpx.post(
        f"{stack.sandbox_url}/issuer/_admin/cards",
        json={"card_number": number, "pin": pin, "balance": balance, "blocked": False},
        timeout=10,
    )
    response.raise_for_status()
    return number


def confirmations(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.sandbox(
        f"/departments/DM/_admin/confirmations?payment_id={payment_id}"
    )["items"]
    return items


def department(stack: Stack, switch: str) -> None:
    """The sandbox's DM department: ``up`` lets its DOWN- references through."""
    command = [str(BIN / "epay"), "sandbox", "department", switch, "DM"]
    subprocess.run(command, env=stack.env, check=True)
