"""The model's state: a flat vector of small integers, and its layout.

A state is a tuple of ints (hashable, cheap to copy). `Layout` names every
position and gives its domain, so that the explicit engine, the z3 encoding,
traces and humans all read the same vector the same way.

Per process p (a contiguous block, so identical processes can be permuted):
  goal.<drv>        state of p's live derivation goal for <drv>  (GoalState)
  subst.<path>      state of p's live substitution goal for <path> (GoalState)
  waits.<drv>.<w>   1 while the goal of <drv> waits on waitee <w> (its `waitees`)
  failed.<drv>      1 once a waitee of <drv> failed (`nrFailed > 0`)
  top.<drv>         result of p's top-level goal for <drv>        (Top)
  status            RUNNING until the build-paths request returns (Status)
Shared:
  lock.<path>       holding process (1-based) or 0: the lock table
  holder.<path>     which goal object of that process holds it    (Holder)
  valid.<path>      1 once the path is registered valid
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .scenario import Scenario


class GoalState(IntEnum):
    ABSENT = 0  # no live goal object in this process's goal map
    INIT = 1  # created and awake: next step is haveDerivation / init
    WAIT_SUBST = 2  # derivation goal waiting for its substitution goals
    WAIT_INPUTS = 3  # derivation goal waiting for its input goals
    TRY = 4  # tryToBuild / tryToRun: awake or polling (waitingForAWhile)
    WAIT_ANY = 5  # waitingForAnyGoal: an output is locked by another goal of this process
    WAIT_SLOT = 6  # wantingToBuild: no free build slot
    BUSY = 7  # builder or substituter running, in a build slot
    DONE_OK = 8  # finished successfully (removed from the goal map)
    DONE_FAIL = 9  # finished with a failure (removed from the goal map)


class Holder(IntEnum):
    NONE = 0
    BUILD = 1  # the live derivation goal that derives the path
    SUBST = 2  # the live substitution goal of the path
    KEPT = 3  # a finished goal that was not top-level (released when it is destroyed)
    KEPT_TOP = 4  # a finished top-level goal (released when the whole request ends)


class Status(IntEnum):
    RUNNING = 0
    OK = 1  # request returned, every top-level goal succeeded
    FAILED = 2  # request returned an error
    ABORTED = 3  # the worker tripped assert(!awake.empty()): daemon child died
    KILLED = 4  # fault: SIGKILL from outside


class Top(IntEnum):
    PENDING = 0
    OK = 1
    FAILED = 2


GOAL_STATES = len(GoalState)


@dataclass
class Layout:
    """Names, domains and positions of the state vector for one scenario."""

    scenario: Scenario
    names: list[str] = field(default_factory=list)
    domains: list[int] = field(default_factory=list)  # variable i ranges over 0..domains[i]-1
    index: dict[tuple[object, ...], int] = field(default_factory=dict)
    keys: list[tuple[object, ...]] = field(default_factory=list)  # inverse of index
    blocks: list[tuple[int, int]] = field(default_factory=list)  # per process: [start, end)
    closures: list[tuple[str, ...]] = field(default_factory=list)
    subst_paths: list[tuple[str, ...]] = field(default_factory=list)

    def _add(self, key: tuple[object, ...], name: str, domain: int) -> None:
        self.index[key] = len(self.names)
        self.keys.append(key)
        self.names.append(name)
        self.domains.append(domain)

    @classmethod
    def of(cls, scenario: Scenario) -> Layout:
        lay = cls(scenario)
        nprocs = len(scenario.processes)
        for p, proc in enumerate(scenario.processes):
            start = len(lay.names)
            closure = scenario.closure(proc.request)
            spaths = tuple(o for d in closure if scenario.drv(d).substitutable
                           for o in scenario.drv(d).output_paths)
            lay.closures.append(closure)
            lay.subst_paths.append(spaths)
            pre = f"P{p + 1}."
            for d in closure:
                lay._add(("goal", p, d), f"{pre}goal.{d}", GOAL_STATES)
            for o in spaths:
                lay._add(("subst", p, o), f"{pre}subst.{o}", GOAL_STATES)
            for d in closure:
                for w in waitees(scenario, d):
                    lay._add(("waits", p, d, w), f"{pre}waits.{d}.{w[1]}", 2)
            for d in closure:
                if waitees(scenario, d):
                    lay._add(("failed", p, d), f"{pre}failed.{d}", 2)
            for d in proc.request:
                lay._add(("top", p, d), f"{pre}top.{d}", len(Top))
            lay._add(("status", p), f"{pre}status", len(Status))
            lay.blocks.append((start, len(lay.names)))
        for o in scenario.paths:
            lay._add(("lock", o), f"lock.{o}", nprocs + 1)
            lay._add(("holder", o), f"holder.{o}", len(Holder))
            lay._add(("valid", o), f"valid.{o}", 2)
        return lay

    def closure_of(self, p: int) -> tuple[str, ...]:
        return self.closures[p]

    @property
    def shared_start(self) -> int:
        return self.blocks[-1][1]

    def render(self, i: int, value: int) -> str:
        """A variable's value as a person reads it."""
        kind = self.keys[i][0]
        if kind in ("goal", "subst"):
            return GoalState(value).name
        if kind == "lock":
            return f"P{value}" if value else "-"
        if kind == "holder":
            return Holder(value).name
        if kind == "status":
            return Status(value).name
        if kind == "top":
            return Top(value).name
        return str(value)

    def initial(self) -> tuple[int, ...]:
        s = [0] * len(self.names)
        for p, proc in enumerate(self.scenario.processes):
            for d in proc.request:
                s[self.index[("goal", p, d)]] = GoalState.INIT
        return tuple(s)


def waitees(scenario: Scenario, drv: str) -> tuple[tuple[str, str], ...]:
    """What a derivation goal can wait on: ("drv", input) and ("subst", output path)."""
    d = scenario.drv(drv)
    subst = tuple(("subst", o) for o in d.output_paths) if d.substitutable else ()
    return subst + tuple(("drv", i) for i in d.inputs)


def symmetry_groups(scenario: Scenario) -> list[tuple[int, ...]]:
    """Indices of processes that are interchangeable (same request and settings)."""
    groups: dict[object, list[int]] = {}
    for p, proc in enumerate(scenario.processes):
        groups.setdefault(proc, []).append(p)
    return [tuple(g) for g in groups.values()]
