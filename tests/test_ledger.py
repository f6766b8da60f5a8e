"""``epay ledger verify`` on the stack's books: clean after real payments and refunds, and every
kind of difference listed, with a non-zero exit, once the books are made wrong: on the
payments' side and on the refunds'.

The ledger is append-only (its triggers refuse changes), so the wrong books are made the
way only a database owner could: with the triggers off for one session (replication role),
and put back the same way afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from commands.ledger import check, render
from domain.money import FeeLine
from domain.refunds import refund_workflow_id
from store.ledger import BookedJournal, BookedPayment, BookedRefund, Books
from tests.conftest import Stack, card, e_dirham
from tests.support import BIN, ROOT
from tests.support.refunds import refund, wait_for_refund

# --- pure: the checking of books made up here ---------------------------------------------

LINES = (FeeLine("service_fee", 22000), FeeLine("knowledge_fee", 1000))


def _books(*, refund_debits: int, balances: dict[str, int]) -> Books:
    """A card payment of 23000 fils and a succeeded refund of 5000 of its service fee, the
    refund's journal of ``refund_debits`` fils."""
    return Books(
        journals=[
            BookedJournal(1, "pay_a", "capture", None, 0, 3, 23000),
            BookedJournal(2, "pay_a", "refund", "rf_a", 0, 2, refund_debits),
        ],
        payments=[BookedPayment("pay_a", "DM", "succeeded", 23000, LINES, "card")],
        refunds=[BookedRefund("rf_a", "pay_a", 5000, "succeeded", (FeeLine("service_fee", 5000),))],
        balances=balances,
        entries=5,
    )


BALANCED = {
    "card_acquirer_receivable": 18000,
    "department_payable:DM": -17000,
    "knowledge_dirham_fund": -1000,
}


def test_books_that_match_the_payments_and_refunds_verify() -> None:
    report = check(_books(refund_debits=5000, balances=BALANCED))
    assert report.ok, report.errors
    assert (report.journals, report.entries, report.payments, report.refunds) == (2, 5, 1, 1)
    assert render(report).endswith(
        "ok: every journal balances and the books match the payments and refunds"
    )


def test_a_misstated_refund_and_a_wrong_balance_are_listed() -> None:
    report = check(
        _books(refund_debits=4000, balances={**BALANCED, "department_payable:DM": -16000})
    )
    assert report.errors == [
        "refund rf_a: journal 2 is of 4000 fils for pay_a, the refund of 5000 for pay_a",
        "account department_payable:DM: balance -16000 fils, the payments and refunds make "
        "it -17000",
    ]
    assert "2 errors:" in render(report)


# --- on the stack ---------------------------------------------------------------------------


def _verify(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "epay"), "ledger", "verify"],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def paid(stack: Stack) -> list[dict[str, object]]:
    payments = [stack.pay(card("4242424242424242")), stack.pay(e_dirham("7840000000000017"))]
    assert [p["state"] for p in payments] == ["succeeded", "succeeded"]
    return payments


