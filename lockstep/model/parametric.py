"""Claims for every size: quantified proofs over uninterpreted sorts.

The grounded model (rules.py) exists one scenario at a time, so every other
engine proves things about one scenario. This module proves `deadlock_free`,
`lock_exclusive` and `build_holds_lock` (`CLAIMS`) for any number of
processes, derivations and paths at once, in two halves:

The theorem (`theorem`): processes, derivations and paths are uninterpreted
z3 sorts (no size, no shape: any finite structure is a model), the state is a
set of functions over them (`AState`: who holds each lock and as which holder,
goal states, request status, `active`, `topfailed`), and the steps are only
constrained by the *lock protocol*, seven named rules (`RULES`) that every
step of every process obeys. A quantified invariant (`lemmas`) is proved by
the three checks (initiation, consecution, safety against the claim's
abstract bad condition, e.g. the abstract deadlock `STUCK`), each lemma, rule
and bad fact under a tracking literal named after it, so the unsat cores say
which rules the proof used.

The bridge (parametric_bridge.py) checks, for one concrete scenario, that its
grounded transitions obey the protocol rules, that its initial state is an
abstract initial state, and that its own bad condition (`deadlocked`, or a
negated state property) implies the claim's: quantifier-free queries, a few
per process, so the cost grows with the size of the scenario and not with its
state space. Theorem plus bridge prove the claim for that scenario; the
theorem alone is the claim for every size that the bridge has been checked to
instantiate (docs/proofs.md says exactly which scenarios that is).

The protocol is parameterised by the policy's treatment of finished goals'
locks (`Protocol`): whether a lock may be kept after its goal finishes, and
whether a lock kept for a top-level goal is kept only after that goal failed.
Which protocol a policy follows is not taken on trust: the bridge checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from enum import IntEnum
from functools import cache
from itertools import count

import z3

from .state import GoalState as G
from .state import Holder as H
from .state import Status

PROC = z3.DeclareSort("Proc")
DRV = z3.DeclareSort("Drv")
PATH = z3.DeclareSort("Path")

Body = Callable[[z3.ExprRef], z3.BoolRef]


class Universe:
    """How quantifiers over the three sorts are written: really quantified (any size)."""

    _fresh = count()

    def forall(self, sort: z3.SortRef, body: Body) -> z3.BoolRef:
        v = z3.Const(f"{sort.name().lower()}{next(self._fresh)}", sort)
        return z3.ForAll([v], body(v))

    def exists(self, sort: z3.SortRef, body: Body) -> z3.BoolRef:
        v = z3.Const(f"{sort.name().lower()}{next(self._fresh)}", sort)
        return z3.Exists([v], body(v))


@dataclass
class Finite(Universe):
    """Quantifiers expanded over a scenario's named elements (the bridge's queries)."""

    elements: dict[str, list[z3.ExprRef]] = field(default_factory=dict)

    def forall(self, sort: z3.SortRef, body: Body) -> z3.BoolRef:
        return z3.And([body(e) for e in self.elements[sort.name()]])

    def exists(self, sort: z3.SortRef, body: Body) -> z3.BoolRef:
        return z3.Or([body(e) for e in self.elements[sort.name()]])


Fn = Callable[..., z3.ExprRef]  # a z3 function declaration, or its interpretation over one scenario


@dataclass(frozen=True)
class Rigid:
    """What a scenario fixes: the deriver of each path, and each process's keep-going."""

    drv_of: Fn  # Path -> Drv
    keep_going: Fn  # Proc -> Bool

    @classmethod
    def fresh(cls) -> Rigid:
        return cls(z3.Function("drv_of", PATH, DRV), z3.Function("keep_going", PROC, z3.BoolSort()))


