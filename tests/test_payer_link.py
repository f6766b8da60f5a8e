"""The payer's link opens once (api/hosted/routes.py, store/page.py): the first browser to
open ``next_url`` gets the page session and the exchange is recorded on the payment; a second
browser is told the link was opened and is asked for nothing; the link's token no longer
hands a method over through the token API once the page has it; and a link past its
payment's window opens nothing. All over HTTP: a client without cookies is a second
browser."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx

from api import payer_session
from api.hosted.view import STRINGS
from tests.conftest import Stack, card
from tests.support.payer import PayerPage, api, link_path

PAY_FORM = 'id="pay-form"'
INPUT = re.compile(r"<(input|form|textarea|select)\b")
GOOD_CARD = card("4242424242424242")


def _asks_for_nothing(response: httpx.Response, payment: dict[str, Any]) -> None:
    """A message page: no form, no input, no session, and nothing of the payment."""
    assert response.headers["content-type"].startswith("text/html")
    assert PAY_FORM not in response.text
    assert not INPUT.search(response.text)
    assert payment["reference"] not in response.text
    assert "240.00" not in response.text
    assert payer_session.COOKIE not in response.headers.get("set-cookie", "")


def _events(stack: Stack, payment_id: str) -> list[str]:
    with stack.client() as client:
        response = client.get(f"/v1/payments/{payment_id}/events")
    assert response.status_code == 200, response.text
    return [e["event"] for e in response.json()["items"]]


def test_a_second_browser_is_told_the_link_was_opened(stack: Stack) -> None:
    payment = stack.created()
    first = PayerPage(stack, payment)
    recorded = stack.fetch("SELECT payer_link_used_at FROM payments WHERE id = $1", payment["id"])
    assert recorded[0]["payer_link_used_at"] is not None

    with api(stack) as second:
        for lang in ("ar", "en"):
            response = second.get(f"{link_path(payment)}&lang={lang}")
            assert response.status_code == 410, response.text
            assert f'<html lang="{lang}"' in response.text
            assert STRINGS[lang]["msg_link_opened"] in response.text
            _asks_for_nothing(response, payment)
            # The page's own link, for the browser that holds the session.
            assert f'<a id="carry-on" href="/pay/{payment["id"]}">' in response.text
        # Following it without the session opens nothing either.
        page = second.get(f"/pay/{payment['id']}")
        assert page.status_code == 403
        assert PAY_FORM not in page.text

    # The first browser carries on: a reload, the language switch, the link again (a
    # same-site visit with the cookie) and the page's calls.
    reload = first.client.get(f"/pay/{payment['id']}")
    assert reload.status_code == 200
    assert PAY_FORM in reload.text
    english = first.client.get(f"/pay/{payment['id']}?lang=en")
    assert english.status_code == 200
    assert '<html lang="en" dir="ltr">' in english.text
    assert PAY_FORM in english.text
    again = first.client.get(link_path(payment))
    assert again.status_code == 303
    assert again.headers["location"] == f"/pay/{payment['id']}"
    assert first.status().status_code == 200
    assert stack.get(payment["id"])["state"] == "reserved"


def test_two_browsers_opening_the_link_at_once_get_one_session(stack: Stack) -> None:
    payment = stack.created()
    barrier = threading.Barrier(4)
    answers: list[int] = []

    def open_link() -> None:
        with api(stack) as client:
            barrier.wait()
            answers.append(client.get(link_path(payment)).status_code)

    threads = [threading.Thread(target=open_link) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 410, 410, 410]


def test_the_token_api_takes_no_method_once_the_page_has_the_link(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)

    refused = stack.authorise(payment, GOOD_CARD)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "payer_link_used"
    challenge = stack.three_d_secure(payment, "123456")
    assert challenge.status_code == 409, challenge.text
    assert challenge.json()["code"] == "payer_link_used"
    assert stack.get(payment["id"])["state"] == "reserved"
    assert "method_submitted" not in _events(stack, payment["id"])

    # The page that has the link still pays.
    paid = page.authorise(GOOD_CARD)
    assert paid.status_code in (200, 202), paid.text
    assert stack.wait_for(payment["id"])["state"] == "succeeded"


def test_a_link_past_its_payment_window_opens_nothing(stack: Stack) -> None:
    payment, by_api = stack.created(), stack.created()
    # The window's end as the workflow will see it later: the payment's own expires_at.
    stack.fetch(
        "UPDATE payments SET expires_at = now() - interval '1 minute' "
        "WHERE id = ANY($1::text[]) RETURNING id",
        [payment["id"], by_api["id"]],
    )
    try:
        with api(stack) as client:
            for lang in ("ar", "en"):
                response = client.get(f"{link_path(payment)}&lang={lang}")
                assert response.status_code == 410, response.text
                assert STRINGS[lang]["msg_link_expired"] in response.text
                _asks_for_nothing(response, payment)
        refused = stack.authorise(by_api, GOOD_CARD)
        assert refused.status_code == 410, refused.text
        assert refused.json()["code"] == "payer_link_expired"
        assert "method_submitted" not in _events(stack, by_api["id"])
        assert stack.fetch(
            "SELECT payer_link_used_at FROM payments WHERE id = $1", payment["id"]
        ) == [{"payer_link_used_at": None}]
    finally:  # not left for the stuck-payment gauge of other tests
        with stack.client() as department:
            for p in (payment, by_api):
                department.post(f"/v1/payments/{p['id']}/cancel")
