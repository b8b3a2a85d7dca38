"""Symmetry reduction: fewer states, the same verdicts, shortest traces that replay.

Identical processes (same request, max_jobs, keep_going) are interchangeable, so
the engine may keep one representative per orbit. That must never change a
verdict or the length of a shortest counterexample (permutations preserve the
distance from the initial state, which is symmetric), and the traces it returns
are mapped back to concrete processes: they must replay through the model as
they are.
"""

from __future__ import annotations

import pytest

from lockstep.model import POLICIES, Model
from lockstep.model.explicit import Exploration, Explorer

from .support import SMALL, assert_witness, has_symmetry, scenario, verdicts

CASES = [(n, p) for n in SMALL for p in POLICIES]


def both(name: str, policy: str) -> tuple[Model, Exploration, Exploration]:
    model = Model(scenario(name), policy)
    with_sym = Explorer(model, symmetry=True).explore()
    without = Explorer(model, symmetry=False).explore()
    assert with_sym.complete and without.complete
    assert with_sym.symmetry and not without.symmetry
    return model, with_sym, without


@pytest.mark.parametrize(("name", "policy"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_symmetry_keeps_verdicts_and_saves_states(name: str, policy: str) -> None:
    model, sym, plain = both(name, policy)
    assert sym.states <= plain.states and sym.transitions <= plain.transitions
    if has_symmetry(model.scenario):
        assert sym.states < plain.states, "identical processes, yet no state saved"
    else:
        assert (sym.states, sym.transitions) == (plain.states, plain.transitions)
    assert sym.depth == plain.depth
    # same verdict for every property, and counterexamples of the same (shortest) length
    assert verdicts(sym.results) == verdicts(plain.results)
    for prop, r in sym.results.items():
        if r.trace is not None:
            assert_witness(model, prop, r)


def test_symmetry_on_wider_fan_in() -> None:
    """fan-in: two identical processes; symmetry keeps about half of the states."""
    model, sym, plain = both("fan-in", "guix")
    assert verdicts(sym.results) == verdicts(plain.results)
    assert plain.states / 2 <= sym.states < plain.states


def test_symmetric_trace_of_a_deadlock_replays() -> None:
    """Z12: the hang-keep-going deadlock under guix, found with symmetry, replays concretely."""
    model, sym, plain = both("hang-keep-going", "guix")
    for ex in (sym, plain):
        r = ex.results["deadlock_free"]
        assert r.result == "violated"
        assert_witness(model, "deadlock_free", r)
        assert r.trace is not None
        assert model.wait_for(r.trace.last).is_single_cycle_through({1, 2})
