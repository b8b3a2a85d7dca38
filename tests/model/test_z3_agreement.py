"""z3's transition relation is the concrete one, and z3's verdicts are the explicit engine's.

The relation is checked on (state, transition) pairs Hypothesis draws: a state
reached by a random walk from the initial state (or, less often, any state in
the layout's domains), and any grounded transition, enabled or not.
"""

from __future__ import annotations

from functools import cache

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.model import Model, load_scenario
from lockstep.model.explicit import Explorer
from lockstep.model.rules import POLICIES
from lockstep.model.scenario import builtin_scenarios
from lockstep.model.symbolic import check
from lockstep.model.z3lower import Lowering

SCENARIOS = sorted(builtin_scenarios())


class Relation:
    """trans(x, y, act) with stutters, in one solver; x and act fixed per query."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.low = Lowering(model)
        self.x, self.y, self.act = self.low.vector("x"), self.low.vector("y"), self.low.selector("x")
        self.solver = z3.SolverFor("QF_LIA")
        self.solver.add(self.low.trans(self.x, self.y, self.act, stutters=True))

    def successors(self, s: tuple[int, ...], k: int) -> list[tuple[int, ...]]:
        """Every post-state z3 allows from s by transition k (at most two, to show uniqueness)."""
        out: list[tuple[int, ...]] = []
        self.solver.push()
        self.solver.add(self.low.state(self.x, s), self.act == k)
        while len(out) < 2 and self.solver.check() == z3.sat:
            t = self.low.read(self.solver.model(), self.y)
            out.append(t)
            self.solver.add(z3.Not(self.low.state(self.y, t)))
        self.solver.pop()
        return out


@cache
def relation(name: str, policy: str) -> Relation:
    return Relation(Model(load_scenario(builtin_scenarios()[name]), policy))


@st.composite
def state_and_transition(draw: st.DrawFn, rel: Relation) -> tuple[tuple[int, ...], int]:
    m = rel.model
    if draw(st.integers(0, 4)) == 0:
        s = tuple(draw(st.integers(0, d - 1)) for d in m.layout.domains)
    else:
        s = m.init_state()
        for _ in range(draw(st.integers(0, 30))):
            enabled = m.enabled(s)
            if not enabled:
                break
            nxt = m.next_state(s, draw(st.sampled_from(enabled)))
            assert nxt is not None
            s = nxt
    return s, draw(st.integers(0, len(m.transitions) - 1))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", SCENARIOS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_z3_relation_is_the_concrete_step(name: str, policy: str, data: st.DataObject) -> None:
    rel = relation(name, policy)
    s, k = data.draw(state_and_transition(rel))
    concrete = rel.model.next_state(s, rel.model.transitions[k].action)
    assert rel.successors(s, k) == ([] if concrete is None else [concrete])


def small(name: str, policy: str, limit: int = 2_000) -> tuple[Model, int, dict[str, tuple[str, int | None]]] | None:
    m = Model(load_scenario(builtin_scenarios()[name]), policy)
    ex = Explorer(m).explore(max_states=limit)
    if not ex.complete:
        return None
    return m, ex.depth, {n: (r.result, len(r.trace) if r.trace else None) for n, r in ex.results.items()}


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", SCENARIOS)
def test_z3_verdicts_agree_with_explicit(name: str, policy: str) -> None:
    """Every decided z3 verdict is the explicit one; violations and witnesses have BFS's length.

    Induction first, then BMC one step past the explicit engine's deepest
    state: there every path has ended or repeats, so BMC settles the rest.
    """
    got = small(name, policy)
    if got is None:
        pytest.skip(f"{name}: the explicit engine needs more than 2000 states")
    m, depth, explicit = got
    results = check(m, method="induction") + check(m, depth=depth + 1, method="bmc", seconds=5)
    for r in results:
        if r.result == "unknown":
            continue
        assert r.result == explicit[r.name][0], r.name
        if r.trace is not None:
            assert len(r.trace) == explicit[r.name][1] == r.depth, r.name
