"""BMC over propositional frames: one-hot selectors, and parallel (Foata) steps.

Frame k goes from state x(k-1) to x(k); `fire[k][t]` says transition t fires in
it. Two step semantics:

* sequential (`parallel=False`): exactly one transition fires per frame. This
  is `bmc.Unrolling`'s relation (no stutters) with a one-hot selector and
  explanatory frame axioms instead of an integer selector and ite chains.
* parallel (`parallel=True`): a non-empty set of pairwise *independent*
  transitions fires (independent: neither writes a variable the other reads or
  writes, `bmc.footprints`), each enabled in x(k-1); since none disturbs
  another, every order of the set runs through the concrete model to the same
  x(k), which is x(k-1) with every fired transition's updates applied.
  Frames are moreover in Foata normal form: a transition fires in frame k+1
  only if it depends on some transition of frame k (otherwise it could have
  fired one frame earlier). Every interleaved path has exactly one such
  normal form (Mazurkiewicz trace theory), with the same transitions and the
  same end state and as many frames as its longest chain of dependent steps.

In both, variable v of x(k) is x(k-1)'s unless a fired transition writes v
(explanatory frame axiom); then it is that transition's update value (at most
one writer of v fires, by independence).

Symmetry: identical processes make their first move in order (a process
fires only in or after the frame where the previous identical process first
fired). Renaming identical processes maps the initial state, the dependency
relation and every catalogue property to themselves, so any path can be
renamed into this order, keeping its length and frame structure.

What a query here proves is stated with the function that makes it
(`deadline`, `fewest`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import z3

from . import bmc_onehot as B
from .bmc import Outcome, commuting_predecessors, first_moves, footprints
from .bmc_onehot import Propositional
from .induction import Lemma
from .machine import Model, State
from .properties import Property
from .trace import Trace

# a template vector's literal: X.<i>.<c>, F.<j>, W.<i> ...; renamed per frame
_TEMPLATE = re.compile(r"(?<=[ (])([XYFGWRPQ])\.")


class Frames:
    """An incremental unrolling in frames, in one SAT solver.

    The step, the Foata link between two frames and the per-state lemmas are
    lowered once, as SMT-LIB text over template vectors X (pre-state),
    Y (post-state), F and G (this frame's and the previous frame's firings), W and R (per variable: a fired
    transition writes it; one reads it without writing it), P and Q (W and R
    of the previous frame), and renamed for each frame.
    """

    def __init__(self, model: Model, parallel: bool = True, symmetry: bool = True,
                 lemmas: Sequence[Lemma] = (), solver: str = "QF_FD") -> None:
        self.model = model
        self.parallel = parallel
        self.prop = Propositional(model)
        self.solver = z3.SolverFor(solver)
        self.fp = footprints(model)
        self.live = [k for k, t in enumerate(model.transitions) if not t.stutter]
        size = self.prop.size
        self.writers: list[list[int]] = [[] for _ in range(size)]
        self.readers: list[list[int]] = [[] for _ in range(size)]  # read, not written
        for k in self.live:
            r, w = self.fp[k]
            for i in w:
                self.writers[i].append(k)
            for i in r - w:
                self.readers[i].append(k)
        self.step = self.lower_step()
        self.link = self.lower_foata() if parallel else self.lower_commuting()
        self.inv = [self.prop.pred(lem.expr, "X") for lem in lemmas]
        self.depth = 0
        self.declare(self.prop.names("x0"))
        self.add([self.prop.state("x0", model.init_state())])
        self.add(self.copy(self.inv, X="x0"))
        self.pairs = first_moves(model) if symmetry else []
        self.moved = [B.FALSE for _ in self.pairs]

    @staticmethod
    def fire(frame: str, j: int) -> str:
        return f"{frame}.{j}"

    def declare(self, names: Sequence[str]) -> None:
        self.solver.from_string("".join(f"(declare-const {n} Bool)" for n in names))

    def add(self, formulas: Sequence[str]) -> None:
        self.solver.from_string("".join(f"(assert {f})" for f in formulas if f != B.TRUE))

    def copy(self, template: Sequence[str], **names: str) -> list[str]:
        return [_TEMPLATE.sub(lambda m: names[m[1]] + ".", " " + f)[1:] for f in template]

    def extend(self) -> None:
        """Add frame k: x(k-1) -> x(k) by the firings f(k)."""
        k = self.depth + 1
        x, y, f = f"x{k - 1}", f"x{k}", f"f{k}"
        w, r = f"w{k}", f"r{k}"
        self.declare(self.prop.names(y) + [self.fire(f, j) for j in self.live]
                     + [f"{w}.{i}" for i, ws in enumerate(self.writers) if ws]
                     + [f"{r}.{i}" for i, rs in enumerate(self.readers) if rs])
        self.add(self.copy(self.step, X=x, Y=y, F=f, W=w, R=r))
        if k > 1:
            self.add(self.copy(self.link, P=f"w{k - 1}", Q=f"r{k - 1}", G=f"f{k - 1}", F=f))
        self.add(self.copy(self.inv, X=y))
        self.depth = k
        self.symmetry(f)

    def lower_step(self) -> list[str]:
        """X -> Y by the transitions fired in F (one, or an independent set)."""
        ts = self.model.transitions
        live = [self.fire("F", j) for j in self.live]
        out: list[str] = []
        for i in range(self.prop.size):
            if self.writers[i]:
                out.append(B.iff(self.written("W", i), B.or_([self.fire("F", j) for j in self.writers[i]])))
            if self.readers[i]:
                out.append(B.iff(f"R.{i}", B.or_([self.fire("F", j) for j in self.readers[i]])))
        if self.parallel:
            out.append(B.or_(live))
            for i in range(self.prop.size):
                out.append(B.at_most(1, [self.fire("F", j) for j in self.writers[i]]))
                if self.readers[i] and self.writers[i]:  # a reader of i fires with no writer of i
                    out.append(B.implies(f"R.{i}", B.not_(self.written("W", i))))
        else:
            out.append(B.exactly_one(live))
        for j in self.live:
            out.append(B.implies(self.fire("F", j), self.prop.pred(ts[j].guard, "X")))
        out.extend(self.frame_axioms())
        return out

    def written(self, vector: str, i: int) -> str:
        """The literal "a fired transition writes variable i" (false if no transition does)."""
        return f"{vector}.{i}" if self.writers[i] else B.FALSE

    def frame_axioms(self) -> list[str]:
        """Y.i is X.i unless a fired transition writes i; then that transition's value."""
        ts = self.model.transitions
        out = []
        for i, dom in enumerate(self.prop.domains):
            written = self.written("W", i)
            cases = [[B.and_([B.not_(written), B.lit("X", i, c)])] for c in range(dom)]
            for j in self.writers[i]:
                for v, cond in self.prop.values(ts[j].updates[i], "X").items():
                    if v < dom:
                        cases[v].append(B.and_([self.fire("F", j), cond]))
                    else:  # never taken from a state the transition is enabled in
                        out.append(B.implies(self.fire("F", j), B.not_(cond)))
            out.extend(B.iff(B.lit("Y", i, c), B.or_(cases[c])) for c in range(dom))
        return out

    def lower_commuting(self) -> list[str]:
        """Single steps: commuting neighbours in increasing order (`bmc.commuting_predecessors`)."""
        live = set(self.live)
        return [B.implies(self.fire("F", b), B.not_(B.or_([self.fire("G", a) for a in before if a in live])))
                for b, before in enumerate(commuting_predecessors(self.model)) if b in live]

    def lower_foata(self) -> list[str]:
        """Each transition fired in F depends on one fired the frame before (else it would fire then).

        t depends on u when u writes a variable t reads or writes (P), or t
        writes a variable u reads (P for u a writer of it, Q for a reader).
        """
        out = []
        for j in self.live:
            r, w = self.fp[j]
            why = ([self.written("P", i) for i in sorted(r | w)]
                   + [f"Q.{i}" for i in sorted(w) if self.readers[i]])
            out.append(B.implies(self.fire("F", j), B.or_(why)))
        return out

    def symmetry(self, f: str) -> None:
        """Identical processes make their first move in order (`moved.<n>.<k>`: p has moved by frame k)."""
        k = self.depth
        for n, ((plo, phi), (qlo, qhi)) in enumerate(self.pairs):
            p_moves = B.or_([self.fire(f, j) for j in range(plo, phi + 1) if j in self.live])
            q_moves = B.or_([self.fire(f, j) for j in range(qlo, qhi + 1) if j in self.live])
            moved = f"moved.{n}.{k}"
            self.declare([moved])
            self.add([B.iff(moved, B.or_([self.moved[n], p_moves])), B.implies(q_moves, moved)])
            self.moved[n] = moved

    def fired(self) -> list[str]:
        return [self.fire(f"f{k}", j) for k in range(1, self.depth + 1) for j in self.live]

    def bad(self, prop: Property, k: int) -> str:
        assert prop.form == "state" and prop.state is not None, "frames check state properties only"
        ok = self.prop.pred(prop.state(self.model.rules, self.model.transitions), f"x{k}")
        return B.not_(ok) if prop.kind == "always" else ok

    def guard(self, name: str, formula: str) -> z3.BoolRef:
        """A fresh assumption literal that implies `formula`."""
        self.declare([name])
        self.add([B.implies(name, formula)])
        return z3.Bool(name)

    def check(self, *assumptions: z3.BoolRef, timeout_ms: int | None = None) -> z3.CheckSatResult:
        if timeout_ms is not None:
            self.solver.set("timeout", timeout_ms)
        return self.solver.check(*assumptions)

    def fewest(self, prop: str, bad: str, found: Trace, timeout_ms: int | None) -> tuple[Trace, bool]:
        """A path of the current height to `bad` with the fewest steps, starting from `found`.

        Each round asks for fewer steps than the best so far (a cardinality
        bound on all firings, under a fresh literal); the last sat model is
        kept, so the returned trace is one the solver found and replayed.
        The flag is False when a round timed out (the trace is then not
        proved fewest).
        """
        best = found
        while True:
            ask = self.guard(f"fewer.{prop}.{self.depth}.{len(best)}",
                             B.and_([bad, B.at_most(len(best) - 1, self.fired())]))
            r = self.check(ask, timeout_ms=timeout_ms)
            if r != z3.sat:
                return best, r == z3.unsat
            best = self.trace(prop)

    def trace(self, prop: str) -> Trace:
        """The solver's path, each frame linearised in transition order and replayed concretely."""
        m = self.solver.model()
        states: list[State] = [self.model.init_state()]
        acts = []
        for k in range(1, self.depth + 1):
            for j in self.live:
                if z3.is_true(m.eval(z3.Bool(self.fire(f"f{k}", j)), model_completion=True)):
                    a = self.model.transitions[j].action
                    nxt = self.model.next_state(states[-1], a)
                    if nxt is None:
                        raise AssertionError(f"frame {k}: {a} does not replay through the concrete model")
                    states.append(nxt)
                    acts.append(a)
            if states[-1] != self.prop.read(m, f"x{k}"):
                raise AssertionError(f"frame {k} does not end where the concrete model does")
        return Trace(self.model, states, acts, prop)


