"""The schema's own guarantees: migrations that can run twice and concurrently, a ledger
whose journals must balance and cannot be edited, one live reservation per reference."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest

from domain.references import reference_key
from epay import db
from epay.db import migrate, migration_files
from tests.conftest import Stack
from tests.support import BIN, db_fetch, embedded_server, temporary_database, with_database


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
    # Put the shared books back as they were (only the database owner can, with the ledger's
    # triggers off for the session), so that `epay ledger verify` finds them clean.
    asyncio.run(
        _in_transaction(
            stack.dsn,
            "SET LOCAL session_replication_role = replica",
            "DELETE FROM ledger_entries WHERE journal_id = -2",
            "DELETE FROM ledger_journals WHERE id = -2",
        )
    )


def test_the_database_allows_one_live_reservation_per_reference(stack: Stack) -> None:
    first = stack.created()
    [row] = stack.fetch("SELECT * FROM fee_reservations WHERE payment_id = $1", first["id"])
    assert row["reference_key"] == reference_key(row["reference"])
    second = _a_payment_id(stack)
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        asyncio.run(
            _in_transaction(
                stack.dsn,
                f"DELETE FROM fee_reservations WHERE payment_id = '{second}'",
                "INSERT INTO fee_reservations (payment_id, department, reference, reference_key, "
                f"amount, status) VALUES ('{second}', 'DM', '{row['reference'].lower()} ', "
                f"'{row['reference_key']}', 100, 'held')",
            )
        )


async def _insert_before_002(dsn: str, reservations: list[tuple[str, str, str]]) -> None:
    """Payments and their reservations as 001's schema stored them: (dept, reference, status)."""
    conn = await asyncpg.connect(dsn)
    try:
        for dept in sorted({d for d, _, _ in reservations}):
            await conn.execute(
                "INSERT INTO departments (code, name_en, name_ar, confirm_url) "
                "VALUES ($1, $1, $1, 'http://dept.invalid')",
                dept,
            )
            await conn.execute(
                "INSERT INTO services (department, code, name_en, name_ar, fee) "
                "VALUES ($1, 'FEE', 'fee', 'fee', 100)",
                dept,
            )
        for i, (dept, reference, status) in enumerate(reservations):
            state = {"held": "reserved", "consumed": "succeeded", "released": "cancelled"}[status]
            await conn.execute(
                "INSERT INTO payments (id, department, service_code, reference, state, "
                "amount_total, lines, workflow_id, expires_at) "
                "VALUES ($1, $2, 'FEE', $3, $4, 100, '[]', $1, now())",
                f"pay_{i}",
                dept,
                reference,
                state,
            )
            await conn.execute(
                "INSERT INTO fee_reservations (payment_id, department, reference, amount, status) "
                "VALUES ($1, $2, $3, 100, $4)",
                f"pay_{i}",
                dept,
                reference,
                status,
            )
    finally:
        await conn.close()


def _migrate_to_001(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(db, "migration_files", lambda: migration_files()[:1])
        assert asyncio.run(migrate(dsn)) == ["001_core.sql"]


def test_migration_002_keys_the_references_stored_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = [
        ("DM", "INV-1", "held"),
        ("DM", "inv-1 ", "released"),  # a released variant does not clash
        ("DM", "Fine 2024/7", "consumed"),
        ("DM", "ＩＮＶ－３", "held"),  # noqa: RUF001 full-width, from before the input rules
        ("DM", "a.b_c/d:e#f-g 9", "held"),
        ("RTA", "inv-1", "held"),  # another department's invoice
    ]
    with temporary_database() as dsn:
        _migrate_to_001(dsn, monkeypatch)
        asyncio.run(_insert_before_002(dsn, stored))
        assert "002_reference_key.sql" in asyncio.run(migrate(dsn))
        for table, id_column in (("fee_reservations", "payment_id"), ("payments", "id")):
            rows = db_fetch(
                dsn, f"SELECT reference, reference_key FROM {table} ORDER BY {id_column}"
            )
            assert [r["reference"] for r in rows] == [ref for _, ref, _ in stored]  # as sent
            assert [r["reference_key"] for r in rows] == [reference_key(r) for _, r, _ in stored]
        assert db_fetch(dsn, "SELECT reference_key FROM payments WHERE id = 'pay_2'") == [
            {"reference_key": "FINE2024/7"}
        ]
        with pytest.raises(asyncpg.exceptions.UniqueViolationError):
            asyncio.run(
                _in_transaction(
                    dsn,
                    "UPDATE fee_reservations SET status = 'held' WHERE payment_id = 'pay_1'",
                )
            )


def test_migration_002_stops_at_two_live_reservations_of_one_invoice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with temporary_database() as dsn:
        _migrate_to_001(dsn, monkeypatch)
        asyncio.run(
            _insert_before_002(dsn, [("DM", "INV-1", "consumed"), ("DM", "inv-1 ", "held")])
        )
        with pytest.raises(asyncpg.exceptions.UniqueViolationError, match="fee_reservations"):
            asyncio.run(migrate(dsn))
        assert db_fetch(dsn, "SELECT version FROM schema_migrations") == [{"version": 1}]
        columns = db_fetch(
            dsn,
            "SELECT 1 FROM information_schema.columns WHERE column_name = 'reference_key'",
        )
        assert columns == []


def test_without_a_server_the_suite_starts_an_embedded_one(tmp_path: Path) -> None:
    """What ``make test`` does on a machine with no PostgreSQL listening
    (``tests.support.admin_dsn``): the embedded server takes the migrations and the ledger's
    guarantees."""
    server = embedded_server(tmp_path / "pg")
    dsn = with_database(server, "epay_embedded")

    async def check() -> int:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute('CREATE DATABASE "epay_embedded"')
        finally:
            await admin.close()
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            count: int = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            return count
        finally:
            await conn.close()

    assert asyncio.run(check()) == len(migration_files())


def test_emptying_the_vault_of_a_payment_uses_an_index() -> None:
    """A payment's card data is deleted by payment id when it settles or ends: that must not
    read the whole vault (epay bench counted the rows sequential scans read per payment)."""
    with temporary_database() as dsn:
        asyncio.run(migrate(dsn))

        async def plan() -> str:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SET enable_seqscan = off")
                rows = await conn.fetch(
                    "EXPLAIN DELETE FROM card_vault WHERE payment_id = $1", "pay_x"
                )
                return "\n".join(r[0] for r in rows)
            finally:
                await conn.close()

        shown = asyncio.run(plan())
        assert "card_vault_payment" in shown, shown
