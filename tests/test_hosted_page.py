"""The hosted payment page as a payer uses it (api/hosted/, api/static/pay.js), in Debian's
Chromium driven by Playwright, on a phone-sized screen: paying with an e-Dirham card to the
receipt, the one generic message for a declined card, an expired card and a wrong PIN in
both languages, 3-D Secure with the right and the wrong code, a double click that pays once,
and the link opened again after paying.

One browser and one context for the module; each test opens the pages it needs. The
screenshots that README.md and docs/payer.md show are written to a temporary folder, or to
docs/images/ with EPAY_UPDATE_SCREENSHOTS=1 (as tests/test_temporal_ui.py does).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)

from api.hosted.view import STRINGS
from epay import crypto
from tests.conftest import Stack, e_dirham, new_reference
from tests.support import ROOT
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    PHONE,
    WAIT_MS,
    fill_e_dirham,
    switch_language,
    the_message,
)
from tests.support.partners import fresh_e_dirham_card, issuer_holds
from tests.support.payments import assert_paid_once

IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("EPAY_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="epay-pay-screenshots-"))
)
RETURN_URL = "https://services.dm.example.ae/health-certificate/paid"
AR, EN = STRINGS["ar"], STRINGS["en"]
# The generic decline's first sentence, the same whether the form is offered again or not.
GENERIC = {
    "ar": AR["msg_declined"].split(".")[0].split("،")[0],
    "en": EN["msg_declined"].split(".")[0],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: "
            "`sudo apt-get install -y chromium` (.ci/run does)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def payer(browser: Browser) -> Iterator[BrowserContext]:
    """The payer's phone: one context for the module (each payment's cookie has its own
    path, so the payments do not meet)."""
    context = browser.new_context(viewport=PHONE, locale="ar-AE")
    yield context
    context.close()


@pytest.fixture
def page(payer: BrowserContext) -> Iterator[Page]:
    payer.clear_cookies()  # each test starts as a new visitor: Arabic, no session
    page = payer.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    page.close()
    assert errors == [], errors  # no script error, no CSP violation


def off_the_browser_loop(check: Callable[..., None], *args: Any) -> None:
    """``check`` on a thread of its own: the database helpers run an event loop, and
    Playwright's sync API has one running on this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(check, *args).result()


def open_link(page: Page, stack: Stack, payment: dict[str, Any]) -> None:
    """The department's next_url, as the payer's browser opens it."""
    page.goto(payment["next_url"])
    expect(page).to_have_url(re.compile(rf"/pay/{payment['id']}$"))
    assert "token" not in page.url


def fill_card(page: Page, number: str, month: str = "12", year: str = "2031") -> None:
    page.locator('input[name="method"][value="card"]').check()
    page.locator("#cc-number").fill(number)
    page.locator("#cc-exp-month").fill(month)
    page.locator("#cc-exp-year").fill(year)
    page.locator("#cc-cvv").fill("737")
    page.locator("#cc-name").fill("Mariam Al Hashimi")


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"


