"""A child process that takes path locks on command, for the cross-process lock tests.

Run as a script (``python lockproc_child.py``); it is not a test module. It reads one
command per line on stdin and answers with one line on stdout (stderr is merged into
stdout so that ``lock_paths``' wait message arrives, in order, before the answer):

``lock WAITMSG PATH...``     blocking lock_paths; prints WAITMSG if it has to wait; ``locked``
``nowait PATH...``           lock_paths_nowait; ``ok True`` or ``ok False``
``delete 0|1``               set_deletion; ``ok``
``unlock``                   unlock; ``ok``
``enter MARKER``             create MARKER with O_EXCL (the overlap detector); ``entered``
                             or ``overlap`` if it exists (someone else is inside)
``leave MARKER``             unlink MARKER; ``ok``
``hammer N PATH COUNTER MARKER OVERLAPS``  N times: lock PATH (blocking), enter MARKER
                             (logging an overlap to OVERLAPS), increment COUNTER by a
                             non-atomic read-modify-write, leave, unlock with deletion on
                             every other round; ``done``
``lockfile READ|WRITE PATH`` open (create) PATH and lock_file(wait=False), keeping the
                             fd open; ``ok True`` or ``ok False``
``sigusr1``                  install a no-op SIGUSR1 handler (so the signal interrupts
                             system calls with EINTR); ``ok``
``exit``                     exit 0
"""

from __future__ import annotations

import os
import signal
import sys

from lockstep.impl.pathlocks import LockType, PathLocks, lock_file, open_lock_file


def enter(marker: str) -> bool:
    """Claim the critical section; False if another claimant is already inside."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def leave(marker: str) -> None:
    try:
        os.unlink(marker)
    except FileNotFoundError:
        pass


def hammer(rounds: int, path: str, counter: str, marker: str, overlaps: str) -> None:
    locks = PathLocks()
    for i in range(rounds):
        locks.lock_paths([path])
        inside = enter(marker)
        if not inside:
            with open(overlaps, "a") as log:
                log.write(f"{os.getpid()} round {i}\n")
        with open(counter, "r+") as f:
            value = int(f.read() or "0")
            f.seek(0)
            f.write(f"{value + 1:012d}")
        if inside:
            leave(marker)
        locks.set_deletion(i % 2 == 1)
        locks.unlock()


def main() -> None:
    sys.stderr = sys.stdout
    locks = PathLocks()
    kept_fds: list[int] = []
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "lock":
            locks.lock_paths(args[1:], wait_msg=args[0])
            reply = "locked"
        elif cmd == "nowait":
            reply = f"ok {locks.lock_paths_nowait(args)}"
        elif cmd == "delete":
            locks.set_deletion(args[0] == "1")
            reply = "ok"
        elif cmd == "unlock":
            locks.unlock()
            reply = "ok"
        elif cmd == "enter":
            reply = "entered" if enter(args[0]) else "overlap"
        elif cmd == "leave":
            leave(args[0])
            reply = "ok"
        elif cmd == "hammer":
            hammer(int(args[0]), *args[1:5])
            reply = "done"
        elif cmd == "lockfile":
            fd = open_lock_file(args[1], create=True)
            assert fd is not None
            kept_fds.append(fd)
            reply = f"ok {lock_file(fd, LockType[args[0]], wait=False)}"
        elif cmd == "sigusr1":
            signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
            reply = "ok"
        elif cmd == "exit":
            return
        else:
            reply = f"error unknown command {cmd!r}"
        print(reply, flush=True)


if __name__ == "__main__":
    main()
