"""Debian's Chromium as the browser tests launch it, and the hosted page's form as a payer
fills it there (Playwright's sync API)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, ViewportSize, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 375, "height": 812}
WAIT_MS = 30_000


def fill_e_dirham(page: Page, number: str, pin: str) -> None:
    page.locator("#ed-number").fill(number)
    page.locator("#ed-pin").fill(pin)


def the_message(page: Page) -> str:
    """What the page tells the payer after a failure: the notice above the form, or the
    end of the payment."""
    shown = page.locator("#notice:visible, #ended-message:visible").first
    expect(shown).not_to_be_empty(timeout=WAIT_MS)
    return shown.inner_text().strip()


def switch_language(page: Page, to: str) -> None:
    page.locator("a.lang").click()
    expect(page.locator("html")).to_have_attribute("lang", to)
    # The new document's <html> is parsed before its script has run: wait for the load, so
    # that what the test types next meets the page's checks.
    page.wait_for_load_state("load")
