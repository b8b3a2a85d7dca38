"""Compiles a model's transitions and properties to Python functions over packed states.

The explicit engine's inner loop runs generated code. A state is packed into one
Python int (each variable a bit field, the first variable in the highest bits,
so comparing packed blocks compares them lexicographically); ints hash and
compare far faster than tuples. The code is generated from the same `Expr`
trees that `Model.next_state` interprets and the z3 engine lowers; tests check
that compiled and interpreted steps agree on every reachable state of small
scenarios.

Code shape: a decision tree that switches on the variable most guards test for
equality (usually a goal's state), equality conjuncts fused into one mask test,
subterms shared by many guards computed once per state, and each effect as one
mask-and-or over the packed int.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .expr import PYTHON, Const, Expr, Next, Op, Renderer, Var
from .machine import Model
from .properties import CATALOGUE
from .rules import Transition
from .state import Layout

Packed = int
Successors = Callable[[Packed], list[tuple[int, Packed]]]
Predicate = Callable[[Packed], bool]
StepCheck = Callable[[Packed, Packed], bool]


class Packing:
    """Bit layout of a state: variable i occupies `width[i]` bits at `offset[i]`."""

    def __init__(self, layout: Layout) -> None:
        self.width = [max(1, (d - 1).bit_length()) for d in layout.domains]
        n = len(self.width)
        self.offset = [0] * n
        acc = 0
        for i in range(n - 1, -1, -1):
            self.offset[i] = acc
            acc += self.width[i]
        self.bits = acc
        self.all = (1 << acc) - 1

    def field(self, i: int) -> int:
        return ((1 << self.width[i]) - 1) << self.offset[i]

    def pack(self, s: Sequence[int]) -> Packed:
        x = 0
        for i, v in enumerate(s):
            x |= v << self.offset[i]
        return x

    def unpack(self, x: Packed) -> tuple[int, ...]:
        return tuple((x >> o) & ((1 << w) - 1) for o, w in zip(self.offset, self.width, strict=True))

    def read(self, i: int, name: str = "s") -> str:
        mask = (1 << self.width[i]) - 1
        return f"({name} >> {self.offset[i]} & {mask})" if self.offset[i] else f"({name} & {mask})"

    def range_mask(self, start: int, end: int) -> tuple[int, int]:
        """(shift, mask) of the contiguous variables start..end-1."""
        lo = self.offset[end - 1]
        hi = self.offset[start] + self.width[start]
        return lo, (1 << (hi - lo)) - 1


def cost(e: Expr) -> int:
    if isinstance(e, Const | Var | Next):
        return 1
    return 1 + sum(cost(a) for a in e.args)


def cheapest_first(e: Expr) -> Expr:
    if isinstance(e, Op):
        args = tuple(cheapest_first(a) for a in e.args)
        if e.kind in ("and", "or"):
            args = tuple(sorted(args, key=cost))
        return Op(e.kind, args)
    return e


def conjuncts(e: Expr) -> list[Expr]:
    return list(e.args) if isinstance(e, Op) and e.kind == "and" else [e]


def _eq_var(e: Expr) -> tuple[int, int] | None:
    """(i, c) if `e` is `s[i] == c`."""
    if isinstance(e, Op) and e.kind == "eq":
        a, b = e.args
        if isinstance(a, Var) and isinstance(b, Const):
            return a.index, b.value
        if isinstance(b, Var) and isinstance(a, Const):
            return b.index, a.value
    return None


class Emitter(Renderer):
    """Python source for `Expr`s over packed states `s` (pre) and `t` (post)."""

    def __init__(self, packing: Packing) -> None:
        super().__init__(PYTHON, lambda v: packing.read(v.index, "s" if isinstance(v, Var) else "t"))
        self.pk = packing

    def node(self, e: Op) -> str:
        return self.conj(list(e.args)) if e.kind == "and" else super().node(e)

    def conj(self, cs: list[Expr]) -> str:
        """A conjunction, with its `s[i] == c` conjuncts fused into one mask test."""
        mask = value = 0
        rest: list[Expr] = []
        for c in cs:
            ev = _eq_var(c) if c not in self.names else None
            if ev is not None:
                i, v = ev
                mask |= self.pk.field(i)
                value |= v << self.pk.offset[i]
            else:
                rest.append(c)
        parts = [f"(s & {mask}) == {value}"] if mask else []
        parts += [self.expr(c) for c in sorted(rest, key=cost)]
        if not parts:
            return "True"
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def effect(self, updates: dict[int, Expr]) -> str:
        keep = self.pk.all
        const = 0
        terms: list[str] = []
        for i, e in updates.items():
            keep &= ~self.pk.field(i)
            if isinstance(e, Const):
                const |= e.value << self.pk.offset[i]
            else:
                off = self.pk.offset[i]
                terms.append(f"({self.expr(e)} << {off})" if off else self.expr(e))
        return " | ".join([f"(s & {keep})"] + ([str(const)] if const else []) + terms)


def shared_subexpressions(exprs: Sequence[Expr], min_cost: int = 8, min_uses: int = 3) -> list[Expr]:
    """Costly subterms used by several guards: worth computing once per state."""
    uses: dict[Expr, int] = {}

    def walk(e: Expr) -> None:
        if isinstance(e, Op):
            if cost(e) >= min_cost:
                uses[e] = uses.get(e, 0) + 1
            for a in e.args:
                walk(a)

    for e in exprs:
        walk(e)
    return sorted((e for e, n in uses.items() if n >= min_uses), key=cost)


Item = tuple[int, Transition, list[Expr]]


def split(items: list[Item], depth: int, max_depth: int) -> tuple[int, dict[int, list[Item]], list[Item]] | None:
    """One level of a guard decision tree: the variable most guards test for equality,
    the guards grouped by the value they require (that conjunct removed), and the rest.
    None when no variable is tested by two guards or the tree is deep enough."""
    counts: dict[int, int] = {}
    for _, _, cs in items:
        for i in {ev[0] for c in cs if (ev := _eq_var(c)) is not None}:
            counts[i] = counts.get(i, 0) + 1
    best = max(counts, key=lambda i: (counts[i], -i), default=None)
    if best is None or counts[best] < 2 or depth > max_depth:
        return None
    groups: dict[int, list[Item]] = {}
    rest: list[Item] = []
    for k, t, cs in items:
        hit = next((c for c in cs if (ev := _eq_var(c)) is not None and ev[0] == best), None)
        if hit is None:
            rest.append((k, t, cs))
        else:
            ev = _eq_var(hit)
            assert ev is not None
            groups.setdefault(ev[1], []).append((k, t, [c for c in cs if c is not hit]))
    return best, groups, rest


def _emit(em: Emitter, items: list[Item], indent: str, depth: int, lines: list[str]) -> None:
    cut = split(items, depth, 4)
    if cut is None:
        for item in items:
            _emit_one(em, item, indent, lines)
        return
    best, groups, rest = cut
    var = f"v{depth}"
    lines.append(f"{indent}{var} = {em.pk.read(best)}")
    for n, (value, group) in enumerate(sorted(groups.items())):
        lines.append(f"{indent}{'if' if n == 0 else 'elif'} {var} == {value}:")
        _emit(em, group, indent + "    ", depth + 1, lines)
    for item in rest:
        _emit_one(em, item, indent, lines)


def _emit_one(em: Emitter, item: Item, indent: str, lines: list[str]) -> None:
    k, t, cs = item
    lines.append(f"{indent}if {em.conj(cs)}:")
    lines.append(f"{indent}    t = {em.effect(t.updates)}")
    lines.append(f"{indent}    if t != s: out.append(({k}, t))")


def successors_source(transitions: Sequence[Transition], packing: Packing) -> str:
    em = Emitter(packing)
    items = [(k, t, conjuncts(t.guard)) for k, t in enumerate(transitions) if not t.stutter]
    lines = ["def successors(s):", "    out = []"]
    for n, e in enumerate(shared_subexpressions([t.guard for t in transitions if not t.stutter])):
        lines.append(f"    c{n} = {em.expr(e)}")
        em.names[e] = f"c{n}"
    _emit(em, items, "    ", 0, lines)
    lines.append("    return out")
    return "\n".join(lines) + "\n"


def _compile(src: str, name: str) -> Callable[..., object]:
    namespace: dict[str, object] = {}
    exec(compile(src, f"<lockstep:{name}>", "exec"), namespace)  # noqa: S102 - generated from Expr trees
    fn = namespace[name]
    assert callable(fn)
    return fn


class Compiled:
    """The compiled forms of one model: successors and every property's checks, over packed states."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.packing = pk = Packing(model.layout)
        ts = model.transitions
        self.successors: Successors = _compile(successors_source(ts, pk), "successors")  # type: ignore[assignment]
        self.state_checks: dict[str, Predicate] = {}
        self.step_checks: dict[str, dict[int, StepCheck]] = {}
        for prop in CATALOGUE:
            if prop.state is not None:
                self.state_checks[prop.name] = self.predicate(prop.state(model.rules, ts), prop.name)
            if prop.step is not None:
                checks: dict[int, StepCheck] = {}
                for k, t in enumerate(ts):
                    e = prop.step(model.rules, t)
                    if e == Const(1 if prop.kind == "always" else 0):
                        continue  # decided whatever the states: holds (always) or never (sometimes)
                    src = f"def step(s, t):\n    return bool({Emitter(pk).expr(cheapest_first(e))})\n"
                    checks[k] = _compile(src, "step")  # type: ignore[assignment]
                self.step_checks[prop.name] = checks
        running = Op("or", tuple(Op("eq", (Var(model.layout.index[("status", p)]), Const(0)))
                                 for p in range(len(model.scenario.processes))) + (Const(0),))
        self.someone_running = self.predicate(running, "someone_running")

    def predicate(self, e: Expr, name: str = "pred") -> Predicate:
        src = f"def {name}(s):\n    return bool({Emitter(self.packing).expr(cheapest_first(e))})\n"
        return _compile(src, name)  # type: ignore[return-value]
