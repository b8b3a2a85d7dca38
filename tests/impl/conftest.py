"""Fixtures for the store tests: every test gets its own store and state directory."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep.impl.local_store import LocalStore


@pytest.fixture
def store_dirs(tmp_path: Path) -> tuple[str, str]:
    return os.fspath(tmp_path / "store"), os.fspath(tmp_path / "state")


@pytest.fixture
def store(store_dirs: tuple[str, str]) -> Iterator[LocalStore]:
    s = LocalStore(*store_dirs)
    yield s
    s.close()


def db_rows(state_dir: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read through a fresh connection."""
    conn = sqlite3.connect(os.path.join(state_dir, "db", "db.sqlite"))
    try:
        tables = ["ValidPaths", "Refs", "DerivationOutputs", "FailedPaths"]
        return {t: sorted(conn.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def store_listing(store_dir: str) -> list[tuple[str, int, int]]:
    """(relative path, mode, size) of everything under the store directory."""
    out = []
    for root, dirs, files in os.walk(store_dir):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, store_dir), st.st_mode, st.st_size))
    return sorted(out)


def snapshot(store: LocalStore) -> tuple[object, object]:
    return db_rows(store.state_dir), store_listing(store.store.path)


def check_db_consistent(state_dir: str) -> None:
    conn = sqlite3.connect(os.path.join(state_dir, "db", "db.sqlite"))
    try:
        assert conn.execute("pragma integrity_check").fetchall() == [("ok",)]
        assert conn.execute("pragma foreign_key_check").fetchall() == []
    finally:
        conn.close()
