"""Compiles a model's transitions and properties to Python functions.

The explicit engine's inner loop runs generated code: one function that, for a
state tuple, tests every guard inline and builds each successor tuple. The code
is generated from the same `Expr` trees that `Model.next_state` interprets and
the z3 engine lowers; a test checks compiled and interpreted steps agree.
Conjunctions are reordered cheapest-first (they have no side effects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .expr import Const, Expr, Next, Op, Var, to_python
from .machine import Model, State
from .properties import CATALOGUE
from .rules import Transition

Successors = Callable[[State], list[tuple[int, State]]]
Predicate = Callable[[State], bool]
StepCheck = Callable[[State, State], bool]


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


def _compile(src: str, name: str) -> Callable[..., object]:
    namespace: dict[str, object] = {}
    exec(compile(src, f"<lockstep:{name}>", "exec"), namespace)  # noqa: S102 - generated from Expr trees
    fn = namespace[name]
    assert callable(fn)
    return fn


def successors_source(transitions: Sequence[Transition]) -> str:
    lines = ["def successors(s):", "    out = []"]
    for k, t in enumerate(transitions):
        if t.stutter:
            continue
        lines.append(f"    if {to_python(cheapest_first(t.guard))}:")
        lines.append("        t = list(s)")
        for i, e in t.updates.items():
            lines.append(f"        t[{i}] = {to_python(e)}")
        lines.append("        t = tuple(t)")
        lines.append(f"        if t != s: out.append(({k}, t))")
    lines.append("    return out")
    return "\n".join(lines) + "\n"


def compile_successors(transitions: Sequence[Transition]) -> Successors:
    """s -> [(transition index, next state)] for every enabled, state-changing transition."""
    fn = _compile(successors_source(transitions), "successors")
    return fn  # type: ignore[return-value]


def compile_predicate(e: Expr, name: str = "pred") -> Predicate:
    src = f"def {name}(s):\n    return bool({to_python(cheapest_first(e))})\n"
    return _compile(src, name)  # type: ignore[return-value]


def compile_step(e: Expr, name: str = "step") -> StepCheck:
    src = f"def {name}(s, t):\n    return bool({to_python(cheapest_first(e))})\n"
    return _compile(src, name)  # type: ignore[return-value]


class Compiled:
    """The compiled forms of one model: successors and every property's checks."""

    def __init__(self, model: Model) -> None:
        self.model = model
        ts = model.transitions
        self.successors = compile_successors(ts)
        self.state_checks: dict[str, Predicate] = {}
        self.step_checks: dict[str, dict[int, StepCheck]] = {}
        for prop in CATALOGUE:
            if prop.state is not None:
                self.state_checks[prop.name] = compile_predicate(prop.state(model.rules, ts), prop.name)
            if prop.step is not None:
                checks: dict[int, StepCheck] = {}
                for k, t in enumerate(ts):
                    e = prop.step(model.rules, t)
                    if prop.kind == "always" and e == Const(1):
                        continue  # holds on this transition whatever the states
                    if prop.kind == "sometimes" and e == Const(0):
                        continue
                    checks[k] = compile_step(e, f"{prop.name}_{k}")
                self.step_checks[prop.name] = checks
        statuses = [Var(model.layout.index[("status", p)]) for p in range(len(model.scenario.processes))]
        self.someone_running = compile_predicate(
            Op("or", tuple(Op("eq", (v, Const(0))) for v in statuses)) if len(statuses) > 1
            else Op("eq", (statuses[0], Const(0))), "someone_running")
