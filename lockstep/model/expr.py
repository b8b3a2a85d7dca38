"""A tiny expression language for guards, effects and properties.

Every guard and effect of the model is written once, as an expression tree over
the integer state vector, and then *evaluated* three ways: interpreted over a
concrete state (`evaluate`, the readable reference), compiled to Python source
(`to_python`, what the explicit engine runs), and lowered to z3 terms (the z3
engine walks the same trees). No second, hand-written copy of the transition
relation exists anywhere.

Terms are integer-valued (`Const`, `Var`, `Next`, `ite`, `add`) or
boolean-valued (`eq`, `lt`, `and_`, ...). A state variable that stores a
boolean stores 0 or 1; compare it with `eq(v, 1)` or read it with `is_set(v)`.
`Next(i)` is variable i in the post-state: it appears only in properties over
transitions, never in guards or effects.

Constructors fold constants, so grounding an action for a scenario (where many
conditions are known, such as "is this derivation substitutable") leaves only
the conditions that depend on the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

Expr = Union["Const", "Var", "Next", "Op"]

BOOL_OPS = frozenset({"eq", "ne", "lt", "le", "and", "or", "not"})


@dataclass(frozen=True, slots=True)
class Const:
    value: int


@dataclass(frozen=True, slots=True)
class Var:
    index: int


@dataclass(frozen=True, slots=True)
class Next:
    index: int


@dataclass(frozen=True, slots=True)
class Op:
    kind: str
    args: tuple[Expr, ...]


TRUE = Const(1)
FALSE = Const(0)


def const(value: int | bool) -> Const:
    return Const(int(value))


def lift(x: Expr | int | bool) -> Expr:
    return Const(int(x)) if isinstance(x, int | bool) else x


def _both_const(a: Expr, b: Expr) -> tuple[int, int] | None:
    if isinstance(a, Const) and isinstance(b, Const):
        return a.value, b.value
    return None


def eq(a: Expr | int, b: Expr | int) -> Expr:
    a, b = lift(a), lift(b)
    if (c := _both_const(a, b)) is not None:
        return const(c[0] == c[1])
    if a == b:
        return TRUE
    return Op("eq", (a, b))


def ne(a: Expr | int, b: Expr | int) -> Expr:
    return not_(eq(a, b))


def lt(a: Expr | int, b: Expr | int) -> Expr:
    a, b = lift(a), lift(b)
    if (c := _both_const(a, b)) is not None:
        return const(c[0] < c[1])
    return Op("lt", (a, b))


def le(a: Expr | int, b: Expr | int) -> Expr:
    a, b = lift(a), lift(b)
    if (c := _both_const(a, b)) is not None:
        return const(c[0] <= c[1])
    return Op("le", (a, b))


def ge(a: Expr | int, b: Expr | int) -> Expr:
    return le(b, a)


def not_(a: Expr | bool) -> Expr:
    a = lift(a)
    if isinstance(a, Const):
        return const(not a.value)
    if isinstance(a, Op) and a.kind == "not":
        return a.args[0]
    if isinstance(a, Op) and a.kind == "eq" and len(a.args) == 2:
        return Op("ne", a.args)
    if isinstance(a, Op) and a.kind == "ne":
        return Op("eq", a.args)
    return Op("not", (a,))


def and_(*xs: Expr | bool) -> Expr:
    out: list[Expr] = []
    for x in map(lift, xs):
        if isinstance(x, Const):
            if not x.value:
                return FALSE
            continue
        if isinstance(x, Op) and x.kind == "and":
            out.extend(x.args)
        elif x not in out:
            out.append(x)
    if not out:
        return TRUE
    return out[0] if len(out) == 1 else Op("and", tuple(out))


def or_(*xs: Expr | bool) -> Expr:
    out: list[Expr] = []
    for x in map(lift, xs):
        if isinstance(x, Const):
            if x.value:
                return TRUE
            continue
        if isinstance(x, Op) and x.kind == "or":
            out.extend(x.args)
        elif x not in out:
            out.append(x)
    if not out:
        return FALSE
    return out[0] if len(out) == 1 else Op("or", tuple(out))


def all_(xs: Iterable[Expr | bool]) -> Expr:
    return and_(*xs)


def any_(xs: Iterable[Expr | bool]) -> Expr:
    return or_(*xs)


def implies(a: Expr, b: Expr) -> Expr:
    return or_(not_(a), b)


def ite(c: Expr | bool, a: Expr | int, b: Expr | int) -> Expr:
    c, a, b = lift(c), lift(a), lift(b)
    if isinstance(c, Const):
        return a if c.value else b
    if a == b:
        return a
    return Op("ite", (c, a, b))


def add(*xs: Expr | int) -> Expr:
    total = 0
    terms: list[Expr] = []
    for x in map(lift, xs):
        if isinstance(x, Const):
            total += x.value
        else:
            terms.append(x)
    if total or not terms:
        terms.append(Const(total))
    return terms[0] if len(terms) == 1 else Op("add", tuple(terms))


def count(conds: Iterable[Expr]) -> Expr:
    """The number of true conditions, as an integer term."""
    return add(*(ite(c, 1, 0) for c in conds))


def as_int(c: Expr) -> Expr:
    return ite(c, 1, 0)


def is_set(v: Expr) -> Expr:
    return eq(v, 1)


def one_of(v: Expr, values: Iterable[int]) -> Expr:
    return any_(eq(v, x) for x in values)


# -- evaluation ---------------------------------------------------------------


def evaluate(e: Expr, pre: Sequence[int], post: Sequence[int] | None = None) -> int:
    """Interpret `e` over a concrete pre-state (and post-state for `Next`)."""
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Var):
        return pre[e.index]
    if isinstance(e, Next):
        if post is None:
            raise ValueError(f"Next({e.index}) needs a post-state: only transition properties use it")
        return post[e.index]
    k, args = e.kind, e.args
    if k == "and":
        return int(all(evaluate(a, pre, post) for a in args))
    if k == "or":
        return int(any(evaluate(a, pre, post) for a in args))
    if k == "not":
        return int(not evaluate(args[0], pre, post))
    if k == "ite":
        return evaluate(args[1] if evaluate(args[0], pre, post) else args[2], pre, post)
    if k == "add":
        return sum(evaluate(a, pre, post) for a in args)
    a, b = evaluate(args[0], pre, post), evaluate(args[1], pre, post)
    if k == "eq":
        return int(a == b)
    if k == "ne":
        return int(a != b)
    if k == "lt":
        return int(a < b)
    if k == "le":
        return int(a <= b)
    raise ValueError(f"unknown operator {k!r}")


@dataclass(frozen=True)
class Syntax:
    """How a target language spells the operators (`{0}`, `{1}`... are the operands)."""

    and_: str
    or_: str
    not_: str
    ite: str


PYTHON = Syntax(" and ", " or ", "(not {0})", "({1} if {0} else {2})")
C = Syntax(" && ", " || ", "(!{0})", "({0} ? {1} : {2})")
CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<="}


class Renderer:
    """Source text for `Expr`s in one target language: the one place operators are spelled.

    `read(e)` spells a `Var` or `Next`; `names` maps subterms already held in local
    variables; subclasses may spell some nodes differently by overriding `node`.
    """

    def __init__(self, syntax: Syntax, read: Callable[[Var | Next], str]) -> None:
        self.syntax = syntax
        self.read = read
        self.names: dict[Expr, str] = {}

    def expr(self, e: Expr) -> str:
        if e in self.names:
            return self.names[e]
        if isinstance(e, Const):
            return str(e.value)
        if isinstance(e, Var | Next):
            return self.read(e)
        return self.node(e)

    def node(self, e: Op) -> str:
        k, syn = e.kind, self.syntax
        args = [self.expr(a) for a in e.args]
        if k == "and":
            return "(" + syn.and_.join(args) + ")"
        if k == "or":
            return "(" + syn.or_.join(args) + ")"
        if k == "not":
            return syn.not_.format(*args)
        if k == "ite":
            return syn.ite.format(*args)
        if k == "add":
            return "(" + " + ".join(args) + ")"
        return f"({args[0]} {CMP[k]} {args[1]})"


def to_python(e: Expr, pre: str = "s", post: str = "t") -> str:
    """Python source computing `e`; variables read from the tuples named `pre`/`post`."""
    return Renderer(PYTHON, lambda v: f"{pre if isinstance(v, Var) else post}[{v.index}]").expr(e)


def variables(e: Expr) -> frozenset[int]:
    """Indices of the pre-state variables that `e` reads."""
    if isinstance(e, Var):
        return frozenset({e.index})
    if isinstance(e, Op):
        return frozenset().union(*(variables(a) for a in e.args))
    return frozenset()


class SymState:
    """A state under construction by an effect: variable -> term over the pre-state.

    Effects are written as sequential updates (`s[i] = ite(...)`); each read sees
    the earlier updates, and each stored term refers only to pre-state variables,
    so the finished mapping is a simultaneous assignment.
    """

    def __init__(self) -> None:
        self._cur: dict[int, Expr] = {}

    def __getitem__(self, index: int) -> Expr:
        return self._cur.get(index, Var(index))

    def __setitem__(self, index: int, value: Expr | int) -> None:
        value = lift(value)
        if value == Var(index):
            self._cur.pop(index, None)
        else:
            self._cur[index] = value

    def updates(self) -> Mapping[int, Expr]:
        return dict(sorted(self._cur.items()))
