"""Path locks: ``<path>.lock`` files with POSIX record locks, as Guix's pathlocks.cc.

What this mirrors (reference section 5). A store path ``P`` is locked by taking an
exclusive ``fcntl`` record lock over the whole of the file ``P.lock``, which lives next
to ``P`` in the store directory. Goals lock their output paths with
``lock_paths_nowait`` (sorted, all-or-nothing, never waiting while holding), and
``addTextToStore``-style callers with the blocking ``lock_paths``. The names, the order
of system calls and the error cases follow pathlocks.cc; deviations are marked
"Deviation" below.

Per-process semantics, and why the locked-path set exists. A POSIX ``fcntl`` lock is
owned by the *process*, not by the file descriptor. Two consequences:

* a second lock request by the same process on the same file succeeds (it merely
  converts the existing lock), so the kernel cannot keep two owners inside one process
  apart; and
* closing *any* descriptor of the file drops *all* the process's locks on it, so a second
  owner that opens, "locks" and closes the file silently unlocks the first.

Hence ``_locked_paths``: the lock-file names this process holds, global to the process
(the daemon is single-threaded; so is this module). ``lock_paths`` refuses to re-acquire
a name in it ("deadlock: trying to re-acquire self-held lock"), and goals use
:func:`path_is_locked_by_me` to wait for each other instead. Bug Z6 skips the check.

The stale-lock token protocol, and why it is safe. Once a path is valid its lock file is
no longer needed, and the last holder may delete it (``set_deletion(True)``). Deleting a
file that others may have open is the hard part: a process that opened ``P.lock`` before
the unlink waits on the *old inode*, and would "hold" a lock on a name that now denotes a
different inode (or none), while a newcomer creates and locks a fresh inode: two holders
(bug Z7). The protocol:

1. the deleter, *still holding the lock*, unlinks the name and then writes one byte,
   ``"d"``, into the open, now nameless, file; only then does it close (and so unlock);
2. every locker, after acquiring, ``fstat``\\ s its descriptor; a non-empty file is a dead
   inode, so it closes it and starts again by opening the name afresh.

Safety: a live lock file is always empty (nothing else writes to it). Whoever waits on
the old inode can only get the lock after the deleter's close, which comes after the
token, so it always sees ``st_size == 1`` and retries on the name. Whoever opens the name
after the unlink gets a new inode. So every lock that survives the size check is on the
inode the name currently denotes, and at most one process holds that: one holder per
*name*. The unlink result is ignored (it is an optimisation; the token is what matters).

Known residual hazard (inferred, not in the reference): a deleter killed between the
unlink and the token write leaves a nameless *empty* inode, and a waiter on it passes the
size check. The fault point ``pathlocks.delete.after-unlink`` makes this reachable.

Scheduling point (controlled runs only). Between opening a lock file and locking it
lies the Z7 race (a deleter may unlink, token and close in between); a whole goal step,
and so a single probe report, normally covers both. A controller that wants to force
that interleaving installs :func:`set_open_hook`: the hook is called right after the
open, before the lock, for the *first* path of a ``lock_paths`` call only (while this
owner holds nothing, so a report made from the hook shows no half-taken lock set). The
default is None: one attribute test per acquisition, nothing else. This module never
imports the probe; the worker installs a closure over its probe.

Fork. Locks are not inherited by a forked child, so the child starts with an empty
locked set, and a :class:`PathLocks` object inherited through ``fork`` only closes its
descriptors on release (it never deletes the parent's lock files). Linux only: the
``struct flock`` layout below is Linux's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import sys
from collections.abc import Callable, Iterable
from enum import Enum
from types import TracebackType

from lockstep.impl import bugs, faults

LOCK_SUFFIX = ".lock"
DELETED_TOKEN = b"d"

AFTER_UNLINK = faults.declare(
    "pathlocks.delete.after-unlink",
    "delete_lock_file: the lock file is unlinked, the 'd' token not yet written",
)

# Linux struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t
# l_pid, padded to the alignment of off_t.
_FLOCK = struct.Struct("hhqqi4x")


class LockType(Enum):
    READ = fcntl.F_RDLCK
    WRITE = fcntl.F_WRLCK
    NONE = fcntl.F_UNLCK


class PathLockError(OSError):
    """A path-lock system call failed for a reason other than contention."""


class SelfDeadlockError(RuntimeError):
    """This process tried to lock a path it already holds (see the module essay)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"deadlock: trying to re-acquire self-held lock {path!r}: this process already "
            f"holds it through another PathLocks object (fcntl locks are per process, so "
            f"the kernel would grant it twice); wait for the other goal instead "
            f"(check path_is_locked_by_me first)"
        )
        self.path = path


