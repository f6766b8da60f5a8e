"""The daily settlement on the real stack: a day of mixed payments and refunds (on a stack
of the module's own, so that the day holds them alone) balances with the acquirer's and the
issuer's settlement files, every total to the fils; a capture the acquirer reports that
the ledger lacks, and one it reports for another amount, are listed with their payments; a
day can be settled again (its result replaced) and a past day settled at all; the daily
schedule exists. The reconciliation itself (domain/settlement.py) is pure and tested first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import httpx
import pytest

from commands import settlement as printed
from commands.schedules import SETTLEMENT_SCHEDULE_ID
from domain import settlement
from domain.calendar import DUBAI, previous_business_day
from domain.references import reference_key
from domain.settlement import Journal, Movement
from store.settlement import SettlementRun
from tests.conftest import Stack, card, e_dirham, running_stack
from tests.support import BIN, ROOT
from tests.support.refunds import refund, wait_for_refund

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


def _journal(
    kind: str,
    payment_id: str,
    asked: date,
    booked: date,
    *,
    at: str = "12:00",
    amount: int | None = None,
) -> Journal:
    """A card payment's capture (AED 240) or refund (AED 50 unless ``amount``) journal,
    booked at ``at`` on ``booked``."""
    moved = 24000 if kind == "capture" else -(amount or 5000)
    entries = (("card_acquirer_receivable", moved), ("department_payable:DM", -moved))
    booked_at = datetime.combine(booked, time.fromisoformat(at), DUBAI)
    return Journal(next(_journal_ids), kind, payment_id, "DM", asked, booked_at, entries)


_journal_ids = itertools.count(1)


def _file(*lines: tuple[str, str, int]) -> dict[str, Any]:
    return {"lines": [{"kind": k, "reference": r, "amount": a} for k, r, a in lines]}


def test_a_journal_settles_on_the_first_day_from_ask_to_booking_its_partner_reports_it() -> None:
    d1, d2, d3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    midnight = _journal("capture", "pay_m", d1, d2)  # captured 23:59:59, booked 00:00:01
    swept = _journal("capture", "pay_s", d1, d3)  # the sweeper booked it two days on
    late = _journal("capture", "pay_l", d1, d2)  # asked before midnight, captured after
    lost = _journal("capture", "pay_x", d1, d2)  # no partner reports it
    refund = _journal("refund", "pay_m", d2, d2)
    files = {
        d1: {"acquirer": _file(("capture", "pay_m", 24000), ("capture", "pay_s", 24000))},
        d2: {"acquirer": _file(("capture", "pay_l", 24000), ("refund", "pay_m", 5000))},
        d3: {"acquirer": _file()},
    }
    reported = settlement.reported_by_day(files)
    assert settlement.partner_days([midnight, swept, late, lost, refund], reported, d3) == [
        d1,
        d1,
        d2,
        d2,  # its booking day: where it shows as missing_at_partner, once
        d2,
    ]
    # Until its booking day has come, a journal no file has reported yet is undecided.
    assert settlement.partner_days([swept], {}, d2) == [None]
    assert settlement.days_to_read(d3, [swept]) == [d1, d2]
    assert settlement.days_to_read(d2, [refund]) == []

    journals = [midnight, swept, late, lost, refund]
    by_day = {day: settlement.result(day, journals, files) for day in (d1, d2, d3)}
    assert by_day[d1].balanced
    assert by_day[d1].totals["ledger"]["captured"] == 48000
    assert [(m.kind, m.payment_id) for m in by_day[d2].mismatches] == [
        ("missing_at_partner", "pay_x")
    ]
    assert by_day[d2].totals["ledger"] == {"captured": 48000, "refunded": 5000}
    assert by_day[d2].totals["lines"]["DM service_fee"] == {
        "captured": 48000,
        "refunded": 5000,
        "net": 43000,
    }
    assert by_day[d3].balanced
    assert by_day[d3].totals["ledger"]["captured"] == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # (amount, clock it was booked at) of each refund, in the order they were asked
        pytest.param((5000, "10:00:02"), (3000, "00:00:01"), id="other-amounts"),
        pytest.param((5000, "10:00:02"), (5000, "00:00:01"), id="same-amounts"),
    ],
)
def test_each_reported_line_settles_one_journal_of_its_payment(
    first: tuple[int, str], second: tuple[int, str]
) -> None:
    """A payment refunded at 10:00 on D and again at 23:59:59 on D, the second refund made by
    the acquirer on D+1 and booked at 00:00:01: D's refund line is the first refund's, so the
    second belongs to D+1. Matched on the payment alone, the second went to D as well (D's
    refunds differed, D+1's refund was missing in the ledger)."""
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    capture = _journal("capture", "pay_r", d1, d1, at="09:00:01")
    one = _journal("refund", "pay_r", d1, d1, at=first[1], amount=first[0])
    two = _journal("refund", "pay_r", d1, d2, at=second[1], amount=second[0])
    files = {
        d1: {"acquirer": _file(("capture", "pay_r", 24000), ("refund", "pay_r", first[0]))},
        d2: {"acquirer": _file(("refund", "pay_r", second[0]))},
    }
    journals = [capture, one, two]
    reported = settlement.reported_by_day(files)
    assert settlement.partner_days(journals, reported, d2) == [d1, d1, d2]
    # D's run places the same, and leaves the second refund to a later day.
    assert settlement.partner_days(journals, reported, d1) == [d1, d1, None]
    # D+1's run reads D's file: the first refund, booked on D, may have taken its line.
    assert settlement.days_to_read(d2, journals) == [d1]
    for day, refunded in ((d1, first[0]), (d2, second[0])):
        outcome = settlement.result(day, journals, files)
        assert outcome.mismatches == [], (day, outcome.mismatches)
        assert outcome.totals["ledger"]["refunded"] == refunded


def test_a_line_goes_to_the_journal_of_its_amount_whatever_order_the_partner_made_them() -> None:
    """Two refunds of one payment asked just before midnight and both booked after it: the
    acquirer made the one ePay booked second (AED 50) on D and the first (AED 30) on D+1. Each
    line settles the journal of its amount."""
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    capture = _journal("capture", "pay_o", d1, d1, at="09:00:01")
    booked_first = _journal("refund", "pay_o", d1, d2, at="00:00:02", amount=3000)
    booked_second = _journal("refund", "pay_o", d1, d2, at="00:00:03", amount=5000)
    files = {
        d1: {"acquirer": _file(("capture", "pay_o", 24000), ("refund", "pay_o", 5000))},
        d2: {"acquirer": _file(("refund", "pay_o", 3000))},
    }
    journals = [capture, booked_first, booked_second]
    assert settlement.partner_days(journals, settlement.reported_by_day(files), d2) == [
        d1,
        d2,
        d1,
    ]
    for day, refunded in ((d1, 5000), (d2, 3000)):
        outcome = settlement.result(day, journals, files)
        assert outcome.mismatches == [], (day, outcome.mismatches)
        assert outcome.totals["ledger"]["refunded"] == refunded


def test_a_line_of_another_amount_is_a_difference_on_the_day_it_meets_the_journal() -> None:
    """A line of another amount places no journal: on the journal's booking day it is an
    amount_differs; on an earlier day it is missing in the ledger there, and the journal
    missing at the partner on its booking day (a later day's file may yet report it)."""
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    same_day = _journal("refund", "pay_s", d1, d1, amount=5000)
    over_midnight = _journal("capture", "pay_n", d1, d2, at="00:00:01")
    files = {
        d1: {"acquirer": _file(("refund", "pay_s", 4999), ("capture", "pay_n", 23999))},
        d2: {"acquirer": _file()},
    }
    journals = [same_day, over_midnight]
    assert settlement.partner_days(journals, settlement.reported_by_day(files), d2) == [d1, d2]
    outcomes = {day: settlement.result(day, journals, files) for day in (d1, d2)}
    found = {
        day: [(m.kind, m.payment_id, m.ledger, m.partner_amount) for m in outcome.mismatches]
        for day, outcome in outcomes.items()
    }
    assert found == {
        d1: [
            ("missing_in_ledger", "pay_n", 0, 23999),
            ("amount_differs", "pay_s", 5000, 4999),
        ],
        d2: [("missing_at_partner", "pay_n", 24000, 0)],
    }


def test_the_days_to_read_reach_back_to_the_journals_that_may_have_taken_a_line() -> None:
    """A refund booked on D+2 that ePay asked for on D+1: D+1's file is read; a refund of the
    same payment the sweeper booked on D+1 that was asked for on D may have taken a line of
    D+1, so that D's file is read too; one booked on D-1 took none of those days' lines."""
    d0, d1, d2, d3 = (date(2026, 3, n) for n in (1, 2, 3, 4))
    old = _journal("refund", "pay_d", d0, d0)
    swept = _journal("refund", "pay_d", d1, d2)
    late = _journal("refund", "pay_d", d2, d3)
    other_payment = _journal("capture", "pay_e", d2, d3)
    assert settlement.days_to_read(d3, [old, swept, late, other_payment]) == [d1, d2]
    assert settlement.days_to_read(d3, [old, late]) == [d2]
    assert settlement.days_to_read(d3, [old]) == []


def test_a_business_day_is_dubais() -> None:
    start, end = settlement.day_bounds(date(2026, 12, 1))
    assert start == datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    assert previous_business_day(datetime(2026, 12, 1, 21, 0, tzinfo=UTC)) == date(2026, 12, 1)


def test_a_stored_day_prints_its_lines_and_mismatches() -> None:
    d = date(2026, 12, 1)
    journals = [
        Journal(
            1,
            "capture",
            "pay_a",
            "DM",
            d,
            datetime(2026, 12, 1, 8, tzinfo=UTC),
            (
                ("card_acquirer_receivable", 23000),
                ("department_payable:DM", -22000),
                ("knowledge_dirham_fund", -1000),
            ),
        ),
    ]
    outcome = settlement.result(d, journals, {d: {"acquirer": {"lines": [], "captured": 0}}})
    at = datetime(2026, 12, 2, 0, 1, tzinfo=UTC)
    document = outcome.as_json()
    run = SettlementRun(d, outcome.balanced, document["totals"], document["mismatches"], 2, at, at)
    assert printed.as_json(run) == {
        "business_day": "2026-12-01",
        "balanced": False,
        "totals": document["totals"],
        "mismatches": document["mismatches"],
        "runs": 2,
        "first_run_at": at.isoformat(),
        "last_run_at": at.isoformat(),
        "day": "2026-12-01",
    }
    assert printed.render(run).splitlines() == [
        "settlement of 2026-12-01 (Asia/Dubai): 1 mismatches",
        f"  {'line':40} {'captured':>14} {'refunded':>14} {'net':>14}",
        f"  {'DM service_fee':40} {'22,000':>14} {'0':>14} {'22,000':>14}",
        f"  {'knowledge_dirham_fund':40} {'1,000':>14} {'0':>14} {'1,000':>14}",
        "  ledger:   captured 23,000, refunded 0 fils",
        "  acquirer: captured 0, refunded 0 fils",
        "  MISMATCH missing_at_partner: acquirer capture of payment pay_a: ledger 23000, "
        "acquirer 0 fils",
    ]


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
    return datetime.now(UTC).astimezone(DUBAI).date().isoformat()


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
    assert first["balanced"], first["mismatches"]
    assert first["mismatches"] == [], first["mismatches"]
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
    assert shown.returncode == 1
    assert f"missing_in_ledger: acquirer capture of payment {stranger}" in shown.stdout
    # The day's row was replaced, not added to.
    rows = stack.fetch(
        "SELECT runs FROM settlement_runs WHERE business_day = $1", date.fromisoformat(day)
    )
    assert rows == [{"runs": 2}]


def _booked_capture(
    stack: Stack, *, asked: datetime, booked: datetime, partner_day: str | None
) -> str:
    """A card payment of AED 240 made at ``asked``, captured by the acquirer on its business
    day ``partner_day`` (a line of that day's settlement file; None: never) and booked by the
    ledger at ``booked``. These are the records a capture whose booking falls on another day
    leaves (the answer came back after midnight, or the sweeper finished it days later); they
    are written directly because a test cannot move the clock to midnight."""
    pid = f"pay_{uuid.uuid4().hex}"
    reference = f"SETTLE-{pid[-12:]}"
    lines = [
        {"code": "service_fee", "amount": 22000},
        {"code": "knowledge_fee", "amount": 1000},
        {"code": "innovation_fee", "amount": 1000},
    ]
    stack.fetch(
        """WITH p AS (
               INSERT INTO payments (id, department, service_code, reference, reference_key,
                   state, amount_total, lines, method_type, workflow_id, expires_at,
                   created_at, updated_at)
               VALUES ($1, 'DM', 'HEALTH_CERT', $2, $3, 'succeeded', 24000, $4::jsonb, 'card',
                   'payment-' || $1, $5::timestamptz + interval '90 minutes', $5, $6)
               RETURNING id),
           j AS (
               INSERT INTO ledger_journals (payment_id, kind, created_at)
               SELECT id, 'capture', $6 FROM p RETURNING id)
           INSERT INTO ledger_entries (journal_id, account, amount)
           SELECT j.id, e.account, e.amount FROM j, (VALUES
               ('card_acquirer_receivable', 24000), ('department_payable:DM', -22000),
               ('knowledge_dirham_fund', -1000), ('innovation_dirham_fund', -1000)
           ) AS e (account, amount)""",
        pid,
        reference,
        reference_key(reference),
        json.dumps(lines),
        asked,
        booked,
    )
    if partner_day is not None:
        httpx.post(
            f"{stack.sandbox_url}/acquirer/_admin/settlement-lines",
            json={"day": partner_day, "kind": "capture", "reference": pid, "amount": 24000},
            timeout=10,
        ).raise_for_status()
    return pid


def test_a_capture_is_matched_on_the_partners_day_whatever_day_the_ledger_booked_it(
    quiet_stack: Stack,
) -> None:
    """A capture the acquirer made at 23:59:59 that the ledger booked at 00:00:01, and one the
    sweeper booked two days later, balance on the acquirer's day and are not missing on the
    day they were booked; a capture ePay asked for before midnight that the acquirer put on
    the next day balances on that day; a booking no partner reports is listed once."""
    stack = quiet_stack
    first, second, third = "2021-03-01", "2021-03-02", "2021-03-03"

    def at(day: str, clock: str) -> datetime:
        return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=DUBAI)

    midnight = _booked_capture(
        stack,
        asked=at(first, "23:59:50"),
        booked=at(second, "00:00:01"),
        partner_day=first,
    )
    swept = _booked_capture(
        stack,
        asked=at(first, "10:00:00"),
        booked=at(third, "09:00:00"),
        partner_day=first,
    )
    same_day = _booked_capture(
        stack,
        asked=at(second, "12:00:00"),
        booked=at(second, "12:00:01"),
        partner_day=second,
    )
    unreported = _booked_capture(
        stack,
        asked=at(second, "13:00:00"),
        booked=at(second, "13:00:02"),
        partner_day=None,
    )
    next_day = _booked_capture(
        stack,
        asked=at(second, "23:59:59.500"),
        booked=at(third, "00:00:00.700"),
        partner_day=third,
    )
    mine = {midnight, swept, same_day, unreported, next_day}

    on_first = _result(stack, first)
    assert _mine(on_first, mine) == [], on_first["mismatches"]
    assert on_first["totals"]["ledger"] == {"captured": 48000, "refunded": 0}
    assert on_first["totals"]["lines"]["DM service_fee"]["captured"] == 44000

    on_second = _result(stack, second)
    assert [(m["kind"], m["payment_id"]) for m in _mine(on_second, mine)] == [
        ("missing_at_partner", unreported)
    ]
    assert on_second["totals"]["ledger"] == {"captured": 48000, "refunded": 0}

    on_third = _result(stack, third)
    assert _mine(on_third, mine) == [], on_third["mismatches"]
    assert on_third["totals"]["ledger"] == {"captured": 24000, "refunded": 0}


