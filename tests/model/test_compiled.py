"""The compiled model agrees with the interpreted one on every reachable state.

`Compiled(model).successors` is generated Python over packed ints; `Model.enabled`
and `Model.next_state` interpret the same `Expr` trees. On every state reachable
in a small scenario (found by the interpreter alone, without symmetry) the two
must give the same (action, next state) pairs, leaving out stutters (failed lock
attempts, which change nothing), and the deadlock predicate `properties.deadlocked`
(through `Model.is_deadlock`) must agree with the engine's own test: no successor
while some process runs. The compiled property checks agree with `Model.holds`.
"""

from __future__ import annotations

import pytest

from lockstep.model import POLICIES, Model
from lockstep.model import actions as A
from lockstep.model.compile import Compiled
from lockstep.model.explicit import Explorer
from lockstep.model.expr import evaluate
from lockstep.model.properties import CATALOGUE
from lockstep.model.state import Status

from .support import TINY, scenario

State = tuple[int, ...]

CASES: list[tuple[str, str, frozenset[str]]] = [(n, p, frozenset()) for n in TINY for p in POLICIES] + [
    ("multi-output", "guix", frozenset({"build-without-lock"})),
    ("multi-output", "guix", frozenset({"forget-unlock-after-build"})),
    ("multi-output", "guix", frozenset({"resume-without-relock"})),
]


def interpreted_successors(model: Model, s: State) -> set[tuple[A.Action, State]]:
    out: set[tuple[A.Action, State]] = set()
    for a in model.enabled(s):
        nxt = model.next_state(s, a)
        assert nxt is not None, f"{a} enabled but next_state gives None"
        if a.stutter:
            assert nxt == s, f"stutter {a} changed the state"
            continue
        assert nxt != s, f"{a} is enabled, is not a stutter, and changes nothing"
        out.add((a, nxt))
    return out


def check_agreement(model: Model, note: str = "") -> int:
    """Walk every reachable state with the interpreter, comparing the compiled model at each."""
    c = Compiled(model)
    pk = c.packing
    nprocs = len(model.scenario.processes)
    status = [model.layout.index[("status", p)] for p in range(nprocs)]
    props = [(p.name, p.state(model.rules, model.transitions)) for p in CATALOGUE if p.state is not None]
    init = model.init_state()
    seen = {init}
    order = [init]
    for s in order:
        model.check_state(s)
        x = pk.pack(s)
        assert pk.unpack(x) == s
        compiled = {(model.transitions[k].action, pk.unpack(t)) for k, t in c.successors(x)}
        interp = interpreted_successors(model, s)
        assert compiled == interp, (
            f"{note}state {model.describe(s)}: compiled only {compiled - interp}, "
            f"interpreted only {interp - compiled}")
        running = any(s[i] == Status.RUNNING for i in status)
        assert model.is_deadlock(s) == (not compiled and running), model.describe(s)
        assert c.someone_running(x) == running
        for name, e in props:
            assert c.state_checks[name](x) == bool(evaluate(e, s)), (name, model.describe(s))
        for _, nxt in interp:
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    return len(order)


@pytest.mark.parametrize(("name", "policy", "variants"), CASES,
                         ids=[f"{n}-{p}{'-' + '+'.join(sorted(v)) if v else ''}" for n, p, v in CASES])
def test_compiled_successors_equal_interpreted(name: str, policy: str, variants: frozenset[str]) -> None:
    model = Model(scenario(name), policy, variants)
    n = check_agreement(model)
    # the engine, without symmetry, reaches exactly the states the interpreter reaches
    ex = Explorer(model, symmetry=False).explore()
    assert ex.complete and ex.states == n


def test_compiled_successors_equal_interpreted_with_crashes() -> None:
    model = Model(scenario("hang-stop"), "guix", faults=True)
    assert any(type(t.action).__name__ == "Crash" for t in model.transitions)
    check_agreement(model, "with faults: ")


def test_holds_agrees_with_the_compiled_check() -> None:
    """`Model.holds` (what traces and tests read) is the same predicate the engine compiles."""
    model = Model(scenario("multi-output"), "pre-fix")
    c = Compiled(model)
    ex = Explorer(model, symmetry=False).explore()
    tr = ex.results["no_retained_lock"].trace
    assert tr is not None
    for s in tr.states:
        for name in c.state_checks:
            assert model.holds(name, s) == c.state_checks[name](c.packing.pack(s)), name
