"""``epay ledger verify`` on the stack's books: clean after real payments, and every kind of
difference listed, with a non-zero exit, once the books are made wrong.

The ledger is append-only (its triggers refuse changes), so the wrong books are made the
way only a database owner could: with the triggers off for one session (replication role),
and put back the same way afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import Stack, card, e_dirham
from tests.support import BIN, ROOT


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
    assert "knowledge_dirham_fund" in done.stdout and "department_payable:DM" in done.stdout


@pytest.fixture()
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
    import asyncio

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


def test_the_books_verify_again_once_put_back(stack: Stack) -> None:
    done = _verify(stack)
    assert done.returncode == 0, done.stdout
