"""Inductive invariants: the three checks, named lemmas, and Houdini strengthening.

An invariant is a list of named lemmas (`Expr`s over the state vector, so they
can be read, evaluated on concrete states and lowered like everything else).
It proves an `always` property P when three plain z3 queries are unsat:
  initiation   init(x) and not L(x), for each lemma L;
  consecution  type_ok(x) and all lemmas at x and trans(x, x') and not L(x'),
               for each lemma L (stutters change nothing and are left out);
  safety       type_ok(x) and all lemmas at x and not P(x) (for a step property:
               and trans(x, x') and not P(x, x')).
Each lemma is asserted under a tracking literal named after it, so an unsat
core names the lemmas a check used, and a failed check comes back as a
concrete counterexample (a pre-state, the transition, the post-state) naming
the lemma it breaks.

Houdini (Flanagan and Leino's algorithm) finds the largest inductive subset of
a pool of candidate lemmas: while consecution fails, drop every lemma false in
the counterexample's post-state. It asks consecution per transition, and of
only the lemmas that read a variable the transition writes (any other lemma
holds after the step exactly when before it), over one solver in which every
lemma sits behind a literal and the surviving lemmas are the assumptions.
The largest inductive subset is unique, so the order of the questions does
not change the answer. The pool below is written from the lock
discipline the model's comments state (who may hold a lock, and in which goal
state), plus the catalogue's own state properties; which of them survive is
up to z3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import z3

from .expr import Expr, Var, and_, eq, evaluate, implies, le, ne, variables
from .machine import Model, State
from .properties import CATALOGUE, Property
from .rules import Rules
from .state import GoalState as G
from .state import Holder as H
from .state import Top
from .z3lower import Lowering, Vec


@dataclass(frozen=True)
class Lemma:
    name: str
    expr: Expr  # over the pre-state (Var only)


@dataclass(frozen=True)
class CTI:
    """A counterexample to a check: the step from `pre` by `action` to `post` (None for initiation)."""

    check: str  # initiation | consecution | safety
    lemma: str  # the lemma or property the step breaks
    pre: State
    action: str | None = None
    post: State | None = None


@dataclass
class Verdict:
    """The outcome of the three checks for one invariant and one property."""

    ok: bool
    lemmas: list[Lemma]
    cti: CTI | None = None
    cores: dict[str, list[str]] = field(default_factory=dict)  # check:lemma -> lemmas it used


def type_ok(model: Model) -> Lemma:
    doms = model.layout.domains
    return Lemma("type_ok", and_(*(and_(le(0, Var(i)), le(Var(i), d - 1)) for i, d in enumerate(doms))))


def candidates(model: Model) -> list[Lemma]:
    """The candidate pool: the lock discipline per (path, process), and the catalogue."""
    r: Rules = model.rules
    scn, lay = model.scenario, model.layout
    out: list[Lemma] = []
    for o in scn.paths:
        d = scn.deriver(o).name
        lock, holder = r.lock(o), r.holder(o)
        out.append(Lemma(f"free_has_no_holder[{o}]", implies(eq(lock, 0), eq(holder, H.NONE))))
        out.append(Lemma(f"held_has_holder[{o}]", implies(ne(lock, 0), ne(holder, H.NONE))))
        out.append(Lemma(f"never_kept[{o}]", ne(holder, H.KEPT)))
        out.append(Lemma(f"never_kept_top[{o}]", ne(holder, H.KEPT_TOP)))
        for q in range(len(scn.processes)):
            own = eq(lock, q + 1)
            at = f"[{o},P{q + 1}]"
            out.append(Lemma(f"owner_running{at}", implies(own, r.running(q))))
            if d in lay.closure_of(q):
                out.append(Lemma(f"build_lock_busy{at}",
                                 implies(and_(own, eq(holder, H.BUILD)), eq(r.goal(q, d), G.BUSY))))
                out.append(Lemma(f"busy_holds_lock{at}",
                                 implies(eq(r.goal(q, d), G.BUSY), and_(own, eq(holder, H.BUILD)))))
            else:
                out.append(Lemma(f"build_lock_busy{at}", implies(own, ne(holder, H.BUILD))))
            if o in lay.subst_paths[q]:
                out.append(Lemma(f"subst_lock_busy{at}",
                                 implies(and_(own, eq(holder, H.SUBST)), eq(r.sub(q, o), G.BUSY))))
            else:
                out.append(Lemma(f"subst_lock_busy{at}", implies(own, ne(holder, H.SUBST))))
            if r.is_top(q, d):
                top = r.v("top", q, d)
                kept_top = and_(own, eq(holder, H.KEPT_TOP))
                out.append(Lemma(f"kept_top_failed{at}", implies(kept_top, eq(top, Top.FAILED))))
                out.append(Lemma(f"kept_top_settled{at}", implies(kept_top, ne(top, Top.PENDING))))
            else:
                out.append(Lemma(f"kept_top_failed{at}", implies(own, ne(holder, H.KEPT_TOP))))
    for prop in CATALOGUE:
        if prop.kind == "always" and prop.state is not None:
            out.append(Lemma(prop.name, prop.state(r, model.transitions)))
    return out


class Checker:
    """The three checks over one model, with lemmas tracked by name."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.low = Lowering(model)
        self.x: Vec = self.low.vector("x")
        self.y: Vec = self.low.vector("y")
        self.act = self.low.selector("x")
        self.trans = self.low.trans(self.x, self.y, self.act, stutters=False)

    def solver(self, lemmas: Sequence[Lemma], step: bool) -> z3.Solver:
        s = z3.SolverFor("QF_LIA")
        s.set("unsat_core", True)
        s.add(self.low.domain(self.x))
        for lem in lemmas:
            s.assert_and_track(self.low.pred(lem.expr, self.x), z3.Bool(lem.name))
        if step:
            s.add(self.trans)
        return s

    def initiation(self, lemmas: Sequence[Lemma]) -> CTI | None:
        init = self.model.init_state()
        for lem in lemmas:
            if not evaluate(lem.expr, init):
                return CTI("initiation", lem.name, init)
        return None

    def consecution(self, lemmas: Sequence[Lemma], cores: dict[str, list[str]] | None = None) -> CTI | None:
        s = self.solver(lemmas, step=True)
        for lem in lemmas:
            goal = z3.Bool(f"post:{lem.name}")
            s.add(z3.Implies(goal, z3.Not(self.low.pred(lem.expr, self.y))))
            r = s.check(goal)
            if r == z3.sat:
                return self._cti(s.model(), "consecution", lem.name)
            if r != z3.unsat:
                raise TimeoutError(f"consecution of {lem.name}: z3 answered {r}")
            if cores is not None:
                cores[f"consecution:{lem.name}"] = _names(s.unsat_core(), goal)
        return None

    def safety(self, lemmas: Sequence[Lemma], prop: Property,
               cores: dict[str, list[str]] | None = None) -> CTI | None:
        if prop.state is not None:
            s = self.solver(lemmas, step=False)
            bad = z3.Not(self.low.holds_state(prop, self.x))
        else:
            s = self.solver(lemmas, step=True)
            bad = z3.Not(self.low.holds_step(prop, self.x, self.y, self.act))
        goal = z3.Bool(f"bad:{prop.name}")
        s.add(z3.Implies(goal, bad))
        r = s.check(goal)
        if r == z3.sat:
            return self._cti(s.model(), "safety", prop.name, step=prop.state is None)
        if r != z3.unsat:
            raise TimeoutError(f"safety of {prop.name}: z3 answered {r}")
        if cores is not None:
            cores[f"safety:{prop.name}"] = _names(s.unsat_core(), goal)
        return None

    def check(self, lemmas: Sequence[Lemma], prop: Property) -> Verdict:
        """Initiation, consecution and safety of `lemmas` (with type_ok) for `prop`."""
        lemmas = [type_ok(self.model), *(lem for lem in lemmas if lem.name != "type_ok")]
        cores: dict[str, list[str]] = {}
        cti = self.initiation(lemmas) or self.consecution(lemmas, cores) or self.safety(lemmas, prop, cores)
        return Verdict(cti is None, lemmas, cti, cores)

    def houdini(self, pool: Sequence[Lemma]) -> list[Lemma]:
        """The largest subset of `pool` that is inductive (with type_ok).

        One pass asks, for every non-stutter transition k, whether some surviving
        lemma that reads a variable k writes can be false after k from a state
        (within type_ok) where every surviving lemma holds; a counterexample drops
        the lemmas false in its post-state and k is asked again. Passes repeat
        until one drops nothing.
        """
        init = self.model.init_state()
        keep = [lem for lem in pool if evaluate(lem.expr, init)]
        s = z3.SolverFor("QF_LIA")
        s.add(self.low.domain(self.x))
        lit: dict[str, z3.BoolRef] = {}
        for lem in keep:
            lit[lem.name] = z3.Bool(f"houdini:{lem.name}")
            s.add(z3.Implies(lit[lem.name], self.low.pred(lem.expr, self.x)))
        reads = {lem.name: variables(lem.expr) for lem in keep}
        steps = [(k, frozenset(t.updates)) for k, t in enumerate(self.model.transitions) if not t.stutter]
        asked = 0
        while True:
            dropped = False
            for k, writes in steps:
                at_risk = [lem for lem in keep if reads[lem.name] & writes]
                if not at_risk:
                    continue
                y = self.low.successor(self.x, k)
                guard = self.low.enabled(self.x, k)
                while at_risk:
                    post = [(lem, self.low.pred(lem.expr, y)) for lem in at_risk]
                    query = z3.Bool(f"houdini:step{asked}")
                    asked += 1
                    s.add(z3.Implies(query, z3.And(guard, z3.Or([z3.Not(p) for _, p in post]))))
                    r = s.check(query, *(lit[lem.name] for lem in keep))
                    if r == z3.unsat:
                        break
                    if r != z3.sat:
                        raise TimeoutError(f"houdini at transition {k}: z3 answered {r}")
                    m = s.model()
                    gone = {lem.name for lem, p in post if not z3.is_true(m.eval(p, model_completion=True))}
                    keep = [lem for lem in keep if lem.name not in gone]
                    at_risk = [lem for lem in at_risk if lem.name not in gone]
                    dropped = True
            if not dropped:
                return keep

    def _cti(self, m: z3.ModelRef, check: str, lemma: str, step: bool = True) -> CTI:
        pre = self.low.read(m, self.x)
        if check == "safety" and not step:
            return CTI(check, lemma, pre)
        act = self.model.transitions[self.low.value(m, self.act)].action
        return CTI(check, lemma, pre, str(act), self.low.read(m, self.y))


def _names(core: Sequence[z3.BoolRef] | z3.AstVector, goal: z3.BoolRef) -> list[str]:
    return sorted(c.decl().name() for c in core if not c.eq(goal))
