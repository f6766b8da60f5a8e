"""The payer surface's limits and the hosted page's second try, on the real stack.

The payer calls are driven in-process (``api.payer.submit_method``, what both the token API
and the hosted page call) with a context of the stack's own database, Temporal and secrets,
so that each test can set the limits it checks; the workflows, the sandbox and the records
are the stack's. The hosted page's HTTP side is tested in tests/test_hosted_page.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from api import abuse, payer, schemas
from api.context import Context
from api.errors import ApiError
from domain.cards import luhn_ok
from domain.models import MAX_METHODS
from epay import store
from epay.db import create_pool
from epay.temporal import connect
from tests.conftest import Stack, card, e_dirham

PAGE = "page-session-"  # a hosted-page caller: a declined method leaves the payment open


METHOD = TypeAdapter(schemas.PaymentMethodBody)


def _method(body: dict[str, Any]) -> schemas.CardMethod | schemas.EDirhamMethod:
    return METHOD.validate_python(body)


def _luhn_number(prefix: str, length: int = 16) -> str:
    body = prefix + str(uuid.uuid4().int)[: length - len(prefix) - 1]
    return body + next(d for d in "0123456789" if luhn_ok(body + d))


def _fresh_e_dirham_card(stack: Stack) -> str:
    number = _luhn_number("784")
    response = httpx.post(
        f"{stack.sandbox_url}/issuer/_admin/cards",
        json={"card_number": number, "pin": "4321", "balance": 1000000, "blocked": False},
    )
    response.raise_for_status()
    return number


def _run(stack: Stack, work: Callable[[Context], Awaitable[Any]], **limits: int) -> Any:
    """``work`` with a payer context on the stack, its limits set as given."""

    async def go() -> Any:
        settings = stack.settings()
        settings = settings.model_copy(update={f"payer_{k}": v for k, v in limits.items()})
        pool = await create_pool(stack.env["DATABASE_URL"], max_size=4)
        try:
            ctx = Context(settings=settings, pool=pool, temporal=await connect(settings))
            return await work(ctx)
        finally:
            await pool.close()

    return asyncio.run(go())


async def _submit(
    ctx: Context, payment_id: str, body: dict[str, Any], caller: payer.Caller
) -> dict[str, Any]:
    row = await store.get_payment_any_department(ctx.pool, payment_id)
    assert row is not None
    row, _ = await payer.submit_method(ctx, row, _method(body), caller)
    return dict(row)


def test_on_the_page_a_declined_card_leaves_the_payment_open_and_a_good_one_pays(
    stack: Stack,
) -> None:
    payment = stack.created()
    caller = payer.Caller(client="198.51.100.7", session=PAGE + uuid.uuid4().hex)

    async def work(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
        declined = await _submit(ctx, payment["id"], card("4000000000000002"), caller)
        paid = await _submit(ctx, payment["id"], card("4242424242424242"), caller)
        return declined, paid

    declined, _ = _run(stack, work)
    assert declined["state"] == "reserved" and declined["declines"] == 1
    assert declined["last_decline"] == "card_declined" and declined["method_last4"] is None
    done = stack.wait_for(payment["id"])
    assert done["state"] == "succeeded", done
    assert done["method"]["type"] == "card" and done["method"]["last4"] == "4242", done
    events = [
        r["event"]
        for r in stack.fetch(
            "SELECT event FROM payment_events WHERE payment_id = $1", payment["id"]
        )
    ]
    assert events.count("method_submitted") == 2 and events.count("method_declined") == 1
    outcomes = stack.fetch(
        "SELECT attempt, outcome FROM payer_attempts WHERE payment_id = $1 ORDER BY attempt",
        payment["id"],
    )
    assert outcomes == [
        {"attempt": 1, "outcome": "card_declined"},
        {"attempt": 2, "outcome": "authorised"},
    ]
    # Nothing of the declined card is kept.
    assert not stack.fetch("SELECT 1 FROM card_vault WHERE payment_id = $1", payment["id"])


def test_on_the_page_a_wrong_pin_can_be_typed_again(stack: Stack) -> None:
    number = _fresh_e_dirham_card(stack)
    payment = stack.created()
    caller = payer.Caller(client="198.51.100.8", session=PAGE + uuid.uuid4().hex)

    async def work(ctx: Context) -> dict[str, Any]:
        await _submit(ctx, payment["id"], e_dirham(number, "0000"), caller)
        return await _submit(ctx, payment["id"], e_dirham(number, "4321"), caller)

    _run(stack, work)
    assert stack.wait_for(payment["id"])["state"] == "succeeded"
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    assert issuer_card["locked"] is False and issuer_card["wrong_pin_count"] == 0


def test_the_page_takes_at_most_max_methods_then_the_payment_fails(stack: Stack) -> None:
    payment = stack.created()
    caller = payer.Caller(client="198.51.100.9", session=PAGE + uuid.uuid4().hex)

    async def work(ctx: Context) -> list[dict[str, Any]]:
        return [
            await _submit(ctx, payment["id"], card("4000000000000002"), caller)
            for _ in range(MAX_METHODS)
        ]

    rows = _run(stack, work)
    assert [r["declines"] for r in rows[:-1]] == list(range(1, MAX_METHODS))
    ended = stack.wait_for(payment["id"])
    assert ended["state"] == "failed" and ended["failure"]["code"] == "card_declined"


def test_on_the_token_api_a_decline_stays_final(stack: Stack) -> None:
    payment = stack.created()

    async def work(ctx: Context) -> dict[str, Any]:
        return await _submit(
            ctx, payment["id"], card("4000000000000002"), payer.Caller(client="198.51.100.10")
        )

    _run(stack, work)
    ended = stack.wait_for(payment["id"])
    assert ended["state"] == "failed" and ended["failure"]["code"] == "card_declined"


def test_a_card_testing_run_from_one_client_is_stopped(stack: Stack) -> None:
    """Many unknown cards against many payments from one client address: after the limit's
    worth of declined cards, the next is refused with 429 and Retry-After before any call
    to the acquirer; another client is not affected."""
    client = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    limit = 4
    payments = [stack.created() for _ in range(limit + 2)]
    cards = [_luhn_number("4000") for _ in payments]

    async def work(ctx: Context) -> list[Any]:
        answers: list[Any] = []
        for payment, number in zip(payments, cards, strict=True):
            try:
                row = await _submit(ctx, payment["id"], card(number), payer.Caller(client=client))
                answers.append(row["state"])
            except ApiError as refused:
                answers.append((refused.status, refused.code, refused.headers))
        other = await _submit(
            ctx, payments[-1]["id"], card("4242424242424242"), payer.Caller(client="192.0.2.1")
        )
        answers.append(other["state"])
        return answers

    answers = _run(stack, work, client_cards=limit)
    assert answers[:limit] == ["failed"] * limit, answers
    for refused in answers[limit : limit + 2]:
        status, code, headers = refused
        assert (status, code) == (429, "too_many_attempts")
        assert 0 < int(headers["Retry-After"]) <= 600
    assert answers[-1] != "reserved"  # the other client's card went on to authorise
    assert stack.wait_for(payments[-1]["id"])["state"] == "succeeded"
    # The limit keeps keyed hashes of the cards, never a number.
    stored = stack.fetch("SELECT card_key FROM payer_attempts WHERE client = $1", client)
    assert len(stored) == limit and all(len(r["card_key"]) == 32 for r in stored)
    assert not any(n.encode() in bytes(r["card_key"]) for r in stored for n in cards)


def test_a_pin_guessing_run_does_not_lock_the_residents_card(stack: Stack) -> None:
    """A stranger who knows an e-Dirham card's number guesses PINs across payments, from
    new sessions and addresses each time: ePay stops asking the issuer before its third
    wrong PIN, so the card is not locked."""
    number = _fresh_e_dirham_card(stack)
    payments = [stack.created() for _ in range(4)]

    async def work(ctx: Context) -> list[Any]:
        answers: list[Any] = []
        for n, payment in enumerate(payments):
            caller = payer.Caller(client=f"198.18.0.{n + 1}", session=PAGE + uuid.uuid4().hex)
            try:
                row = await _submit(ctx, payment["id"], e_dirham(number, f"{n:04d}"), caller)
                answers.append(row["last_decline"])
            except ApiError as refused:
                answers.append(refused.code)
        return answers

    answers = _run(stack, work, wrong_pins=2)
    assert answers == ["invalid_pin", "invalid_pin", "too_many_attempts", "too_many_attempts"]
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    assert issuer_card["locked"] is False and issuer_card["wrong_pin_count"] == 2


def test_limits_default_on_in_production_and_off_on_the_local_stack(stack: Stack) -> None:
    local = abuse.Limits.of(stack.settings())
    assert (local.wrong_pins, local.card_failures, local.client_cards) == (0, 0, 0)
    settings = stack.settings().model_copy(update={"env": "production"})
    production = abuse.Limits.of(settings)
    assert (production.wrong_pins, production.card_failures, production.client_cards) == (
        2,
        5,
        10,
    )


@pytest.mark.parametrize("number", ["4242424242424242", "7840000000000017"])
def test_card_keys_are_keyed_hashes(number: str) -> None:
    one, other = b"k" * 32, b"j" * 32
    assert abuse.card_key(one, number) == abuse.card_key(one, number)
    assert abuse.card_key(one, number) != abuse.card_key(other, number)
    assert number.encode() not in abuse.card_key(one, number)
