"""The Temporal Web UI as an operator uses it (docs/operations.md), in Debian's Chromium
driven by Playwright: stuck payments found by the list's visibility queries, a payment's page
that says where it is, payloads decoded through the codec server for a signed-in operator
only, and the operator's updates sent from "Send an Update".

The session's Temporal dev server serves its UI for this module (tests/conftest.py). The
screenshots the runbook shows are written to a temporary folder, or to docs/images/ with
EPAY_UPDATE_SCREENSHOTS=1 (``make screenshots``), so that a test run leaves the tree as it
found it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from domain import search
from domain.references import reference_key
from tests.conftest import TERMINAL, Stack, card, e_dirham, new_reference
from tests.support import BIN, ROOT
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS

IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("EPAY_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="epay-ui-screenshots-"))
)
VIEWPORT: ViewportSize = {"width": 1920, "height": 1000}  # the list's columns fit
# The list's columns an operator adds once per browser (the runbook says which).
PAYMENT_COLUMNS = [
    key.name
    for key in (
        search.PAYMENT_STATE,
        search.WAITING_FOR,
        search.DEPARTMENT,
        search.PAYMENT_REFERENCE,
        search.AMOUNT_FILS,
        search.STEP_STARTED_AT,
    )
]
PAYER = {
    "name": "Mariam Al Hashimi",
    "email": "mariam.hashimi@example.ae",
    "phone": "+971501112233",
}
OPERATOR = "ops.khalid@dm.example.ae"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser test needs Debian's Chromium at {CHROMIUM}: install it with "
            "`sudo apt-get install -y chromium` (.ci/run does, as root). Playwright drives "
            "it as it is; `playwright install` is not used.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def leftovers(stack: Stack) -> Iterator[list[dict[str, Any]]]:
    """The module's payments, ended once its tests are done: cancelled if still open, and
    the department brought up (then down again) to take the revocations of the DOWN- ones."""
    made: list[dict[str, Any]] = []
    yield made
    _cancel_and_finish(stack, made)


@pytest.fixture(scope="module")
def payments(stack: Stack, leftovers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Payments stuck three ways: with a department that is down (an e-Dirham payment that
    carries payer data), with a payer who never pays, and at a 3-D Secure challenge never
    answered."""
    down = _created_with_payer(stack, new_reference("DOWN-"))
    unpaid = stack.created()
    challenged = stack.created()
    leftovers.extend([down, unpaid, challenged])
    assert stack.authorise(down, e_dirham("7840000000000017")).status_code in (200, 202)
    assert stack.authorise(challenged, card("4000000000003220")).status_code in (200, 202)
    stack.wait_for(down["id"], {"confirming"})
    stack.wait_for(challenged["id"], {"requires_action"})
    return {"down": down, "unpaid": unpaid, "challenged": challenged}


