"""Garbage collection and temporary roots (Guix gc.cc).

Temporary roots. A process that is about to create or use a store path first records
it in `<state>/temproots/<pid>` (NUL-terminated paths). The file is read-locked by its
owner for as long as the owner lives; a collector write-locks `<state>/gc.lock` for the
whole collection and read-locks every temp-roots file it reads, keeping those locks
until it has deleted everything. Hence, while a collection runs:

* nobody can create a temp-roots file (creating one needs gc.lock shared), and
* nobody can add a root to an existing file (adding needs the file's write lock),

so every temporary root is either seen by the collector or added after it finished.
A temp-roots file whose owner died has no lock: the collector's non-blocking write lock
succeeds, and it unlinks the file and writes the stale token "d" into it. An owner that
created its file just before a collection started may find that token after taking its
read lock; it then starts over (`TempRoots._open`).

Deviation (a fix): the collector skips its own process's file and uses the roots it
holds in memory. fcntl locks belong to the process, so "try a write lock" on its own
file would succeed, and closing that fd would drop the owner's read lock (Nix fixed
this in b932ea58ec; the Guix gc.cc examined does not have the check).

Collection (`collect_garbage`): lock, find permanent roots (symlinks under gcroots/,
indirect ones under gcroots/auto/), read temp roots, take the closure of all roots
under references, then delete every other store entry. Valid dead paths go in reverse
topological order (referrers before their references), each invalidated in the
database before its files go. Invalid entries (leftovers, lock files) go too, except
the `.lock`/`.chroot` files and in-progress temporaries of temp-rooted paths.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import faults
from .archive import delete_path
from .misc import topo_sort_paths
from .pathlocks import LockType, lock_file, open_lock_file
from .sqlite import retry_sqlite, transaction

if TYPE_CHECKING:
    from .local_store import LocalStore

STALE_TOKEN = b"d"
LINKS_DIR = ".links"

BEFORE_DELETE = faults.declare("gc.before-delete", "collect_garbage: roots read, about to delete a dead path")


class _TempRootsFile:
    """This process's temp-roots file. Invariant: while open, `fd` holds a read lock
    (a write lock only inside `TempRoots.add`) and the file ends with a NUL."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.roots: set[str] = set()
        self.users = 0


# One file per (temproots dir, pid), shared by every LocalStore of this process: a
# second file with the same pid would unlink the first as "stale".
_files: dict[str, _TempRootsFile] = {}


def _forget_in_child() -> None:
    for f in _files.values():
        os.close(f.fd)  # the child holds no locks on it; this drops nothing of the parent's
    _files.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_gc(gc_lock_path: str, lock_type: LockType) -> int:
    fd = open_lock_file(gc_lock_path, True)
    assert fd is not None
    if not lock_file(fd, lock_type, False):
        print("waiting for the big garbage collector lock...", file=sys.stderr, flush=True)
        lock_file(fd, lock_type, True)
    return fd


class TempRoots:
    """A LocalStore's handle on the temp roots of this process in one state directory."""

    def __init__(self, state_dir: str, gc_lock_path: str) -> None:
        self.dir = os.path.join(state_dir, "temproots")
        self.gc_lock_path = gc_lock_path
        self._using = False

    def _file(self) -> _TempRootsFile:
        f = _files.get(self.dir)
        if f is None:
            f = _files[self.dir] = self._open()
        if not self._using:
            self._using = True
            f.users += 1
        return f

    def _open(self) -> _TempRootsFile:
        path = os.path.join(self.dir, str(os.getpid()))
        while True:
            gc_fd = lock_gc(self.gc_lock_path, LockType.READ)  # no collection may run now
            try:
                try:
                    os.unlink(path)  # a file with our pid is a dead process's leftover
                except FileNotFoundError:
                    pass
                fd = open_lock_file(path, True)
                assert fd is not None
            finally:
                os.close(gc_fd)
            lock_file(fd, LockType.READ, True)
            if os.fstat(fd).st_size == 0:
                return _TempRootsFile(path, fd)
            os.close(fd)  # a collector took it for stale in between: start over

    def add(self, path: str) -> None:
        f = self._file()
        if path in f.roots:
            return
        lock_file(f.fd, LockType.WRITE, True)  # waits while a collector reads this file
        try:
            os.lseek(f.fd, 0, os.SEEK_END)
            os.write(f.fd, path.encode("utf-8", "surrogateescape") + b"\0")
        finally:
            lock_file(f.fd, LockType.READ, True)
        f.roots.add(path)

    def own_roots(self) -> set[str]:
        f = _files.get(self.dir)
        return set(f.roots) if f else set()

    def release(self) -> None:
        """Called when a LocalStore closes; the last user removes the file."""
        f = _files.get(self.dir)
        if f is None or not self._using:
            return
        self._using = False
        f.users -= 1
        if f.users == 0:
            del _files[self.dir]
            try:
                os.unlink(f.path)
            except FileNotFoundError:
                pass
            os.close(f.fd)