def _booked_refund(
    stack: Stack, payment_id: str, *, asked: datetime, booked: datetime, partner_day: str
) -> None:
    """A refund of AED 50 of the card payment ``payment_id`` from its service fee, asked at
    ``asked``, made by the acquirer on its business day ``partner_day`` and booked by the
    ledger at ``booked`` (written directly, like ``_booked_capture``)."""
    refund_id = f"ref_{uuid.uuid4().hex}"
    stack.fetch(
        """WITH r AS (
               INSERT INTO refunds (id, payment_id, department, amount, state, lines,
                   workflow_id, created_at, updated_at)
               VALUES ($1, $2, 'DM', 5000, 'succeeded',
                   '[{"code": "service_fee", "amount": 5000}]'::jsonb, 'refund-' || $1, $3, $4)
               RETURNING id, payment_id),
           j AS (
               INSERT INTO ledger_journals (payment_id, kind, refund_id, created_at)
               SELECT payment_id, 'refund', id, $4 FROM r RETURNING id)
           INSERT INTO ledger_entries (journal_id, account, amount)
           SELECT j.id, e.account, e.amount FROM j, (VALUES
               ('card_acquirer_receivable', -5000), ('department_payable:DM', 5000)
           ) AS e (account, amount)""",
        refund_id,
        payment_id,
        asked,
        booked,
    )
    httpx.post(
        f"{stack.sandbox_url}/acquirer/_admin/settlement-lines",
        json={"day": partner_day, "kind": "refund", "reference": payment_id, "amount": 5000},
        timeout=10,
    ).raise_for_status()