# Invariant: exactly the lock-file names for which some PathLocks object of *this*
# process holds an fd with a granted write lock that passed the stale check.
_locked_paths: set[str] = set()


# Called with the lock-file name after it is opened and before it is locked (the first
# path of a lock_paths call only); None outside controlled runs. See the module essay.
_open_hook: Callable[[str], None] | None = None


def set_open_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the lock-file-opened hook of this process."""
    global _open_hook
    _open_hook = hook


def _forget_locks_in_child() -> None:
    _locked_paths.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def _pack(lock_type: LockType) -> bytes:
    return _FLOCK.pack(lock_type.value, os.SEEK_SET, 0, 0, 0)


def open_lock_file(path: str | os.PathLike[str], create: bool) -> int | None:
    """Open (and with `create`, create mode 0600) lock file `path`, read-write, close-on-exec.

    Returns None only when `path` does not exist and `create` is false.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as e:
        raise PathLockError(e.errno, f"opening lock file {os.fspath(path)!r}: {e.strerror}") from e


def delete_lock_file(path: str | os.PathLike[str], fd: int) -> None:
    """Unlink lock file `path`, then write the stale token into `fd`, still open and locked.

    The caller must hold the write lock on `fd` and close it afterwards (which unlocks).
    """
    try:
        os.unlink(path)
    except OSError:
        pass  # an optimisation, not a necessity: the token below is what makes it safe
    faults.point(AFTER_UNLINK)
    if bugs.is_enabled("Z7"):
        return  # Z7: no token, so a waiter on this inode cannot tell it is dead
    written = os.write(fd, DELETED_TOKEN)
    if written != len(DELETED_TOKEN):
        raise PathLockError(errno.EIO, f"writing stale token to {os.fspath(path)!r}")


def lock_file(fd: int, lock_type: LockType, wait: bool) -> bool:
    """Set (or with NONE release) a record lock over the whole file `fd`.

    `wait`: block (F_SETLKW, retrying on EINTR) and return True; any failure, including
    the kernel's EDEADLK, raises :class:`PathLockError`. Otherwise F_SETLK: return False
    if another process holds a conflicting lock (EACCES/EAGAIN).
    """
    request = _pack(lock_type)
    while True:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLKW if wait else fcntl.F_SETLK, request)
            return True
        except InterruptedError:
            continue  # EINTR: retry (a pending KeyboardInterrupt is raised by Python)
        except OSError as e:
            if not wait and e.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise PathLockError(e.errno, f"acquiring/releasing lock: {e.strerror}") from e


