"""Time for the worker loop: the poll interval and the build timeouts (an injectable clock).

The worker reads time only through a :class:`Clock`: ``now()`` for deadlines and the
poll timer, ``wait(fds, timeout, info)`` for the one place it sleeps (Guix's
``select()`` in ``Worker::waitForInput``).

* :class:`RealClock`: monotonic seconds, a real ``select``.
* :class:`VirtualClock`: time is a number the controller sets. ``wait`` first reports
  ``WaitForInput`` through the (controlled) probe, with ``now``, ``poll_at`` (when the
  pollers in waitingForAWhile are due, or null), ``deadline`` (the nearest silence or
  build timeout, or null), ``children`` and ``pollers``; the controller answers

  - ``{"advance": T}``: virtual time jumps to ``max(now, T)`` and ``wait`` returns as a
    timeout (no fd ready). Answering with ``poll_at`` makes a poll round happen; with
    ``deadline``, a timeout;
  - ``{"input": true}``: really wait (``select`` without timeout) until a child's fd is
    readable, e.g. a builder that is going to exit. Virtual time does not move.

  So in a controlled run nothing happens "because time passed" unless the controller
  says so, and the same answers replay to the same run.
"""

from __future__ import annotations

import select
import time
from typing import Any

from lockstep.impl.probe import Probe


class Clock:
    """Real time (the default)."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, fds: list[int], timeout: float | None, info: dict[str, Any]) -> list[int]:
        """Wait until one of `fds` is readable or `timeout` seconds pass; the readable fds."""
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
                return list(ready)
            except InterruptedError:  # pragma: no cover - Python retries select itself
                continue


RealClock = Clock


class VirtualClock(Clock):
    """Time set by a controller through the probe (see the module docstring)."""

    def __init__(self, probe: Probe, start: float = 0.0) -> None:
        self.probe = probe
        self._now = start  # Invariant: never decreases.

    def now(self) -> float:
        return self._now

    def wait(self, fds: list[int], timeout: float | None, info: dict[str, Any]) -> list[int]:
        reply = self.probe.report("WaitForInput", now=self._now, **info)
        if "advance" in reply:
            self._now = max(self._now, float(reply["advance"]))
            return []
        if not fds:
            raise RuntimeError(
                f"controller answered {reply!r} to WaitForInput, but this process waits on no "
                f"fd: answer {{\"advance\": T}} to let a poll or a timeout happen"
            )
        return super().wait(fds, None, info)
