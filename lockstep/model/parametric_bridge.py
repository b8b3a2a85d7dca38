"""The bridge from one concrete scenario to the every-size theorem (parametric.py).

The abstraction function maps a grounded state vector to the abstract state:
a path's lock is held when `lock.<path>` is non-zero, by the process it names,
as `holder.<path>`; `goal(p, d)` is p's goal variable for d, ABSENT when d is
outside p's closure (no such goal can exist); `active` and `topfailed` are the
rules' own `active(p)` and "some top-level result is FAILED". Over the
scenario's named processes, derivations and paths (`Finite`), every quantifier
of the theorem's formulas is a finite conjunction, so each obligation below is
one quantifier-free z3 query over the grounded `Expr` trees:

  initial      the grounded initial state is an abstract initial state;
  well_formed  every type-correct grounded state is well formed;
  assumption   each assumption the theorem was proved under holds of the scenario;
  step         each non-stutter grounded transition obeys every protocol rule
               with its own process as the actor (one query per process);
  stuck / bad  the scenario's bad condition for the property (`deadlocked`, or
               the negated state property) implies the claim's abstract facts.

Step and bad obligations are asked of pre-states whose abstraction satisfies
the theorem's invariant: by induction along any run (initiation, then bridge
step and consecution), the abstraction of every reachable state does. The
owner of a free lock reads as no process; every formula reads `owner(o)` only
where `held(o)`, so that value is never observed. Together with the theorem
the obligations prove the claim for the scenario, at a cost that grows with
the number of transitions, not with the state space. A failed obligation
names the rule or fact, the transition and a concrete state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from . import parametric as PM
from .expr import not_
from .machine import Model, State
from .properties import PROPERTIES, deadlocked
from .state import GoalState as G
from .state import Top
from .z3lower import Lowering, Vec


@dataclass(frozen=True)
class Obligation:
    """A bridge obligation the scenario does not meet, with a concrete witness."""

    check: str  # initial | well_formed | assumption:<name> | step:<rule> | stuck:<fact>
    state: State | None = None
    action: str | None = None
    post: State | None = None


@dataclass(frozen=True)
class Bridge:
    scenario: str
    policy: str
    queries: int
    seconds: float
    failure: Obligation | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _table(entry: Callable[..., z3.ExprRef], ranges: Sequence[Sequence[int]]) -> PM.Fn:
    """A function of element numbers; a symbolic argument (such as `owner(o)`) becomes an
    if-then-else over its range."""
    def apply(*args: z3.ExprRef) -> z3.ExprRef:
        for k, arg in enumerate(args):
            if not z3.is_int_value(arg):
                vals = ranges[k]
                out = apply(*args[:k], z3.IntVal(vals[-1]), *args[k + 1:])
                for val in reversed(vals[:-1]):
                    out = z3.If(arg == val, apply(*args[:k], z3.IntVal(val), *args[k + 1:]), out)
                return out
        return entry(*(arg.as_long() for arg in args))
    return apply


class _Instance:
    """The theorem's vocabulary interpreted over one scenario: processes are numbered 1..n (as
    in `lock.<path>`), derivations and paths 0.., and every function reads the grounded vector."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.low = Lowering(model)
        scn = model.scenario
        self.procs = list(range(1, len(scn.processes) + 1))
        self.drvs = [d.name for d in scn.derivations]
        self.paths = list(scn.paths)
        u = PM.Finite({PM.PROC.name(): [z3.IntVal(p) for p in self.procs],
                       PM.DRV.name(): [z3.IntVal(i) for i in range(len(self.drvs))],
                       PM.PATH.name(): [z3.IntVal(i) for i in range(len(self.paths))]})
        deriver = [self.drvs.index(scn.deriver(o).name) for o in self.paths]
        rigid = PM.Rigid(_table(lambda o: z3.IntVal(deriver[o]), [range(len(self.paths))]),
                         _table(lambda p: z3.BoolVal(scn.processes[p - 1].keep_going), [self.procs]))
        self.ctx = PM.Ctx(u, rigid, PM.Protocol.of(model.policy))
        self.x = self.low.vector("x")
        self.a = self.abstract(self.x)

    def abstract(self, v: Vec) -> PM.AState:
        """The abstraction of the grounded vector v."""
        m, r, lay = self.model, self.model.rules, self.model.layout
        paths, procs, drvs = [range(len(self.paths))], [self.procs], range(len(self.drvs))
        lock = [v[lay.index[("lock", o)]] for o in self.paths]
        holder = [v[lay.index[("holder", o)]] for o in self.paths]
        active = [self.low.pred(r.active(p - 1), v) for p in self.procs]

        def goal(p: int, d: int) -> z3.ExprRef:
            key = ("goal", p - 1, self.drvs[d])
            return v[lay.index[key]] if key in lay.index else z3.IntVal(int(G.ABSENT))

        def sub(p: int, o: int) -> z3.ExprRef:
            key = ("subst", p - 1, self.paths[o])
            return v[lay.index[key]] if key in lay.index else z3.IntVal(int(G.ABSENT))

        def topfailed(p: int) -> z3.ExprRef:
            return z3.Or([v[lay.index[("top", p - 1, d)]] == int(Top.FAILED)
                          for d in m.scenario.processes[p - 1].request])

        return PM.AState(
            held=_table(lambda o: lock[o] != 0, paths), owner=_table(lambda o: lock[o], paths),
            holder=_table(lambda o: holder[o], paths), goal=_table(goal, [self.procs, drvs]),
            sub=_table(sub, [self.procs, paths[0]]),
            status=_table(lambda p: v[lay.index[("status", p - 1)]], procs),
            active=_table(lambda p: active[p - 1], procs), topfailed=_table(topfailed, procs))


