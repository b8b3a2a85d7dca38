"""Store verification (Guix LocalStore::verifyStore), reporting instead of repairing.

Checks, each reported as one line naming the object and what is wrong:
- SQLite's own `integrity_check` and `foreign_key_check` (so Refs and
  DerivationOutputs point at existing rows);
- every valid path exists on disk;
- every reference of a valid path is valid (implied by the foreign keys; kept as an
  explicit check because the database could have been written with them off);
- with `check_contents`, the NAR hash and size on disk equal the registered ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .archive import hash_path
from .local_store import LocalStore


@dataclass
class VerifyResult:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: LocalStore, check_contents: bool = False) -> VerifyResult:
    result = VerifyResult()
    db = store.db
    integrity = [str(r[0]) for r in db.execute("pragma integrity_check").fetchall()]
    if integrity != ["ok"]:
        result.problems += [f"database: integrity check failed: {m}" for m in integrity]
    for table, rowid, parent, _fk in db.execute("pragma foreign_key_check").fetchall():
        result.problems.append(f"database: row {rowid} of {table} refers to a missing row of {parent}")
    valid = store.query_all_valid_paths()
    for path in sorted(valid):
        if not os.path.lexists(path):
            result.problems.append(f"path {path!r} is valid but missing on disk; delete it from the database or restore it")
            continue
        info = store.query_path_info(path)
        assert info is not None
        for ref in sorted(info.references - valid):
            result.problems.append(f"path {path!r} refers to invalid path {ref!r}")
        if check_contents:
            h, size = hash_path(path)
            if h != info.nar_hash:
                result.problems.append(
                    f"path {path!r} was modified: its NAR hash is {h} but {info.nar_hash} is registered"
                )
            elif info.nar_size is not None and size != info.nar_size:
                result.problems.append(f"path {path!r} has NAR size {size} but {info.nar_size} is registered")
    return result
