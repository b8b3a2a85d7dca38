"""Bounded model checking: the shortest path to a bad state, by deepening.

The unrolling x0 -> x1 -> ... is built once in one incremental solver:
`init(x0)` and, at depth k, `trans(x(k-1), xk)` without stutters (a failed lock
attempt changes nothing, so it never shortens a path and never reaches a new
state). At each depth every target still open is asked for under an
assumption literal: "is the target's bad condition true at exactly step k?".
Because a step is always a change of state and depths are tried in order, the
first depth at which a target is satisfiable is its shortest distance from the
initial state: the depth breadth-first search reports. After an unsat answer
the negation is asserted for good (it is implied, and it helps later depths).

If the unrolling itself becomes unsatisfiable (no path has k steps), every
path of the system has been seen: open `always` targets hold and open
`sometimes` targets are unreached, with no bound.

Two options trade generality for speed (docs/proofs.md, "Limits"):
`lemmas`, an invariant already proved inductive (Houdini, `induction.py`), is
asserted at every step: every reachable state satisfies it, so no path is lost
and the solver prunes unreachable pre-states early (about 5x on the seed's
pre-fix deadlock). `first` skips the questions below that depth: a target
found there is a path of exactly that length, but not proved shortest by BMC
(`Outcome.shortest` is False).

A counterexample is read back as the list of transitions taken and replayed
through `Model.next_state`; each replayed state must equal the solver's, so a
trace that comes back is one the concrete model accepts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import z3

from .expr import variables
from .induction import Checker, Lemma, candidates
from .machine import Model, State
from .properties import CATALOGUE, Property
from .state import symmetry_groups
from .trace import Trace
from .z3lower import Lowering, Vec


@dataclass
class Target:
    """A property as a bad condition: its violation (always) or its witness (sometimes)."""

    prop: Property

    @property
    def name(self) -> str:
        return self.prop.name

    def bad_state(self, low: Lowering, x: Vec) -> z3.BoolRef:
        ok = low.holds_state(self.prop, x)
        return z3.Not(ok) if self.prop.kind == "always" else ok

    def bad_step(self, low: Lowering, x: Vec, y: Vec, act: z3.ArithRef) -> z3.BoolRef:
        ok = low.holds_step(self.prop, x, y, act)
        return z3.Not(ok) if self.prop.kind == "always" else ok


@dataclass
class Outcome:
    """What BMC learnt about one target."""

    name: str
    found: Trace | None  # a shortest path to the bad condition
    depth: int  # its length, or the depth searched without finding it
    complete: bool  # no path longer than `depth` exists: not finding it is a proof
    seconds: float
    reason: str = ""
    shortest: bool = True  # every shorter depth was refuted by BMC itself


def footprints(model: Model) -> list[tuple[frozenset[int], frozenset[int]]]:
    """(variables read, variables written) of every transition, from its Expr trees."""
    out = []
    for t in model.transitions:
        reads = variables(t.guard).union(*(variables(e) for e in t.updates.values()))
        out.append((reads, frozenset(t.updates)))
    return out


def commuting_predecessors(model: Model) -> list[list[int]]:
    """For each transition b, the transitions a > b that commute with it.

    a and b commute when neither writes a variable the other reads or writes:
    from any state where a then b can run, b then a can run and ends in the
    same state. A path with such an a immediately before b can be rewritten
    with b first, same length, same end; so BMC may forbid "a then b" without
    losing any shortest path (the canonical order puts lower numbers first).
    """
    fp = footprints(model)
    n = len(fp)
    out: list[list[int]] = [[] for _ in range(n)]
    for b in range(n):
        rb, wb = fp[b]
        for a in range(b + 1, n):
            ra, wa = fp[a]
            if not (wa & (rb | wb)) and not (wb & ra):
                out[b].append(a)
    return out


Span = tuple[int, int]  # transitions lo..hi (inclusive) of one process


def first_moves(model: Model) -> list[tuple[Span, Span]]:
    """(transitions of p, transitions of q) for identical processes p < q, as index spans."""
    by_proc: dict[int, list[int]] = {}
    for k, t in enumerate(model.transitions):
        by_proc.setdefault(t.action.proc - 1, []).append(k)
    spans = {p: (ks[0], ks[-1]) for p, ks in by_proc.items()}
    assert all(hi - lo + 1 == len(by_proc[p]) for p, (lo, hi) in spans.items()), "transitions grouped by process"
    pairs = []
    for group in symmetry_groups(model.scenario):
        for p, q in zip(group, group[1:], strict=False):
            if p in spans and q in spans:
                pairs.append((spans[p], spans[q]))
    return pairs


class Unrolling:
    """The incremental unrolling of one model."""

    def __init__(self, model: Model, bits: int | None = None, reduce: bool = True,
                 lemmas: Sequence[Lemma] = ()) -> None:
        self.model = model
        self.low = Lowering(model, bits)
        self.solver = z3.SolverFor(self.low.logic)
        self.xs: list[Vec] = [self.low.vector("x0")]
        self.acts: list[z3.ArithRef] = []
        self.solver.add(self.low.init(self.xs[0]))
        self.lemmas = list(lemmas)  # proved inductive: true in every reachable state
        for lem in self.lemmas:
            self.solver.add(self.low.pred(lem.expr, self.xs[0]))
        self.reduce = reduce
        self.commuting = commuting_predecessors(model) if reduce else []
        self.pairs = first_moves(model) if reduce else []
        self.moved: list[z3.BoolRef] = [z3.BoolVal(False) for _ in self.pairs]  # p has moved

    @property
    def depth(self) -> int:
        return len(self.acts)

    def extend(self) -> None:
        k = self.depth + 1
        x = self.low.vector(f"x{k}")
        act = self.low.selector(f"x{k - 1}")
        self.solver.add(self.low.trans(self.xs[-1], x, act, stutters=False))
        self.xs.append(x)
        self.acts.append(act)
        for lem in self.lemmas:
            self.solver.add(self.low.pred(lem.expr, x))
        if self.reduce:
            self.canonical()

    def canonical(self) -> None:
        """Constraints that keep one representative of paths equal up to reordering.

        Commuting neighbours come in increasing order; the constraint on the
        last two steps is added one step late, so a step property (whose bad
        step must stay last) is not affected. Identical processes make their
        first move in order (P1 before P2 before P3): renaming identical
        processes maps the initial state, and every property, to itself.
        """
        acts = self.acts
        if len(acts) >= 3:
            a, b = acts[-3], acts[-2]
            for k, before in enumerate(self.commuting):
                if before:
                    self.solver.add(z3.Implies(b == k, z3.And([a != j for j in before])))
        act, k = acts[-1], len(acts) - 1
        for j, (ps, qs) in enumerate(self.pairs):
            self.solver.add(z3.Implies(self.within(act, qs), self.moved[j]))
            moved = z3.Bool(f"moved.{j}.{k}")
            self.solver.add(moved == z3.Or(self.moved[j], self.within(act, ps)))
            self.moved[j] = moved

    def within(self, act: z3.ArithRef, span: Span) -> z3.BoolRef:
        lo, hi = span
        return z3.And(self.low.le(self.low.num(lo), act), self.low.le(act, self.low.num(hi)))

    def ask(self, cond: z3.BoolRef, tag: str, timeout_ms: int | None = None) -> z3.CheckSatResult:
        lit = z3.Bool(f"ask.{tag}.{self.depth}")
        self.solver.add(z3.Implies(lit, cond))
        if timeout_ms is not None:
            self.solver.set("timeout", timeout_ms)
        return self.solver.check(lit)

    def trace(self, prop: str) -> Trace:
        """The path in the solver's current model, replayed through the concrete model."""
        m = self.solver.model()
        states: list[State] = [self.model.init_state()]
        acts = []
        for k, act in enumerate(self.acts):
            a = self.model.transitions[self.low.value(m, act)].action
            nxt = self.model.next_state(states[-1], a)
            if nxt is None or nxt != self.low.read(m, self.xs[k + 1]):
                raise AssertionError(f"z3 step {k + 1} ({a}) does not replay through the concrete model")
            states.append(nxt)
            acts.append(a)
        return Trace(self.model, states, acts, prop)


