"""The payer surface's limits and the hosted page's second try, on the real stack.

The payer calls are driven in-process (``api.payer.submit_method``, what both the token API
and the hosted page call) with a context of the stack's own database, Temporal and secrets,
so that each test can set the limits it checks; the workflows, the sandbox and the records
are the stack's. The hosted page's HTTP side is tested in tests/test_hosted_page.py; the
wrong-PIN limit's own message is checked here in Chromium, from another `epay api` with the
limit on, as is its clearance by `epay ops clear-pin-limit`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from pydantic import TypeAdapter

from api import abuse, payer, schemas
from api.context import Context
from api.errors import ApiError
from api.hosted.view import STRINGS
from domain.cards import with_check_digit
from domain.models import MAX_METHODS
from domain.states import PaymentState
from epay.db import create_pool
from epay.temporal import connect
from store.payments import get_payment_any_department
from tests.conftest import Stack, card, e_dirham, token_of
from tests.support import BIN, Process, free_port, http_ok, wait_until
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    PHONE,
    fill_e_dirham,
    switch_language,
    the_message,
)
from tests.support.partners import fresh_e_dirham_card

PAGE = "page-session-"  # a hosted-page caller: a declined method leaves the payment open


METHOD = TypeAdapter(schemas.PaymentMethodBody)


def _method(body: dict[str, Any]) -> schemas.CardMethod | schemas.EDirhamMethod:
    return METHOD.validate_python(body)


def _luhn_number(prefix: str, length: int = 16) -> str:
    return with_check_digit(prefix + str(uuid.uuid4().int)[: length - len(prefix) - 1])


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


@pytest.fixture(autouse=True)
def _page_answers_waited_for_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method the page lets the payer follow with another, once declined, leaves the
    payment ``reserved`` again, which ``payer.submit_method``'s wait for progress cannot
    tell from not yet answered: it waits its whole 10 s for each. The tests call it
    in-process, so they shorten that wait and wait in ``_submit`` for the answer itself."""
    monkeypatch.setattr(payer, "WAIT_FOR_PROGRESS_SECONDS", 0.5)


ANSWER_TIMEOUT = 30.0
"""How long ``_submit`` waits for a method's answer (declined, or gone on) in the records."""


async def _submit(
    ctx: Context, payment_id: str, body: dict[str, Any], caller: payer.Caller
) -> dict[str, Any]:
    """``payer.submit_method`` on the payment, and its row once the method is answered:
    declined (one decline more, the payment open for another method on the page) or gone
    on (authorised, challenged, failed)."""
    row = await get_payment_any_department(ctx.pool, payment_id)
    assert row is not None
    declines = row.declines
    row, moved_on = await payer.submit_method(ctx, row, _method(body), caller)
    deadline = asyncio.get_running_loop().time() + ANSWER_TIMEOUT
    while not moved_on and row.declines == declines:
        if asyncio.get_running_loop().time() > deadline:
            break  # unanswered: returned as it stands, for the test's assertions to say so
        await asyncio.sleep(0.1)
        found = await get_payment_any_department(ctx.pool, payment_id)
        assert found is not None
        row = found
        moved_on = row.state not in (PaymentState.RESERVED, PaymentState.AUTHORISING)
    return dataclasses.asdict(row)


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
    assert declined["state"] == "reserved"
    assert declined["declines"] == 1
    assert declined["last_decline"] == "card_declined"
    assert declined["method_last4"] is None
    done = stack.wait_for(payment["id"])
    assert done["state"] == "succeeded", done
    assert done["method"]["type"] == "card", done
    assert done["method"]["last4"] == "4242", done
    events = [
        r["event"]
        for r in stack.fetch(
            "SELECT event FROM payment_events WHERE payment_id = $1", payment["id"]
        )
    ]
    assert events.count("method_submitted") == 2
    assert events.count("method_declined") == 1
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
    number = fresh_e_dirham_card(stack)
    payment = stack.created()
    caller = payer.Caller(client="198.51.100.8", session=PAGE + uuid.uuid4().hex)

    async def work(ctx: Context) -> dict[str, Any]:
        await _submit(ctx, payment["id"], e_dirham(number, "0000"), caller)
        return await _submit(ctx, payment["id"], e_dirham(number, "4321"), caller)

    _run(stack, work)
    assert stack.wait_for(payment["id"])["state"] == "succeeded"
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    assert issuer_card["locked"] is False
    assert issuer_card["wrong_pin_count"] == 0


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
    assert ended["state"] == "failed"
    assert ended["failure"]["code"] == "card_declined"