def test_the_books_of_real_payments_verify(stack: Stack, paid: list[dict[str, object]]) -> None:
    done = _verify(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: every journal balances" in done.stdout
    assert "knowledge_dirham_fund" in done.stdout
    assert "department_payable:DM" in done.stdout


@pytest.fixture
def tampered(stack: Stack, paid: list[dict[str, object]]) -> Iterator[dict[str, object]]:
    """An unbalanced journal of an unknown kind on one payment, and another payment's capture
    journal gone; undone afterwards."""
    one, other = (str(p["id"]) for p in paid)
    sql = (
        "SET session_replication_role = replica; "
        "WITH j AS (INSERT INTO ledger_journals (payment_id, kind) "
        f"VALUES ('{one}', 'adjustment') RETURNING id) "
        "INSERT INTO ledger_entries (journal_id, account, amount) "
        "SELECT id, 'department_payable:DM', 500 FROM j; "
        "CREATE TABLE IF NOT EXISTS ledger_test_moved AS SELECT * FROM ledger_entries WHERE false; "
        "INSERT INTO ledger_test_moved SELECT e.* FROM ledger_entries e "
        f"JOIN ledger_journals j ON j.id = e.journal_id WHERE j.payment_id = '{other}'; "
        "DELETE FROM ledger_entries WHERE id IN (SELECT id FROM ledger_test_moved); "
    )
    _psql(stack, sql)
    try:
        yield {"unbalanced": one, "unjournalled": other}
    finally:
        _psql(
            stack,
            "SET session_replication_role = replica; "
            "DELETE FROM ledger_entries WHERE journal_id IN "
            "(SELECT id FROM ledger_journals WHERE kind = 'adjustment'); "
            "DELETE FROM ledger_journals WHERE kind = 'adjustment'; "
            "INSERT INTO ledger_entries SELECT * FROM ledger_test_moved; "
            "DROP TABLE ledger_test_moved;",
        )


def _psql(stack: Stack, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def test_wrong_books_are_listed_and_exit_non_zero(
    stack: Stack, tampered: dict[str, object]
) -> None:
    done = _verify(stack)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"({tampered['unbalanced']}) is of unknown kind 'adjustment'" in out
    assert f"adjustment, {tampered['unbalanced']}) does not balance: off by 500 fils" in out
    assert f"capture, {tampered['unjournalled']}) has no entries" in out
    assert "account department_payable:DM: balance" in out
    assert "errors:" in out


@pytest.fixture(scope="module")
def refunded(stack: Stack) -> dict[str, str]:
    """A card payment with two succeeded refunds (5000 and 3000 fils of its service fee),
    their workflows closed."""
    payment = stack.pay(card("4242424242424242"))
    assert payment["state"] == "succeeded"
    ids: dict[str, str] = {}
    for name, amount in (("unjournalled", 5000), ("misstated", 3000)):
        response = refund(stack, payment["id"], amount)
        assert response.status_code == 201, response.text
        done = wait_for_refund(stack, payment["id"], response.json()["id"])
        assert done["state"] == "succeeded", done
        ids[name] = done["id"]

    async def closed() -> None:  # the department told: nothing changes the rows afterwards
        client = await stack.temporal_client()
        for refund_id in ids.values():
            await asyncio.wait_for(
                client.get_workflow_handle(refund_workflow_id(refund_id)).result(), 60
            )

    asyncio.run(closed())
    return {"payment": payment["id"], **ids}


def _refund_side(stack: Stack, payment_id: str) -> list[list[dict[str, object]]]:
    """Every row of ``payment_id``'s refunds, journals and entries, in a stable order."""
    return [
        stack.fetch("SELECT * FROM refunds WHERE payment_id = $1 ORDER BY id", payment_id),
        stack.fetch("SELECT * FROM ledger_journals WHERE payment_id = $1 ORDER BY id", payment_id),
        stack.fetch(
            "SELECT e.* FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id "
            "WHERE j.payment_id = $1 ORDER BY e.id",
            payment_id,
        ),
    ]


@pytest.fixture
def refunds_tampered(stack: Stack, refunded: dict[str, str]) -> Iterator[dict[str, str]]:
    """One succeeded refund's reversing journal (and its entries) gone, and another refund's
    row claiming 100 fils more than its journal reverses; put back afterwards, row for row."""
    before = _refund_side(stack, refunded["payment"])
    unjournalled, misstated = refunded["unjournalled"], refunded["misstated"]
    [journal] = stack.fetch(
        "SELECT id FROM ledger_journals WHERE refund_id = $1 AND kind = 'refund'", misstated
    )
    _psql(
        stack,
        "SET session_replication_role = replica; "
        "CREATE TABLE ledger_test_moved_journals AS "
        f"SELECT * FROM ledger_journals WHERE refund_id = '{unjournalled}'; "
        "CREATE TABLE ledger_test_moved_entries AS SELECT * FROM ledger_entries "
        "WHERE journal_id IN (SELECT id FROM ledger_test_moved_journals); "
        "DELETE FROM ledger_entries WHERE id IN (SELECT id FROM ledger_test_moved_entries); "
        "DELETE FROM ledger_journals WHERE id IN (SELECT id FROM ledger_test_moved_journals); "
        f"UPDATE refunds SET amount = amount + 100 WHERE id = '{misstated}';",
    )
    try:
        yield {**refunded, "misstated_journal": str(journal["id"])}
    finally:
        _psql(
            stack,
            "SET session_replication_role = replica; "
            "INSERT INTO ledger_journals SELECT * FROM ledger_test_moved_journals; "
            "INSERT INTO ledger_entries SELECT * FROM ledger_test_moved_entries; "
            "DROP TABLE ledger_test_moved_journals, ledger_test_moved_entries; "
            f"UPDATE refunds SET amount = amount - 100 WHERE id = '{misstated}';",
        )
        assert _refund_side(stack, refunded["payment"]) == before


def test_wrong_refunds_are_listed_and_exit_non_zero(
    stack: Stack, refunds_tampered: dict[str, str]
) -> None:
    done = _verify(stack)
    assert done.returncode == 1, done.stdout + done.stderr
    out, payment = done.stdout, refunds_tampered["payment"]
    assert (
        f"refund {refunds_tampered['unjournalled']} of {payment} succeeded with 0 reversing "
        "journals (one expected)"
    ) in out
    assert (
        f"refund {refunds_tampered['misstated']}: journal {refunds_tampered['misstated_journal']} "
        f"is of 3000 fils for {payment}, the refund of 3100 for {payment}"
    ) in out
    # The lost journal's 5000 fils are missing from the balances it moved.
    assert "account card_acquirer_receivable: balance" in out
    assert "account department_payable:DM: balance" in out


def test_the_books_verify_again_once_put_back(stack: Stack) -> None:
    done = _verify(stack)
    assert done.returncode == 0, done.stdout
