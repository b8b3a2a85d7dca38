"""Refinement: the real daemon processes checked against the model on every transition.

What it does. A `Session` runs the real daemon under a controller (controller.py) and
keeps, beside it, one model state: the abstraction of the real system (abstraction.py).
Every probe report is a transition of the real system, and is checked at once:

* a report that names a model action (probe.py lists them) must name an action that
  the model *enables* in the current abstract state, and the abstraction of the real
  state just after it must *equal* the model's next state;
* any other report (RequestStart, WaitForInput, NoSubstituters, ...) is a stutter: the
  abstraction must not change;
* a crash the controller causes (SIGKILL) is the model's ``Crash``, checked the same way.

So the real system is a refinement of the model along every run the controller forces:
its visible behaviour is a path through the model's transition graph, and every state
property the model proves of its reachable states holds of the real states too. The
properties are evaluated on each new state anyway (they are cheap), so that a run of a
deliberately broken model variant, or of an implementation policy checked against
another model policy, names the property as well as the step.

A mismatch raises `RefinementError` with the state before, the action, the model's
next state and the real one (both as ``Model.describe`` shows states), the variables
that differ, and the trace so far (model steps) with the schedule (controller choices).

Deadlock on the real processes. When the abstract state is a model deadlock state (a
process is running and only failed lock attempts are enabled), `confirm_deadlock` lets
every process run until it waits with nothing to wait for but a poll, then lets each one
poll once more: every report must be a stutter. The wait-for graph then comes from the
kernel's lock table (waitfor.py), not from the model.

Which upstream behaviour this mirrors, and the trade-offs. The daemon reports each step
where Guix's build.cc completes it (probe.py). The granularity is the report: steps the
daemon takes between two reports are atomic to the controller, so interleavings *inside*
a step are not forced, except the two a start-up answer opens (controller.py: ``defer``
for the order of one process's top-level goals, ``lock_file_reports`` for a lock file
opened, then locked, the Z7 window; tests/refinement/test_bug_switches.py); the goals
picture comes from the process itself, so a process that lied about its goals would be believed, but not about
locks (the kernel) or validity (SQLite). Refinement is checked, not liveness: a model
action that the real process never takes is not an error (the daemon runs goals in key
order, one of the interleavings the model allows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.harness.abstraction import (
    AbstractionError,
    Observation,
    abstract,
    read_locks,
    read_valid,
)
from lockstep.harness.check import CheckRow
from lockstep.harness.controller import ControlError, Report, Run
from lockstep.harness.waitfor import WaitForGraph, build_graph
from lockstep.model import actions as A
from lockstep.model.expr import evaluate
from lockstep.model.machine import Model, State
from lockstep.model.properties import PROPERTIES, valid_under_lock
from lockstep.model.scenario import Scenario
from lockstep.model.trace import Trace

SAFETY = ("lock_exclusive", "build_holds_lock", "valid_under_lock")  # hold under every policy
POLL_ONLY = ("LockFailed", "SubstLockFailed", "WaitForInput")
# Reports after which a process's next step is run at once in coarse mode: steps that
# write only the process's own goal state (a partial-order reduction: they commute with
# every other process's steps), and the stutter reports other than WaitForInput.
LOCAL = frozenset({"HaveDerivation", "Substitute", "InputsRealised", "WaitForAnyGoal", "SubstInit",
                   "SubstNoSlot", "SubstWaitForAnyGoal", "DependencyFailed", "Substituted",
                   "AlreadyValid", "SubstAlreadyValid", "RequestStart", "NoSubstituters",
                   "SubstWaitReferences", "WaitForDrv", "MissingDerivation"})


class RefinementError(AssertionError):
    """A real transition the model does not allow, or a broken real state."""

    def __init__(self, message: str, prop: str, trace: Trace, schedule: list[str],
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.prop = prop  # the refinement step or property that failed
        self.trace = trace
        self.schedule = schedule
        self.details = details or {}


class DeadlockFound(AssertionError):
    """The real processes deadlocked (confirmed: every running process can only poll)."""

    def __init__(self, message: str, trace: Trace, schedule: list[str], graph: WaitForGraph) -> None:
        super().__init__(message)
        self.prop = "deadlock_free"
        self.trace = trace
        self.schedule = schedule
        self.graph = graph


def action_of(proc: int, r: Report) -> A.Action | None:
    """The model action a report names, or None for a stutter report."""
    t = A.ACTION_TYPES.get(r["action"])
    if t is None or t is A.Crash:
        return None
    if issubclass(t, A.DrvAction):
        return t(proc, r["drv"])
    if issubclass(t, A.PathAction):
        return t(proc, r["path"])
    return t(proc)


def diff(model: Model, a: State, b: State) -> list[str]:
    lay = model.layout
    return [f"{lay.names[i]}: model {lay.render(i, x)}, real {lay.render(i, y)}"
            for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


@dataclass
class Session:
    """A controlled run of the real processes, checked against `model` at every report."""

    model: Model
    impl_policy: str | None = None
    bugs: tuple[str, ...] = ()
    properties: tuple[str, ...] = SAFETY  # checked on every new state / transition
    # "fine": a choice answers one report; "coarse": a process then runs on through its
    # LOCAL steps, so choices fall only before steps that touch locks or validity.
    granularity: str = "coarse"
    # Per process: the answer to RequestStart (controller.py: defer, lock_file_reports).
    start_replies: dict[int, Report] = field(default_factory=dict)
    run: Run = field(init=False)
    states: list[State] = field(default_factory=list)
    actions: list[A.Action] = field(default_factory=list)
    schedule: list[str] = field(default_factory=list)
    checked: int = 0  # transitions checked (reports and crashes)
    log: list[str] = field(default_factory=list)  # one line per report, for people

    def __post_init__(self) -> None:
        self.run = Run(self.model.scenario, self.impl_policy or self.model.policy, self.bugs,
                       self.model.faults, self.start_replies)
        self.started = time.perf_counter()

    @property
    def scenario(self) -> Scenario:
        return self.model.scenario

    @property
    def state(self) -> State:
        return self.states[-1]

    def trace(self, prop: str | None = None) -> Trace:
        return Trace(self.model, list(self.states), list(self.actions), prop)

    # -- running -------------------------------------------------------------------

    def start(self) -> None:
        self.states = [self.model.init_state()]
        for proc, r in self.run.start():
            self._check(proc, r)
        for p in sorted(self.run.procs):
            self._run_local(p)

    def _run_local(self, proc: int) -> None:
        """Coarse mode: answer `proc`'s reports while they are LOCAL (each still checked)."""
        p = self.run.procs[proc]
        while self.granularity == "coarse" and p.pending is not None and p.pending["action"] in LOCAL:
            r = self.run.answer(proc, {})
            if r is not None:
                self._check(proc, r)

    def stop(self) -> None:
        self.run.stop()

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def options(self) -> list[str]:
        return self.run.options()

    @property
    def finished(self) -> bool:
        return not self.run.running()

    def choose(self, choice: str) -> None:
        """Carry out one controller choice and check the transition(s) it causes."""
        self.schedule.append(choice)
        proc, r = self.run.apply(choice)
        if choice.endswith(":kill"):
            self._check(proc, None, A.Crash(proc))
        elif r is not None:
            self._check(proc, r)
            self._run_local(proc)

    def observe(self) -> State:
        run = self.run
        try:
            obs = Observation(
                statuses={i: p.status for i, p in run.procs.items()},
                goals={i: (p.last or {}).get("goals", []) for i, p in run.procs.items()},
                locks=read_locks(run.store.outputs, run.pids),
                valid=read_valid(run.db_path, run.store.outputs))
            return abstract(self.scenario, self.model.layout, obs)
        except AbstractionError as e:
            raise RefinementError(f"the real state after step {len(self.actions)} is broken: {e}",
                                  e.prop, self.trace(e.prop), list(self.schedule)) from None

    def _check(self, proc: int, r: Report | None, action: A.Action | None = None) -> None:
        self.checked += 1
        if action is None and r is not None:
            action = action_of(proc, r)
        what = str(action) if action is not None else f"P{proc} {r['action'] if r else '?'} (stutter)"
        self.log.append(what)
        pre = self.state
        real = self.observe()
        if action is None:
            if real != pre:
                self._fail("stutter", f"P{proc} reported {what}, which is no model action, but the "
                           f"abstract state changed", pre, None, real, what)
            return
        nxt = self.model.next_state(pre, action)
        if nxt is None:
            self._fail("enabled", f"{action} is not enabled in the model (policy "
                       f"{self.model.policy}) in the state before it", pre, None, real, what)
        assert nxt is not None
        if real != nxt:
            self._fail("next_state", f"after {action} the real state differs from the model's next state",
                       pre, nxt, real, what)
        t = self.model.by_action[action]
        if "valid_under_lock" in self.properties \
                and not evaluate(valid_under_lock(self.model.rules, t), pre, nxt):
            self.actions.append(action)
            self.states.append(nxt)
            raise RefinementError(f"valid_under_lock: {action} made a path valid without its lock",
                                  "valid_under_lock", self.trace("valid_under_lock"), list(self.schedule))
        self.actions.append(action)
        self.states.append(nxt)
        for name in self.properties:
            if PROPERTIES[name].form == "state" and name != "deadlock_free":
                if not self.model.holds(name, nxt):
                    raise RefinementError(f"{name} is violated after {action}: "
                                          f"{PROPERTIES[name].claim}", name, self.trace(name),
                                          list(self.schedule))

    def _fail(self, step: str, message: str, pre: State, nxt: State | None, real: State,
              what: str) -> None:
        m = self.model
        details: dict[str, Any] = {"before": m.describe(pre), "action": what, "real": m.describe(real)}
        lines = [f"refinement step '{step}' failed at transition {self.checked}: {message}",
                 f"  action: {what}"]
        if nxt is not None:
            details["model"] = m.describe(nxt)
            lines.append("  differences (model vs real): " + "; ".join(diff(m, nxt, real)))
        elif real != pre:
            lines.append("  changed (before vs real): " + "; ".join(diff(m, pre, real)))
        lines.append("  state before: " + json.dumps(m.describe(pre), sort_keys=True))
        lines.append("  real state:   " + json.dumps(m.describe(real), sort_keys=True))
        if nxt is not None:
            lines.append("  model's next: " + json.dumps(m.describe(nxt), sort_keys=True))
        trace = self.trace(f"refinement:{step}")
        lines.append("  trace so far:\n" + trace.render())
        lines.append("  schedule: " + " ".join(self.schedule))
        raise RefinementError("\n".join(lines), f"refinement:{step}", trace, list(self.schedule), details)

    # -- deadlock ------------------------------------------------------------------

    def deadlocked(self) -> bool:
        return self.model.is_deadlock(self.state)

    def confirm_deadlock(self) -> WaitForGraph:
        """Let every running process go until it can only poll, then poll each once more;
        every report must be a stutter. Raises DeadlockFound with the kernel's wait-for graph."""
        run = self.run
        for p in run.running():
            while (p.pending is not None and (p.pending["action"] != "WaitForInput"
                                               or p.pending.get("children"))):
                self._settle(p.number)
        for p in run.running():
            self._settle(p.number)
            while p.pending is not None and p.pending["action"] != "WaitForInput":
                self._settle(p.number)
        graph = build_graph(run.reports, run.store_dir)
        for i, p in run.procs.items():
            if p.pid is not None:
                graph.names[p.pid] = f"P{i}"
        trace = self.trace("deadlock_free")
        raise DeadlockFound(
            "deadlock on the real processes: every running process only polls for locks held by "
            f"another\n{graph.format()}\n{trace.render()}schedule: {' '.join(self.schedule)}",
            trace, list(self.schedule), graph)

    def _settle(self, proc: int) -> None:
        r = self.run.procs[proc].pending
        assert r is not None
        opts = [o for o in self.options() if o.split(":")[0] == f"P{proc}" and not o.endswith(":kill")]
        choice = next((o for o in opts if o.endswith(":poll")), opts[0])
        before = len(self.actions)
        _, nxt = self.run.apply(choice)
        if nxt is not None:
            self._check(proc, nxt)
        if len(self.actions) != before and self.actions[-1].kind not in POLL_ONLY:
            raise RefinementError(f"P{proc} did {self.actions[-1]} in a model deadlock state",
                                  "refinement:deadlock", self.trace(), list(self.schedule))

    # -- schedules -------------------------------------------------------------------

    def fair_choice(self) -> str:
        """Round robin over processes; a step before a wait, a wait for input before a poll."""
        opts = [o for o in self.options() if not o.endswith(":kill")]
        last = int(self.schedule[-1].split(":")[0][1:]) if self.schedule else 0
        n = len(self.run.procs)

        def rank(o: str) -> tuple[int, int]:
            proc = int(o.split(":")[0][1:])
            kind = 0 if ":" not in o else 1 if not o.endswith(":poll") else 2
            return kind, (proc - last - 1) % n

        return min(opts, key=rank)

    def run_fair(self, limit: int = 5000) -> None:
        """Run to the end (or to a confirmed deadlock) under the fair schedule."""
        for _ in range(limit):
            if self.finished:
                return
            if self.deadlocked():
                self.confirm_deadlock()
            self.choose(self.fair_choice())
        raise ControlError(f"the fair schedule did not finish in {limit} choices")

    def replay_schedule(self, schedule: Sequence[str]) -> None:
        for c in schedule:
            self.choose(c)

    def save(self, path: str | Path, prop: str | None = None) -> None:
        """The model trace so far as ITF, with the schedule and the run's settings in #meta."""
        save_trace(self.trace(prop), path, self.schedule, self.run.policy, self.bugs)


