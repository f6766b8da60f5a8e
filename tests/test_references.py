"""References that differ only in case or spaces are one invoice: the rule
(``domain.references.reference_key``) and what the API does with it."""

from __future__ import annotations

import random
import re
import string

import pytest

from api.schemas import REFERENCE_PATTERN
from domain.references import reference_key
from tests.conftest import Stack, e_dirham, new_reference

# --- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("INV-1", "inv-1"),
        ("INV-1", "Inv-1"),
        ("INV-1", "INV-1 "),
        ("INV-1", " INV-1 "),
        ("INV 1", "INV1"),
        ("inv 1 ", "INV1"),
        ("FINE 2024 / 77", "fine2024/77"),
        ("INV-1", "ＩＮＶ－１"),  # noqa: RUF001 full-width forms: NFKC makes them ASCII
        ("INV 1", "INV\u00a01"),  # a no-break space is a space
        ("INV 1", "INV\t1\n"),  # so is any other whitespace
    ],
)
def test_references_that_differ_only_in_case_or_spaces_share_a_key(a: str, b: str) -> None:
    assert reference_key(a) == reference_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("INV-1", "INV1"),  # punctuation is part of the reference
        ("INV-1", "INV_1"),
        ("INV/1", "INV-1"),
        ("INV-1", "INV-10"),
        ("INV-0", "INV-O"),
        ("A.1", "A:1"),
    ],
)
def test_references_that_differ_otherwise_do_not(a: str, b: str) -> None:
    assert reference_key(a) != reference_key(b)


def test_the_key_is_upper_case_without_spaces() -> None:
    assert reference_key("inv 2024-001 /a") == "INV2024-001/A"


ALPHABET = string.ascii_letters + string.digits + " ._/:#-"


def _accepted_references(count: int) -> list[str]:
    rng = random.Random(20240601)
    found: list[str] = []
    while len(found) < count:
        candidate = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 64)))
        if re.fullmatch(REFERENCE_PATTERN, candidate):
            found.append(candidate)
    return found


def test_on_accepted_references_the_key_drops_spaces_and_upper_cases() -> None:
    """What migration 002 relies on: its SQL rule agrees with this one on these."""
    for reference in _accepted_references(500):
        key = reference_key(reference)
        assert key == reference.replace(" ", "").upper(), reference
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9._/:#-]*", key), reference
        assert reference_key(key) == key


# --- through the API -----------------------------------------------------------------------


def test_a_variant_of_a_live_reference_is_in_progress(stack: Stack) -> None:
    reference = new_reference("INV-")
    first = stack.created(reference=reference)
    for variant in (reference.lower(), reference + "  ", reference.swapcase() + " "):
        refused = stack.create(reference=variant)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "reference_in_progress"
    assert first["reference"] == reference
    same_invoice = "upper(replace(reference, ' ', '')) = $1"
    assert stack.fetch(f"SELECT id FROM payments WHERE {same_invoice}", reference.upper()) == [
        {"id": first["id"]}
    ]


def test_spaces_inside_a_reference_do_not_make_another_invoice(stack: Stack) -> None:
    number = new_reference("")
    first = stack.created(reference=f"FINE {number}")
    refused = stack.create(reference=f"fine{number}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "reference_in_progress"
    assert first["reference"] == f"FINE {number}"  # kept as the department sent it


def test_a_variant_of_a_paid_reference_is_already_paid(stack: Stack) -> None:
    reference = new_reference("INV-")
    paid = stack.pay(e_dirham("7840000000000017"), reference=reference)
    assert paid["state"] == "succeeded", paid
    refused = stack.create(reference=reference.lower() + " ")
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "reference_already_paid"


def test_the_list_filter_finds_a_payment_by_any_variant_of_its_reference(stack: Stack) -> None:
    reference = new_reference("Inv ")
    payment = stack.created(reference=reference)
    with stack.client() as c:
        for variant in (reference, reference.upper(), reference.lower().replace(" ", "") + " "):
            listed = c.get("/v1/payments", params={"reference": variant})
            assert listed.status_code == 200, listed.text
            items = listed.json()["items"]
            assert [(p["id"], p["reference"]) for p in items] == [(payment["id"], reference)]


def test_a_reference_may_not_start_with_a_space(stack: Stack) -> None:
    refused = stack.create(reference=" " + new_reference("INV-"))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "reference"