def test_on_the_token_api_a_decline_stays_final(stack: Stack) -> None:
    payment = stack.created()

    async def work(ctx: Context) -> dict[str, Any]:
        return await _submit(
            ctx, payment["id"], card("4000000000000002"), payer.Caller(client="198.51.100.10")
        )

    _run(stack, work)
    ended = stack.wait_for(payment["id"])
    assert ended["state"] == "failed"
    assert ended["failure"]["code"] == "card_declined"


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
    assert len(stored) == limit
    assert all(len(r["card_key"]) == 32 for r in stored)
    assert not any(n.encode() in bytes(r["card_key"]) for r in stored for n in cards)


def test_a_pin_guessing_run_does_not_lock_the_residents_card(stack: Stack) -> None:
    """A stranger who knows an e-Dirham card's number guesses PINs across payments, from
    new sessions and addresses each time: ePay stops asking the issuer before its third
    wrong PIN, so the card is not locked."""
    number = fresh_e_dirham_card(stack)
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
    assert answers == [
        "invalid_pin",
        "invalid_pin",
        "pin_attempts_exceeded",
        "pin_attempts_exceeded",
    ]
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    assert issuer_card["locked"] is False
    assert issuer_card["wrong_pin_count"] == 2


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


def test_wrong_pins_count_until_the_card_pays_however_long_ago(stack: Stack) -> None:
    """The issuer locks a card at its third wrong PIN in a row, however far apart, and only a
    right PIN resets its count: ePay counts the same way. Every try below is moved a day and
    an hour into the past before the next one, so that no two fall within 24 hours."""
    number = fresh_e_dirham_card(stack)
    payments = [stack.created() for _ in range(5)]
    pins = ["0000", "4321", "0001", "0002", "0003"]  # wrong, right, wrong, wrong, (wrong)

    async def work(ctx: Context) -> list[Any]:
        key = abuse.card_key(ctx.settings.token_secret, number)
        answers: list[Any] = []
        for n, (payment, pin) in enumerate(zip(payments, pins, strict=True)):
            caller = payer.Caller(client=f"198.18.1.{n + 1}", session=PAGE + uuid.uuid4().hex)
            try:
                row = await _submit(ctx, payment["id"], e_dirham(number, pin), caller)
                answers.append(row["last_decline"] or row["state"])
            except ApiError as refused:
                answers.append((refused.status, refused.code, refused.headers))
            await ctx.pool.execute(
                """UPDATE payer_attempts SET created_at = created_at - interval '25 hours'
                   WHERE card_key = $1""",
                key,
            )
        return answers

    answers = _run(stack, work, wrong_pins=2)
    assert answers[0] == "invalid_pin", answers
    assert answers[1] != "reserved", answers  # the right PIN: authorised, the count reset
    assert answers[2:4] == ["invalid_pin", "invalid_pin"], answers
    assert isinstance(answers[4], tuple), answers  # refused, not sent to the issuer
    status, code, headers = answers[4]
    assert (status, code) == (429, "pin_attempts_exceeded")
    assert int(headers["Retry-After"]) == abuse.PIN_RETRY_AFTER.total_seconds()
    assert stack.wait_for(payments[1]["id"])["state"] == "succeeded"
    outcomes = stack.fetch(
        """SELECT outcome, created_at < now() - interval '24 hours' AS over_a_day_ago
           FROM payer_attempts WHERE payment_id = ANY($1::text[]) ORDER BY created_at""",
        [p["id"] for p in payments],
    )
    assert outcomes == [
        {"outcome": "invalid_pin", "over_a_day_ago": True},
        {"outcome": "authorised", "over_a_day_ago": True},
        {"outcome": "invalid_pin", "over_a_day_ago": True},
        {"outcome": "invalid_pin", "over_a_day_ago": True},
    ]
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    assert issuer_card["locked"] is False
    assert issuer_card["wrong_pin_count"] == 2