def bridge(model: Model, assumptions: Sequence[str] = (), prop: str = "deadlock_free") -> Bridge:
    """Check every obligation that lets the theorem for `model.policy` and `prop` speak about
    `model`; the last one: the scenario's own bad condition for `prop` implies the claim's."""
    start = time.perf_counter()
    inst = _Instance(model)
    c, a, x, low = inst.ctx, inst.a, inst.x, inst.low
    s = z3.SolverFor("QF_LIA")
    s.add(low.domain(x))
    queries = 0

    def fails() -> z3.ModelRef | None:
        nonlocal queries
        queries += 1
        r = s.check()
        if r == z3.unknown:
            raise TimeoutError(f"bridge query for scenario {model.scenario.name!r}: z3 answered unknown")
        return s.model() if r == z3.sat else None

    def done(failure: Obligation | None) -> Bridge:
        return Bridge(model.scenario.name, model.policy, queries, time.perf_counter() - start, failure)

    def first_false(m: z3.ModelRef, named: dict[str, z3.BoolRef]) -> str:
        return next(n for n, f in named.items() if z3.is_false(m.eval(f, model_completion=True)))

    checks: list[tuple[str, z3.BoolRef, z3.BoolRef | None]] = [
        ("initial", PM.initial(c, a), low.init(x)), ("well_formed", PM.well_formed(c, a), None)]
    checks += [(f"assumption:{n}", PM.ASSUMPTIONS[n](c, a), None) for n in assumptions]
    for name, claim, given in checks:
        s.push()
        if given is not None:
            s.add(given)
        s.add(z3.Not(claim))
        m = fails()
        s.pop()
        if m is not None:
            return done(Obligation(name, low.read(m, x)))

    # Steps and deadlocks are only asked of states satisfying the theorem's invariant: by
    # induction along any run, the abstraction of every reachable state does.
    inv = {n: f(c, a) for n, f in PM.lemmas(c.proto).items()}
    s.add(list(inv.values()))
    # One query per process: some non-stutter transition of that process (selected by `act`)
    # breaks some rule with that process as the actor.
    y, act = low.vector("y"), low.selector("x")
    b = inst.abstract(y)
    for p in inst.procs:
        ks = [k for k, t in enumerate(model.transitions) if not t.stutter and t.action.proc == p]
        rules = {n: rule(c, a, b, z3.IntVal(p)) for n, rule in PM.RULES.items()}
        s.push()
        s.add(z3.Or([act == k for k in ks]))
        s.add([z3.Implies(act == k, low.pred(model.transitions[k].guard, x)) for k in ks])
        s.add(low.frame(x, y, act, ks))
        s.add(z3.Not(z3.And(list(rules.values()))))
        m = fails()
        s.pop()
        if m is not None:
            t = model.transitions[low.value(m, act)]
            return done(Obligation(f"step:{first_false(m, rules)}", low.read(m, x), str(t.action),
                                   low.read(m, y)))

    claim = PM.CLAIMS[prop]
    facts = {n: f(c, a) for n, f in claim.bad.items()}
    if prop == "deadlock_free":
        bad = deadlocked(model.rules, model.transitions)
    else:
        state = PROPERTIES[prop].state
        assert state is not None
        bad = not_(state(model.rules, model.transitions))
    s.push()
    s.add(low.pred(bad, x))
    s.add(z3.Not(z3.And(list(facts.values()))))
    m = fails()
    s.pop()
    if m is not None:
        return done(Obligation(f"{claim.tag}:{first_false(m, facts)}", low.read(m, x)))
    return done(None)
