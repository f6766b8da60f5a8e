"""The daily settlement on the real stack: a day of mixed payments and refunds (on a stack
of the module's own, so that the day holds them alone) balances with the acquirer's and the
issuer's settlement files, every total to the fils; a capture the acquirer reports that
the ledger lacks, and one it reports for another amount, are listed with their payments; a
day can be settled again (its result replaced) and a past day settled at all; the daily
schedule exists. The reconciliation itself (epay/settlement.py) is pure and tested first.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from epay import settlement
from epay.schedules import SETTLEMENT_SCHEDULE_ID
from epay.settlement import Movement
from tests.conftest import Stack, card, e_dirham, running_stack
from tests.support import BIN, ROOT
from tests.test_refunds import refund, wait_for_refund

# --- pure ---------------------------------------------------------------------------------


def test_reconcile_lists_each_kind_of_difference() -> None:
    ledger = [
        Movement("acquirer", "capture", "pay_a", 24000),
        Movement("acquirer", "capture", "pay_b", 10000),
        Movement("issuer", "capture", "pay_c", 5000),
        Movement("acquirer", "refund", "pay_a", 6000),
    ]
    partners = [
        Movement("acquirer", "capture", "pay_a", 24000),
        Movement("acquirer", "capture", "pay_b", 9999),
        Movement("acquirer", "capture", "pay_x", 777),
        Movement("acquirer", "refund", "pay_a", 6000),
    ]
    found = {
        (m.kind, m.partner, m.movement, m.payment_id)
        for m in settlement.reconcile(ledger, partners)
    }
    assert found == {
        ("amount_differs", "acquirer", "capture", "pay_b"),
        ("missing_in_ledger", "acquirer", "capture", "pay_x"),
        ("missing_at_partner", "issuer", "capture", "pay_c"),
    }
    assert settlement.reconcile(ledger, ledger) == []


def test_a_business_day_is_dubais() -> None:
    start, end = settlement.day_bounds(date(2026, 12, 1))
    assert start == datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    assert settlement.previous_business_day(datetime(2026, 12, 1, 21, 0, tzinfo=UTC)) == date(
        2026, 12, 1
    )


# --- on the stack ----------------------------------------------------------------------------


def _settle(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "epay"), "settlement", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _today() -> str:
    return datetime.now(UTC).astimezone(settlement.DUBAI).date().isoformat()


def _result(stack: Stack, day: str) -> dict[str, Any]:
    done = _settle(stack, "run", "--day", day, "--json")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    assert found["balanced"] is (done.returncode == 0)
    return found


def _mine(found: dict[str, Any], payments: set[str]) -> list[dict[str, Any]]:
    return [m for m in found["mismatches"] if m["payment_id"] in payments]


@pytest.fixture(scope="module")
def quiet_stack() -> Iterator[Stack]:
    """A stack of this module's own: its business day holds this module's payments alone
    (on the session's stack other tests make deliberate inconsistencies, which a run of the
    day rightly lists)."""
    with running_stack() as stack:
        yield stack


def test_a_day_of_payments_and_refunds_balances_and_a_mismatch_names_its_payment(
    quiet_stack: Stack,
) -> None:
    stack = quiet_stack
    by_card = stack.pay(card("4242424242424242"))
    by_e_dirham = stack.pay(e_dirham("7840000000000017"))
    declined = stack.pay(card("4000000000000002"))
    assert [by_card["state"], by_e_dirham["state"], declined["state"]] == [
        "succeeded",
        "succeeded",
        "failed",
    ]
    made = refund(stack, by_card["id"], 5000)
    assert made.status_code == 201, made.text
    assert wait_for_refund(stack, by_card["id"], made.json()["id"])["state"] == "succeeded"
    day = _today()

    first = _result(stack, day)
    assert first["balanced"] and first["mismatches"] == [], first["mismatches"]
    totals = first["totals"]
    # Two AED 240 payments (AED 220 service fee, AED 10 to each fund), AED 50 refunded from
    # the card payment's service fee; the declined card moved nothing.
    assert totals["ledger"] == {"captured": 48000, "refunded": 5000}
    assert totals["partners"]["acquirer"] == {"captured": 24000, "refunded": 5000}
    assert totals["partners"]["issuer"] == {"captured": 24000, "refunded": 0}
    lines = totals["lines"]
    assert lines["DM service_fee"] == {"captured": 44000, "refunded": 5000, "net": 39000}
    assert lines["knowledge_dirham_fund"] == {"captured": 2000, "refunded": 0, "net": 2000}
    assert lines["innovation_dirham_fund"] == {"captured": 2000, "refunded": 0, "net": 2000}

    # The acquirer reports a capture the ledger lacks, and another amount for ours.
    stranger = f"pay_{uuid.uuid4().hex}"
    for reference, amount in ((stranger, 1234), (by_card["id"], 1)):
        httpx.post(
            f"{stack.sandbox_url}/acquirer/_admin/settlement-lines",
            json={"day": day, "kind": "capture", "reference": reference, "amount": amount},
            timeout=10,
        ).raise_for_status()
    again = _result(stack, day)
    assert not again["balanced"]
    found = {(m["kind"], m["payment_id"]): m for m in again["mismatches"]}
    assert set(found) == {("missing_in_ledger", stranger), ("amount_differs", by_card["id"])}
    assert found[("missing_in_ledger", stranger)]["partner_amount"] == 1234
    differs = found[("amount_differs", by_card["id"])]
    assert (differs["ledger"], differs["partner_amount"]) == (24000, 24001)
    shown = _settle(stack, "show", "--day", day)
    assert (
        shown.returncode == 1
        and f"missing_in_ledger: acquirer capture of payment {stranger}" in shown.stdout
    )
    # The day's row was replaced, not added to.
    rows = stack.fetch(
        "SELECT runs FROM settlement_runs WHERE business_day = $1", date.fromisoformat(day)
    )
    assert rows == [{"runs": 2}]


def test_the_shared_stacks_payments_reconcile(stack: Stack) -> None:
    """On the session's stack, among whatever else the day holds, a succeeded payment and
    its refund are matched at their partners."""
    paid = stack.pay(card("4242424242424242"))
    made = refund(stack, paid["id"], 5000)
    assert made.status_code == 201, made.text
    assert wait_for_refund(stack, paid["id"], made.json()["id"])["state"] == "succeeded"
    found = _result(stack, _today())
    assert _mine(found, {paid["id"]}) == [], found["mismatches"]


def test_a_past_day_settles_and_bad_days_are_refused(stack: Stack) -> None:
    past = _result(stack, "2020-01-01")
    assert past["balanced"] and past["totals"]["ledger"] == {"captured": 0, "refunded": 0}
    bad = _settle(stack, "run", "--day", "2020-13-01")
    assert bad.returncode != 0 and "is not a date" in bad.stderr and "Traceback" not in bad.stderr


def test_the_daily_schedule_is_created(stack: Stack) -> None:
    done = _settle(stack, "schedule")
    assert done.returncode == 0, done.stderr

    async def described() -> Any:
        client = await stack.temporal_client()
        return await client.get_schedule_handle(SETTLEMENT_SCHEDULE_ID).describe()

    schedule = asyncio.run(described()).schedule
    assert [c.hour[0].start for c in schedule.spec.calendars] == [22]  # 02:00 in Dubai
