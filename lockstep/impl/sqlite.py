"""SQLite access as local-store.cc does it: one connection per store object, WAL,
foreign keys on, and every operation retried while the database is busy.

Python's sqlite3 module is used in autocommit mode (`isolation_level=None`) so that
transactions are exactly the `begin`/`commit` this module issues. Write transactions
start with `begin immediate`: they take SQLite's write lock up front, so two writers
never both read under a snapshot and then fail to upgrade (the SQLITE_BUSY_SNAPSHOT
case, which no busy handler can wait out in WAL mode).

`retry_sqlite(f)` mirrors `retrySQLite`: while `f` fails with "database is locked"
or "busy", warn once, sleep a random time below 100 ms, and run `f` again. `f` must
therefore be a whole transaction, safe to repeat from the start.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TypeVar

T = TypeVar("T")

SCHEMA_VERSION = 7
BUSY_TIMEOUT_S = 3600.0  # Guix: one hour


def schema_sql() -> str:
    return resources.files(__package__).joinpath("schema.sql").read_text()


def open_db(path: str, wal: bool = True) -> sqlite3.Connection:
    """Open the store database with the daemon's settings and create the schema."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("pragma foreign_keys = 1")
    conn.execute("pragma synchronous = normal")

    def setup() -> None:
        mode = conn.execute(f"pragma journal_mode = {'wal' if wal else 'truncate'}").fetchone()[0]
        if wal and mode != "wal":
            raise sqlite3.OperationalError("database is locked (could not enter WAL mode)")
        conn.execute("pragma wal_autocheckpoint = 40000")
        with transaction(conn):
            for stmt in _statements(schema_sql()):
                conn.execute(stmt)

    retry_sqlite(setup)
    return conn


def _statements(script: str) -> list[str]:
    """Split `script` into complete statements (sqlite3.complete_statement decides)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError(f"schema.sql ends with an incomplete statement: {current.strip()[:60]!r}")
    return out


def is_busy(e: BaseException) -> bool:
    if not isinstance(e, sqlite3.OperationalError):
        return False
    msg = str(e)
    return "locked" in msg or "busy" in msg


_warned = False


def retry_sqlite(f: Callable[[], T]) -> T:
    """Run `f` until it does not fail with a busy/locked database error."""
    global _warned
    while True:
        try:
            return f()
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
            if not _warned:
                print("warning: SQLite database is busy", file=sys.stderr)
                _warned = True
            time.sleep(random.random() * 0.1)


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """`begin [immediate]` ... `commit`; rollback if the body raises.

    Invariant: on exit the connection is outside any transaction.
    """
    conn.execute("begin immediate" if immediate else "begin")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("rollback")
        raise
    conn.execute("commit")