def test_pay_with_an_e_dirham_card_and_see_the_receipt(page: Page, stack: Stack) -> None:
    with stack.client() as department:
        created = department.post(
            "/v1/payments",
            json={
                "service_code": "HEALTH_CERT",
                "reference": "INV-2026-0417",  # the screenshots' (one payment per run)
                "return_url": RETURN_URL,
            },
        )
    assert created.status_code == 201, created.text
    payment = created.json()
    open_link(page, stack, payment)
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "ar")
    expect(html).to_have_attribute("dir", "rtl")
    summary = page.locator("#summary")
    expect(summary).to_contain_text("بلدية دبي")
    expect(summary).to_contain_text("الشهادة الصحية")
    expect(summary).to_contain_text(AR["line_knowledge_fee"])
    expect(page.locator("#total")).to_have_text("240.00 درهم")
    expect(page.get_by_label(AR["card_number"]).first).to_have_id("ed-number")
    no_horizontal_overflow(page)
    page.screenshot(path=str(IMAGES / "pay-ar.png"), full_page=True)

    switch_language(page, "en")
    expect(html).to_have_attribute("dir", "ltr")
    assert "token" not in page.url
    expect(page.locator("#total")).to_have_text("AED 240.00")
    expect(page.locator("#summary")).to_contain_text("Dubai Municipality")
    fill_e_dirham(page, "7840 0000 0000 0017", "1234")
    no_horizontal_overflow(page)
    page.screenshot(path=str(IMAGES / "pay-en.png"), full_page=True)

    page.get_by_role("button", name="Pay AED 240.00").click()
    receipt = page.locator("#receipt")
    expect(receipt).to_be_visible(timeout=WAIT_MS)
    paid = stack.get(payment["id"])
    assert paid["state"] == "succeeded"
    expect(page.locator("#r-number")).to_have_text(paid["receipt"]["number"])
    expect(page.locator("#r-confirmation")).to_have_text(paid["department_confirmation"])
    expect(page.locator("#r-method")).to_have_text("e-Dirham •••• 0017")
    expect(page.locator("#pay")).to_be_hidden()
    expect(page.get_by_role("link", name=EN["return"])).to_have_attribute("href", RETURN_URL)
    no_horizontal_overflow(page)
    page.screenshot(path=str(IMAGES / "receipt.png"), full_page=True)

    # The ledger and the issuer agree: one hold of the total, captured once.
    holds = issuer_holds(stack, payment["id"])
    off_the_browser_loop(assert_paid_once, stack, paid, holds)
    assert holds[0]["amount"] == paid["amount"]["total"] == 24000

    # The receipt as a PDF, with the page's session; printed, the controls go.
    href = page.locator("#pdf-link").get_attribute("href")
    assert href == f"/pay/{payment['id']}/receipt.pdf"
    pdf = page.request.get(stack.api_url + href)
    assert pdf.status == 200
    assert pdf.body().startswith(b"%PDF")
    page.emulate_media(media="print")
    expect(page.locator(".actions")).to_be_hidden()
    expect(page.locator("a.lang")).to_be_hidden()
    expect(receipt).to_be_visible()
    page.emulate_media(media="screen")

    # The department's link opened again in the payer's browser: the receipt, no form.
    page.goto(payment["next_url"])
    expect(page.locator("#receipt")).to_be_visible()
    expect(page.locator("#pay-form")).to_be_hidden()


def _link(stack: Stack, payment: dict[str, Any]) -> str:
    token = crypto.payer_token(stack.settings().token_secret, payment["id"])
    return f"{stack.api_url}/pay/{payment['id']}?token={token}"


def test_declines_show_one_generic_message_in_arabic_and_english(page: Page, stack: Stack) -> None:
    """A declined card, an expired card and a wrong PIN: the same words, in each language."""
    wrong_pin_card = fresh_e_dirham_card(stack)
    tries = {
        "declined card": lambda: fill_card(page, "4000 0000 0000 0002"),
        "expired card": lambda: fill_card(page, "4000 0000 0000 0069"),
        "wrong PIN": lambda: fill_e_dirham(page, wrong_pin_card, "9999"),
    }
    seen: dict[str, dict[str, str]] = {}
    for what, fill in tries.items():
        payment = stack.created()
        open_link(page, stack, payment)
        expect(page.locator("html")).to_have_attribute("lang", "ar")  # the remembered choice
        fill()
        page.locator("#pay-button").click()
        arabic = the_message(page)
        if what == "wrong PIN":
            no_horizontal_overflow(page)
            page.screenshot(path=str(IMAGES / "pay-declined.png"), full_page=True)
        switch_language(page, "en")
        english = the_message(page)
        switch_language(page, "ar")
        seen[what] = {"ar": arabic, "en": english}
        assert GENERIC["ar"] in arabic, (what, seen[what])
        assert GENERIC["en"] in english, (what, seen[what])
        failure = stack.get(payment["id"]).get("failure") or {}
        # The department's API keeps the precise code; the page never shows it.
        for text in (arabic, english, page.content()):
            assert failure.get("code", "card_declined") not in text
    assert len({v["ar"] for v in seen.values()}) == 1, seen
    assert len({v["en"] for v in seen.values()}) == 1, seen


def test_after_a_decline_a_second_card_succeeds(page: Page, stack: Stack) -> None:
    """On the page a declined method leaves the payment open for another (the token API's
    decline is final)."""
    payment = stack.created()
    open_link(page, stack, payment)
    switch_language(page, "en")
    fill_card(page, "4000 0000 0000 0002")
    page.locator("#pay-button").click()
    assert GENERIC["en"] in the_message(page)
    expect(page.locator("#pay-form")).to_be_visible()
    page.locator('input[name="method"][value="e_dirham"]').check()
    fill_e_dirham(page, "7840000000000017", "1234")
    page.locator("#pay-button").click()
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#r-method")).to_have_text("e-Dirham •••• 0017")
    assert stack.get(payment["id"])["state"] == "succeeded"
    with stack.client() as department:
        events = department.get(f"/v1/payments/{payment['id']}/events").json()["items"]
    assert [e["event"] for e in events].count("method_declined") == 1


