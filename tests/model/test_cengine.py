"""The C backend computes exactly what the Python engine computes."""

from __future__ import annotations

import pytest

from lockstep.model import POLICIES, Model, find_scenario
from lockstep.model.cengine import CModel
from lockstep.model.compile import Compiled
from lockstep.model.explicit import Explorer, make_canon
from lockstep.model.scenario import builtin_scenarios

SMALL = [n for n in builtin_scenarios() if n not in ("seed", "fan-in")]


def summary(ex: object) -> dict[str, tuple[str, int | None]]:
    return {n: (r.result, len(r.trace) if r.trace else None) for n, r in ex.results.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("symmetry", [True, False])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", SMALL)
def test_c_and_python_agree(name: str, policy: str, symmetry: bool) -> None:
    model = Model(find_scenario(name), policy)
    py = Explorer(model, symmetry, backend="python").explore()
    c = Explorer(model, symmetry, backend="c").explore()
    assert (c.states, c.transitions, c.depth, c.complete) == (py.states, py.transitions, py.depth, py.complete)
    assert summary(c) == summary(py)
    for r in c.results.values():
        if r.trace is not None:  # every C trace replays through the interpreted model
            s = model.init_state()
            for a, nxt in zip(r.trace.actions, r.trace.states[1:], strict=True):
                s2 = model.next_state(s, a)
                assert s2 == nxt
                s = s2


@pytest.mark.parametrize("name", SMALL + ["fan-in"])
def test_c_canonical_form_equals_python(name: str) -> None:
    """Both backends pick the same representative, so their state sets coincide."""
    model = Model(find_scenario(name), "pre-fix")
    comp = Compiled(model)
    canon = make_canon(model, comp.packing)
    cm = CModel(model, True)
    ex = Explorer(model, False, backend="python")
    ex.explore(max_states=3000)
    for packed in ex.states:
        s = comp.packing.unpack(packed)
        want = comp.packing.unpack(canon(packed)) if canon else s
        assert cm.decode(cm.canon(cm.encode(s))) == want


def test_max_states_bound_is_reported_incomplete() -> None:
    model = Model(find_scenario("fan-in"), "guix")
    ex = Explorer(model, True, backend="c").explore(max_states=500)
    assert not ex.complete
    assert ex.results["deadlock_free"].result == "unknown"
    assert ex.results["requests_complete"].result == "unknown"
