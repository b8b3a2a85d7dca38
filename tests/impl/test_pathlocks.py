"""pathlocks primitives within one process (reference s5)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lockstep.impl import faults
from lockstep.impl.pathlocks import (
    LockType,
    PathLocks,
    delete_lock_file,
    lock_file,
    open_lock_file,
    path_is_locked_by_me,
)


def test_open_lock_file_create_and_missing(tmp_path: Path) -> None:
    lock = tmp_path / "p.lock"
    assert open_lock_file(lock, create=False) is None
    fd = open_lock_file(lock, create=True)
    assert fd is not None
    try:
        assert os.stat(lock).st_mode & 0o777 == 0o600
        assert not os.get_inheritable(fd)  # close-on-exec
    finally:
        os.close(fd)


def test_delete_lock_file_unlinks_then_writes_token(tmp_path: Path) -> None:
    lock = tmp_path / "p.lock"
    fd = open_lock_file(lock, create=True)
    assert fd is not None
    try:
        assert lock_file(fd, LockType.WRITE, wait=False)
        delete_lock_file(lock, fd)
        assert not lock.exists()
        assert os.fstat(fd).st_size == 1
        assert os.pread(fd, 8, 0) == b"d"
        delete_lock_file(lock, fd)  # a second unlink fails silently
    finally:
        os.close(fd)


def test_lock_file_types_within_one_process(tmp_path: Path) -> None:
    fd = open_lock_file(tmp_path / "p.lock", create=True)
    assert fd is not None
    try:
        for lock_type in (LockType.READ, LockType.WRITE, LockType.NONE):
            assert lock_file(fd, lock_type, wait=False)  # own locks convert, never conflict
            assert lock_file(fd, lock_type, wait=True)
    finally:
        os.close(fd)


def test_lock_paths_sorts_and_records(tmp_path: Path) -> None:
    paths = [str(tmp_path / n) for n in ("c", "a", "b", "a")]
    locks = PathLocks()
    assert locks.lock_paths(paths)
    assert locks.lock_files == [str(tmp_path / n) + ".lock" for n in "abc"]
    assert all(path_is_locked_by_me(p) for p in paths)
    with pytest.raises(AssertionError, match="already holds"):
        locks.lock_paths(paths)
    locks.unlock()
    assert not any(path_is_locked_by_me(p) for p in paths)
    assert all(os.path.exists(p + ".lock") for p in paths)  # kept without deletion


def test_lock_paths_takes_path_objects_but_not_a_single_string(tmp_path: Path) -> None:
    locks = PathLocks()
    with pytest.raises(TypeError, match=r"write lock_paths\(\[path\]\)"):
        locks.lock_paths(str(tmp_path / "out"))
    assert locks.lock_paths_nowait([tmp_path / "out"])
    assert path_is_locked_by_me(tmp_path / "out")
    locks.unlock()


def test_deletion_removes_lock_files_at_unlock(tmp_path: Path) -> None:
    path = str(tmp_path / "out")
    with PathLocks([path]) as locks:
        locks.set_deletion(True)
        assert os.path.exists(path + ".lock")
    assert not os.path.exists(path + ".lock")


def test_destructor_releases(tmp_path: Path) -> None:
    path = str(tmp_path / "out")
    locks = PathLocks([path])
    assert path_is_locked_by_me(path)
    del locks
    assert not path_is_locked_by_me(path)


def test_unlock_releases_everything_even_if_deletion_fails(tmp_path: Path) -> None:
    paths = [str(tmp_path / n) for n in "ab"]
    locks = PathLocks(paths)
    locks.set_deletion(True)
    with faults.armed("pathlocks.delete.after-unlink:EIO"), pytest.raises(OSError) as info:
        locks.unlock()
    assert info.value.errno == errno.EIO
    assert locks.lock_files == []
    assert not any(path_is_locked_by_me(p) for p in paths)


def test_self_deadlock_midway_keeps_earlier_locks_until_unlock(tmp_path: Path) -> None:
    """As pathlocks.cc: the throw leaves locks taken earlier in the call in the object."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with PathLocks([b]):
        locks = PathLocks()
        with pytest.raises(RuntimeError, match=r"self-held lock .*/b'"):
            locks.lock_paths_nowait([b, a])
        assert locks.lock_files == [a + ".lock"] and path_is_locked_by_me(a)
        locks.unlock()
        assert not path_is_locked_by_me(a)