def strengthening(model: Model) -> list[Lemma]:
    """Houdini's inductive subset of the lock-discipline pool (no catalogue property).

    Consecution and initiation of the returned set are checked by Houdini
    itself (it stops only when no lemma is broken by a step), so asserting
    it at every depth of an unrolling loses no reachable state.
    """
    props = {p.name for p in CATALOGUE}
    return Checker(model).houdini([lem for lem in candidates(model) if lem.name not in props])


def bmc(model: Model, props: Sequence[Property], depth: int, seconds: float | None = None,
        bits: int | None = None, lemmas: Sequence[Lemma] = (), first: int = 0,
        parallel: bool = False) -> dict[str, Outcome]:
    """Deepen from `first` to `depth` (or until `seconds` run out) until each bad condition is found.

    `bits`: bit-vectors of that width instead of integers (`Lowering.width`);
    `lemmas`: a proved inductive invariant to assert at every step;
    `first` > 0: depths below it are not asked (found traces are then not
    proved shortest by BMC);
    `parallel`: state properties are searched in Foata frames instead
    (`bmc_steps.parallel_bmc`: `depth` counts frames, traces are not proved
    shortest, often much faster); step properties still take single steps.
    """
    if parallel:
        from .bmc_steps import parallel_bmc  # bmc_steps builds on this module

        states = [p for p in props if p.form == "state"]
        framed = parallel_bmc(model, states, depth, seconds, lemmas=lemmas)
        steps = [p for p in props if p.form != "state"]
        return framed | (bmc(model, steps, depth, seconds, bits, lemmas, first) if steps else {})
    start = time.perf_counter()

    def left_ms() -> int | None:
        if seconds is None:
            return None
        return max(1, int(1000 * (seconds - (time.perf_counter() - start))))

    u = Unrolling(model, bits, lemmas=lemmas)
    targets = [Target(p) for p in props]
    out: dict[str, Outcome] = {}

    def settle(t: Target, found: Trace | None, complete: bool, depth: int, reason: str = "") -> None:
        out[t.name] = Outcome(t.name, found, depth, complete, time.perf_counter() - start, reason,
                              shortest=first == 0 or found is None)

    while True:
        for t in targets:
            if t.name in out or u.depth < first:
                continue
            if t.prop.form == "state":
                bad = t.bad_state(u.low, u.xs[-1])
            elif u.depth == 0:
                continue
            else:
                bad = t.bad_step(u.low, u.xs[-2], u.xs[-1], u.acts[-1])
            r = u.ask(bad, t.name, left_ms())
            if r == z3.sat:
                settle(t, u.trace(t.name), False, u.depth)
            elif r == z3.unsat:
                u.solver.add(z3.Not(bad))
            else:
                settle(t, None, False, u.depth - 1, f"time budget of {seconds} s ran out at depth {u.depth}")
        open_ = [t for t in targets if t.name not in out]
        if not open_:
            break
        if u.depth >= depth:
            for t in open_:
                settle(t, None, False, u.depth, f"no violation within depth {depth}")
            break
        u.extend()
        if u.ask(z3.BoolVal(True), "path", left_ms()) == z3.unsat:
            for t in open_:  # complete only if every depth was asked
                settle(t, None, first == 0, u.depth - 1,
                       "" if first == 0 else f"every path ends within depth {u.depth - 1}; depths below {first} not asked")
            break
    return out