def test_3d_secure_with_the_right_code_pays(page: Page, stack: Stack) -> None:
    payment = stack.created()
    open_link(page, stack, payment)
    fill_card(page, "4000 0000 0000 3220")
    page.locator("#pay-button").click()
    challenge = page.locator("#challenge")
    expect(challenge).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#otp")).to_be_focused()
    page.screenshot(path=str(IMAGES / "pay-3ds.png"), full_page=True)
    page.get_by_label(AR["otp_label"]).fill("١٢٣٤٥٦")  # 123456, on an Arabic keyboard
    page.keyboard.press("Enter")
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#r-method")).to_have_text("Visa •••• 3220")
    assert stack.get(payment["id"])["state"] == "succeeded"


def test_3d_secure_with_a_wrong_code_shows_the_generic_message(page: Page, stack: Stack) -> None:
    payment = stack.created()
    open_link(page, stack, payment)
    fill_card(page, "4000 0000 0000 3220")
    page.locator("#pay-button").click()
    expect(page.locator("#challenge")).to_be_visible(timeout=WAIT_MS)
    page.locator("#otp").fill("000000")
    page.locator("#otp-button").click()
    assert GENERIC["ar"] in the_message(page)
    expect(page.locator("#receipt")).to_be_hidden()
    assert stack.wait_for(payment["id"], {"failed", "reserved"})["state"] in ("failed", "reserved")


def test_double_clicking_pay_starts_one_authorisation(page: Page, stack: Stack) -> None:
    payment = stack.created()
    open_link(page, stack, payment)
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and "/authorise" in r.url else None,
    )
    fill_e_dirham(page, "7840000000000017", "1234")
    page.locator("#pay-button").dblclick()
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    assert len(posts) == 1, posts
    assert len(issuer_holds(stack, payment["id"])) == 1
    with stack.client() as department:
        events = department.get(f"/v1/payments/{payment['id']}/events").json()["items"]
    assert [e["event"] for e in events].count("method_submitted") == 1


def test_the_link_opened_again_after_paying_shows_no_form(browser: Browser, stack: Stack) -> None:
    paid = stack.pay(e_dirham("7840000000000017"), reference=new_reference())
    assert paid["state"] == "succeeded"
    other_browser = browser.new_context(viewport=PHONE)  # no session: someone with the link
    try:
        page = other_browser.new_page()
        page.goto(_link(stack, paid))
        expect(page.locator("#ended-message")).to_have_text(AR["msg_paid"])
        assert page.locator("form").count() == 0
        assert page.locator("input").count() == 0
        expect(page.get_by_text(paid["receipt"]["number"])).to_have_count(0)
    finally:
        other_browser.close()


def test_a_link_followed_from_the_departments_site_opens_the_page(page: Page, stack: Stack) -> None:
    """Most payers arrive by the department's "Pay" button: a navigation another site
    started, on whose redirects a browser sends no SameSite=Strict cookie."""
    payment = stack.created()
    invoice = "https://services.dm.example.ae/invoices/INV-1"  # served by the browser itself
    page.route(
        invoice,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<a id="pay" href="{payment["next_url"]}">Pay your fee</a>',
        ),
    )
    page.goto(invoice)
    page.locator("#pay").click()
    expect(page).to_have_url(re.compile(rf"/pay/{payment['id']}$"), timeout=WAIT_MS)
    expect(page.locator("#ed-number")).to_be_visible()
    expect(page.get_by_text(AR["msg_session_expired"])).to_have_count(0)
    page.go_back()  # the link, token and all, is not kept in the history
    expect(page).to_have_url(invoice)


def test_the_link_opens_once_and_its_browser_carries_on(
    payer: BrowserContext, stack: Stack
) -> None:
    """The link opens once. The payer's browser coming back by the department's "Pay" button
    (a navigation from another site, which sends no SameSite=Strict cookie) is told the link
    was opened, and the page's one link, a same-site step, takes it back to its own page.
    (Its own page rather than the ``page`` fixture's: Chromium reports the 410 answer on the
    console, which is no script error.)"""
    payer.clear_cookies()
    page = payer.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        _open_twice_and_carry_on(page, stack)
    finally:
        page.close()
    assert [e for e in errors if "status of 410" not in e] == [], errors