def lock_holder_pid(lock_path: str | os.PathLike[str]) -> int | None:
    """The pid of the process holding a lock on the file `lock_path` names, or None.

    Reads the kernel's lock table with F_GETLK (asking "could I take a write lock?").
    None when the file does not exist or nobody else holds a lock on it; with several
    read-lock holders, one of them. Caveats, all
    from POSIX: the caller's own locks never show (they do not conflict with itself);
    a lock on an unlinked inode does not show (this asks about the inode the name
    denotes now); and the caller must not itself hold locks on this file, because
    closing the descriptor opened here would drop them.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        reply = fcntl.fcntl(fd, fcntl.F_GETLK, _pack(LockType.WRITE))
    finally:
        os.close(fd)
    l_type, _whence, _start, _len, l_pid = _FLOCK.unpack(reply)
    return None if l_type == fcntl.F_UNLCK else int(l_pid)


def path_is_locked_by_me(path: str | os.PathLike[str]) -> bool:
    """Does some PathLocks object of this process hold the lock of store path `path`?"""
    return os.fspath(path) + LOCK_SUFFIX in _locked_paths


class PathLocks:
    """The locks of one owner (a goal, an addToStore call) on a set of store paths.

    ``PathLocks(paths, wait_msg)`` locks at construction, blocking, like Guix's second
    constructor; ``PathLocks()`` locks nothing until :meth:`lock_paths`.
    """

    def __init__(
        self, paths: Iterable[str | os.PathLike[str]] | None = None, wait_msg: str = ""
    ) -> None:
        # Invariant: every (fd, lock_path) here holds a granted write lock on the inode
        # lock_path named when it passed the stale check, and lock_path is in
        # _locked_paths (unless Z6 let a second owner in).
        self._fds: list[tuple[int, str]] = []
        self._delete_paths = False
        self._owner_pid = os.getpid()
        if paths is not None:
            self.lock_paths(paths, wait_msg)

    @property
    def lock_files(self) -> list[str]:
        """The lock-file names held, in acquisition (sorted) order."""
        return [lock_path for _fd, lock_path in self._fds]

    def lock_paths(self, paths: Iterable[str | os.PathLike[str]], wait_msg: str = "", wait: bool = True) -> bool:
        """Lock every path in `paths`, in sorted order. See the module essay.

        Returns True when all are held. With `wait` false, returns False as soon as one
        is held by another process, after releasing those acquired in this call. Raises
        :class:`SelfDeadlockError` if this process already holds one of them; locks
        acquired before that stay held until :meth:`unlock` (as in pathlocks.cc).
        """
        if self._fds:
            raise AssertionError(
                f"PathLocks.lock_paths: this object already holds {self.lock_files}; "
                f"call unlock() before locking again"
            )
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError(
                f"PathLocks.lock_paths takes a collection of store paths, not the single "
                f"path {paths!r}; write lock_paths([path])"
            )
        self._owner_pid = os.getpid()
        for path in sorted({os.fspath(p) for p in paths}):
            lock_path = path + LOCK_SUFFIX
            if lock_path in _locked_paths and not bugs.is_enabled("Z6"):
                raise SelfDeadlockError(path)
            fd = self._acquire(lock_path, wait_msg, wait, report=not self._fds)
            if fd is None:
                self.unlock()  # all-or-nothing: no hold-and-wait
                return False
            self._fds.append((fd, lock_path))
            _locked_paths.add(lock_path)
        return True

    def lock_paths_nowait(self, paths: Iterable[str | os.PathLike[str]]) -> bool:
        """The non-blocking form of :meth:`lock_paths`: all of `paths` or none."""
        return self.lock_paths(paths, wait=False)

    @staticmethod
    def _acquire(lock_path: str, wait_msg: str, wait: bool, report: bool = False) -> int | None:
        """Open and write-lock the live inode named `lock_path`; None if busy and not `wait`.

        `report`: call the open hook (if any) after each open, before the lock."""
        while True:
            fd = open_lock_file(lock_path, True)
            assert fd is not None
            try:
                if report and _open_hook is not None:
                    _open_hook(lock_path)
                if not lock_file(fd, LockType.WRITE, False):
                    if not wait:
                        os.close(fd)
                        return None
                    if wait_msg:
                        print(wait_msg, file=sys.stderr, flush=True)
                    lock_file(fd, LockType.WRITE, True)
                # A non-empty lock file was deleted by its previous holder: this inode
                # has no name any more, so locking it excludes nobody. Retry by name.
                if os.fstat(fd).st_size != 0 and not bugs.is_enabled("Z7"):
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            return fd

    def unlock(self) -> None:
        """Release every lock held, deleting the lock files first if deletion is set.

        Deviation: pathlocks.cc leaves an fd held if deleting its file throws (its
        destructor retries); here every fd is closed and forgotten regardless, and the
        first error is re-raised afterwards.
        """
        self._release(list(self._fds))

    def unlock_one(self, lock_path: str) -> None:
        """Release the lock on one lock file of this object (as :meth:`unlock` does it).

        Used where each release is reported as its own step (a destructor releasing the
        kept locks of a multi-output goal reports one ``ReleaseKept`` per path).
        """
        self._release([(fd, p) for fd, p in self._fds if p == lock_path])

    def _release(self, fds: list[tuple[int, str]]) -> None:
        inherited = os.getpid() != self._owner_pid
        first_error: BaseException | None = None
        for fd, lock_path in fds:
            try:
                if self._delete_paths and not inherited:
                    delete_lock_file(lock_path, fd)
            except BaseException as e:  # noqa: B036 - re-raised below, after releasing
                first_error = first_error or e
            finally:
                if not inherited:
                    _locked_paths.discard(lock_path)
                os.close(fd)  # releases the process's lock on this file
        self._fds = [entry for entry in self._fds if entry not in fds]
        if first_error is not None:
            raise first_error

    def set_deletion(self, delete_paths: bool) -> None:
        """Delete the lock files at the next :meth:`unlock` (only once the paths are valid)."""
        self._delete_paths = delete_paths

    def __enter__(self) -> PathLocks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unlock()

    def __del__(self) -> None:
        try:
            self.unlock()
        except Exception:
            pass  # as newer Guix and Nix 77ad443bd1: a destructor never throws
