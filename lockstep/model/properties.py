"""The property catalogue: every property is named once, here.

Each `always` property is paired with `sometimes` companions that show it is not
vacuous. A property is checked in one of three forms:
  state  an `Expr` over a state that must hold in every reachable state
         (always) or in some reachable state (sometimes);
  step   an `Expr` over a transition (pre-state `Var`, post-state `Next`);
  graph  a claim about the reachable state graph (explicit engine only).
The same names appear in the engines, the CLI's JSON, the tests and
docs/invariants.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from . import actions as A
from .expr import FALSE, TRUE, Expr, Next, and_, any_, count, eq, implies, le, not_, one_of, or_
from .rules import Rules, Transition
from .state import GoalState as G
from .state import Holder as H
from .state import Status

StateFn = Callable[[Rules, Sequence[Transition]], Expr]
StepFn = Callable[[Rules, Transition], Expr]


@dataclass(frozen=True)
class Property:
    name: str
    kind: Literal["always", "sometimes"]
    form: Literal["state", "step", "graph"]
    claim: str
    companions: tuple[str, ...] = ()
    state: StateFn | None = None
    step: StepFn | None = None


def deadlocked(r: Rules, ts: Sequence[Transition]) -> Expr:
    """Some process has not finished and nothing but failed lock attempts is enabled."""
    someone_running = any_(eq(r.v("status", p), Status.RUNNING) for p in range(len(r.scn.processes)))
    return and_(someone_running, *(not_(t.guard) for t in ts if not t.stutter))


def _holders(r: Rules, o: str) -> Expr:
    d = r.scn.deriver(o).name
    terms = []
    for p in range(len(r.scn.processes)):
        if d in r.lay.closure_of(p):
            terms.append(eq(r.goal(p, d), G.BUSY))
        if o in r.lay.subst_paths[p]:
            terms.append(eq(r.sub(p, o), G.BUSY))
    terms.append(one_of(r.holder(o), (H.KEPT, H.KEPT_TOP)))
    return count(terms)


def lock_exclusive(r: Rules, ts: Sequence[Transition]) -> Expr:
    return and_(*(le(_holders(r, o), 1) for o in r.scn.paths))


def build_holds_lock(r: Rules, ts: Sequence[Transition]) -> Expr:
    claims = []
    for p in range(len(r.scn.processes)):
        for d in r.lay.closure_of(p):
            held = and_(*(and_(eq(r.lock(o), p + 1), eq(r.holder(o), H.BUILD)) for o in r.outs(d)))
            claims.append(implies(eq(r.goal(p, d), G.BUSY), held))
        for o in r.lay.subst_paths[p]:
            held = and_(eq(r.lock(o), p + 1), eq(r.holder(o), H.SUBST))
            claims.append(implies(eq(r.sub(p, o), G.BUSY), held))
    return and_(*claims)


def no_retained_lock(r: Rules, ts: Sequence[Transition]) -> Expr:
    return and_(*(not_(one_of(r.holder(o), (H.KEPT, H.KEPT_TOP))) for o in r.scn.paths))


def valid_under_lock(r: Rules, t: Transition) -> Expr:
    claims = []
    for o in r.scn.paths:
        vi = r.lay.index[("valid", o)]
        if vi not in t.updates:
            continue
        becomes = and_(eq(r.v("valid", o), 0), eq(Next(vi), 1))
        held = and_(eq(r.lock(o), t.action.proc), one_of(r.holder(o), (H.BUILD, H.SUBST)))
        claims.append(implies(becomes, held))
    return and_(*claims)


def lock_contended(r: Rules, ts: Sequence[Transition]) -> Expr:
    return any_(t.guard for t in ts if t.stutter)


def all_requests_done(r: Rules, ts: Sequence[Transition]) -> Expr:
    return and_(*(eq(r.v("status", p), Status.OK) for p in range(len(r.scn.processes))))


def build_runs(r: Rules, ts: Sequence[Transition]) -> Expr:
    return any_(eq(r.goal(p, d), G.BUSY)
                for p in range(len(r.scn.processes)) for d in r.lay.closure_of(p))


def path_registered(r: Rules, ts: Sequence[Transition]) -> Expr:
    return any_(eq(r.v("valid", o), 1) for o in r.scn.paths)


def beaten_to_it(r: Rules, t: Transition) -> Expr:
    return TRUE if isinstance(t.action, A.Beaten | A.SubstBecameValid) else FALSE


def not_deadlocked(r: Rules, ts: Sequence[Transition]) -> Expr:
    return not_(deadlocked(r, ts))


CATALOGUE: tuple[Property, ...] = (
    Property("deadlock_free", "always", "state",
             "no reachable state has a running process while only failed lock attempts are enabled",
             ("all_requests_done",), state=not_deadlocked),
    Property("lock_exclusive", "always", "state",
             "at most one goal, in all processes together, builds, substitutes or keeps each output path",
             ("lock_contended",), state=lock_exclusive),
    Property("build_holds_lock", "always", "state",
             "no builder or substituter runs unless its goal holds the locks of all its output paths",
             ("build_runs",), state=build_holds_lock),
    Property("valid_under_lock", "always", "step",
             "a path becomes valid only in a step of the process that holds its lock, by a live goal",
             ("path_registered",), step=valid_under_lock),
    Property("no_retained_lock", "always", "state",
             "no finished goal holds a lock",
             ("beaten_to_it",), state=no_retained_lock),
    Property("requests_complete", "always", "graph",
             "from every reachable state, a state where every request has returned (ok or failed) is reachable",
             ("all_requests_done",)),
    Property("lock_contended", "sometimes", "state",
             "a goal's lock attempt fails because another process holds the lock", state=lock_contended),
    Property("beaten_to_it", "sometimes", "step",
             "a goal locks its outputs and finds them already valid", step=beaten_to_it),
    Property("all_requests_done", "sometimes", "state",
             "every request returns successfully", state=all_requests_done),
    Property("build_runs", "sometimes", "state", "a builder runs", state=build_runs),
    Property("path_registered", "sometimes", "state", "some path becomes valid", state=path_registered),
)

PROPERTIES: dict[str, Property] = {p.name: p for p in CATALOGUE}
ALWAYS = tuple(p.name for p in CATALOGUE if p.kind == "always")
SOMETIMES = tuple(p.name for p in CATALOGUE if p.kind == "sometimes")


def get(name: str) -> Property:
    if name not in PROPERTIES:
        raise ValueError(f"property {name!r}: unknown; known properties: {', '.join(PROPERTIES)}")
    return PROPERTIES[name]


__all__ = ["ALWAYS", "CATALOGUE", "PROPERTIES", "SOMETIMES", "Property", "deadlocked", "get", "or_"]