def read_temp_roots(store: LocalStore) -> tuple[set[str], list[int]]:
    """Every live temp root, and the read-locked fds the caller must keep until done."""
    roots = store.temp_roots.own_roots()
    fds: list[int] = []
    own = str(os.getpid())
    for name in sorted(os.listdir(store.temp_roots.dir)):
        if name == own:
            continue
        path = os.path.join(store.temp_roots.dir, name)
        fd = open_lock_file(path, False)
        if fd is None:
            continue
        if lock_file(fd, LockType.WRITE, False):
            # Nobody holds it: its owner is dead (or has not locked it yet and will retry).
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os.write(fd, STALE_TOKEN)
            os.close(fd)
            continue
        lock_file(fd, LockType.READ, True)
        fds.append(fd)
        data = _read_all(fd)  # never via a second fd: closing it would drop our lock
        roots.update(p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p)
    return roots, fds


def _read_all(fd: int) -> bytes:
    parts: list[bytes] = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def find_roots(store: LocalStore) -> set[str]:
    """Store paths named by symlinks under gcroots/ (following indirect auto/ links).

    A stale indirect root (its link is gone) is removed, as findRoots does.
    """
    roots: set[str] = set()
    auto = os.path.join(store.gcroots_dir, "auto")
    for dirpath, _dirs, files in os.walk(store.gcroots_dir):
        for name in files + _dirs:
            link = os.path.join(dirpath, name)
            if not os.path.islink(link):
                continue
            target = os.path.join(dirpath, os.readlink(link))
            if not store.store.is_in_store(target) and dirpath == auto and not os.path.lexists(target):
                os.unlink(link)
                continue
            if not store.store.is_in_store(target) and os.path.islink(target):
                target = os.path.join(os.path.dirname(target), os.readlink(target))
            if store.store.is_in_store(target):
                roots.add(store.store.to_store_path(target))
    return roots


@dataclass
class GCResult:
    deleted: list[str] = field(default_factory=list)  # in deletion order
    bytes_freed: int = 0


def _is_active_temp_file(path: str, temp_roots: set[str]) -> bool:
    """`<p>.lock`, `<p>.chroot` or `<p>.restore-<pid>` of a temp-rooted `<p>`."""
    for suffix in (".lock", ".chroot"):
        if path.endswith(suffix) and path[: -len(suffix)] in temp_roots:
            return True
    base, sep, pid = path.rpartition(".restore-")
    return bool(sep) and pid.isdigit() and base in temp_roots


def _closure(store: LocalStore, roots: Iterable[str], valid: set[str]) -> set[str]:
    return store.compute_fs_closure(r for r in roots if r in valid)


def collect_garbage(store: LocalStore, max_freed: int | None = None, dry_run: bool = False) -> GCResult:
    """Delete every store entry not reachable from a root; see the module essay."""
    result = GCResult()
    gc_fd = lock_gc(store.gc_lock_path, LockType.WRITE)
    temp_fds: list[int] = []
    try:
        roots = find_roots(store)
        temp_roots, temp_fds = read_temp_roots(store)
        valid = store.query_all_valid_paths()
        live = _closure(store, roots | temp_roots, valid) | roots | temp_roots
        dead_valid: dict[str, frozenset[str]] = {}
        dead_invalid: list[str] = []
        for name in sorted(os.listdir(store.store.path)):
            path = os.path.join(store.store.path, name)
            if name == LINKS_DIR or path in live:
                continue
            if path in valid:
                dead_valid[path] = frozenset(store.query_references(path)) & valid
            elif not _is_active_temp_file(path, temp_roots):
                dead_invalid.append(path)
        # Referrers first: reverse of "every path after the paths it refers to".
        for path in reversed(topo_sort_paths(dead_valid)):
            if max_freed is not None and result.bytes_freed >= max_freed:
                break
            faults.point(BEFORE_DELETE)
            if dry_run:
                result.deleted.append(path)
                continue
            if not _invalidate(store, path):
                continue
            result.bytes_freed += delete_path(path)
            result.deleted.append(path)
        for path in dead_invalid:
            if max_freed is not None and result.bytes_freed >= max_freed:
                break
            if not dry_run:
                result.bytes_freed += delete_path(path)
            result.deleted.append(path)
        if not dry_run:
            result.bytes_freed += remove_unused_links(store)
    finally:
        for fd in temp_fds:
            os.close(fd)
        os.close(gc_fd)
    return result


def _invalidate(store: LocalStore, path: str) -> bool:
    """Remove `path` from the database unless something else refers to it (then keep it)."""
    def txn() -> bool:
        try:
            with transaction(store.db) as db:
                db.execute("delete from ValidPaths where path = ?", (path,))
        except sqlite3.IntegrityError:
            return False  # a referrer appeared (registered during this collection)
        return True

    return retry_sqlite(txn)


def remove_unused_links(store: LocalStore) -> int:
    """Delete `.links` entries no store file shares any more; bytes freed."""
    links = os.path.join(store.store.path, LINKS_DIR)
    freed = 0
    if not os.path.isdir(links):
        return 0
    for name in os.listdir(links):
        path = os.path.join(links, name)
        st = os.lstat(path)
        if st.st_nlink == 1:
            os.unlink(path)
            freed += st.st_blocks * 512
    return freed