def save_trace(trace: Trace, path: str | Path, schedule: Sequence[str], impl_policy: str,
               bugs: Sequence[str] = ()) -> None:
    itf = trace.to_itf()
    itf["#meta"]["schedule"] = list(schedule)
    itf["#meta"]["impl_policy"] = impl_policy
    itf["#meta"]["bugs"] = list(bugs)
    Path(path).write_text(json.dumps(itf, indent=1) + "\n")


def check(model: Model, props: Sequence[str] | None, depth: int = 40, runs: int = 20) -> list[CheckRow]:
    """`lockstep check --engine impl`: fair and seeded random schedules of the real daemon,
    refinement-checked; each property holds (no run broke it), is violated, or unknown."""
    import random

    names = list(props) if props is not None else list(PROPERTIES)
    start = time.perf_counter()
    found: dict[str, Trace] = {}
    checked = 0
    reached: set[str] = set()
    reason = ""
    for k in range(runs):
        rng = random.Random(k)
        s = Session(model)
        try:
            s.start()
            for _ in range(max(depth, 1) * 20):
                if s.finished:
                    break
                if s.deadlocked():
                    s.confirm_deadlock()
                opts = s.options()
                s.choose(s.fair_choice() if k == 0 else rng.choice(opts))
            if s.finished and all(p.status == "OK" for p in s.run.procs.values()):
                reached.add("all_requests_done")
            if any(a.kind in ("Beaten", "SubstBecameValid") for a in s.actions):
                reached.add("beaten_to_it")
            if any(a.kind in ("LockFailed", "SubstLockFailed") for a in s.actions):
                reached.add("lock_contended")
            if any(a.kind == "StartBuild" for a in s.actions):
                reached.add("build_runs")
            if any(a.kind in ("BuildSucceeded", "SubstSucceeded") for a in s.actions):
                reached.add("path_registered")
        except (RefinementError, DeadlockFound) as e:
            found.setdefault(e.prop.removeprefix("refinement:") if e.prop.startswith("refinement")
                             else e.prop, e.trace)
            if e.prop.startswith("refinement"):
                reason = str(e).splitlines()[0]
        finally:
            # state properties that depend on the policy are not checked on the fly (a run
            # goes on to a deadlock); they are read off the model states the run visited
            for name in names:
                prop = PROPERTIES[name]
                if name in found or prop.kind != "always" or prop.form != "state" or name == "deadlock_free":
                    continue
                bad = next((i for i, st in enumerate(s.states) if not model.holds(name, st)), None)
                if bad is not None:
                    found[name] = Trace(model, s.states[:bad + 1], s.actions[:bad], name)
            checked += s.checked
            s.stop()
    secs = time.perf_counter() - start
    rows = []
    for name in names:
        prop = PROPERTIES[name]
        tr = found.get(name)
        if tr is not None:
            result = "violated"
        elif prop.kind == "sometimes":
            result = "reached" if name in reached else "unknown"
        else:  # sampled runs never prove an `always` property
            result = "unknown"
        why = ("" if result != "unknown" else reason or
               f"not {'violated' if prop.kind == 'always' else 'reached'} in {runs} controlled runs")
        rows.append(CheckRow(model.scenario.name, model.policy, "impl", name, prop.kind, result, tr,
                             seconds=secs, reason=why,
                             extra={"checked_transitions": checked, "runs": runs}))
    for step in ("enabled", "next_state", "stutter", "deadlock"):
        if step in found:
            rows.append(CheckRow(model.scenario.name, model.policy, "impl", f"refinement:{step}", "always",
                                 "violated", found[step], seconds=secs, reason=reason,
                                 extra={"checked_transitions": checked, "runs": runs}))
    return rows
