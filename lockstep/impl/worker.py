"""The worker loop (Guix build.cc `class Worker`) and `build_paths` / `ensure_path`.

What it does. One daemon process serves one client; each build-paths request makes a
fresh Worker, creates one top-level goal per requested path, and runs goals until none
of the top-level goals is pending. Goals step in *rounds*: every awake goal runs its
``work()`` once, in ``key()`` order (substitution goals ``a$...`` before derivation
goals ``b$...``, each alphabetically by store name); goals woken during a round run in
the next. A goal that cannot go on parks itself in one of three lists:

* ``wanting_to_build``: no free build slot; woken when any child of this process ends;
* ``waiting_for_any_goal``: an output is locked by another goal of *this* process
  (fcntl cannot tell two owners in one process apart); woken when any goal finishes;
* ``waiting_for_a_while``: the lock is held by another *process*; polled: every
  ``poll_interval`` seconds all of them are woken. A lock release elsewhere is never
  signalled, only discovered by polling (POSIX gives no way to wait for a lock in a
  select loop; Nix cacff1be88, reference Z5).

When nothing is awake the worker sleeps in ``wait_for_input`` on the children's output
pipes, with a timeout that is the nearest of the next poll and (if nobody polls) the
nearest silence or build deadline (reference 2.5: the poll timeout *overrides* the
deadline). The client's socket is watched too: a client that hangs up ends the request.

Which upstream behaviour this mirrors, and where lockstep deviates:

* goal lifetime is explicit (goals.py): parents hold waitees; top-level goals are
  pinned until the request ends; ``sweep`` destroys unreferenced goals at the end of a
  round and of ``wait_for_input``, where C++ drops the last ``shared_ptr``. A finished
  top-level goal therefore keeps whatever locks it kept until ``build_paths`` returns,
  which is what makes the seed bug (pre-fix) deadlock;
* time is float seconds from an injectable clock (clock.py), without Guix's 1-second
  floor; under a controller, polls and timeouts happen when the controller says;
* no build hook, no build users, no chroot, no failed-path cache (steps E and F);
* ``assert(!awake.empty())`` raises :class:`WorkerStuck`; the daemon then reports
  ``WorkerStuck`` and ends the process, as the abort would.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lockstep.impl import derivations as drvs
from lockstep.impl.clock import Clock
from lockstep.impl.derivation_goal import BM_REPAIR, DerivationGoal, SubstitutesFailed
from lockstep.impl.goals import BuildStatus, ExitCode, Goal
from lockstep.impl.local_store import LocalStore
from lockstep.impl.pathlocks import LOCK_SUFFIX, set_open_hook
from lockstep.impl.probe import Probe
from lockstep.impl.settings import Settings
from lockstep.impl.substitution_goal import SubstitutionGoal

ChildGoal = DerivationGoal | SubstitutionGoal


class WorkerStuck(Exception):
    """assert(!awake.empty()): goals are left, but none can ever be woken."""


class NoBuildSlots(Exception):
    """max-jobs 0 and nothing to do: 'unable to start any build'."""


class ClientGone(Exception):
    """The client hung up while the request ran (Guix: SIGPOLL interrupts the op)."""


class BuildFailedError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Child:
    goal: ChildGoal
    pid: int
    fds: set[int]
    in_build_slot: bool
    respect_timeouts: bool
    last_output: float
    time_started: float


@dataclass
class Worker:
    store: LocalStore
    settings: Settings
    probe: Probe = field(default_factory=Probe)
    clock: Clock = field(default_factory=Clock)
    log: Callable[[str], None] = lambda text: None
    client_fd: int | None = None  # watched for hang-ups while waiting

    def __post_init__(self) -> None:
        self._goal_seq = 0
        # Invariant: every goal object not yet destroyed, in creation order.
        self.live: list[Goal] = []
        self.top_goals: dict[int, Goal] = {}
        # The wait lists hold goals weakly: a destroyed goal in them is skipped.
        self.awake: dict[int, Goal] = {}
        self.wanting_to_build: dict[int, Goal] = {}
        self.waiting_for_any_goal: dict[int, Goal] = {}
        self.waiting_for_a_while: dict[int, Goal] = {}
        self.children: dict[int, Child] = {}
        # Invariant: nr_local_builds == number of children with in_build_slot.
        self.nr_local_builds = 0
        # Invariant: at most one live, unfinished goal per drv / path (the weak maps).
        self.derivation_goals: dict[str, DerivationGoal] = {}
        self.substitution_goals: dict[str, SubstitutionGoal] = {}
        self.last_woken_up: float | None = None
        self.permanent_failure = False
        self.timed_out = False
        # Every goal this request made, destroyed or not, in creation order (snapshot).
        self.made: list[Goal] = []
        if self.probe.controlled:
            self.probe.snapshot = self.snapshot

    def snapshot(self) -> list[dict[str, object]]:
        """What a controller reads at each report: every goal made by this request."""
        lists = (("awake", self.awake), ("slot", self.wanting_to_build),
                 ("any", self.waiting_for_any_goal), ("while", self.waiting_for_a_while))
        out: list[dict[str, object]] = []
        for g in self.made:
            locks = g.output_locks.lock_files if isinstance(g, DerivationGoal) else \
                g.output_lock.lock_files if isinstance(g, SubstitutionGoal) else []
            out.append({
                "kind": "drv" if isinstance(g, DerivationGoal) else "subst",
                "name": getattr(g, "name", g.key), "state": getattr(getattr(g, "state", None), "__name__", "?"),
                "exit": g.exit_code.value, "pinned": g.pinned, "destroyed": g.destroyed,
                "wait": [n for n, table in lists if id(g) in table],
                "waitees": sorted(["drv" if isinstance(w, DerivationGoal) else "subst", getattr(w, "name", w.key)]
                                  for w in g.waitees.values()),
                "failed": g.nr_failed, "locks": [os.path.basename(p)[: -len(".lock")].split("-", 1)[1] for p in locks],
            })
        return out

    def next_goal_seq(self) -> int:
        self._goal_seq += 1
        return self._goal_seq

    # -- goals ---------------------------------------------------------------------

    def make_derivation_goal(self, drv_path: str, mode: int = 0) -> DerivationGoal:
        goal = self.derivation_goals.get(drv_path)
        if goal is None or goal.destroyed:
            goal = DerivationGoal(self, drv_path, mode)
            self.made.append(goal)
            self.derivation_goals[drv_path] = goal
            self.wake_up(goal)
        return goal

    def make_substitution_goal(self, path: str, repair: bool = False) -> SubstitutionGoal:
        goal = self.substitution_goals.get(path)
        if goal is None or goal.destroyed:
            goal = SubstitutionGoal(self, path, repair)
            self.made.append(goal)
            self.substitution_goals[path] = goal
            self.wake_up(goal)
        return goal

    def remove_goal(self, goal: Goal) -> None:
        """Worker::removeGoal: called by amDone."""
        for table in (self.derivation_goals, self.substitution_goals):
            key = getattr(goal, "drv_path", None) if table is self.derivation_goals else getattr(goal, "path", None)
            if key is not None and table.get(key) is goal:
                del table[key]
        if id(goal) in self.top_goals:
            del self.top_goals[id(goal)]
            if goal.exit_code is ExitCode.FAILED and not self.settings.keep_going:
                self.top_goals.clear()  # a failed top-level goal cancels the request
        self._wake_all(self.waiting_for_any_goal)

    def wake_up(self, goal: Goal) -> None:
        self.awake[id(goal)] = goal

    def _wake_all(self, waiting: dict[int, Goal]) -> None:
        for goal in waiting.values():
            self.wake_up(goal)
        waiting.clear()

    def wait_for_build_slot(self, goal: Goal) -> None:
        if self.nr_local_builds < self.settings.max_build_jobs:
            self.wake_up(goal)
        else:
            self.wanting_to_build[id(goal)] = goal

    def wait_for_any_goal(self, goal: Goal) -> None:
        self.waiting_for_any_goal[id(goal)] = goal

    def wait_for_a_while(self, goal: Goal) -> None:
        self.waiting_for_a_while[id(goal)] = goal

    # -- children --------------------------------------------------------------------

    def child_started(self, goal: ChildGoal, pid: int, fds: Iterable[int], in_build_slot: bool,
                      respect_timeouts: bool) -> None:
        now = self.clock.now()
        self.children[pid] = Child(goal, pid, set(fds), in_build_slot, respect_timeouts, now, now)
        if in_build_slot:
            self.nr_local_builds += 1

    def child_terminated(self, pid: int, wake_sleepers: bool = True) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            return
        if child.in_build_slot:
            assert self.nr_local_builds > 0
            self.nr_local_builds -= 1
        if wake_sleepers:
            self._wake_all(self.wanting_to_build)

    # -- the loop ----------------------------------------------------------------------

    def run(self, tops: Iterable[Goal], defer: Iterable[str] = ()) -> None:
        """Worker::run: step goals until no top-level goal is pending.

        `defer` (controlled runs only, from the controller's answer to RequestStart): names
        of top-level goals kept out of the awake set until the first wait for input has
        returned (or nothing else can run). The daemon's own order runs every top-level
        goal in the first round; the model lets goals of one process step in any order,
        and this reaches such an order on the real process (e.g. a goal that first makes
        its inputs after another top-level goal has finished). Empty: Guix's order."""
        names = set(defer)
        held: dict[int, Goal] = {}
        for goal in tops:
            self.top_goals[id(goal)] = goal
            if getattr(goal, "name", None) in names:
                held[id(goal)] = goal
                self.awake.pop(id(goal), None)
        while True:
            while self.awake and self.top_goals:
                round_ = sorted((g for g in self.awake.values() if not g.destroyed),
                                key=lambda g: (g.key, g.seq))
                self.awake.clear()
                for goal in round_:
                    if goal.destroyed or goal.exit_code is not ExitCode.BUSY:
                        continue
                    goal.work()
                    if not self.top_goals:
                        break
                self.sweep()
            if not self.top_goals:
                break
            if self.children or self.waiting_for_a_while:
                self.wait_for_input()
                self.sweep()
            elif held:
                pass  # nothing else can run: the deferred goals go now
            elif not self.awake:
                if self.settings.max_build_jobs == 0:
                    raise NoBuildSlots("unable to start any build; either increase '--max-jobs' "
                                       "or enable distributed builds")
                raise WorkerStuck(
                    "worker stuck: goals are left but none is awake, running or polling "
                    f"(waiting for another goal: {sorted(g.key for g in self.waiting_for_any_goal.values())})")
            for goal in held.values():
                if not goal.destroyed:
                    self.wake_up(goal)
            held.clear()

    def _deadline(self) -> float | None:
        s = self.settings
        nearest: float | None = None
        for child in self.children.values():
            if not child.respect_timeouts:
                continue
            for limit, since in ((s.max_silent_time, child.last_output), (s.build_timeout, child.time_started)):
                if limit:
                    nearest = since + limit if nearest is None else min(nearest, since + limit)
        return nearest

    def wait_for_input(self) -> None:
        """Worker::waitForInput: sleep until child output, a timeout or the next poll."""
        s = self.settings
        now = self.clock.now()
        deadline = self._deadline()
        timeout = None if deadline is None else max(0.0, deadline - now)
        poll_at: float | None = None
        if self.waiting_for_a_while:
            if self.last_woken_up is None:
                self.log("waiting for locks or build slots...\n")
            if self.last_woken_up is None or self.last_woken_up > now:
                self.last_woken_up = now
            poll_at = self.last_woken_up + s.poll_interval
            timeout = max(0.0, poll_at - now)  # overrides the deadline (reference 2.5)
        else:
            self.last_woken_up = None
        fds = sorted(fd for child in self.children.values() for fd in child.fds)
        if self.client_fd is not None:
            fds.append(self.client_fd)
        pollers = sorted(getattr(g, "name", g.key) for g in self.waiting_for_a_while.values())
        ready = set(self.clock.wait(fds, timeout, {"poll_at": poll_at, "deadline": deadline,
                                                   "children": len(self.children), "pollers": pollers}))
        after = self.clock.now()
        if self.client_fd is not None and self.client_fd in ready:
            self._check_client()
        for pid in sorted(self.children):
            child = self.children.get(pid)
            if child is None:
                continue  # a goal cancelled earlier in this loop
            goal = child.goal
            for fd in sorted(child.fds & ready):
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if not data:
                    child.fds.discard(fd)
                    goal.handle_eof(fd)
                else:
                    child.last_output = after
                    goal.handle_child_output(fd, data)
            if goal.exit_code is ExitCode.BUSY and pid in self.children and child.respect_timeouts:
                if s.max_silent_time and after - child.last_output >= s.max_silent_time:
                    goal.timed_out(f"timed out after {s.max_silent_time:g} seconds of silence")
                elif s.build_timeout and after - child.time_started >= s.build_timeout:
                    goal.timed_out(f"timed out after {s.build_timeout:g} seconds")
        if self.waiting_for_a_while and self.last_woken_up is not None \
                and self.last_woken_up + s.poll_interval <= after:
            self.last_woken_up = after
            self._wake_all(self.waiting_for_a_while)

    def _check_client(self) -> None:
        assert self.client_fd is not None
        peer = socket.socket(fileno=os.dup(self.client_fd))
        try:
            data = peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        finally:
            peer.close()
        if not data:
            raise ClientGone("the client hung up")
        self.client_fd = None  # it sent something early; stop watching (read after the op)

    # -- lifetime ------------------------------------------------------------------------

    def sweep(self) -> None:
        """Destroy every goal nobody references (C++: the last shared_ptr went)."""
        while True:
            dead = sorted((g for g in self.live if not g.destroyed and not g.referenced),
                          key=lambda g: (g.key, g.seq))
            if not dead:
                break
            for goal in dead:
                if not goal.destroyed and not goal.referenced:
                    goal.destroy()
        self.live = [g for g in self.live if not g.destroyed]

    def teardown(self) -> None:
        """~Worker and the request's goal set: destroy everything, releasing all locks."""
        self.top_goals.clear()
        for goal in self.live:
            if not goal.destroyed:
                goal.destroy(quiet=True)
        self.live = []
        for child in list(self.children.values()):  # pragma: no cover - goals killed them
            child.goal.kill_child()

    def exit_status(self) -> int:
        return 101 if self.timed_out else 100 if self.permanent_failure else 1


def build_paths(worker: Worker, paths: Iterable[str], mode: int = 0) -> None:
    """LocalStore::buildPaths: realise `paths` (.drv paths, optionally `drv!out,...`, or
    plain store paths to substitute) as top-level goals. Raises BuildFailedError."""
    goals: list[Goal] = []
    for p in sorted(set(paths)):
        drv_path, _outputs = drvs.parse_drv_path_with_outputs(p)
        if drv_path.endswith(drvs.DRV_EXTENSION):
            goals.append(worker.make_derivation_goal(drv_path, mode))
        else:
            goals.append(worker.make_substitution_goal(drv_path, mode != 0))
    _run_request(worker, goals, "build of {failed} failed")


def ensure_path(worker: Worker, path: str) -> None:
    """LocalStore::ensurePath: make `path` valid by substitution."""
    if worker.store.is_valid_path(path):
        return
    goal = worker.make_substitution_goal(path)
    _run_request(worker, [goal], "path {failed} does not exist and cannot be created")


def _run_request(worker: Worker, goals: list[Goal], message: str) -> None:
    for goal in goals:
        goal.pinned = True  # held by the request until it returns (reference 2.3)
    probe = worker.probe
    start = probe.report("RequestStart", tops=[getattr(g, "name", g.key) for g in goals])
    if start.get("lock_file_reports"):
        # A scheduling point between opening a lock file and locking it (pathlocks.py):
        # the stutter report LockFileOpened, for controlled runs that ask for it.
        def opened(lock_path: str) -> None:
            name = os.path.basename(lock_path)[: -len(LOCK_SUFFIX)].split("-", 1)[-1]
            probe.report("LockFileOpened", path=name, lock_path=lock_path)
        set_open_hook(opened)
    try:
        worker.run(goals, start.get("defer", ()))
    except SubstitutesFailed as e:
        worker.teardown()
        probe.report("SubstitutesFailed", drv=e.goal.name, drv_path=e.goal.drv_path)
        raise BuildFailedError(str(e), 1) from None
    except (WorkerStuck, NoBuildSlots) as e:
        worker.teardown()
        probe.report("WorkerStuck", reason=str(e))
        raise
    except BaseException:
        worker.teardown()
        raise
    finally:
        set_open_hook(None)
    failed = []
    for goal in goals:
        if isinstance(goal, DerivationGoal):
            if goal.status is None or not goal.status.success:
                failed.append(goal.drv_path)
        elif goal.exit_code is not ExitCode.SUCCESS:
            failed.append(getattr(goal, "path", goal.key))
    worker.teardown()
    probe.report("RequestDone", ok=not failed)
    if failed:
        raise BuildFailedError(message.format(failed=", ".join(repr(f) for f in sorted(set(failed)))),
                               worker.exit_status())


__all__ = ["BM_REPAIR", "BuildFailedError", "BuildStatus", "ClientGone", "NoBuildSlots", "Worker",
           "WorkerStuck", "build_paths", "ensure_path"]
