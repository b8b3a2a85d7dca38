"""Goals: the base class shared by derivation and substitution goals (Guix build.cc `Goal`).

A goal is a small state machine whose ``work()`` runs one state method. Goals depend on
each other through ``waitees`` (the goals this one waits for) and ``waiters`` (the goals
waiting for this one). Strength, as in the daemon (reference 2.3):

* a parent keeps its waitees alive; a waitee never keeps its parents alive;
* a top-level goal is also pinned by the request for the whole ``build_paths`` call.

C++ frees a goal when its last ``shared_ptr`` goes, and its destructor releases the
locks it still holds. Python's garbage collector is no substitute (timing would depend
on reference cycles), so lifetime is explicit here: ``holders`` is the set of goals that
have this one in their waitees, ``pinned`` marks top-level goals, and the worker's
``sweep`` destroys (``destroy()``) every goal with neither, at the points where C++
would drop the last reference: the end of a run round and the end of ``waitForInput``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockstep.impl.worker import Worker


class ExitCode(Enum):
    BUSY = "busy"
    SUCCESS = "success"
    FAILED = "failed"
    NO_SUBSTITUTERS = "no-substituters"
    INCOMPLETE_CLOSURE = "incomplete-closure"


class BuildStatus(Enum):
    """BuildResult::Status (the subset this daemon produces)."""

    BUILT = "Built"
    SUBSTITUTED = "Substituted"
    ALREADY_VALID = "AlreadyValid"
    PERMANENT_FAILURE = "PermanentFailure"
    INPUT_REJECTED = "InputRejected"
    OUTPUT_REJECTED = "OutputRejected"
    TRANSIENT_FAILURE = "TransientFailure"
    TIMED_OUT = "TimedOut"
    MISC_FAILURE = "MiscFailure"
    DEPENDENCY_FAILED = "DependencyFailed"

    @property
    def success(self) -> bool:
        return self in (BuildStatus.BUILT, BuildStatus.SUBSTITUTED, BuildStatus.ALREADY_VALID)


class Goal:
    """What every goal has: dependency edges, an exit code, and an explicit lifetime."""

    key: str  # "a$<name>$<path>" (substitution) or "b$<name>$<drvPath>" (derivation)

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.seq = worker.next_goal_seq()  # creation order: ties between equal keys
        # Invariant: g in self.waitees  <=>  self in g.holders (the strong edges).
        self.waitees: dict[int, Goal] = {}
        self.holders: set[Goal] = set()
        # Invariant: weak edges; the goals whose waitees contained self when self finished.
        self.waiters: dict[int, Goal] = {}
        self.nr_failed = 0
        self.nr_no_substituters = 0
        self.nr_incomplete_closure = 0
        self.exit_code = ExitCode.BUSY
        self.pinned = False  # a top-level goal: alive until the request ends
        self.destroyed = False
        self.error_message = ""
        worker.live.append(self)

    # -- identity for reports ------------------------------------------------------

    def report(self, action: str, **fields: object) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.exit_code.value}>"

    # -- the state machine -----------------------------------------------------------

    def work(self) -> None:
        raise NotImplementedError

    def add_waitee(self, waitee: Goal) -> None:
        self.waitees[id(waitee)] = waitee
        waitee.holders.add(self)
        waitee.waiters[id(self)] = self

    def _drop_waitee(self, waitee: Goal) -> None:
        self.waitees.pop(id(waitee), None)
        waitee.holders.discard(self)
        waitee.waiters.pop(id(self), None)

    def waitee_done(self, waitee: Goal, result: ExitCode) -> None:
        """Goal::waiteeDone: forget `waitee`, count failures, wake when nothing is left."""
        self.waitees.pop(id(waitee), None)
        waitee.holders.discard(self)
        if result in (ExitCode.FAILED, ExitCode.NO_SUBSTITUTERS, ExitCode.INCOMPLETE_CLOSURE):
            self.nr_failed += 1
        if result is ExitCode.NO_SUBSTITUTERS:
            self.nr_no_substituters += 1
        if result is ExitCode.INCOMPLETE_CLOSURE:
            self.nr_incomplete_closure += 1
        if not self.waitees or (result is ExitCode.FAILED and not self.worker.settings.keep_going):
            # Without keep-going a failure abandons every other waitee (they may die now).
            for other in list(self.waitees.values()):
                self._drop_waitee(other)
            self.waitees.clear()
            self.worker.wake_up(self)

    def am_done(self, result: ExitCode) -> None:
        """Goal::amDone: record the result, notify the waiters, leave the worker's maps."""
        assert self.exit_code is ExitCode.BUSY, f"{self!r} finished twice"
        self.exit_code = result
        for waiter in list(self.waiters.values()):
            if not waiter.destroyed:
                waiter.waitee_done(self, result)
        self.waiters.clear()
        self.worker.remove_goal(self)

    # -- lifetime ----------------------------------------------------------------------

    @property
    def referenced(self) -> bool:
        return self.pinned or bool(self.holders)

    def destroy(self, quiet: bool = False) -> None:
        """The destructor: drop the waitees, kill any child, release locks still held.

        `quiet`: the whole request is ending (no per-goal reports; RequestDone follows).
        """
        assert not self.destroyed
        self.destroyed = True
        for other in list(self.waitees.values()):
            self._drop_waitee(other)
        self.release_on_destroy(quiet)

    def release_on_destroy(self, quiet: bool) -> None:
        raise NotImplementedError