@dataclass(frozen=True)
class AState:
    """The abstract state: the lock table and what the lock protocol reads of each process."""

    held: Fn  # Path -> Bool: the path's lock is held
    owner: Fn  # Path -> Proc: by whom (meaningful when held)
    holder: Fn  # Path -> Int: as which holder (state.Holder)
    goal: Fn  # Proc x Drv -> Int: the derivation goal's state (ABSENT outside the closure)
    sub: Fn  # Proc x Path -> Int: the substitution goal's state
    status: Fn  # Proc -> Int (state.Status)
    active: Fn  # Proc -> Bool: running and not ending (rules.active)
    topfailed: Fn  # Proc -> Bool: some top-level goal of the request failed

    @classmethod
    def fresh(cls, tag: str) -> AState:
        b, n = z3.BoolSort(), z3.IntSort()
        sig = {"held": (PATH, b), "owner": (PATH, PROC), "holder": (PATH, n), "goal": (PROC, DRV, n),
               "sub": (PROC, PATH, n), "status": (PROC, n), "active": (PROC, b), "topfailed": (PROC, b)}
        return cls(**{f.name: z3.Function(f"{tag}.{f.name}", *sig[f.name]) for f in fields(cls)})

    def running(self, p: z3.ExprRef) -> z3.BoolRef:
        return self.status(p) == int(Status.RUNNING)

    def owns(self, o: z3.ExprRef, p: z3.ExprRef, holder: H | None = None) -> z3.BoolRef:
        c = z3.And(self.held(o), self.owner(o) == p)
        return c if holder is None else z3.And(c, self.holder(o) == int(holder))

    def unchanged(self, post: AState, o: z3.ExprRef) -> z3.BoolRef:
        """o's lock entry is the same in `post` (free stays free; held stays held the same way)."""
        return z3.And(self.held(o) == post.held(o),
                      z3.Implies(self.held(o), z3.And(self.owner(o) == post.owner(o),
                                                      self.holder(o) == post.holder(o))))


@dataclass(frozen=True)
class Protocol:
    """What a policy does with the lock of a finished goal (see rules.py's policy table)."""

    kept: bool  # a finished goal may keep its lock (KEPT / KEPT_TOP holders exist)
    kept_top_failed: bool  # ... and keeps it for a top-level goal only when that goal failed

    @staticmethod
    def of(policy: str) -> Protocol:
        if policy == "release-on-done":
            return Protocol(kept=False, kept_top_failed=True)
        if policy == "guix":
            return Protocol(kept=True, kept_top_failed=True)
        if policy == "pre-fix":
            return Protocol(kept=True, kept_top_failed=False)
        raise ValueError(f"policy {policy!r}: no lock protocol for it; use release-on-done, guix or pre-fix")


@dataclass(frozen=True)
class Ctx:
    """Everything a named formula is built from."""

    u: Universe
    rigid: Rigid
    proto: Protocol


Formula = Callable[[Ctx, AState], z3.BoolRef]
StepFormula = Callable[[Ctx, AState, AState, z3.ExprRef], z3.BoolRef]


# -- well-formedness: what every abstract state satisfies, reachable or not --------------------

def within(t: z3.ArithRef, kind: type[IntEnum]) -> z3.BoolRef:
    return z3.And(0 <= t, t < len(kind))


def well_formed(c: Ctx, x: AState) -> z3.BoolRef:
    """Values in their domains; `active` means running and not ending; a failed top-level goal
    ends a request made without keep-going."""
    return z3.And(
        c.u.forall(PROC, lambda p: z3.And(
            within(x.status(p), Status),
            z3.Implies(x.active(p), x.running(p)),
            z3.Implies(z3.And(x.topfailed(p), z3.Not(c.rigid.keep_going(p))), z3.Not(x.active(p))))),
        c.u.forall(PATH, lambda o: within(x.holder(o), H)),
        c.u.forall(PROC, lambda p: z3.And(c.u.forall(DRV, lambda d: within(x.goal(p, d), G)),
                                          c.u.forall(PATH, lambda o: within(x.sub(p, o), G)))))


def initial(c: Ctx, x: AState) -> z3.BoolRef:
    """No lock is held and no goal is BUSY."""
    return z3.And(c.u.forall(PATH, lambda o: z3.Not(x.held(o))),
                  c.u.forall(PROC, lambda p: z3.And(
                      c.u.forall(DRV, lambda d: x.goal(p, d) != int(G.BUSY)),
                      c.u.forall(PATH, lambda o: x.sub(p, o) != int(G.BUSY)))))


# -- the lock protocol: one step by process `p` from x to y -------------------------------------

