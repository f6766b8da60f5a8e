"""The hosted page's payer session over HTTP (api/hosted/, api/payer_session.py): the
``?token=`` link exchanged once for a payment-bound cookie, the page's JSON calls guarded by
the cookie, a CSRF value and the request's origin, the security headers of every ``/pay``
answer, and a link opened after the payment started that asks for no card data."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi.responses import Response

from api import payer_session
from api.context import Context
from api.hosted.headers import PAGE_HEADERS
from api.hosted.session import set_session
from epay import crypto
from tests.conftest import Stack, card, e_dirham, new_reference, token_of
from tests.support.partners import fresh_e_dirham_card, issuer_holds
from tests.support.payer import PayerPage, api, link_path

PAY_FORM = 'id="pay-form"'
CARD_INPUTS = re.compile(r'<input[^>]+id="(ed-number|ed-pin|cc-number|cc-cvv)"')


def test_the_link_is_exchanged_for_a_session_cookie_and_leaves_the_url(stack: Stack) -> None:
    payment = stack.created()
    token = token_of(payment)
    with api(stack) as client:
        # Not a redirect: the page moves on by itself, so that a link followed from the
        # department's site keeps its SameSite=Strict session (tests/test_hosted_page.py).
        response = client.get(link_path(payment))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert f'<meta http-equiv="refresh" content="0;url=/pay/{payment["id"]}">' in response.text
        assert f'<a id="open-payment-page" href="/pay/{payment["id"]}">' in response.text
        assert token not in response.text
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{payer_session.COOKIE}=")
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", f"path=/pay/{payment['id']}"} <= flags
        assert "max-age=900" in flags  # 15 minutes
        assert "secure" not in flags  # the stack is served over plain http
        assert token not in cookie

        page = client.get(f"/pay/{payment['id']}")
        assert page.status_code == 200
        assert '<html lang="ar" dir="rtl">' in page.text
        assert PAY_FORM in page.text
        assert token not in page.text
        assert "بلدية دبي" in page.text
        assert payment["reference"] in page.text
        assert "220.00 درهم" in page.text
        assert "240.00 درهم" in page.text

        english = client.get(f"/pay/{payment['id']}?lang=en")
        assert '<html lang="en" dir="ltr">' in english.text
        assert "Dubai Municipality" in english.text
        assert "AED 240.00" in english.text
        assert "Knowledge Dirham" in english.text
        assert "Innovation Dirham" in english.text
        # The choice is remembered for the next page.
        assert '<html lang="en" dir="ltr">' in client.get(f"/pay/{payment['id']}").text
        # With the session's cookie the visit is same-site: the link redirects.
        again = client.get(link_path(payment))
        assert again.status_code == 303
        assert again.headers["location"] == f"/pay/{payment['id']}"

    # The link opens once: another browser (no cookie) is told so, and gets no session.
    with api(stack) as client:
        other = client.get(link_path(payment))
        assert other.status_code == 410
        assert 'http-equiv="refresh"' not in other.text
        assert payer_session.COOKIE not in other.headers.get("set-cookie", "")

    # Access logs write the route's template, never the query string that holds the token.
    api_logs = [p.log() for p in stack.processes if p.name == "api"]
    assert api_logs
    assert all(token not in log for log in api_logs)


def test_a_bad_token_is_an_html_not_found(stack: Stack) -> None:
    payment = stack.created()
    with api(stack) as client:
        for query in ("?token=forged", "?token=%D9%A4%D9%A4", "?token="):
            response = client.get(f"/pay/{payment['id']}{query}")
            assert response.status_code == 404, query
            assert response.headers["content-type"].startswith("text/html")
            assert PAY_FORM not in response.text
            assert payer_session.COOKIE not in response.headers.get("set-cookie", "")
        other = stack.created()
        assert client.get(f"/pay/{other['id']}?token={token_of(payment)}").status_code == 404


def test_a_session_opens_its_own_payment_only(stack: Stack) -> None:
    a, b = stack.created(), stack.created()
    page = PayerPage(stack, a)
    cookies = {payer_session.COOKIE: page.cookie}
    with httpx.Client(base_url=stack.api_url, timeout=30, cookies=cookies) as client:
        # Sent on purpose to B's paths (a browser would not: the cookie's path is A's page).
        other_page = client.get(f"/pay/{b['id']}")
        assert other_page.status_code == 403
        assert PAY_FORM not in other_page.text
        status = client.get(f"/pay/{b['id']}/status", headers=page.headers())
        assert status.status_code == 401
        assert status.json()["code"] == "payer_session_expired"
        paid = client.post(
            f"/pay/{b['id']}/authorise", json=e_dirham("7840000000000017"), headers=page.headers()
        )
        assert paid.status_code == 401
    assert stack.get(b["id"])["state"] == "reserved"
    assert page.status().status_code == 200


def test_forged_tampered_and_expired_cookies_are_refused(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    secret = stack.settings().token_secret
    session = payer_session.decode(secret, payment["id"], page.cookie)
    assert session is not None
    payload, mac = page.cookie.split(".")
    expired = payer_session.PayerSession(payment["id"], session.session_id, int(time.time()) - 1)
    other_key = payer_session.encode(b"x" * 32, session)
    bad = {
        "tampered mac": f"{payload}.{mac[:-2]}AA",
        "forged payload": payer_session.encode(secret, session).replace(payload, payload[:-2]),
        "another key": other_key,
        "expired": payer_session.encode(secret, expired),
        "garbage": "not-a-session",
    }
    for what, value in bad.items():
        with httpx.Client(
            base_url=stack.api_url, timeout=30, cookies={payer_session.COOKIE: value}
        ) as client:
            status = client.get(f"/pay/{payment['id']}/status", headers=page.headers())
            assert status.status_code == 401, what
            assert client.get(f"/pay/{payment['id']}").status_code == 403, what
    # A session made with the stack's own key is one (the refusals above are the key's doing).
    fresh = payer_session.encode(secret, session.renewed())
    with httpx.Client(
        base_url=stack.api_url, timeout=30, cookies={payer_session.COOKIE: fresh}
    ) as client:
        assert client.get(f"/pay/{payment['id']}/status", headers=page.headers()).status_code == 200


def test_the_page_calls_need_the_csrf_value(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    path = f"/pay/{payment['id']}"
    assert page.client.get(f"{path}/status").json()["code"] == "csrf_token_invalid"
    wrong = page.client.get(f"{path}/status", headers={"X-ePay-CSRF": page.csrf[:-1] + "A"})
    assert wrong.status_code == 403
    no_csrf = page.client.post(f"{path}/authorise", json=e_dirham("7840000000000017"))
    assert no_csrf.status_code == 403
    assert no_csrf.json()["code"] == "csrf_token_invalid"
    otp = page.client.post(f"{path}/3ds", json={"otp": "123456"})
    assert otp.status_code == 403
    assert stack.get(payment["id"])["state"] == "reserved"  # nothing was started
    # Another session's value is not this one's (a session made here: the link opens once).
    other = payer_session.csrf_token(
        stack.settings().token_secret, payer_session.new_session(payment["id"])
    )
    assert other != page.csrf
    assert page.client.get(f"{path}/status", headers={"X-ePay-CSRF": other}).status_code == 403
    assert page.status().status_code == 200


def test_cross_site_requests_are_refused(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    path = f"/pay/{payment['id']}/authorise"
    for headers in (
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        response = page.client.post(
            path, json=e_dirham("7840000000000017"), headers=page.headers(**headers)
        )
        assert response.status_code == 403, headers
        assert response.json()["code"] == "cross_site_request"
    assert stack.get(payment["id"])["state"] == "reserved"
    same = page.client.get(
        f"/pay/{payment['id']}/status",
        headers=page.headers(Origin=stack.api_url, **{"Sec-Fetch-Site": "same-origin"}),
    )
    assert same.status_code == 200


def test_every_pay_answer_has_the_security_headers(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    pid = payment["id"]
    with api(stack) as anonymous:
        answers = {
            "exchange": anonymous.get(link_path(stack.created())),
            "page": page.client.get(f"/pay/{pid}"),
            "status": page.status(),
            "bad token": anonymous.get(f"/pay/{pid}?token=nope"),
            "no session": anonymous.get(f"/pay/{pid}"),
            "not an id": anonymous.get("/pay/not-a-payment"),
            "css": anonymous.get("/pay/static/pay.css"),
            "js": anonymous.get("/pay/static/pay.js"),
            "no such file": anonymous.get("/pay/static/crypto.json"),
            "status without session": anonymous.get(f"/pay/{pid}/status"),
            "receipt before paying": page.client.get(f"/pay/{pid}/receipt.pdf"),
            "malformed body": page.client.post(
                f"/pay/{pid}/authorise", content=b"{", headers=page.headers()
            ),
            "wrong method": anonymous.delete(f"/pay/{pid}"),
        }
    for what, response in answers.items():
        for name, value in PAGE_HEADERS.items():
            assert response.headers.get(name) == value, (what, name, response.status_code)
    assert answers["css"].status_code == 200
    assert answers["js"].status_code == 200
    assert answers["no such file"].status_code == 404
    assert answers["malformed body"].status_code == 400
    assert answers["receipt before paying"].status_code == 404
    # The department API is not the page: no page headers there.
    assert "content-security-policy" not in stack.client().get("/v1/services").headers


def test_the_link_after_the_payment_started_asks_for_no_card(stack: Stack) -> None:
    slow = stack.created(reference=new_reference("SLOW-"))
    assert stack.authorise(slow, e_dirham("7840000000000017")).status_code in (200, 202)
    stack.wait_for(slow["id"], {"confirming"})
    with api(stack) as client:
        response = client.get(link_path(slow))
        assert response.status_code == 200
        assert PAY_FORM not in response.text
        assert not CARD_INPUTS.search(response.text)
        assert "هذه الدفعة قيد المعالجة" in response.text
        assert payer_session.COOKIE not in response.headers.get("set-cookie", "")

    paid = stack.pay(e_dirham("7840000000000017"))
    with api(stack) as client:
        # A paid payment has no next_url any more; its link is what the department sent.
        token = crypto.payer_token(stack.settings().token_secret, paid["id"])
        response = client.get(f"/pay/{paid['id']}?token={token}")
        assert response.status_code == 200
        assert PAY_FORM not in response.text
        assert not CARD_INPUTS.search(response.text)
        assert "تم دفع هذه الدفعة" in response.text
        assert paid["receipt"]["number"] not in response.text  # the receipt needs a session
    stack.wait_for(slow["id"])


def test_a_session_follows_its_payment_to_the_receipt_and_its_pdf(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    answer = page.authorise(e_dirham("7840000000000017"))
    assert answer.status_code in (200, 202), answer.text
    deadline = time.monotonic() + 60
    view = answer.json()
    while view["view"] == "progress" and time.monotonic() < deadline:
        time.sleep(0.3)
        view = page.status().json()
    paid = stack.get(payment["id"])
    assert view["view"] == "receipt"
    assert view["state"] == "succeeded"
    assert view["receipt"]["number"] == paid["receipt"]["number"]
    assert view["method"] == {"type": "e_dirham", "brand": "e_dirham", "last4": "0017"}
    assert view["department_confirmation"] == paid["department_confirmation"]
    # The link again, with the session: the receipt, no form.
    again = page.client.get(link_path(payment), follow_redirects=True)
    assert paid["receipt"]["number"] in again.text
    assert 'id="pay"' in again.text
    assert re.search(r'<section class="card" id="pay" hidden', again.text)
    pdf = page.client.get(f"/pay/{payment['id']}/receipt.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert b"/Type /Page" in pdf.content
    assert "attachment" in pdf.headers["content-disposition"]
    with api(stack) as anonymous:
        assert anonymous.get(f"/pay/{payment['id']}/receipt.pdf").status_code == 404


@pytest.mark.parametrize(
    "method",
    [card("4000000000000002"), card("4000000000000069"), e_dirham("wrong-pin", "9999")],
    ids=["declined", "expired", "wrong-pin"],
)
def test_the_payer_view_never_names_the_decline(stack: Stack, method: dict[str, Any]) -> None:
    if method["card_number"] == "wrong-pin":
        method = e_dirham(fresh_e_dirham_card(stack), "9999")
    payment = stack.created()
    page = PayerPage(stack, payment)
    answer = page.authorise(method)
    assert answer.status_code in (200, 202), answer.text
    deadline = time.monotonic() + 60
    view = answer.json()
    while view["view"] == "progress" and time.monotonic() < deadline:
        time.sleep(0.3)
        view = page.status().json()
    assert view["message"] in ("declined", "declined_final"), view
    text = page.status().text + page.client.get(f"/pay/{payment['id']}").text
    for code in ("card_declined", "card_expired", "invalid_pin", "pin_locked", "insufficient"):
        assert code not in text
    # The link, opened by someone else once a card was tried: it was used, and no form.
    with api(stack) as anonymous:
        again = anonymous.get(link_path(payment))
        assert again.status_code == 410
        assert PAY_FORM not in again.text
        assert not CARD_INPUTS.search(again.text)
    # The department's API still has the precise code.
    failure = stack.wait_for(payment["id"], {"failed", "reserved"})["failure"]
    if failure is not None:
        assert failure["code"] in ("card_declined", "card_expired", "invalid_pin")


def test_two_submissions_at_once_start_one_authorisation(stack: Stack) -> None:
    payment = stack.created()
    page = PayerPage(stack, payment)
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def submit() -> None:
        with httpx.Client(
            base_url=stack.api_url, timeout=60, cookies={payer_session.COOKIE: page.cookie}
        ) as client:
            start.wait()
            answers.append(
                client.post(
                    f"/pay/{payment['id']}/authorise",
                    json=e_dirham("7840000000000017"),
                    headers=page.headers(),
                )
            )

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses[1] == 409, [a.text for a in answers]
    assert statuses[0] in (200, 202), [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "not_awaiting_method"
    paid = stack.wait_for(payment["id"])
    assert paid["state"] == "succeeded"
    assert len(issuer_holds(stack, payment["id"])) == 1
    with stack.client() as dept:
        events = dept.get(f"/v1/payments/{payment['id']}/events").json()["items"]
    assert [e["event"] for e in events].count("method_submitted") == 1


def test_the_cookie_is_secure_when_the_page_is_served_over_tls() -> None:
    """Pure logic: the flags ``set_session`` writes for an https ``EPAY_PUBLIC_URL``."""
    session = payer_session.new_session("pay_" + "a" * 32)
    for url, secure in (("https://pay.example.ae", True), ("http://127.0.0.1:8000", False)):
        ctx = SimpleNamespace(settings=SimpleNamespace(public_url=url, token_secret=b"k" * 32))
        response = Response()
        set_session(response, cast(Context, ctx), session)  # only its settings are read
        flags = {f.strip().lower() for f in response.headers["set-cookie"].split(";")[1:]}
        assert ("secure" in flags) is secure, (url, flags)


def test_a_session_is_bound_to_its_payment_and_its_lifetime() -> None:
    """Pure logic of api/payer_session.py, at chosen clocks."""
    secret, pid = b"s" * 32, "pay_" + "b" * 32
    session = payer_session.new_session(pid, now=1_000_000)
    value = payer_session.encode(secret, session)
    assert payer_session.decode(secret, pid, value, now=1_000_000 + 899) == session
    assert payer_session.decode(secret, pid, value, now=1_000_000 + 900) is None  # expired
    assert payer_session.decode(secret, "pay_" + "c" * 32, value, now=1_000_000) is None
    assert payer_session.decode(b"t" * 32, pid, value, now=1_000_000) is None
    assert payer_session.decode(secret, pid, value + "x", now=1_000_000) is None
    renewed = session.renewed(now=1_000_500)
    assert renewed.session_id == session.session_id
    assert renewed.expires_at == 1_000_500 + 900
    assert payer_session.csrf_token(secret, session) == payer_session.csrf_token(secret, renewed)
    assert not payer_session.csrf_ok(secret, session, "٤" * 43)
