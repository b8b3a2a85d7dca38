"""Guards and effects: the one definition of every action.

For a scenario, a policy and a set of (deliberately broken) variants, `ground`
produces the list of `Transition`s: an action record, its guard (an `Expr` over
the state vector) and its effect (variable -> `Expr` over the pre-state). The
explicit engine compiles these, the z3 engine lowers them, `Model.next_state`
interprets them.

What the daemon does, and where the model abstracts (see docs/model.md):
- goals of one process step in any order (the daemon runs awake goals in key
  order, one round at a time: one of the interleavings the model allows);
- awake and waitingForAWhile are one state (TRY): a poll is just another try;
- a derivation without substitutes makes no substitution goals (the daemon makes
  them and they end with ecNoSubstituters, taking no lock);
- lock-file creation and deletion are not modelled: a lock is held or free.

Policies differ only in which completion paths release output locks:
  pre-fix         : Beaten / SubstBecameValid keep the lock (Guix bug 31785, Z1);
                    BuildTimedOut / SubstFailed keep it too (Z12)
  guix            : Beaten / SubstBecameValid release (commit 78da695178);
                    BuildTimedOut / SubstFailed still keep it (Z12, destructor-only)
  release-on-done : every terminal transition releases (Nix's unlock in done())
A kept lock is released when its goal object dies: at once for a goal nobody
references (ReleaseKept), at the end of the request for a top-level goal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import actions as A
from .expr import (
    Expr,
    SymState,
    Var,
    and_,
    any_,
    count,
    eq,
    ite,
    lt,
    ne,
    not_,
    one_of,
    or_,
)
from .scenario import Scenario
from .state import GoalState as G
from .state import Holder as H
from .state import Layout, Status, Top, waitees

POLICIES = ("pre-fix", "guix", "release-on-done")

# Deliberately broken models: each must be caught by the property it breaks.
VARIANTS = {
    "forget-unlock-after-build": "BuildSucceeded registers the outputs but keeps the locks",
    "build-without-lock": "StartBuild starts the builder without taking the output locks",
    "resume-without-relock": "a goal woken from waitForBuildSlot starts building without re-locking (Nix Z10)",
}


@dataclass(frozen=True)
class Transition:
    action: A.Action
    guard: Expr
    updates: dict[int, Expr]

    @property
    def stutter(self) -> bool:
        return not self.updates


class Rules:
    """Grounds the action schemas for one (scenario, policy, variants)."""

    def __init__(self, scenario: Scenario, policy: str, variants: frozenset[str] = frozenset()) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: unknown; use one of {', '.join(POLICIES)}")
        unknown = variants - VARIANTS.keys()
        if unknown:
            raise ValueError(f"model variant {sorted(unknown)[0]!r}: unknown; known variants: {', '.join(VARIANTS)}")
        self.scn = scenario
        self.policy = policy
        self.variants = variants
        self.lay = Layout.of(scenario)

    # -- reading the state -------------------------------------------------------

    def v(self, *key: object) -> Var:
        return Var(self.lay.index[key])

    def goal(self, p: int, d: str) -> Var:
        return self.v("goal", p, d)

    def sub(self, p: int, o: str) -> Var:
        return self.v("subst", p, o)

    def is_top(self, p: int, d: str) -> bool:
        return d in self.scn.processes[p].request

    def parents(self, p: int, w: tuple[str, str]) -> list[str]:
        """Goals of p that can hold waitee w (a ("drv", d) or ("subst", path))."""
        return [q for q in self.lay.closure_of(p) if w in waitees(self.scn, q)]

    def running(self, p: int) -> Expr:
        return eq(self.v("status", p), Status.RUNNING)

    def ending(self, p: int) -> Expr:
        """topGoals is empty: every top-level goal finished, or one failed without keep-going."""
        tops = [self.v("top", p, d) for d in self.scn.processes[p].request]
        done = and_(*(ne(t, Top.PENDING) for t in tops))
        if self.scn.processes[p].keep_going:
            return done
        return or_(done, *(eq(t, Top.FAILED) for t in tops))

    def active(self, p: int) -> Expr:
        return and_(self.running(p), not_(self.ending(p)))

    def top_pinned(self, p: int, d: str) -> Expr:
        """The live goal for d is p's top-level goal (held by buildPaths until the request ends)."""
        return eq(self.v("top", p, d), Top.PENDING) if self.is_top(p, d) else and_(False)

    def referenced(self, p: int, w: tuple[str, str]) -> Expr:
        kind, name = w
        pinned = self.top_pinned(p, name) if kind == "drv" else and_(False)
        return or_(pinned, *(eq(self.v("waits", p, q, w), 1) for q in self.parents(p, w)))

    def slots(self, p: int) -> Expr:
        busy = [eq(self.goal(p, d), G.BUSY) for d in self.lay.closure_of(p)]
        busy += [eq(self.sub(p, o), G.BUSY) for o in self.lay.subst_paths[p]]
        return count(busy)

    def lock(self, o: str) -> Var:
        return self.v("lock", o)

    def holder(self, o: str) -> Var:
        return self.v("holder", o)

    def valid(self, o: str) -> Expr:
        return eq(self.v("valid", o), 1)

    def outs(self, d: str) -> tuple[str, ...]:
        return self.scn.drv(d).output_paths

    # -- shared pieces of effects ---------------------------------------------------

    def take(self, s: SymState, p: int, paths: tuple[str, ...], holder: H) -> None:
        for o in paths:
            s[self.lay.index[("lock", o)]] = p + 1
            s[self.lay.index[("holder", o)]] = holder

    def release(self, s: SymState, paths: tuple[str, ...]) -> None:
        for o in paths:
            s[self.lay.index[("lock", o)]] = 0
            s[self.lay.index[("holder", o)]] = H.NONE

    def keep(self, s: SymState, p: int, paths: tuple[str, ...], top_pinned: Expr) -> None:
        """The finished goal keeps its locks until its object dies."""
        for o in paths:
            s[self.lay.index[("lock", o)]] = p + 1
            s[self.lay.index[("holder", o)]] = ite(top_pinned, H.KEPT_TOP, H.KEPT)

    def release_all(self, s: SymState, p: int) -> None:
        for o in self.scn.paths:
            li, hi = self.lay.index[("lock", o)], self.lay.index[("holder", o)]
            mine = eq(s[li], p + 1)
            s[li] = ite(mine, 0, s[li])
            s[hi] = ite(mine, H.NONE, s[hi])

    def wake(self, s: SymState, p: int, waiting: G) -> None:
        """Every goal of p parked in `waiting` goes back to TRY (removeGoal / childTerminated)."""
        self.wake_if(s, p, and_(True), waiting)

    def end_request(self, s: SymState, p: int, status: Expr | int) -> None:
        """The request returns: every goal object dies, every lock of p is released."""
        self.release_all(s, p)
        start, end = self.lay.blocks[p]
        for i in range(start, end):
            s[i] = 0
        s[self.lay.index[("status", p)]] = status

    def notify(self, s: SymState, p: int, w: tuple[str, str], ok: bool) -> None:
        """amDone: waiteeDone on every waiter, then wake goals waiting for any goal."""
        kg = self.scn.processes[p].keep_going
        for q in self.parents(p, w):
            wi = self.lay.index[("waits", p, q, w)]
            was = eq(s[wi], 1)
            s[wi] = 0
            if not ok:
                fi = self.lay.index[("failed", p, q)]
                s[fi] = ite(was, 1, s[fi])
                if not kg:  # the parent gives up on all its other waitees
                    for w2 in waitees(self.scn, q):
                        wi2 = self.lay.index[("waits", p, q, w2)]
                        s[wi2] = ite(was, 0, s[wi2])
        self.wake(s, p, G.WAIT_ANY)

    def finish_drv(self, s: SymState, p: int, d: str, ok: bool) -> None:
        s[self.lay.index[("goal", p, d)]] = G.DONE_OK if ok else G.DONE_FAIL
        if self.is_top(p, d):
            ti = self.lay.index[("top", p, d)]
            s[ti] = ite(eq(s[ti], Top.PENDING), Top.OK if ok else Top.FAILED, s[ti])
        self.notify(s, p, ("drv", d), ok)

    def finish_sub(self, s: SymState, p: int, o: str, ok: bool) -> None:
        s[self.lay.index[("subst", p, o)]] = G.DONE_OK if ok else G.DONE_FAIL
        self.notify(s, p, ("subst", o), ok)

    def make_goal(self, s: SymState, p: int, parent: str, w: tuple[str, str]) -> None:
        """makeDerivationGoal / makeSubstitutionGoal + addWaitee: share a live goal or create one."""
        kind, name = w
        gi = self.lay.index[("goal" if kind == "drv" else "subst", p, name)]
        s[gi] = ite(one_of(s[gi], (G.ABSENT, G.DONE_OK, G.DONE_FAIL)), G.INIT, s[gi])
        s[self.lay.index[("waits", p, parent, w)]] = 1

    # -- the action schemas --------------------------------------------------------

    def drv_rule(self, a: A.DrvAction) -> tuple[Expr, SymState]:
        p, d = a.proc - 1, a.drv
        drv = self.scn.drv(d)
        s = SymState()
        gi = self.lay.index[("goal", p, d)]
        st = self.goal(p, d)
        outs = self.outs(d)
        all_valid = and_(*(self.valid(o) for o in outs))
        live = and_(self.active(p), self.referenced(p, ("drv", d)))
        mine = any_(eq(self.lock(o), p + 1) for o in outs)
        free = and_(*(eq(self.lock(o), 0) for o in outs))
        no_wait = and_(*(eq(self.v("waits", p, d, w), 0) for w in waitees(self.scn, d)))
        failed = eq(self.v("failed", p, d), 1) if waitees(self.scn, d) else and_(False)
        has_slot = lt(self.slots(p), self.scn.processes[p].max_jobs)
        pinned = self.top_pinned(p, d)

        def clear_failed() -> None:
            if waitees(self.scn, d):
                s[self.lay.index[("failed", p, d)]] = 0

        match a:
            case A.AlreadyValid():
                g = and_(live, eq(st, G.INIT), all_valid)
                self.finish_drv(s, p, d, True)
            case A.Substitute():
                g = and_(live, eq(st, G.INIT), not_(all_valid), drv.substitutable)
                for o in outs if drv.substitutable else ():
                    w = ("subst", o)
                    sub = SymState()
                    self.make_goal(sub, p, d, w)
                    for i, e in sub.updates().items():  # only for outputs still invalid
                        s[i] = ite(self.valid(o), s[i], e)
                s[gi] = G.WAIT_SUBST
            case A.HaveDerivation():
                g = and_(live, eq(st, G.INIT), not_(all_valid), not drv.substitutable)
                self.realise_inputs(s, p, d)
            case A.Substituted():
                g = and_(live, eq(st, G.WAIT_SUBST), no_wait, not_(failed), all_valid, drv.substitutable)
                self.finish_drv(s, p, d, True)
            case A.SubstitutesFailed():
                g = and_(live, eq(st, G.WAIT_SUBST), no_wait, failed, drv.substitutable)
                self.end_request(s, p, Status.FAILED)
            case A.InputsRealised():
                g = and_(live, eq(st, G.WAIT_INPUTS), no_wait, not_(failed), bool(drv.inputs))
                s[gi] = G.TRY
            case A.DependencyFailed():
                g = and_(live, eq(st, G.WAIT_INPUTS), no_wait, failed, bool(drv.inputs))
                clear_failed()
                self.finish_drv(s, p, d, False)
            case A.WaitForAnyGoal():
                g = and_(live, eq(st, G.TRY), mine)
                s[gi] = G.WAIT_ANY
            case A.LockFailed():
                g = and_(live, eq(st, G.TRY), not_(mine), not_(free))
            case A.Beaten():
                g = and_(live, eq(st, G.TRY), free, all_valid)
                if self.policy == "pre-fix":
                    self.keep(s, p, outs, pinned)
                self.finish_drv(s, p, d, True)
            case A.NoBuildSlot():
                g = and_(live, eq(st, G.TRY), free, not_(all_valid), not_(has_slot))
                s[gi] = G.WAIT_SLOT
            case A.StartBuild():
                g = and_(live, eq(st, G.TRY), free, not_(all_valid), has_slot)
                s[gi] = G.BUSY
                if "build-without-lock" not in self.variants:
                    self.take(s, p, outs, H.BUILD)
                if "resume-without-relock" in self.variants:
                    resumed = and_(live, eq(st, G.WAIT_SLOT), has_slot)
                    for i, e in list(s.updates().items()):  # resumed goals take no lock
                        if i != gi:
                            s[i] = ite(resumed, Var(i), e)
                    g = or_(g, resumed)
            case A.BuildSucceeded():
                g = and_(live, eq(st, G.BUSY), drv.builder == "ok")
                for o in outs:
                    s[self.lay.index[("valid", o)]] = 1
                if "forget-unlock-after-build" in self.variants:
                    self.keep(s, p, outs, pinned)
                else:
                    self.release(s, outs)
                self.finish_drv(s, p, d, True)
                self.wake(s, p, G.WAIT_SLOT)
            case A.BuildFailed():
                g = and_(live, eq(st, G.BUSY), drv.builder == "fail")
                self.release(s, outs)
                self.finish_drv(s, p, d, False)
                self.wake(s, p, G.WAIT_SLOT)
            case A.BuildTimedOut():
                g = and_(live, eq(st, G.BUSY), drv.builder == "hang")
                if self.policy == "release-on-done":
                    self.release(s, outs)
                else:
                    self.keep(s, p, outs, pinned)
                self.finish_drv(s, p, d, False)
                self.wake(s, p, G.WAIT_SLOT)
            case A.DestroyGoal():
                g = and_(self.active(p), one_of(st, (G.INIT, G.WAIT_SUBST, G.WAIT_INPUTS, G.TRY,
                                                      G.WAIT_ANY, G.WAIT_SLOT, G.BUSY)),
                         not_(self.referenced(p, ("drv", d))))
                busy = eq(st, G.BUSY)
                for o in outs:
                    li, hi = self.lay.index[("lock", o)], self.lay.index[("holder", o)]
                    held = and_(busy, eq(self.lock(o), p + 1), eq(self.holder(o), H.BUILD))
                    s[li] = ite(held, 0, s[li])
                    s[hi] = ite(held, H.NONE, s[hi])
                for w in waitees(self.scn, d):
                    s[self.lay.index[("waits", p, d, w)]] = 0
                clear_failed()
                s[gi] = G.ABSENT
                self.wake_if(s, p, busy, G.WAIT_SLOT)
            case _:
                raise TypeError(f"not a derivation-goal action: {a}")
        return g, s

    def realise_inputs(self, s: SymState, p: int, d: str) -> None:
        inputs = self.scn.drv(d).inputs
        for i in inputs:
            self.make_goal(s, p, d, ("drv", i))
        s[self.lay.index[("goal", p, d)]] = G.WAIT_INPUTS if inputs else G.TRY

    def wake_if(self, s: SymState, p: int, cond: Expr, waiting: G) -> None:
        """`wake`, but only when `cond` holds in the pre-state; reads the updates made so far."""
        idx = [self.lay.index[("goal", p, d)] for d in self.lay.closure_of(p)]
        if waiting == G.WAIT_SLOT and "resume-without-relock" in self.variants:
            idx = []
        idx += [self.lay.index[("subst", p, o)] for o in self.lay.subst_paths[p]]
        for i in idx:
            s[i] = ite(and_(cond, eq(s[i], waiting)), G.TRY, s[i])

    def path_rule(self, a: A.PathAction) -> tuple[Expr, SymState]:
        p, o = a.proc - 1, a.path
        s = SymState()
        if isinstance(a, A.ReleaseKept):
            g = and_(self.running(p), eq(self.lock(o), p + 1), eq(self.holder(o), H.KEPT))
            self.release(s, (o,))
            return g, s
        drv = self.scn.deriver(o)
        si = self.lay.index[("subst", p, o)]
        st = self.sub(p, o)
        live = and_(self.active(p), self.referenced(p, ("subst", o)))
        jobs = max(1, self.scn.processes[p].max_jobs)
        has_slot = lt(self.slots(p), jobs)
        valid = self.valid(o)
        lock = self.lock(o)
        match a:
            case A.SubstAlreadyValid():
                g = and_(live, eq(st, G.INIT), valid)
                self.finish_sub(s, p, o, True)
            case A.SubstInit():
                g = and_(live, eq(st, G.INIT), not_(valid))
                s[si] = G.TRY
            case A.SubstNoSlot():
                g = and_(live, eq(st, G.TRY), not_(has_slot))
                s[si] = G.WAIT_SLOT
            case A.SubstWaitForAnyGoal():
                g = and_(live, eq(st, G.TRY), has_slot, eq(lock, p + 1))
                s[si] = G.WAIT_ANY
            case A.SubstLockFailed():
                g = and_(live, eq(st, G.TRY), has_slot, ne(lock, 0), ne(lock, p + 1))
            case A.SubstBecameValid():
                g = and_(live, eq(st, G.TRY), has_slot, eq(lock, 0), valid)
                if self.policy == "pre-fix":
                    self.keep(s, p, (o,), and_(False))
                self.finish_sub(s, p, o, True)
            case A.SubstStart():
                g = and_(live, eq(st, G.TRY), has_slot, eq(lock, 0), not_(valid))
                s[si] = G.BUSY
                self.take(s, p, (o,), H.SUBST)
            case A.SubstSucceeded():
                g = and_(live, eq(st, G.BUSY), drv.substitute == "ok")
                s[self.lay.index[("valid", o)]] = 1
                self.release(s, (o,))
                self.finish_sub(s, p, o, True)
                self.wake(s, p, G.WAIT_SLOT)
            case A.SubstFailed():
                g = and_(live, eq(st, G.BUSY), drv.substitute == "fail")
                if self.policy == "release-on-done":
                    self.release(s, (o,))
                else:
                    self.keep(s, p, (o,), and_(False))
                self.finish_sub(s, p, o, False)
                self.wake(s, p, G.WAIT_SLOT)
            case A.DestroySubstGoal():
                g = and_(self.active(p), one_of(st, (G.INIT, G.TRY, G.WAIT_ANY, G.WAIT_SLOT, G.BUSY)),
                         not_(self.referenced(p, ("subst", o))))
                busy = eq(st, G.BUSY)
                held = and_(busy, eq(lock, p + 1), eq(self.holder(o), H.SUBST))
                li, hi = self.lay.index[("lock", o)], self.lay.index[("holder", o)]
                s[li] = ite(held, 0, s[li])
                s[hi] = ite(held, H.NONE, s[hi])
                s[si] = G.ABSENT
                self.wake_if(s, p, busy, G.WAIT_SLOT)
            case _:
                raise TypeError(f"not a substitution-goal action: {a}")
        return g, s

    def proc_rule(self, a: A.Action, goal_guards: list[Expr]) -> tuple[Expr, SymState]:
        p = a.proc - 1
        s = SymState()
        proc = self.scn.processes[p]
        match a:
            case A.RequestDone():
                g = and_(self.running(p), self.ending(p))
                tops = [self.v("top", p, d) for d in proc.request]
                self.end_request(s, p, ite(and_(*(eq(t, Top.OK) for t in tops)), Status.OK, Status.FAILED))
            case A.WorkerStuck():
                g = and_(self.active(p), not_(any_(goal_guards)))
                self.end_request(s, p, Status.FAILED if proc.max_jobs == 0 else Status.ABORTED)
            case A.Crash():
                g = self.running(p)
                self.end_request(s, p, Status.KILLED)
            case _:
                raise TypeError(f"not a process action: {a}")
        return g, s

    # -- grounding -------------------------------------------------------------------

    def candidate_actions(self, p: int) -> Iterator[A.Action]:
        proc = p + 1
        for d in self.lay.closure_of(p):
            for t in A.DRV_ACTIONS:
                yield t(proc, d)
        for o in self.lay.subst_paths[p]:
            for tp in A.PATH_ACTIONS:
                if tp is not A.ReleaseKept:
                    yield tp(proc, o)
        for o in self.scn.paths:
            yield A.ReleaseKept(proc, o)

    def ground(self, faults: bool = False) -> list[Transition]:
        """Every action whose guard is not constantly false, in a fixed order."""
        out: list[Transition] = []
        for p in range(len(self.scn.processes)):
            goal_ts: list[Transition] = []
            for a in self.candidate_actions(p):
                if isinstance(a, A.DrvAction):
                    g, s = self.drv_rule(a)
                else:
                    assert isinstance(a, A.PathAction)
                    g, s = self.path_rule(a)
                if g != and_(False):
                    goal_ts.append(Transition(a, g, dict(s.updates())))
            out.extend(goal_ts)
            kinds: list[type[A.Action]] = [A.RequestDone, A.WorkerStuck] + ([A.Crash] if faults else [])
            for k in kinds:
                guards = [t.guard for t in goal_ts]
                g, s = self.proc_rule(k(p + 1), guards)
                if g != and_(False):
                    out.append(Transition(k(p + 1), g, dict(s.updates())))
        return out