def _open_twice_and_carry_on(page: Page, stack: Stack) -> None:
    payment = stack.created()
    invoice = "https://services.dm.example.ae/invoices/INV-2"
    page.route(
        invoice,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<a id="pay" href="{payment["next_url"]}">Pay your fee</a>',
        ),
    )
    page.goto(invoice)
    page.locator("#pay").click()
    expect(page.locator("#ed-number")).to_be_visible(timeout=WAIT_MS)
    page.goto(invoice)
    page.locator("#pay").click()
    expect(page.locator("#ended-message")).to_have_text(AR["msg_link_opened"])
    assert page.locator("input").count() == 0
    page.locator("#carry-on").click()
    expect(page).to_have_url(re.compile(rf"/pay/{payment['id']}$"), timeout=WAIT_MS)
    expect(page.locator("#ed-number")).to_be_visible()


def test_the_page_shows_progress_while_the_department_confirms(page: Page, stack: Stack) -> None:
    """A department that takes its time (SLOW-, 5 s): the page shows where the payment is,
    without a reload, then the receipt."""
    payment = stack.created(reference=new_reference("SLOW-"))
    open_link(page, stack, payment)
    fill_e_dirham(page, fresh_e_dirham_card(stack, pin="1234"), "1234")
    page.locator("#pay-button").click()
    progress = page.locator("#progress")
    expect(progress).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#pay")).to_be_hidden()
    expect(page.locator("#progress-live")).to_contain_text(AR["step_confirming"], timeout=WAIT_MS)
    expect(page.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
    expect(progress).to_be_hidden()
    assert stack.get(payment["id"])["state"] == "succeeded"


def test_a_cancelled_payments_link_says_so_and_asks_for_nothing(page: Page, stack: Stack) -> None:
    payment = stack.created()
    with stack.client() as department:
        cancelled = department.post(f"/v1/payments/{payment['id']}/cancel", json={})
    assert cancelled.status_code == 202, cancelled.text
    stack.wait_for(payment["id"], {"cancelled"})
    page.goto(payment["next_url"])
    expect(page.locator("#ended-message")).to_have_text(AR["msg_cancelled"])
    assert page.locator("form").count() == 0
    assert page.locator("input").count() == 0


def test_fields_are_checked_as_the_payer_types(page: Page, stack: Stack) -> None:
    payment = stack.created()
    open_link(page, stack, payment)
    switch_language(page, "en")
    number, error = page.locator("#ed-number"), page.locator("#ed-number-error")
    expect(number).to_have_attribute("aria-describedby", "ed-number-error")
    number.fill("7840000000000018")  # fails the Luhn check
    number.press("Tab")
    expect(error).to_have_text(EN["err_card_number"])
    expect(number).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#ed-pin")).to_be_focused()  # the keyboard moves on
    number.fill("٧٨٤٠٠٠٠٠٠٠٠٠٠٠١٧")  # typed on an Arabic keyboard: the same number
    expect(error).to_be_empty()
    expect(number).not_to_have_attribute("aria-invalid", "true")

    page.locator('input[name="method"][value="card"]').check()
    expect(page.locator("#fields-e_dirham")).to_be_hidden()
    no_horizontal_overflow(page)
    page.get_by_label("Card number").last.fill("3782 822463 10005")  # American Express
    cvv = page.get_by_label("Security code (CVV)")
    cvv.fill("737")
    cvv.press("Tab")
    expect(page.locator("#cc-cvv-error")).to_have_text(EN["err_cvv"])  # Amex: 4 digits
    cvv.fill("7373")
    expect(page.locator("#cc-cvv-error")).to_be_empty()
    page.get_by_label("Month (MM)").fill("01")
    page.get_by_label("Year (YYYY)").fill("2020")
    page.get_by_label("Year (YYYY)").press("Tab")
    expect(page.locator("#cc-exp-year-error")).to_have_text(EN["err_expiry"])

    # Sent with faults: nothing leaves the page, the first fault has the focus.
    page.get_by_label("Year (YYYY)").fill("2031")
    page.get_by_label("Name on card").fill("")
    page.locator("#pay-button").click()
    expect(page.locator("#notice")).to_have_text(EN["msg_fix_fields"])
    expect(page.get_by_label("Name on card")).to_be_focused()
    expect(page.locator("#cc-name-error")).to_have_text(EN["err_name"])
    assert stack.get(payment["id"])["state"] == "reserved"