def _proxied_api(stack: Stack, **env: str) -> tuple[str, Process]:
    """Another `epay api` on the stack, with ``env`` over the stack's."""
    port = free_port()
    api = stack.spawn(
        "api-proxied", str(BIN / "epay"), "api", "--port", str(port), env=stack.env | env
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{url}/readyz"), timeout=60, what="API", proc=api)
    return url, api


PROXY = "127.0.0.2"  # another loopback address, as an ingress's stands for the API


def _authorise_from(
    api_url: str,
    payment: dict[str, Any],
    number: str,
    forwarded_for: str,
    peer: str = "127.0.0.1",
) -> httpx.Response:
    """The token API's authorise, from the address ``peer``, saying it forwards for
    ``forwarded_for``."""
    transport = httpx.HTTPTransport(local_address=peer)
    with httpx.Client(transport=transport, timeout=60) as client:
        return client.post(
            f"{api_url}/v1/payments/{payment['id']}/authorise",
            json=card(number),
            headers={"X-Payment-Token": token_of(payment), "X-Forwarded-For": forwarded_for},
        )


def _client_of(stack: Stack, payment: dict[str, Any]) -> str:
    rows = stack.fetch("SELECT client FROM payer_attempts WHERE payment_id = $1", payment["id"])
    assert len(rows) == 1, rows
    return str(rows[0]["client"])


def test_behind_a_trusted_proxy_each_payer_is_its_own_client(stack: Stack) -> None:
    """With EPAY_FORWARDED_ALLOW_IPS naming the proxy, the per-client limit counts the
    address the proxy forwards: two payers behind one proxy are two clients, and one of them
    testing cards does not stop the other. A caller that is not the proxy is counted by its
    own address, whatever X-Forwarded-For it sends."""
    api_url, api = _proxied_api(stack, EPAY_FORWARDED_ALLOW_IPS=PROXY, EPAY_PAYER_CLIENT_CARDS="1")
    net = uuid.uuid4().int % 250 + 1
    one, other = f"100.64.{net}.1", f"100.64.{net}.2"
    payments = [stack.created() for _ in range(4)]
    numbers = [_luhn_number("4000") for _ in payments]  # unknown cards: declined
    try:
        first = _authorise_from(api_url, payments[0], numbers[0], one, peer=PROXY)
        assert first.status_code == 200, first.text
        assert first.json()["state"] == "failed", first.text
        # One declined card is the limit for `one`; `other` is another client.
        second = _authorise_from(api_url, payments[1], numbers[1], other, peer=PROXY)
        assert second.status_code == 200, second.text
        assert second.json()["state"] == "failed", second.text
        third = _authorise_from(api_url, payments[2], numbers[2], one, peer=PROXY)
        assert third.status_code == 429, third.text
        assert third.json()["code"] == "too_many_attempts"
        assert "Retry-After" in third.headers
        # Not from the proxy: X-Forwarded-For is not believed. The address it names has no
        # attempt at all, so a 429 means the caller was counted as 127.0.0.1, which other
        # tests' declines on the shared stack may have filled.
        direct = _authorise_from(api_url, payments[3], numbers[3], f"100.64.{net}.3")
        assert direct.status_code in (200, 429), direct.text
    finally:
        api.stop()
    assert _client_of(stack, payments[0]) == one
    assert _client_of(stack, payments[1]) == other
    if direct.status_code == 200:
        assert _client_of(stack, payments[3]) == "127.0.0.1"


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(stack: Stack) -> None:
    """The stack's API has no EPAY_FORWARDED_ALLOW_IPS: a client that sends X-Forwarded-For
    is still counted by its own address, so it cannot name another to slip past the limit
    (uvicorn alone would believe it from 127.0.0.1)."""
    payment = stack.created()
    response = _authorise_from(stack.api_url, payment, _luhn_number("4000"), "100.64.0.9")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "failed", response.text
    assert _client_of(stack, payment) == "127.0.0.1"


# --- the wrong-PIN limit: what ends it, and what the payer is told -------------------------


async def _try_pins(
    ctx: Context, number: str, tries: list[tuple[dict[str, Any], str]]
) -> list[str]:
    """Each (payment, PIN) on the page, from a new session and address: the decline's code,
    the payment's state when it went on, or the refusal's code."""
    answers: list[str] = []
    for payment, pin in tries:
        caller = payer.Caller(
            client=f"198.18.2.{uuid.uuid4().int % 250 + 1}", session=PAGE + uuid.uuid4().hex
        )
        try:
            row = await _submit(ctx, payment["id"], e_dirham(number, pin), caller)
            answers.append(row["last_decline"] or row["state"])
        except ApiError as refused:
            answers.append(refused.code)
    return answers


def _tries(stack: Stack, number: str, pins: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """``pins`` tried on a new payment each, under a wrong-PIN limit of 2."""
    payments = [stack.created() for _ in pins]
    tries = list(zip(payments, pins, strict=True))
    answers: list[str] = _run(stack, lambda ctx: _try_pins(ctx, number, tries), wrong_pins=2)
    return payments, answers


def _issuer_count(stack: Stack, number: str) -> tuple[bool, int]:
    issuer_card = stack.sandbox(f"/issuer/_admin/cards/{number}")
    return issuer_card["locked"], issuer_card["wrong_pin_count"]


def test_a_balance_too_low_ends_the_wrong_pin_count(stack: Stack) -> None:
    """The issuer checks the PIN before the balance, and a right PIN resets its count:
    ``insufficient_funds`` proves the PIN was right, so ePay's count starts again after it as
    after a payment (two more wrong PINs go to the issuer, the next is refused)."""
    number = fresh_e_dirham_card(stack, balance=100)  # less than any fee
    _, answers = _tries(stack, number, ["0000", "4321", "0001", "0002", "0003"])
    assert answers == [
        "invalid_pin",
        "insufficient_funds",
        "invalid_pin",
        "invalid_pin",
        "pin_attempts_exceeded",
    ], answers
    assert _issuer_count(stack, number) == (False, 2)


def test_an_operator_clears_the_pin_limit_from_the_payment_the_resident_was_refused_on(
    stack: Stack,
) -> None:
    """A card at the wrong-PIN limit is refused for good; the resident brings the payment they
    were refused on (the refused method never reached the issuer), and an operator runs
    ``epay ops clear-pin-limit`` on it. The card goes to the issuer again, and its count
    starts again from the clearance: two more wrong PINs, and it is refused again. The
    clearance is in that payment's audit trail, with the operator and the reason, and is
    kept by the card's keyed hash."""
    number = fresh_e_dirham_card(stack)
    payments, before = _tries(stack, number, ["0000", "0001", "0002"])
    assert before == ["invalid_pin", "invalid_pin", "pin_attempts_exceeded"], before
    refused_on = payments[2]
    assert not stack.fetch("SELECT 1 FROM payer_attempts WHERE payment_id = $1", refused_on["id"])
    # Since then the resident has typed the right PIN at the issuer: its count is back to 0.
    fresh_e_dirham_card(stack, number=number)

    cleared = subprocess.run(
        [
            str(BIN / "epay"),
            "ops",
            "clear-pin-limit",
            refused_on["id"],
            "--operator",
            "fatima@ops",
            "--reason",
            "resident's ID checked at the service centre",
            "--json",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cleared.returncode == 0, cleared.stderr
    done = json.loads(cleared.stdout)
    assert (done["payment_id"], done["cards"], done["state"]) == (refused_on["id"], 1, "reserved")

    _, after = _tries(stack, number, ["0003", "0004", "0005"])
    assert after == ["invalid_pin", "invalid_pin", "pin_attempts_exceeded"], after
    assert _issuer_count(stack, number) == (False, 2)

    with stack.client() as c:
        events = c.get(f"/v1/payments/{refused_on['id']}/events").json()["items"]
    [note] = [e for e in events if e["event"] == "pin_limit_cleared"]
    assert note["actor"] == "operator"
    assert note["detail"] == "fatima@ops: resident's ID checked at the service centre"
    assert note["from_state"] == note["to_state"] == "reserved"
    [clearance] = stack.fetch(
        "SELECT card_key, operator FROM pin_limit_clearances WHERE payment_id = $1",
        refused_on["id"],
    )
    key = abuse.card_key(stack.settings().token_secret, number)
    assert bytes(clearance["card_key"]) == key
    assert clearance["operator"] == "fatima@ops"


def test_the_pin_limit_has_its_own_code_and_its_own_message_on_the_page(stack: Stack) -> None:
    """The token API answers the wrong-PIN limit with 429 ``pin_attempts_exceeded`` and a
    day's Retry-After; the page tells the payer, in Arabic and in English, to use another
    card or have this one cleared, not to wait a few minutes."""
    number = fresh_e_dirham_card(stack)
    _, answers = _tries(stack, number, ["0000", "0001"])
    assert answers == ["invalid_pin", "invalid_pin"]
    api_url, api = _proxied_api(stack, EPAY_PAYER_WRONG_PINS="2")
    try:
        payment = stack.created()
        response = httpx.post(
            f"{api_url}/v1/payments/{payment['id']}/authorise",
            json=e_dirham(number, "4321"),
            headers={"X-Payment-Token": token_of(payment)},
            timeout=60,
        )
        assert response.status_code == 429, response.text
        assert response.json()["code"] == "pin_attempts_exceeded"
        assert response.headers["Retry-After"] == str(24 * 3600)
        on_the_page = stack.created()
        link = f"{api_url}/pay/{on_the_page['id']}?token={token_of(on_the_page)}"
        shown = _page_messages(link, number)
    finally:
        api.stop()
    assert shown == {
        "ar": STRINGS["ar"]["msg_pin_attempts_exceeded"],
        "en": STRINGS["en"]["msg_pin_attempts_exceeded"],
    }
    assert _issuer_count(stack, number) == (False, 2)


def _page_messages(link: str, number: str) -> dict[str, str]:
    """The payment page opened from ``link`` in Chromium, the e-Dirham card paid with its
    right PIN: the message shown in Arabic, then again in English."""
    shown: dict[str, str] = {}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = chromium.new_context(viewport=PHONE, locale="ar-AE").new_page()
            script_errors: list[str] = []
            page.on("pageerror", lambda error: script_errors.append(str(error)))
            page.goto(link)  # exchanged for the session; the page moves on without the token
            expect(page).to_have_url(re.compile(r"/pay/pay_\w+$"))
            for lang in ("ar", "en"):
                if lang == "en":
                    switch_language(page, "en")
                fill_e_dirham(page, number, "4321")
                page.locator("#pay-button").click()
                shown[lang] = the_message(page)
            assert script_errors == [], script_errors
        finally:
            chromium.close()
    return shown
