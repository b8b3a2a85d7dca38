"""The model lowered to z3: state vectors, `init`, `trans(x, x')` and `bad`.

Nothing here restates a guard or an effect. Every formula is produced by walking
the `Expr` trees that `rules.py` grounds for a scenario (the same trees that
`Model.next_state` interprets and the explicit engine compiles), so the z3
transition relation cannot drift from the concrete one; a Hypothesis test
checks that it accepts exactly the concrete successor of random (state, action)
pairs.

In the manner of z3's `mini_ic3` example, a system is kept as a state vector
(one z3 integer per layout variable, named after it), a copy of that vector for
the post-state, an initial-state predicate and a transition predicate. The
transition relation picks one grounded transition with a selector integer `act`
(its index in `Model.transitions`) and is written per variable rather than per
action: x'[i] is an if-then-else over the transitions that update i, and x[i]
otherwise. That keeps the frame conditions implicit and the formula linear in
the size of the effects.

Variables are z3 integers constrained to their layout domain (`domain`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import z3

from .expr import Const, Expr, Next, Op, Var
from .machine import Model, State
from .properties import Property
from .rules import Transition

Vec = list[z3.ArithRef]
_Go = Callable[[Expr], z3.ExprRef]


class Lowering:
    """Expr -> z3 for one model; memoised per (expression, state vectors)."""

    def __init__(self, model: Model, bits: int | None = None) -> None:
        self.model = model
        # None: z3 integers; a width: bit-vectors of that width (bit-blasted to SAT)
        self.bits = bits
        self.layout = model.layout
        self.transitions: list[Transition] = model.transitions
        self.size = len(self.layout.names)
        self.logic = "QF_LIA" if bits is None else "QF_BV"
        self._memo: dict[tuple[int, int, int], z3.ExprRef] = {}
        self._keep: dict[int, object] = {}  # the memo is keyed by id(); keep the keys alive

    @staticmethod
    def width(model: Model) -> int:
        """A bit-vector width that holds every domain value, transition number and count."""
        top = max([*model.layout.domains, len(model.transitions), len(model.layout.names)])
        return top.bit_length() + 1

    # -- vectors -------------------------------------------------------------------

    def vector(self, tag: str) -> Vec:
        """Fresh z3 integers, one per state variable, named `<tag>.<variable>`."""
        return [self.const(f"{tag}.{n}") for n in self.layout.names]

    def selector(self, tag: str) -> z3.ArithRef:
        return self.const(f"{tag}.act")

    def const(self, name: str) -> z3.ArithRef:
        return z3.Int(name) if self.bits is None else z3.BitVec(name, self.bits)

    def num(self, value: int) -> z3.ArithRef:
        return z3.IntVal(value) if self.bits is None else z3.BitVecVal(value, self.bits)

    def lt(self, a: z3.ArithRef, b: z3.ArithRef) -> z3.BoolRef:
        return a < b if self.bits is None else z3.ULT(a, b)

    def le(self, a: z3.ArithRef, b: z3.ArithRef) -> z3.BoolRef:
        return a <= b if self.bits is None else z3.ULE(a, b)

    def domain(self, x: Sequence[z3.ArithRef]) -> z3.BoolRef:
        """Every variable within its layout domain (the invariant `type_ok`)."""
        return z3.And([self.in_domain(v, d) for v, d in zip(x, self.layout.domains, strict=True)])

    def in_domain(self, v: z3.ArithRef, d: int) -> z3.BoolRef:
        return self.lt(v, self.num(d)) if self.bits is not None else z3.And(0 <= v, v < d)

    def state(self, x: Sequence[z3.ArithRef], s: State) -> z3.BoolRef:
        return z3.And([v == self.num(c) for v, c in zip(x, s, strict=True)])

    def init(self, x: Sequence[z3.ArithRef]) -> z3.BoolRef:
        return self.state(x, self.model.init_state())

    # -- expressions ------------------------------------------------------------------

    def term(self, e: Expr, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef] | None = None) -> z3.ExprRef:
        """`e` over pre-state `x` (and post-state `y` for `Next`): an Int or a Bool term.

        Memoised for the Lowering's lifetime per (expression, x, y) object: guards and
        lemmas share subterms (`active(p)`, `referenced(...)`) and are lowered again by
        every query over the same vectors.
        """
        def go(e: Expr) -> z3.ExprRef:
            key = (id(e), id(x), id(y))
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = self._lower(e, x, y, go)
                self._keep[id(e)] = e
            return hit

        self._keep[id(x)], self._keep[id(y)] = x, y
        return go(e)

    def _lower(self, e: Expr, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef] | None,
               go: _Go) -> z3.ExprRef:
        if isinstance(e, Const):
            return self.num(e.value)
        if isinstance(e, Var):
            return x[e.index]
        if isinstance(e, Next):
            if y is None:
                raise ValueError(f"Next({e.index}) needs a post-state vector: only step properties use it")
            return y[e.index]
        assert isinstance(e, Op)
        k, args = e.kind, [go(a) for a in e.args]
        if k in ("and", "or", "not"):
            bools = [self.as_bool(a) for a in args]
            return z3.And(bools) if k == "and" else z3.Or(bools) if k == "or" else z3.Not(bools[0])
        if k == "ite":
            c, a, b = args
            if z3.is_bool(a) != z3.is_bool(b):
                a, b = self.as_num(a), self.as_num(b)
            return z3.If(self.as_bool(c), a, b)
        if k == "add":
            terms = [self.as_num(a) for a in args]
            return z3.Sum(terms) if self.bits is None else _bvsum(terms)
        a, b = self.as_num(args[0]), self.as_num(args[1])
        if k == "eq":
            return a == b
        if k == "ne":
            return a != b
        if k == "lt":
            return self.lt(a, b)
        if k == "le":
            return self.le(a, b)
        raise ValueError(f"unknown operator {k!r}")

    def pred(self, e: Expr, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef] | None = None) -> z3.BoolRef:
        return self.as_bool(self.term(e, x, y))

    # -- the transition relation ---------------------------------------------------------

    def chosen(self, stutters: bool) -> list[int]:
        return [k for k, t in enumerate(self.transitions) if stutters or not t.stutter]

    def trans(self, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef], act: z3.ArithRef,
              stutters: bool = True) -> z3.BoolRef:
        """One step from `x` to `y` by transition number `act`.

        With `stutters` off, failed lock attempts (which change nothing) are left
        out: the relation BMC and the proofs use, where a step is a state change.
        """
        ks = self.chosen(stutters)
        guards = z3.And(z3.Or([act == k for k in ks]),
                        *(z3.Implies(act == k, self.pred(self.transitions[k].guard, x)) for k in ks))
        return z3.And(guards, *self.frame(x, y, act, ks))

    def frame(self, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef], act: z3.ArithRef,
              ks: Iterable[int]) -> list[z3.BoolRef]:
        writers: list[list[tuple[int, Expr]]] = [[] for _ in range(self.size)]
        for k in ks:
            for i, e in self.transitions[k].updates.items():
                writers[i].append((k, e))
        out = []
        for i in range(self.size):
            rhs: z3.ExprRef = x[i]
            for k, e in reversed(writers[i]):
                rhs = z3.If(act == k, self.as_num(self.term(e, x)), rhs)
            out.append(y[i] == rhs)
        return out

    def enabled(self, x: Sequence[z3.ArithRef], k: int) -> z3.BoolRef:
        return self.pred(self.transitions[k].guard, x)

    def successor(self, x: Sequence[z3.ArithRef], k: int) -> Vec:
        """The post-state of transition `k` from `x`, as terms over `x` (no post-state variables).

        Position i is transition k's update of i, or x[i] itself where k does not
        write i: an Expr reading only unwritten positions lowers to the same term.
        """
        y = list(x)
        for i, e in self.transitions[k].updates.items():
            y[i] = self.as_num(self.term(e, x))
        return y

    # -- properties --------------------------------------------------------------------

    def holds_state(self, prop: Property, x: Sequence[z3.ArithRef]) -> z3.BoolRef:
        assert prop.state is not None
        return self.pred(prop.state(self.model.rules, self.transitions), x)

    def holds_step(self, prop: Property, x: Sequence[z3.ArithRef], y: Sequence[z3.ArithRef],
                   act: z3.ArithRef) -> z3.BoolRef:
        """The step property over the step x -> y taken by transition `act`."""
        assert prop.step is not None
        cases = []
        for k, t in enumerate(self.transitions):
            e = prop.step(self.model.rules, t)
            if isinstance(e, Const):
                if e.value:
                    continue
                cases.append(act == k)
            else:
                cases.append(z3.And(act == k, z3.Not(self.pred(e, x, y))))
        return z3.Not(z3.Or(cases)) if cases else z3.BoolVal(True)

    # -- reading models back ---------------------------------------------------------------

    def read(self, m: z3.ModelRef, x: Sequence[z3.ArithRef]) -> State:
        return tuple(self.value(m, v) for v in x)

    @staticmethod
    def value(m: z3.ModelRef, v: z3.ExprRef) -> int:
        return int(m.eval(v, model_completion=True).as_long())

    def as_bool(self, t: z3.ExprRef) -> z3.BoolRef:
        if z3.is_bool(t):
            return t
        return t != self.num(0)

    def as_num(self, t: z3.ExprRef) -> z3.ArithRef:
        if z3.is_bool(t):
            return z3.If(t, self.num(1), self.num(0))
        return t


def _bvsum(terms: list[z3.ArithRef]) -> z3.ArithRef:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