def parallel_bmc(model: Model, props: Sequence[Property], frames: int, seconds: float | None = None,
                 lemmas: Sequence[Lemma] = (), fewest: bool = False) -> dict[str, Outcome]:
    """Deepen in Foata frames (up to `frames`, or until `seconds` run out) until each bad state is found.

    State properties only. What an outcome proves:
    * found at frame F: a path (the trace, replayed concretely) reaches the bad
      condition, and no path of Foata height below F does (each lower frame
      count was refuted); `depth` is the trace's number of steps. With
      `fewest`, the count is then minimised at height F: no path of height F
      has fewer steps. Paths of greater height with fewer steps are not
      excluded, so `shortest` is False.
    * not found, `complete`: no normal-form path has `depth + 1` frames, so
      every path has height at most `depth` and all were asked: the
      `always` property holds (the `sometimes` one is unreachable).
    """
    start = time.perf_counter()

    def left_ms() -> int | None:
        return None if seconds is None else max(1, int(1000 * (seconds - (time.perf_counter() - start))))

    for p in props:
        if p.form != "state":
            raise ValueError(f"property {p.name!r}: parallel BMC checks state properties; use sequential steps")
    u = Frames(model, lemmas=lemmas)
    out: dict[str, Outcome] = {}

    def settle(p: Property, found: Trace | None, complete: bool, depth: int, reason: str) -> None:
        out[p.name] = Outcome(p.name, found, depth, complete, time.perf_counter() - start, reason,
                              shortest=False)

    while len(out) < len(props):
        k = u.depth
        for p in props:
            if p.name in out or k == 0:
                continue
            bad = u.bad(p, k)
            r = u.check(u.guard(f"ask.{p.name}.{k}", bad), timeout_ms=left_ms())
            if r == z3.sat:
                tr, note = u.trace(p.name), f"Foata height {k}; no path of smaller height"
                if fewest:
                    tr, proved = u.fewest(p.name, bad, tr, left_ms())
                    note += f"; no path of height {k} is shorter" if proved else "; minimising the steps timed out"
                settle(p, tr, False, len(tr), note)
            elif r == z3.unsat:
                u.add([B.not_(bad)])  # implied: no path of height k ends in it
            else:
                settle(p, None, False, k - 1, f"time budget of {seconds} s ran out at frame {k}")
        open_ = [p for p in props if p.name not in out]
        if not open_:
            break
        if k >= frames:
            for p in open_:
                settle(p, None, False, k, f"no violation within Foata height {frames}")
            break
        u.extend()
        if u.check(timeout_ms=left_ms()) == z3.unsat:
            for p in open_:
                settle(p, None, True, k, f"every path has Foata height at most {k}")
            break
    return out