@pytest.fixture(scope="module")
def operator(
    browser: Browser, stack: Stack, payments: dict[str, dict[str, Any]]
) -> Iterator[BrowserContext]:
    """An operator's browser, set up as the runbook says: signed in at the codec server, the
    UI told to use it with credentials, and the payments' columns added to the list (whose
    controls show once there are workflows to list)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{stack.codec_server()}/login")
    page.get_by_label("Operator token").fill(stack.operator_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    _use_codec_server(page, stack, screenshot="ui-codec-setting.png")
    page.get_by_role("button", name="Configure Columns").click()
    for column in ("Run ID", "Type", "Start", "End"):
        page.get_by_role("button", name=f"Remove {column} column").click()
    for column in PAYMENT_COLUMNS:
        page.get_by_role("button", name=f"Add {column} column").click()
    page.get_by_role("button", name="Close Workflows Table configuration").click()
    page.get_by_role("button", name="Collapse Navigation").click()
    page.close()
    yield context
    context.close()


def _mine(query: str, payments: dict[str, dict[str, Any]]) -> str:
    """``query`` narrowed to this module's payments: the suite leaves many more running,
    which would page them out of the list."""
    ids = ", ".join(f'"{p["workflow_id"]}"' for p in payments.values())
    return f"{query} AND WorkflowId IN ({ids})"


def test_the_list_finds_stuck_payments_by_kind(
    operator: BrowserContext, stack: Stack, payments: dict[str, dict[str, Any]]
) -> None:
    page = operator.new_page()
    down = payments["down"]
    _open_list(
        page,
        stack,
        _mine('ExecutionStatus="Running" AND WaitingFor="department"', payments),
        [down],
    )
    row = _row(page, down)
    for shown in ("confirming", "department", "DM", reference_key(down["reference"])):
        expect(row).to_contain_text(shown)
    expect(row).to_contain_text(str(down["amount"]["total"]))
    for other in (payments["unpaid"], payments["challenged"]):
        expect(_row(page, other)).to_have_count(0)
    _screenshot(page, "ui-stuck-list.png")

    _open_list(
        page,
        stack,
        _mine('WorkflowType="PaymentWorkflow" AND ExecutionStatus="Running"', payments),
        list(payments.values()),
    )
    expect(_row(page, payments["unpaid"])).to_contain_text(re.compile(r"reserved\s*payer"))
    expect(_row(page, payments["challenged"])).to_contain_text(
        re.compile(r"requires_action\s*payer")
    )
    _screenshot(page, "ui-stuck-all.png")
    page.close()


def test_a_payment_page_explains_itself_decoded_for_operators_only(
    operator: BrowserContext,
    browser: Browser,
    stack: Stack,
    payments: dict[str, dict[str, Any]],
) -> None:
    down = payments["down"]
    page = operator.new_page()
    _open_list(
        page,
        stack,
        _mine('ExecutionStatus="Running" AND WaitingFor="department"', payments),
        [down],
    )
    _row(page, down).get_by_role("link", name=down["workflow_id"]).first.click()
    # The workflow input, decoded by the codec server: the payer's data included.
    decoded_input = page.get_by_role("textbox", name="Input")
    expect(decoded_input).to_contain_text(f'"reference": "{down["reference"]}"', timeout=WAIT_MS)
    expect(decoded_input).to_contain_text(PAYER["name"])
    expect(_codec_trouble(page)).to_have_count(0)
    # Fold the fee lines, so that the payer's data shows in the panel.
    page.locator(".cm-editor", has=decoded_input).locator('[title="Fold line"]').nth(1).click()
    expect(decoded_input.get_by_text(PAYER["email"])).to_be_in_viewport()
    _screenshot(page, "ui-payment-input.png")

    page.get_by_role("tab", name="User Metadata").click()
    summary = f"DM HEALTH_CERT {down['reference']} AED 240.00"
    expect(_metadata(page, "summary")).to_contain_text(summary, timeout=WAIT_MS)
    expect(_metadata(page, "details")).to_contain_text(f"Reference: {down['reference']}")
    expect(_metadata(page, "current-details")).to_contain_text(
        re.compile(r"confirming: confirming with DM: attempt \d+, last error .*503"),
        timeout=WAIT_MS,
    )
    _screenshot(page, "ui-payment-page.png")
    page.close()

    # Anyone else, with the same UI settings but no operator session, sees ciphertext.
    stranger = browser.new_context(viewport=VIEWPORT)
    page = stranger.new_page()
    _use_codec_server(page, stack)
    page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows/{down['workflow_id']}")
    expect(_codec_trouble(page)).to_be_visible(timeout=WAIT_MS)
    encrypted_input = page.get_by_role("textbox", name="Input")
    expect(encrypted_input).not_to_be_empty()
    for secret in (PAYER["name"], PAYER["email"], down["reference"]):
        expect(encrypted_input).not_to_contain_text(secret)
    _screenshot(page, "ui-payment-encrypted.png")
    page.get_by_role("tab", name="User Metadata").click()
    expect(_metadata(page, "current-details")).not_to_contain_text("confirming with DM")
    expect(page.locator("iframe#user-metadata-summary")).to_have_count(0)
    stranger.close()


def test_send_an_update_refuses_the_payers_and_runs_the_operators(
    operator: BrowserContext,
    stack: Stack,
    payments: dict[str, dict[str, Any]],
    leftovers: list[dict[str, Any]],
) -> None:
    page = operator.new_page()
    unpaid = payments["unpaid"]
    _open_payment(page, stack, unpaid)
    forged = {
        "method": {"type": "card", "brand": "visa", "last4": "4242"},
        "vault_token": "vt_forged",
        "proof": "",
    }
    dialog = _send_update(page, "submit_payment_method", forged)
    dialog.get_by_role("button", name="Submit", exact=True).click()
    # Refused by the update's validator (no proof from the API); the UI shows the failure,
    # whose message the failure converter encrypts, without decoding it.
    expect(dialog).to_contain_text(re.compile("failure|sent by ePay's API only"), timeout=WAIT_MS)
    _screenshot(page, "ui-update-refused.png")
    assert stack.get(unpaid["id"])["state"] == "reserved"
    assert [e["event"] for e in _events(stack, unpaid)] == ["fee_reserved"]
    page.close()

    down = _created_with_payer(stack, new_reference("DOWN-"))
    leftovers.append(down)
    assert stack.authorise(down, e_dirham("7840000000000017")).status_code in (200, 202)
    stack.wait_for(down["id"], {"confirming"})
    page = operator.new_page()
    _open_payment(page, stack, down)
    reason = "DM asked by phone to cancel: the licence was withdrawn"
    dialog = _send_update(page, "operator_cancel", {"operator": OPERATOR, "reason": reason})
    _screenshot(page, "ui-send-update.png")
    dialog.get_by_role("button", name="Submit", exact=True).click()
    expect(dialog).to_be_hidden(timeout=WAIT_MS)
    assert stack.wait_for(down["id"], timeout=30)["state"] == "cancelled"
    by_operator = [e for e in _events(stack, down) if e["actor"] == "operator"]
    assert [(e["event"], e["detail"]) for e in by_operator] == [
        ("operator_cancel_requested", f"{OPERATOR}: {reason}"),
        ("cancelled_by_operator", f"{OPERATOR}: {reason}"),
    ]
    # Cancelled and the payer's hold voided, yet still running: the department, down, has
    # not taken the revocation of its confirmation (compensation pending; the module's
    # teardown brings the department up to finish it).
    _open_list(page, stack, 'ExecutionStatus="Running" AND WaitingFor="nobody"', [down])
    expect(_row(page, down)).to_contain_text(re.compile(r"cancelled\s*nobody"))
    _screenshot(page, "ui-compensation-pending.png")
    page.close()


# --- the operator's steps in the UI ---------------------------------------------------------


def _use_codec_server(page: Page, stack: Stack, screenshot: str | None = None) -> None:
    """The UI's Codec Server setting, once per browser: this browser's endpoint, with
    cross-origin credentials (the codec server's session cookie)."""
    page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows")
    page.get_by_role("button", name=re.compile("Codec Server")).click()
    dialog = page.get_by_role("dialog", name="Codec Server")
    dialog.get_by_text("Use my browser setting and ignore Cluster-level setting.").click()
    dialog.get_by_role("textbox", name="Codec Server browser endpoint").fill(stack.codec_url)
    dialog.get_by_text("Include cross-origin credentials", exact=True).click()
    expect(dialog.get_by_role("switch", name="Include cross-origin credentials")).to_be_checked()
    if screenshot:
        _screenshot(page, screenshot)
    dialog.get_by_role("button", name="Apply").click()
    expect(dialog).to_be_hidden()


def _open_list(page: Page, stack: Stack, query: str, expected: list[dict[str, Any]]) -> None:
    """The workflow list for ``query``, reloaded until it shows every ``expected`` payment
    (visibility follows the workflows by a moment)."""
    page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows?query={quote(query)}")
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        try:
            for payment in expected:
                expect(_row(page, payment)).to_be_visible(timeout=2_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


def _codec_trouble(page: Page) -> Locator:
    """The banner a payment's page shows when the codec server does not decode for it."""
    return page.get_by_role("main").get_by_text("Codec Server could not connect")


def _row(page: Page, payment: dict[str, Any]) -> Locator:
    return page.get_by_role("row").filter(has_text=payment["workflow_id"])


def _open_payment(page: Page, stack: Stack, payment: dict[str, Any]) -> None:
    page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows/{payment['workflow_id']}")
    expect(page.get_by_role("textbox", name="Input")).to_contain_text(
        payment["reference"], timeout=WAIT_MS
    )


def _metadata(page: Page, part: str) -> Locator:
    """The User Metadata tab's ``summary``, ``details`` or ``current-details`` (a frame each)."""
    return page.frame_locator(f"iframe#user-metadata-{part}").locator("body")


def _send_update(page: Page, name: str, data: dict[str, Any]) -> Locator:
    """More Actions, Send an Update: ``name`` with ``data`` typed in, not yet submitted."""
    page.get_by_role("button", name="More Actions").click()
    page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.get_by_role("dialog", name="Send an Update")
    dialog.get_by_role("button", name="Select an Update").click()
    page.get_by_role("option", name=name, exact=True).click()
    dialog.get_by_role("textbox", name="Data").click()
    page.keyboard.type(json.dumps(data))
    dialog.get_by_text("Update ID (optional)").click()  # the editor hands its text over on blur
    return dialog


def _screenshot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=IMAGES / name)


# --- the API and the sandbox ------------------------------------------------------------------


def _created_with_payer(stack: Stack, reference: str) -> dict[str, Any]:
    with stack.client() as c:
        response = c.post(
            "/v1/payments",
            json={"service_code": "HEALTH_CERT", "reference": reference, "payer": PAYER},
        )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


def _events(stack: Stack, payment: dict[str, Any]) -> list[dict[str, Any]]:
    with stack.client() as c:
        response = c.get(f"/v1/payments/{payment['id']}/events")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _wait_for_event(stack: Stack, payment: dict[str, Any], event: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while event not in [e["event"] for e in _events(stack, payment)]:
        assert time.monotonic() < deadline, f"no {event} for {payment['id']} after {timeout}s"
        time.sleep(0.5)


def _department(stack: Stack, mode: str) -> None:
    command = [str(BIN / "epay"), "sandbox", "department", mode, "DM"]
    subprocess.run(command, env=stack.env, check=True, timeout=60)


def _cancel_and_finish(stack: Stack, payments: Any) -> None:
    """Leave nothing behind: cancel what is still open, and let the department take the
    revocations of the DOWN- payments' confirmations."""
    with stack.client() as c:
        for payment in payments:
            if stack.get(payment["id"])["state"] not in TERMINAL:
                c.post(f"/v1/payments/{payment['id']}/cancel", json={"reason": "test over"})
    _department(stack, "up")
    try:
        for payment in payments:
            assert stack.wait_for(payment["id"], timeout=30)["state"] == "cancelled"
            if payment["reference"].startswith("DOWN-"):
                _wait_for_event(stack, payment, "department_revoked")
    finally:
        _department(stack, "down")