def others_unchanged(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """A step of p changes no other process's goals, status or top-level results."""
    return c.u.forall(PROC, lambda q: z3.Implies(q != p, z3.And(
        y.status(q) == x.status(q), y.topfailed(q) == x.topfailed(q),
        c.u.forall(DRV, lambda d: y.goal(q, d) == x.goal(q, d)),
        c.u.forall(PATH, lambda o: y.sub(q, o) == x.sub(q, o)))))


def lock_taken(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """A lock entry that changes to held is taken by p, while p's request runs, for a BUSY goal
    (from free), or kept by a finished goal of p (from free or from p's own lock)."""
    def label(o: z3.ExprRef) -> z3.BoolRef:
        free, own = z3.Not(x.held(o)), x.owns(o, p)
        ways = [z3.And(y.holder(o) == int(H.BUILD), free, y.goal(p, c.rigid.drv_of(o)) == int(G.BUSY)),
                z3.And(y.holder(o) == int(H.SUBST), free, y.sub(p, o) == int(G.BUSY))]
        if c.proto.kept:
            ways.append(z3.And(y.holder(o) == int(H.KEPT), z3.Or(free, own)))
            top_ok = y.topfailed(p) if c.proto.kept_top_failed else z3.BoolVal(True)
            ways.append(z3.And(y.holder(o) == int(H.KEPT_TOP), z3.Or(free, own), top_ok))
        return z3.Or(ways)

    return c.u.forall(PATH, lambda o: z3.Implies(
        z3.And(y.held(o), z3.Not(x.unchanged(y, o))),
        z3.And(y.owner(o) == p, x.running(p), y.running(p), label(o))))


def busy_ends_release(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """A goal of p that stops being BUSY no longer holds its lock as a running build or substitution."""
    def drv(d: z3.ExprRef) -> z3.BoolRef:
        return z3.Implies(z3.And(x.goal(p, d) == int(G.BUSY), y.goal(p, d) != int(G.BUSY)),
                          c.u.forall(PATH, lambda o: z3.Implies(
                              z3.And(c.rigid.drv_of(o) == d, x.owns(o, p, H.BUILD)),
                              z3.Not(y.owns(o, p, H.BUILD)))))

    def sub(o: z3.ExprRef) -> z3.BoolRef:
        return z3.Implies(z3.And(x.sub(p, o) == int(G.BUSY), y.sub(p, o) != int(G.BUSY),
                                 x.owns(o, p, H.SUBST)),
                          z3.Not(y.owns(o, p, H.SUBST)))

    return z3.And(c.u.forall(DRV, drv), c.u.forall(PATH, sub))


def busy_takes_lock(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """A goal of p that becomes BUSY holds every lock it builds or substitutes, as that goal."""
    def drv(d: z3.ExprRef) -> z3.BoolRef:
        return z3.Implies(z3.And(x.goal(p, d) != int(G.BUSY), y.goal(p, d) == int(G.BUSY)),
                          c.u.forall(PATH, lambda o: z3.Implies(c.rigid.drv_of(o) == d,
                                                                y.owns(o, p, H.BUILD))))

    def sub(o: z3.ExprRef) -> z3.BoolRef:
        return z3.Implies(z3.And(x.sub(p, o) != int(G.BUSY), y.sub(p, o) == int(G.BUSY)),
                          y.owns(o, p, H.SUBST))

    return z3.And(c.u.forall(DRV, drv), c.u.forall(PATH, sub))


def busy_keeps_lock(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """No step takes a lock away from a goal (of any process) that stays BUSY."""
    def path(o: z3.ExprRef) -> z3.BoolRef:
        d = c.rigid.drv_of(o)
        return c.u.forall(PROC, lambda q: z3.And(
            z3.Implies(z3.And(x.owns(o, q, H.BUILD), x.goal(q, d) == int(G.BUSY), y.goal(q, d) == int(G.BUSY)),
                       y.owns(o, q, H.BUILD)),
            z3.Implies(z3.And(x.owns(o, q, H.SUBST), x.sub(q, o) == int(G.BUSY), y.sub(q, o) == int(G.BUSY)),
                       y.owns(o, q, H.SUBST))))

    return c.u.forall(PATH, path)


def end_releases(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """When p's request returns (its status changes), every lock p held is released."""
    return z3.Implies(y.status(p) != x.status(p),
                      c.u.forall(PATH, lambda o: z3.Implies(x.owns(o, p), z3.Not(y.held(o)))))


def top_failure_stays(c: Ctx, x: AState, y: AState, p: z3.ExprRef) -> z3.BoolRef:
    """A failed top-level goal stays failed until the request returns."""
    return z3.Implies(z3.And(x.topfailed(p), y.status(p) == x.status(p)), y.topfailed(p))


RULES: dict[str, StepFormula] = {f.__name__: f for f in (
    others_unchanged, lock_taken, busy_ends_release, busy_takes_lock, busy_keeps_lock, end_releases,
    top_failure_stays)}


# -- the abstract deadlock: what the daemon's `deadlocked` implies -----------------------------

def someone_running(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.exists(PROC, x.running)


def no_request_done(c: Ctx, x: AState) -> z3.BoolRef:
    """RequestDone is disabled: a running process is active (not ending)."""
    return c.u.forall(PROC, lambda p: z3.Implies(x.running(p), x.active(p)))


def blocked_on_other(c: Ctx, x: AState) -> z3.BoolRef:
    """Only failed lock attempts are enabled: an active process wants a lock another process holds."""
    return c.u.forall(PROC, lambda p: z3.Implies(
        x.active(p), c.u.exists(PATH, lambda o: z3.And(x.held(o), x.owner(o) != p))))


def busy_goals_progress(c: Ctx, x: AState) -> z3.BoolRef:
    """No BUSY goal of an active process: it would finish (BuildSucceeded/Failed/TimedOut,
    SubstSucceeded/Failed) or, unreferenced, be destroyed (DestroyGoal, DestroySubstGoal)."""
    return c.u.forall(PROC, lambda q: z3.Implies(x.active(q), z3.And(
        c.u.forall(DRV, lambda d: x.goal(q, d) != int(G.BUSY)),
        c.u.forall(PATH, lambda o: x.sub(q, o) != int(G.BUSY)))))


def kept_released(c: Ctx, x: AState) -> z3.BoolRef:
    """ReleaseKept is disabled: no running process holds a lock for a finished, unreferenced goal."""
    return c.u.forall(PATH, lambda o: z3.Not(z3.And(
        x.held(o), x.holder(o) == int(H.KEPT), x.running(x.owner(o)))))


STUCK: dict[str, Formula] = {f.__name__: f for f in (
    someone_running, no_request_done, blocked_on_other, busy_goals_progress, kept_released)}


# -- the other claims: a state property's violation, abstractly -------------------------------

def two_claimants(c: Ctx, x: AState) -> z3.BoolRef:
    """Two goals claim one path's lock: BUSY goals (derivation or substitution) of two
    processes, two BUSY goals of one process, or a BUSY goal beside a kept lock."""
    def path(o: z3.ExprRef) -> z3.BoolRef:
        d = c.rigid.drv_of(o)
        kept = z3.And(x.held(o), z3.Or(x.holder(o) == int(H.KEPT), x.holder(o) == int(H.KEPT_TOP)))
        return c.u.exists(PROC, lambda p: c.u.exists(PROC, lambda q: z3.Or(
            z3.And(p != q, x.goal(p, d) == int(G.BUSY), x.goal(q, d) == int(G.BUSY)),
            z3.And(p != q, x.sub(p, o) == int(G.BUSY), x.sub(q, o) == int(G.BUSY)),
            z3.And(x.goal(p, d) == int(G.BUSY), x.sub(q, o) == int(G.BUSY)),
            z3.And(p == q, kept, z3.Or(x.goal(p, d) == int(G.BUSY), x.sub(p, o) == int(G.BUSY))))))
    return c.u.exists(PATH, path)


def busy_without_lock(c: Ctx, x: AState) -> z3.BoolRef:
    """A BUSY goal does not hold the lock of one of its paths as that goal."""
    return c.u.exists(PROC, lambda p: c.u.exists(PATH, lambda o: z3.Or(
        z3.And(x.goal(p, c.rigid.drv_of(o)) == int(G.BUSY), z3.Not(x.owns(o, p, H.BUILD))),
        z3.And(x.sub(p, o) == int(G.BUSY), z3.Not(x.owns(o, p, H.SUBST))))))


@dataclass(frozen=True)
class Claim:
    """A catalogue property as an abstract bad condition: named facts that the invariant refutes
    together, and that a scenario's own bad condition implies (checked by the bridge)."""

    tag: str  # prefix of the facts' tracking literals
    bad: dict[str, Formula]


CLAIMS: dict[str, Claim] = {
    "deadlock_free": Claim("stuck", STUCK),
    "lock_exclusive": Claim("bad", {"two_claimants": two_claimants}),
    "build_holds_lock": Claim("bad", {"busy_without_lock": busy_without_lock}),
}


# -- the invariant ----------------------------------------------------------------------------

def owner_running(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(x.held(o), x.running(x.owner(o))))


def held_has_holder(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(x.held(o), x.holder(o) != int(H.NONE)))


def build_lock_busy(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(
        z3.And(x.held(o), x.holder(o) == int(H.BUILD)),
        x.goal(x.owner(o), c.rigid.drv_of(o)) == int(G.BUSY)))


def subst_lock_busy(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(
        z3.And(x.held(o), x.holder(o) == int(H.SUBST)), x.sub(x.owner(o), o) == int(G.BUSY)))


def busy_holds_lock(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PROC, lambda p: c.u.forall(PATH, lambda o: z3.Implies(
        x.goal(p, c.rigid.drv_of(o)) == int(G.BUSY), x.owns(o, p, H.BUILD))))


def subst_busy_holds_lock(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PROC, lambda p: c.u.forall(PATH, lambda o: z3.Implies(
        x.sub(p, o) == int(G.BUSY), x.owns(o, p, H.SUBST))))


def never_kept(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(
        x.held(o), z3.And(x.holder(o) != int(H.KEPT), x.holder(o) != int(H.KEPT_TOP))))


def kept_top_failed(c: Ctx, x: AState) -> z3.BoolRef:
    return c.u.forall(PATH, lambda o: z3.Implies(
        z3.And(x.held(o), x.holder(o) == int(H.KEPT_TOP)), x.topfailed(x.owner(o))))


def lemmas(proto: Protocol) -> dict[str, Formula]:
    """The invariant for a protocol; the same names as the grounded lemmas in induction.py."""
    out: list[Formula] = [owner_running, held_has_holder, build_lock_busy, subst_lock_busy,
                          busy_holds_lock, subst_busy_holds_lock]
    if not proto.kept:
        out.append(never_kept)
    elif proto.kept_top_failed:
        out.append(kept_top_failed)
    return {f.__name__: f for f in out}


# -- assumptions the theorem may be stated under ---------------------------------------------

def no_keep_going(c: Ctx, x: AState) -> z3.BoolRef:
    """No request is made with keep-going."""
    return c.u.forall(PROC, lambda p: z3.Not(c.rigid.keep_going(p)))


ASSUMPTIONS: dict[str, Formula] = {"no_keep_going": no_keep_going}


def named(formulas: dict[str, Formula], c: Ctx, x: AState) -> Iterator[tuple[str, z3.BoolRef]]:
    for name, f in formulas.items():
        yield name, f(c, x)


# -- the theorem ------------------------------------------------------------------------------

@dataclass
class Check:
    """One of the theorem's queries: unsat means it passed."""

    name: str  # initiation:<lemma> | consecution:<lemma> | safety
    ok: bool
    core: list[str] = field(default_factory=list)  # tracked lemmas, rules and STUCK parts used
    counterexample: str = ""  # a finite abstract model, when the check failed
    answer: str = "unsat"


@dataclass
class Theorem:
    policy: str
    assumptions: tuple[str, ...]
    checks: list[Check]
    lemmas: list[str]
    prop: str = "deadlock_free"

    @property
    def holds(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)


def theorem(policy: str, assumptions: tuple[str, ...] = (), timeout_ms: int = 60_000,
            without: frozenset[str] = frozenset(), prop: str = "deadlock_free") -> Theorem:
    """`prop` (a key of CLAIMS) for every number of processes, derivations and paths, under
    `policy`'s lock protocol and the named `assumptions` (keys of ASSUMPTIONS). `without` leaves
    protocol rules out, to show that the proof needs them."""
    if prop not in CLAIMS:
        raise ValueError(f"property {prop!r}: no every-size claim for it; claims: {', '.join(CLAIMS)}")
    unknown = [a for a in assumptions if a not in ASSUMPTIONS]
    if unknown:
        raise ValueError(f"assumption {unknown[0]!r}: unknown; known: {', '.join(ASSUMPTIONS)}")
    if without - RULES.keys():
        raise ValueError(f"rule {sorted(without - RULES.keys())[0]!r}: unknown; known: {', '.join(RULES)}")
    c = Ctx(Universe(), Rigid.fresh(), Protocol.of(policy))
    x, y = AState.fresh("x"), AState.fresh("y")
    actor = z3.Const("actor", PROC)
    inv = lemmas(c.proto)
    assume = {a: ASSUMPTIONS[a] for a in assumptions}
    checks: list[Check] = []

    def solver() -> z3.Solver:
        s = z3.Solver()
        s.set("timeout", timeout_ms)
        s.add(well_formed(c, x))
        for name, f in named(assume, c, x):
            s.assert_and_track(f, z3.Bool(f"assume:{name}"))
        return s

    def ask(s: z3.Solver, name: str, goal: z3.BoolRef, state: AState) -> None:
        tag = z3.Bool(f"goal:{name}")
        s.add(z3.Implies(tag, goal))
        m = small_model(s, tag, 2)  # a failure usually has a tiny witness; a proof needs the full query
        r = z3.sat if m is not None else s.check(tag)
        if r == z3.unsat:
            checks.append(Check(name, True, sorted(str(t) for t in s.unsat_core() if not t.eq(tag))))
            return
        if m is None:
            m = s.model() if r == z3.sat else small_model(s, tag, 3)
        cex = render(m, c, x, y if state is y else None) if m is not None else ""
        checks.append(Check(name, False, counterexample=cex, answer=str(r)))

    s = solver()
    s.add(initial(c, x))
    for name, f in inv.items():
        ask(s, f"initiation:{name}", z3.Not(f(c, x)), x)
    s = solver()
    s.add(well_formed(c, y))
    for name, f in named(inv, c, x):
        s.assert_and_track(f, z3.Bool(name))
    for rname, rule in RULES.items():
        if rname in without:
            continue
        s.assert_and_track(rule(c, x, y, actor), z3.Bool(f"rule:{rname}"))
    for name, f in inv.items():
        ask(s, f"consecution:{name}", z3.Not(f(c, y)), y)
    s = solver()
    for name, f in named(inv, c, x):
        s.assert_and_track(f, z3.Bool(name))
    claim = CLAIMS[prop]
    for name, f in named(claim.bad, c, x):
        s.assert_and_track(f, z3.Bool(f"{claim.tag}:{name}"))
    ask(s, "safety", z3.BoolVal(True), x)
    return Theorem(policy, tuple(assumptions), checks, list(inv), prop)


@cache
def proved(policy: str, assumptions: tuple[str, ...] = (), prop: str = "deadlock_free") -> Theorem:
    """`theorem`, once per process: it does not depend on any scenario."""
    return theorem(policy, assumptions, prop=prop)


def small_model(s: z3.Solver, tag: z3.BoolRef, most: int) -> z3.ModelRef | None:
    """A model with at most `most` elements per sort, smallest first (quantifiers over a
    finite universe are decidable, where the unbounded query may not be)."""
    for n in range(1, most + 1):
        s.push()
        for sort in (PROC, DRV, PATH):
            elems = [z3.Const(f"{sort.name().lower()}!{i}", sort) for i in range(n)]
            v = z3.Const(f"{sort.name().lower()}_any", sort)
            s.add(z3.ForAll([v], z3.Or([v == e for e in elems])))
        r = s.check(tag)
        m = s.model() if r == z3.sat else None
        s.pop()
        if m is not None:
            return m
    return None


def render(m: z3.ModelRef, c: Ctx, x: AState, y: AState | None) -> str:
    """A finite abstract counterexample, as a person reads it."""
    procs = m.get_universe(PROC) or []
    paths = m.get_universe(PATH) or []
    pname = {str(p): f"P{i + 1}" for i, p in enumerate(procs)}

    def val(t: z3.ExprRef) -> str:
        return str(m.eval(t, model_completion=True))

    def name(t: z3.ExprRef, kind: type[IntEnum]) -> str:
        v = int(val(t))
        return kind(v).name if 0 <= v < len(kind) else str(v)

    def state(a: AState, tag: str) -> list[str]:
        lines = [f"{tag}:"]
        for p in procs:
            lines.append(f"  {pname[str(p)]}: status={name(a.status(p), Status)} "
                         f"active={val(a.active(p))} topfailed={val(a.topfailed(p))} "
                         f"keep_going={val(c.rigid.keep_going(p))}")
        for i, o in enumerate(paths):
            if z3.is_true(m.eval(a.held(o), model_completion=True)):
                owner = pname.get(val(a.owner(o)), val(a.owner(o)))
                lines.append(f"  path{i + 1}: held by {owner} as {name(a.holder(o), H)}; "
                             f"owner's goal for its deriver: {name(a.goal(a.owner(o), c.rigid.drv_of(o)), G)}")
            else:
                lines.append(f"  path{i + 1}: free")
        return lines

    out = state(x, "pre-state" if y is not None else "state")
    if y is not None:
        out += state(y, "post-state")
    return "\n".join(out)
