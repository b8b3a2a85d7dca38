"""Replay a model trace (explicit, z3 or Hypothesis engine) against the real processes.

For each step (process p, action a) of the trace, p is let go, report after report,
until it reports a; every report on the way is refinement-checked as usual. The daemon
runs a process's goals in key order, so a process may take some of its own trace steps
early (they are then skipped when the trace reaches them) or take extra steps the trace
does not have (failed lock attempts, a wait for a build slot); steps of *other*
processes are never taken early. At ``WaitForInput`` the controller lets time move as
the wanted action needs: a builder's end for Build*/Subst* results, the build deadline
for BuildTimedOut, a poll otherwise.

After each step the real abstract state is compared with the trace's: the whole state,
and the shared part (lock table, holders, valid paths). A trace ending in a model
deadlock is then confirmed on the real processes (refinement.confirm_deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lockstep.harness.refinement import DeadlockFound, Session, diff
from lockstep.model import actions as A
from lockstep.model.machine import Model
from lockstep.model.trace import Trace

FINISHING = ("BuildSucceeded", "BuildFailed", "SubstSucceeded", "SubstFailed")
MAX_REPORTS_PER_STEP = 200


@dataclass
class StepResult:
    index: int
    action: A.Action
    how: str  # "taken", "taken earlier", "not taken"
    same_state: bool
    same_shared: bool
    differences: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    steps: list[StepResult]
    deadlock: DeadlockFound | None
    final_locks: dict[str, int]
    checked: int
    schedule: list[str] = field(default_factory=list)  # the controller choices the replay made

    @property
    def ok(self) -> bool:
        return all(s.how != "not taken" and s.same_shared for s in self.steps)

    def render(self) -> str:
        lines = []
        for s in self.steps:
            mark = "same state" if s.same_state else "same locks and valid paths" if s.same_shared \
                else "DIFFERENT: " + "; ".join(s.differences[:6])
            lines.append(f"{s.index:3d}  P{s.action.proc} {s.action} ({s.how}): {mark}")
        if self.deadlock is not None:
            lines.append("real processes deadlocked at the end:")
            lines.append(self.deadlock.graph.format())
        locks = ", ".join(f"{o}: P{p}" for o, p in sorted(self.final_locks.items()) if p) or "none held"
        lines.append(f"final lock table (kernel): {locks}")
        lines.append(f"{self.checked} transitions checked; replay {'reached' if self.ok else 'did not reach'} "
                     f"the trace's lock table and valid paths at every step")
        return "\n".join(lines) + "\n"


def _shared(model: Model, s: tuple[int, ...]) -> tuple[int, ...]:
    return s[model.layout.shared_start:]


def replay_trace(trace: Trace, impl_policy: str | None = None, bugs: tuple[str, ...] = (),
                 start_replies: dict[int, dict[str, Any]] | None = None) -> ReplayResult:
    """`start_replies`: per process, the answer to RequestStart (controller.py), e.g.
    ``{1: {"defer": ["t"]}}`` for a trace whose goal order the daemon's own never takes."""
    model = trace.model
    session = Session(model, impl_policy, bugs, granularity="fine", start_replies=dict(start_replies or {}))
    results: list[StepResult] = []
    deadlock: DeadlockFound | None = None
    try:
        session.start()
        pool: list[A.Action] = []  # actions the real processes took, not yet matched
        seen = 0
        for i, a in enumerate(trace.actions, 1):
            pool.extend(x for x in session.actions[seen:] if x.kind not in ("LockFailed", "SubstLockFailed"))
            seen = len(session.actions)
            how = "taken earlier"
            if a not in pool:
                how = _drive(session, a)
                pool.extend(x for x in session.actions[seen:] if x.kind not in ("LockFailed", "SubstLockFailed"))
                seen = len(session.actions)
            if a in pool:
                pool.remove(a)
            real, want = session.state, trace.states[i]
            results.append(StepResult(i, a, how, real == want, _shared(model, real) == _shared(model, want),
                                      diff(model, want, real)))
            if how == "not taken":
                break
        if session.deadlocked():
            try:
                session.confirm_deadlock()
            except DeadlockFound as e:
                deadlock = e
        lay = model.layout
        locks = {o: session.state[lay.index[("lock", o)]] for o in model.scenario.paths}
        return ReplayResult(results, deadlock, locks, session.checked, list(session.schedule))
    finally:
        session.stop()


def _drive(session: Session, a: A.Action) -> str:
    """Let a.proc go until it reports `a` (its other reports are checked on the way)."""
    p = session.run.procs[a.proc]
    name = f"P{a.proc}"
    for _ in range(MAX_REPORTS_PER_STEP):
        if p.pending is None:
            return "not taken"
        if p.pending["action"] == "WaitForInput":
            opts = [o for o in session.options() if o.startswith(name + ":") and not o.endswith(":kill")]
            want = ":input" if a.kind in FINISHING else ":timeout" if a.kind == "BuildTimedOut" else ":poll"
            choice = next((o for o in opts if o.endswith(want)), opts[0] if opts else name)
        else:
            choice = name
        before = len(session.actions)
        session.choose(choice)
        if a in session.actions[before:]:
            return "taken"
    return "not taken"
