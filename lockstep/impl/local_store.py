"""The local store (Guix local-store.cc): the validity database and adding paths.

Layout. `<store>` holds the store objects, their `.lock` files and `.links`.
`<state>` holds the daemon's state:

    <state>/db/db.sqlite     schema v7 (schema.sql), WAL
    <state>/db/schema        "7"
    <state>/db/big-lock      every store object holds a shared lock on it while open
    <state>/temproots/<pid>  this process's temporary GC roots (gc.py)
    <state>/gcroots/         permanent roots: symlinks to store paths (auto/ = indirect)
    <state>/gc.lock          write-locked by a collection, read-locked by new temp roots

How a path becomes valid (every path, whoever writes it), the central invariant:

    temp root -> lock <path>.lock -> re-check validity -> delete leftovers -> write
    -> canonicalise (0444/0555, mtime 1) -> hash -> register (one SQLite commit)
    -> set_deletion(True) -> unlock

Registration happens while the path lock is held, and the lock (and its file) goes
only after the commit, so whoever locks next and re-checks validity sees the path.
A crash anywhere before the commit leaves the path invalid; the next writer deletes
the leftovers under the lock. `register_valid_paths` is one transaction: either every
path of the batch becomes valid with all its references, or nothing changes.

Each process (each LocalStore) has its own SQLite connection; processes share nothing
but files, fcntl locks and SQLite's own locking.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from . import derivations as drvs
from . import faults
from .archive import Regular, delete_path, dump_path, hash_path, parse_nar, restore_path, write_tree
from .gc import TempRoots, lock_gc
from .hash import Hash, HashSink, parse_hash, sha256
from .misc import ReferenceCycleError, StoreError, topo_sort_paths
from .pathlocks import LockType, PathLocks, lock_file, open_lock_file
from .sqlite import SCHEMA_VERSION, open_db, retry_sqlite, transaction
from .store_api import DEFAULT_STORE_DIR, StoreDir, check_store_name

__all__ = [
    "DEFAULT_STATE_DIR", "InvalidReferenceError", "LocalStore", "ReferenceCycleError", "SchemaError",
    "StoreError", "ValidPathInfo", "canonicalise_path_metadata", "topo_sort_paths",
]

DEFAULT_STATE_DIR = "/var/guix"

BEFORE_COMMIT = faults.declare(
    "local-store.register.before-commit",
    "register_valid_paths: rows inserted and checked, transaction not yet committed",
)
AFTER_WRITE = faults.declare(
    "local-store.add.after-write",
    "add_*_to_store: the path is written and canonicalised but not yet registered",
)


class InvalidReferenceError(StoreError):
    pass


class SchemaError(StoreError):
    pass


@dataclass(frozen=True)
class ValidPathInfo:
    """One row of ValidPaths plus its references. `nar_hash` is the SHA-256 NAR hash."""

    path: str
    nar_hash: Hash
    references: frozenset[str] = frozenset()
    deriver: str | None = None
    nar_size: int | None = None
    registration_time: int = field(default=0, compare=False)  # 0: the time of registration


def canonicalise_path_metadata(path: str) -> None:
    """Make a tree read-only (files 0444, or 0555 if executable; dirs 0555), mtime 1."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        for name in os.listdir(path):
            canonicalise_path_metadata(os.path.join(path, name))
    if not stat.S_ISLNK(st.st_mode):
        executable = stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR
        os.chmod(path, 0o555 if executable else 0o444)
    os.utime(path, (1, 1), follow_symlinks=False)


