"""The model lowered to propositional logic: one boolean per (variable, value).

`z3lower.Lowering` gives each state variable one integer (or bit-vector) and
picks a step with an integer selector; here every variable i with domain d is
d booleans `<vector>.<i>.<c>` ("variable i has value c"), and every term is
lowered to the same shape: a map from each value the term can take to the
condition under which it takes it. `eq(Var(i), 3)` is then the single
literal `x.i.3`, an `ite` merges two maps, an `add` is the convolution of its
arguments' maps, a comparison is a disjunction over pairs of values. The
whole query is clauses and cardinality constraints over booleans, which z3's
SAT core (`QF_FD`) handles natively; nothing is left to bit-blast.

Invariant: a state vector is one-hot (exactly one value per variable). The
initial vector is fixed; a post-state vector is defined value by value from
a one-hot pre-state by maps whose conditions are mutually exclusive and (on
one-hot inputs) exhaustive, so it is one-hot too: no domain constraint is
needed, and `type_ok` holds by construction.

Formulas are produced as SMT-LIB text, not z3 objects: building z3 terms
through the Python API costs tens of microseconds a node and dominated the
run time; text is parsed by z3 in one call (`Solver.from_string`). As in
`z3lower`, no guard or effect is restated: every formula comes from walking
the `Expr` trees `rules.py` grounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import z3

from .expr import Const, Expr, Next, Op, Var
from .machine import Model, State

Values = dict[int, str]  # a term: value -> condition (exclusive; exhaustive on one-hot states)
Term = str | Values  # a boolean formula, or a term's values
TRUE, FALSE = "true", "false"


def lit(vector: str, i: int, c: int) -> str:
    """The literal "variable i of `vector` has value c"."""
    return f"{vector}.{i}.{c}"


def and_(cs: Sequence[str]) -> str:
    cs = [c for c in cs if c != TRUE]
    if FALSE in cs:
        return FALSE
    return TRUE if not cs else cs[0] if len(cs) == 1 else f"(and {' '.join(cs)})"


def or_(cs: Sequence[str]) -> str:
    cs = [c for c in cs if c != FALSE]
    if TRUE in cs:
        return TRUE
    return FALSE if not cs else cs[0] if len(cs) == 1 else f"(or {' '.join(cs)})"


def not_(c: str) -> str:
    return FALSE if c == TRUE else TRUE if c == FALSE else c[5:-1] if c.startswith("(not ") else f"(not {c})"


def implies(a: str, b: str) -> str:
    return or_([not_(a), b])


def iff(a: str, b: str) -> str:
    return f"(= {a} {b})"


def at_most(k: int, cs: Sequence[str]) -> str:
    return TRUE if len(cs) <= k else f"((_ at-most {k}) {' '.join(cs)})"


def exactly_one(cs: Sequence[str]) -> str:
    return f"((_ pbeq 1 {' '.join('1' for _ in cs)}) {' '.join(cs)})"


class Propositional:
    """Expr -> SMT-LIB boolean text over one-hot state vectors of one model."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.domains = model.layout.domains
        self.size = len(self.domains)

    def names(self, vector: str) -> list[str]:
        return [lit(vector, i, c) for i, d in enumerate(self.domains) for c in range(d)]

    def state(self, vector: str, s: State) -> str:
        return and_([lit(vector, i, c) if c == v else not_(lit(vector, i, c))
                     for i, (v, d) in enumerate(zip(s, self.domains, strict=True)) for c in range(d)])

    def read(self, m: z3.ModelRef, vector: str) -> State:
        out = []
        for i, d in enumerate(self.domains):
            hits = [c for c in range(d) if z3.is_true(m.eval(z3.Bool(lit(vector, i, c)), model_completion=True))]
            assert len(hits) == 1, "state vectors are one-hot"
            out.append(hits[0])
        return tuple(out)

    # -- terms ------------------------------------------------------------------------

    def pred(self, e: Expr, x: str, y: str | None = None) -> str:
        return self.as_bool(self.term(e, x, y))

    def values(self, e: Expr, x: str) -> Values:
        return self.as_values(self.term(e, x))

    def term(self, e: Expr, x: str, y: str | None = None) -> Term:
        memo: dict[int, Term] = {}
        keep: list[Expr] = []  # memo is keyed by id(); keep the keys alive

        def go(e: Expr) -> Term:
            hit = memo.get(id(e))
            if hit is not None:
                return hit
            out = self._lower(e, x, y, go)
            memo[id(e)] = out
            keep.append(e)
            return out

        return go(e)

    def _lower(self, e: Expr, x: str, y: str | None, go: Callable[[Expr], Term]) -> Term:
        if isinstance(e, Const):
            return {e.value: TRUE}
        if isinstance(e, Var | Next):
            vec = x if isinstance(e, Var) else y
            if vec is None:
                raise ValueError(f"Next({e.index}) needs a post-state vector: only step properties use it")
            return {c: lit(vec, e.index, c) for c in range(self.domains[e.index])}
        assert isinstance(e, Op)
        k, args = e.kind, [go(a) for a in e.args]
        if k == "and":
            return and_([self.as_bool(a) for a in args])
        if k == "or":
            return or_([self.as_bool(a) for a in args])
        if k == "not":
            return not_(self.as_bool(args[0]))
        if k == "ite":
            c = self.as_bool(args[0])
            return _merge([(c, self.as_values(args[1])), (not_(c), self.as_values(args[2]))])
        if k == "add":
            total: Values = {0: TRUE}
            for a in args:
                total = _merge([(and_([ca, cb]), {va + vb: TRUE})
                                for va, ca in total.items() for vb, cb in self.as_values(a).items()])
            return total
        a, b = self.as_values(args[0]), self.as_values(args[1])
        cmp = {"eq": int.__eq__, "ne": int.__ne__, "lt": int.__lt__, "le": int.__le__}[k]
        return or_([and_([ca, cb]) for va, ca in a.items() for vb, cb in b.items() if cmp(va, vb)])

    @staticmethod
    def as_bool(t: Term) -> str:
        if isinstance(t, str):
            return t
        return or_([c for v, c in t.items() if v != 0])

    @staticmethod
    def as_values(t: Term) -> Values:
        if isinstance(t, str):
            return {1: t, 0: not_(t)}
        return t


def _merge(parts: Sequence[tuple[str, Values]]) -> Values:
    """The term equal to each part's map where its guard holds (guards exclusive)."""
    cases: dict[int, list[str]] = {}
    for guard, vals in parts:
        for v, c in vals.items():
            cases.setdefault(v, []).append(and_([guard, c]))
    out = {v: or_(cs) for v, cs in sorted(cases.items())}
    return {v: c for v, c in out.items() if c != FALSE}
