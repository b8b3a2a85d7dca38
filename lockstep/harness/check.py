"""`lockstep check`: run one engine over one model and report per property.

Every engine answers with `CheckRow`s, one per property, carrying the fields of
DESIGN section 8's JSON. Engines are imported lazily so that a missing optional
engine reports itself instead of breaking the command.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Model
from ..model.explicit import Explorer
from ..model.properties import CATALOGUE
from ..model.trace import Trace

ENGINES = ("explicit", "z3", "hypothesis", "impl", "all")


@dataclass
class CheckRow:
    scenario: str
    policy: str
    engine: str
    prop: str
    kind: str
    result: str
    trace: Trace | None = None
    states: int | None = None
    transitions: int | None = None
    depth: int | None = None
    seconds: float = 0.0
    reason: str = ""
    method: str | None = None
    complete: bool | None = None
    symmetry: bool | None = None
    trace_file: str | None = None
    extra: dict[str, Any] | None = None

    @property
    def trace_length(self) -> int | None:
        return len(self.trace) if self.trace is not None else None

    def to_json(self) -> dict[str, Any]:
        out = {
            "scenario": self.scenario, "policy": self.policy, "engine": self.engine,
            "property": self.prop, "kind": self.kind, "result": self.result,
            "trace_length": self.trace_length, "states": self.states, "transitions": self.transitions,
            "depth": self.depth, "seconds": round(self.seconds, 4), "trace_file": self.trace_file,
        }
        for key in ("method", "complete", "symmetry"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.reason:
            out["reason"] = self.reason
        if self.extra:
            out.update(self.extra)
        return out


def _selected(props: Sequence[str] | None) -> list[str]:
    return [p.name for p in CATALOGUE if props is None or p.name in props]


def check_explicit(model: Model, props: Sequence[str] | None, symmetry: bool,
                   max_states: int | None) -> list[CheckRow]:
    ex = Explorer(model, symmetry=symmetry).explore(max_states=max_states)
    rows = []
    for name in _selected(props):
        r = ex.results[name]
        rows.append(CheckRow(model.scenario.name, model.policy, "explicit", name, r.kind, r.result,
                             r.trace, ex.states, ex.transitions, ex.depth, ex.seconds, r.reason,
                             complete=ex.complete, symmetry=symmetry))
    return rows


def check_symbolic(model: Model, props: Sequence[str] | None, depth: int,
                   method: str = "auto") -> list[CheckRow]:
    try:
        symbolic = importlib.import_module("lockstep.model.symbolic")
    except ModuleNotFoundError:
        raise NotImplementedError("the z3 engine is not installed in this checkout") from None
    return [CheckRow(model.scenario.name, model.policy, "z3", r.name, r.kind, r.result, r.trace,
                     depth=r.depth, seconds=r.seconds, reason=r.reason, method=r.method,
                     extra={"shortest": r.shortest} if r.trace is not None else None)
            for r in symbolic.check(model, _selected(props), depth=depth, method=method)]


def check_walks(model: Model, props: Sequence[str] | None, depth: int) -> list[CheckRow]:
    from ..model.walks import random_walks

    res = random_walks(model, _selected(props), max_steps=max(depth, 60))
    return [CheckRow(model.scenario.name, model.policy, "hypothesis", r.name, r.kind, r.result, r.trace,
                     seconds=r.seconds, reason=r.reason, extra={"examples": r.examples})
            for r in res]


def check_impl(model: Model, props: Sequence[str] | None, depth: int) -> list[CheckRow]:
    try:
        refinement = importlib.import_module("lockstep.harness.refinement")
    except ModuleNotFoundError:
        raise NotImplementedError("the refinement engine (issue 6) is not built yet") from None
    rows: list[CheckRow] = refinement.check(model, _selected(props), depth=depth)
    return rows


def run_check(model: Model, engine: str, props: Sequence[str] | None, depth: int = 40,
              symmetry: bool = True, max_states: int | None = None, method: str = "auto") -> list[CheckRow]:
    if engine == "explicit":
        return check_explicit(model, props, symmetry, max_states)
    if engine == "z3":
        return check_symbolic(model, props, depth, method)
    if engine == "hypothesis":
        return check_walks(model, props, depth)
    if engine == "impl":
        return check_impl(model, props, depth)
    raise ValueError(f"engine {engine!r}: unknown; use one of {', '.join(ENGINES)}")
