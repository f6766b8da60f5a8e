"""The sandbox's memory: JSON documents in SQLite, one row per (kind, id).

With a state file the outside world survives a restart of the sandbox, even a SIGKILL:
handlers change state inside `StateDB.transaction()`, which commits before the answer is
sent. Without one the database lives in memory and dies with the process.

The app serves every request on one event loop thread and no transaction spans an
``await``, so transactions never interleave and no lock is needed.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sandbox.common import SandboxError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)
else:
    D = TypeVar("D")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
)
"""


class StateDB:
    def __init__(self, path: str | None = None) -> None:
        # Autocommit: outside a transaction() block each statement commits on its own.
        self.conn = sqlite3.connect(
            path or ":memory:", isolation_level=None, check_same_thread=False
        )
        if path:
            # WAL with synchronous=NORMAL: a commit survives the process being killed
            # (not a power cut, which a sandbox need not survive).
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing, committed on leaving the block; also when it ends in a
        SandboxError, because a refusal is an answer and what led to it stays (a wrong PIN
        counted, a department's attempt)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except SandboxError:
            self.conn.execute("COMMIT")
            raise
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class Table(Generic[D]):
    """The documents of one kind, as instances of a dataclass with JSON-able fields."""

    def __init__(self, db: StateDB, kind: str, cls: type[D]) -> None:
        self.db = db
        self.kind = kind
        self.cls = cls
        self.fields = {f.name for f in dataclasses.fields(cls)}

    def _load(self, body: str) -> D:
        return self.cls(**json.loads(body))

    def get(self, id: str) -> D | None:
        row = self.db.conn.execute(
            "SELECT body FROM documents WHERE kind = ? AND id = ?", (self.kind, id)
        ).fetchone()
        return None if row is None else self._load(row[0])

    def put(self, id: str, item: D) -> None:
        self.db.conn.execute(
            """INSERT INTO documents (kind, id, body) VALUES (?, ?, ?)
               ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body""",
            (self.kind, id, json.dumps(dataclasses.asdict(item))),
        )

    def add(self, id: str, item: D) -> None:
        """Store ``item`` unless a document with this id exists."""
        self.db.conn.execute(
            "INSERT INTO documents (kind, id, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (self.kind, id, json.dumps(dataclasses.asdict(item))),
        )

    def find(self, **equal: Any) -> list[D]:
        """The documents whose fields equal the given values (None matches anything),
        oldest first."""
        wanted = {name: value for name, value in equal.items() if value is not None}
        unknown = set(wanted) - self.fields
        if unknown:
            raise ValueError(f"{self.cls.__name__} has no fields {sorted(unknown)}")
        sql = "SELECT body FROM documents WHERE kind = ?" + "".join(
            f" AND json_extract(body, '$.{name}') = ?" for name in wanted
        )
        rows = self.db.conn.execute(sql + " ORDER BY rowid", (self.kind, *wanted.values()))
        return [self._load(body) for (body,) in rows]
