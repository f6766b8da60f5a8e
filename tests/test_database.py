"""The schema's own guarantees: migrations that can run twice and concurrently, a ledger
whose journals must balance and cannot be edited, one live reservation per reference."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import pytest

from epay.db import migrate, migration_files
from tests.conftest import Stack
from tests.support import BIN, temporary_database


def test_migrations_run_twice_and_from_two_processes_at_once() -> None:
    with temporary_database() as dsn:
        env = {"DATABASE_URL": dsn, "PATH": str(BIN)}
        procs = [
            subprocess.Popen(
                [str(BIN / "epay"), "migrate"], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert asyncio.run(migrate(dsn)) == []

        async def versions() -> list[int]:
            conn = await asyncpg.connect(dsn)
            try:
                return [
                    r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
                ]
            finally:
                await conn.close()

        assert sorted(asyncio.run(versions())) == [v for v, _, _ in migration_files()]


async def _in_transaction(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for sql in statements:
                await conn.execute(sql)
    finally:
        await conn.close()


def _a_payment_id(stack: Stack) -> str:
    return str(stack.created()["id"])


def test_an_unbalanced_journal_is_refused(stack: Stack) -> None:
    pid = _a_payment_id(stack)
    with pytest.raises(asyncpg.exceptions.CheckViolationError, match="does not balance"):
        asyncio.run(
            _in_transaction(
                stack.dsn,
                f"INSERT INTO ledger_journals (id, payment_id, kind) VALUES (-1, '{pid}', 'test')",
                "INSERT INTO ledger_entries (journal_id, account, amount) VALUES (-1, 'a', 100)",
                "INSERT INTO ledger_entries (journal_id, account, amount) VALUES (-1, 'b', -99)",
            )
        )
    assert stack.fetch("SELECT 1 FROM ledger_journals WHERE payment_id = $1", pid) == []


def test_a_balanced_journal_is_kept_and_cannot_be_edited(stack: Stack) -> None:
    pid = _a_payment_id(stack)
    asyncio.run(
        _in_transaction(
            stack.dsn,
            f"INSERT INTO ledger_journals (id, payment_id, kind) VALUES (-2, '{pid}', 'test')",
            "INSERT INTO ledger_entries (journal_id, account, amount) VALUES (-2, 'a', 100)",
            "INSERT INTO ledger_entries (journal_id, account, amount) VALUES (-2, 'b', -100)",
        )
    )
    with pytest.raises(asyncpg.exceptions.CheckViolationError, match="cannot be changed"):
        asyncio.run(
            _in_transaction(stack.dsn, "UPDATE ledger_entries SET amount = 1 WHERE journal_id = -2")
        )
    with pytest.raises(asyncpg.exceptions.CheckViolationError, match="cannot be changed"):
        asyncio.run(_in_transaction(stack.dsn, "DELETE FROM ledger_entries WHERE journal_id = -2"))


def test_the_database_allows_one_live_reservation_per_reference(stack: Stack) -> None:
    first = stack.created()
    [row] = stack.fetch("SELECT * FROM fee_reservations WHERE payment_id = $1", first["id"])
    second = _a_payment_id(stack)
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        asyncio.run(
            _in_transaction(
                stack.dsn,
                f"DELETE FROM fee_reservations WHERE payment_id = '{second}'",
                "INSERT INTO fee_reservations (payment_id, department, reference, amount, status) "
                f"VALUES ('{second}', 'DM', '{row['reference']}', 100, 'held')",
            )
        )