def test_two_refunds_of_a_payment_each_settle_on_the_day_the_acquirer_reports_them(
    quiet_stack: Stack,
) -> None:
    """A payment refunded AED 50 at 10:00 and AED 50 again at 23:59:59, the second refund made
    by the acquirer the next day and booked at 00:00:01: each day balances with one refund
    (matched on the payment alone, the second went to the first day as well)."""
    stack = quiet_stack
    first, second = "2021-04-01", "2021-04-02"

    def at(day: str, clock: str) -> datetime:
        return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=DUBAI)

    paid = _booked_capture(
        stack, asked=at(first, "09:00:00"), booked=at(first, "09:00:01"), partner_day=first
    )
    _booked_refund(
        stack, paid, asked=at(first, "10:00:00"), booked=at(first, "10:00:02"), partner_day=first
    )
    _booked_refund(
        stack,
        paid,
        asked=at(first, "23:59:59"),
        booked=at(second, "00:00:01"),
        partner_day=second,
    )

    on_first = _result(stack, first)
    assert _mine(on_first, {paid}) == [], on_first["mismatches"]
    assert on_first["totals"]["ledger"] == {"captured": 24000, "refunded": 5000}
    on_second = _result(stack, second)
    assert _mine(on_second, {paid}) == [], on_second["mismatches"]
    assert on_second["totals"]["ledger"] == {"captured": 0, "refunded": 5000}


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
    assert past["balanced"]
    assert past["totals"]["ledger"] == {"captured": 0, "refunded": 0}
    bad = _settle(stack, "run", "--day", "2020-13-01")
    assert bad.returncode != 0
    assert "is not a date" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_daily_schedule_is_created(stack: Stack) -> None:
    done = _settle(stack, "schedule")
    assert done.returncode == 0, done.stderr

    async def described() -> Any:
        client = await stack.temporal_client()
        return await client.get_schedule_handle(SETTLEMENT_SCHEDULE_ID).describe()

    schedule = asyncio.run(described()).schedule
    assert [c.hour[0].start for c in schedule.spec.calendars] == [22]  # 02:00 in Dubai