class LocalStore:
    """One process's handle on the store. Not thread-safe (nor is the daemon).

    Open one per process, as the daemon does. Several in one process work (they share
    the process's temp-roots file), but fcntl locks belong to the process: closing one
    store's big-lock fd drops the shared big lock of the others too (harmless today,
    since nothing takes it exclusively once the database exists).
    """

    def __init__(
        self,
        store_dir: str = DEFAULT_STORE_DIR,
        state_dir: str = DEFAULT_STATE_DIR,
        *,
        wal: bool = True,
    ) -> None:
        self.store = StoreDir(os.path.abspath(store_dir))
        self.state_dir = os.path.abspath(state_dir)
        self.db_dir = os.path.join(self.state_dir, "db")
        self.gcroots_dir = os.path.join(self.state_dir, "gcroots")
        self.gc_lock_path = os.path.join(self.state_dir, "gc.lock")
        for d in (self.store.path, self.db_dir, self.gcroots_dir, os.path.join(self.state_dir, "temproots")):
            os.makedirs(d, exist_ok=True)
        # Invariant while open: this process holds a shared lock on db/big-lock.
        fd = open_lock_file(os.path.join(self.db_dir, "big-lock"), True)
        assert fd is not None
        self._big_lock = fd
        schema_file = os.path.join(self.db_dir, "schema")
        if not os.path.exists(schema_file):
            lock_file(fd, LockType.WRITE, True)  # first opener creates the database
        elif not lock_file(fd, LockType.READ, False):
            print("waiting for the big store lock...", file=sys.stderr, flush=True)
            lock_file(fd, LockType.READ, True)
        self.db = open_db(os.path.join(self.db_dir, "db.sqlite"), wal)
        if not os.path.exists(schema_file):
            tmp = f"{schema_file}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(str(SCHEMA_VERSION))
            os.rename(tmp, schema_file)
        lock_file(fd, LockType.READ, True)  # (a downgrade, if we created the database)
        self._check_schema(schema_file)
        self.temp_roots = TempRoots(self.state_dir, self.gc_lock_path)
        self._drv_hashes: dict[str, Hash] = {}
        self._closed = False

    def _check_schema(self, schema_file: str) -> None:
        text = open(schema_file).read().strip()
        version = int(text) if text.isdigit() else -1
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"current store schema is version {version} (in {schema_file}), but I only "
                f"support {SCHEMA_VERSION}; use a newer lockstep or a fresh state directory"
            )
        if version < SCHEMA_VERSION:
            raise SchemaError(
                f"your store database uses an implausibly old schema ({text!r} in {schema_file}); "
                f"version {SCHEMA_VERSION} is required"
            )

    def close(self) -> None:
        """Drop the temp roots of this process (if no other store uses them) and the big lock."""
        if self._closed:
            return
        self._closed = True
        self.temp_roots.release()
        self.db.close()
        os.close(self._big_lock)

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- queries -----------------------------------------------------------------

    def _query(self, sql: str, args: Iterable[object] = ()) -> list[tuple[object, ...]]:
        return retry_sqlite(lambda: self.db.execute(sql, tuple(args)).fetchall())

    def is_valid_path(self, path: str) -> bool:
        """A database lookup only: file existence is not checked (as isValidPath)."""
        return bool(self._query("select 1 from ValidPaths where path = ?", (path,)))

    def query_valid_paths(self, paths: Iterable[str]) -> set[str]:
        return {p for p in paths if self.is_valid_path(p)}

    def query_all_valid_paths(self) -> set[str]:
        return {str(r[0]) for r in self._query("select path from ValidPaths")}

    def query_path_info(self, path: str) -> ValidPathInfo | None:
        rows = self._query(
            "select id, hash, registrationTime, deriver, narSize from ValidPaths where path = ?", (path,)
        )
        if not rows:
            return None
        id_, h, reg, deriver, size = rows[0]
        refs = self._query(
            "select v.path from Refs r join ValidPaths v on r.reference = v.id where r.referrer = ?", (id_,)
        )
        return ValidPathInfo(
            path, parse_hash(str(h)), frozenset(str(r[0]) for r in refs),
            None if deriver is None else str(deriver),
            None if size is None else int(str(size)), int(str(reg)),
        )

    def query_references(self, path: str) -> set[str]:
        info = self.query_path_info(path)
        if info is None:
            raise StoreError(f"path {path!r} is not valid; add or build it before asking for its references")
        return set(info.references)

    def query_referrers(self, path: str) -> set[str]:
        rows = self._query(
            "select v.path from Refs r join ValidPaths v on r.referrer = v.id "
            "where r.reference = (select id from ValidPaths where path = ?)", (path,)
        )
        return {str(r[0]) for r in rows}

    def query_derivation_outputs(self, drv_path: str) -> dict[str, str]:
        rows = self._query(
            "select d.id, d.path from DerivationOutputs d join ValidPaths v on d.drv = v.id "
            "where v.path = ?", (drv_path,)
        )
        return {str(k): str(p) for k, p in rows}

    def query_valid_derivers(self, path: str) -> set[str]:
        rows = self._query(
            "select v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id where d.path = ?",
            (path,),
        )
        return {str(r[0]) for r in rows}

    def compute_fs_closure(self, paths: Iterable[str], flip_direction: bool = False) -> set[str]:
        """Every path reachable from `paths` by references (or, flipped, by referrers)."""
        todo = list(paths)
        seen: set[str] = set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            todo.extend(self.query_referrers(p) if flip_direction else self.query_references(p))
        return seen

    def read_derivation(self, drv_path: str) -> drvs.Derivation:
        self.store.parse_store_path(drv_path)
        try:
            with open(drv_path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except FileNotFoundError:
            raise StoreError(f"derivation {drv_path!r} does not exist in the store; add it first") from None
        return drvs.parse(text, drv_path)

    # --- registration ------------------------------------------------------------

    def register_valid_path(self, info: ValidPathInfo) -> None:
        self.register_valid_paths([info])

    def register_valid_paths(self, infos: Iterable[ValidPathInfo]) -> None:
        """Make every path of `infos` valid in ONE transaction, or raise and change nothing.

        Checks, all before the commit: each path is a store path; each reference is
        valid or in the batch; each .drv's output paths are the ones it must have; the
        batch's references contain no cycle (self-references aside).
        """
        batch = list(infos)
        for info in batch:
            self.store.parse_store_path(info.path)
        topo_sort_paths({i.path: i.references for i in batch})  # rejects cycles up front
        drv_infos = {i.path: self.read_derivation(i.path) for i in batch if i.path.endswith(drvs.DRV_EXTENSION)}

        def txn() -> None:
            with transaction(self.db) as db:
                now = int(time.time())
                ids: dict[str, int] = {}
                for info in batch:
                    ids[info.path] = self._add_or_update(db, info, now, drv_infos.get(info.path))
                for info in batch:
                    for ref in sorted(info.references):
                        db.execute(
                            "insert or replace into Refs (referrer, reference) values (?, ?)",
                            (ids[info.path], self._reference_id(db, info.path, ref, ids)),
                        )
                for path, drv in sorted(drv_infos.items()):
                    self._check_derivation_outputs(path, drv)
                faults.point(BEFORE_COMMIT)

        retry_sqlite(txn)

    def _add_or_update(
        self, db: sqlite3.Connection, info: ValidPathInfo, now: int, drv: drvs.Derivation | None
    ) -> int:
        row = db.execute("select id from ValidPaths where path = ?", (info.path,)).fetchone()
        h = f"sha256:{info.nar_hash.base16}"
        if row is not None:
            db.execute("update ValidPaths set narSize = ?, hash = ? where id = ?", (info.nar_size, h, row[0]))
            return int(row[0])
        cur = db.execute(
            "insert into ValidPaths (path, hash, registrationTime, deriver, narSize) values (?, ?, ?, ?, ?)",
            (info.path, h, info.registration_time or now, info.deriver, info.nar_size),
        )
        assert cur.lastrowid is not None
        for name, out in sorted((drv.outputs if drv else {}).items()):
            db.execute(
                "insert or replace into DerivationOutputs (drv, id, path) values (?, ?, ?)",
                (cur.lastrowid, name, out.path),
            )
        return cur.lastrowid

    def _reference_id(self, db: sqlite3.Connection, referrer: str, ref: str, batch: dict[str, int]) -> int:
        """The row id of `ref`, which must be valid or part of the batch being registered."""
        if ref in batch:
            return batch[ref]
        row = db.execute("select id from ValidPaths where path = ?", (ref,)).fetchone()
        if row is None:
            raise InvalidReferenceError(
                f"cannot register {referrer!r}: its reference {ref!r} is not a valid path; "
                f"a path may refer only to valid paths or to paths registered in the same batch, "
                f"so add {ref!r} first (or together with it)"
            )
        return int(row[0])

    def _check_derivation_outputs(self, drv_path: str, drv: drvs.Derivation) -> None:
        try:
            drvs.check_derivation_outputs(drv_path, drv, self.store, self.read_derivation, self._drv_hashes)
        except drvs.BadDerivation as e:
            raise StoreError(f"cannot register {drv_path!r}: {e}") from e

    # --- adding paths ------------------------------------------------------------

    def add_temp_root(self, path: str) -> None:
        self.temp_roots.add(path)

    def _check_references_valid(self, what: str, references: Iterable[str]) -> frozenset[str]:
        refs = frozenset(references)
        for ref in sorted(refs):
            self.store.parse_store_path(ref)
            self.add_temp_root(ref)  # so that a collection cannot take it from under us
            if not self.is_valid_path(ref):
                raise InvalidReferenceError(
                    f"cannot add {what}: its reference {ref!r} is not a valid path; "
                    f"add {ref!r} to the store first"
                )
        return refs

    def _add_path(self, dst: str, contents: Regular | bytes, references: frozenset[str]) -> str:
        """The protocol every add_* follows (see the module essay). `contents` is a single
        file, or the NAR of a whole tree."""
        self.add_temp_root(dst)
        if self.is_valid_path(dst):
            return dst
        with PathLocks([dst]) as locks:
            if not self.is_valid_path(dst):
                delete_path(dst)  # leftovers of a crashed writer; we hold the lock
                try:
                    if isinstance(contents, bytes):
                        restore_path(dst, contents, dst)
                    else:
                        write_tree(contents, dst)
                    canonicalise_path_metadata(dst)
                    faults.point(AFTER_WRITE)
                    h, size = hash_path(dst)
                    self.register_valid_paths([ValidPathInfo(dst, h, references, None, size)])
                except BaseException:
                    delete_path(dst)
                    raise
            locks.set_deletion(True)
        return dst

    def add_text_to_store(self, name: str, text: str | bytes, references: Iterable[str] = ()) -> str:
        """Add a text file (e.g. a .drv) whose path is content- and reference-addressed."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        check_store_name(name)
        refs = self._check_references_valid(f"text {name!r}", references)
        dst = self.store.make_text_path(name, sha256(data), refs)
        return self._add_path(dst, Regular(data), refs)

    def add_to_store(self, src: str, recursive: bool = True, name: str | None = None, algo: str = "sha256") -> str:
        """Copy the file tree `src` in; flat mode takes one regular file's contents only."""
        name = os.path.basename(os.path.normpath(src)) if name is None else name
        check_store_name(name)
        if recursive:
            sink = HashSink(algo)
            parts: list[bytes] = []

            def both(data: bytes) -> None:
                sink(data)
                parts.append(data)

            dump_path(src, both)
            dst = self.store.make_fixed_output_path(True, sink.finish(), name)
            return self._add_path(dst, b"".join(parts), frozenset())
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(
                f"cannot add {src!r} flat: it is not a regular file; add it recursive (as a NAR) instead"
            )
        with open(src, "rb") as f:
            data = f.read()
        h = HashSink(algo)
        h(data)
        dst = self.store.make_fixed_output_path(False, h.finish(), name)
        return self._add_path(dst, Regular(data), frozenset())

    def add_nar_to_store(self, nar: bytes, name: str) -> str:
        """Add a tree given as a NAR (recursive SHA-256); garbage changes nothing."""
        check_store_name(name)
        parse_nar(nar, f"for {name!r}")  # reject garbage before touching the store
        dst = self.store.make_fixed_output_path(True, sha256(nar), name)
        return self._add_path(dst, nar, frozenset())

    def write_derivation(self, drv: drvs.Derivation, name: str) -> str:
        return drvs.write_derivation(self, drv, name)

    def path_info_from_disk(
        self, path: str, references: Iterable[str] = (), deriver: str | None = None
    ) -> ValidPathInfo:
        """Canonicalise `path` and describe it for registration (e.g. a build output)."""
        canonicalise_path_metadata(path)
        h, size = hash_path(path)
        return ValidPathInfo(path, h, frozenset(references), deriver, size)

    # --- roots ---------------------------------------------------------------------

    def add_permanent_root(self, path: str, name: str | None = None) -> str:
        """A symlink `gcroots/<name>` to `path`; returns the link."""
        self.store.parse_store_path(path)
        link = os.path.join(self.gcroots_dir, name or os.path.basename(path))
        tmp = f"{link}.tmp-{os.getpid()}"
        os.symlink(path, tmp)
        os.rename(tmp, link)
        self.sync_with_gc()
        return link

    def add_indirect_root(self, link: str) -> str:
        """Record `link` (a symlink elsewhere pointing into the store) as a root."""
        link = os.path.abspath(link)
        auto = os.path.join(self.gcroots_dir, "auto")
        os.makedirs(auto, exist_ok=True)
        root = os.path.join(auto, sha256(link.encode()).base32[:32])
        tmp = f"{root}.tmp-{os.getpid()}"
        os.symlink(link, tmp)
        os.rename(tmp, root)
        return root

    def sync_with_gc(self) -> None:
        """Wait for a running collection to finish (take gc.lock shared, briefly)."""
        os.close(lock_gc(self.gc_lock_path, LockType.READ))
