"""An unbounded proof where the explicit engine gives out.

The seed with a fourth identical process has about 7.5 million states even
under symmetry reduction (benchmarks/symbolic.py, Part 2, fan-in-4x3); here the
explicit engine is capped at 200,000 states and so decides nothing, while the
Houdini invariant proves deadlock_free by its three re-checked z3 queries. The
same route fails under pre-fix, where this configuration deadlocks.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lockstep.model import Model, find_scenario
from lockstep.model.explicit import Explorer
from lockstep.model.induction import Checker, Verdict, candidates
from lockstep.model.properties import CATALOGUE, get

CAP = 200_000


def four_processes(policy: str) -> Model:
    seed = find_scenario("seed")
    assert len(set(seed.processes)) == 1
    return Model(replace(seed, name="seed-4", processes=seed.processes[:1] * 4), policy)


def prove(model: Model) -> Verdict:
    c = Checker(model)
    props = {p.name for p in CATALOGUE}
    inv = c.houdini([lem for lem in candidates(model) if lem.name not in props])
    return c.check(inv, get("deadlock_free"))


@pytest.mark.parametrize("policy", ["guix", "release-on-done"])
def test_deadlock_free_proved_beyond_the_explicit_cap(policy: str) -> None:
    m = four_processes(policy)
    ex = Explorer(m).explore(max_states=CAP)
    assert not ex.complete and ex.states >= CAP
    assert ex.results["deadlock_free"].result == "unknown"
    v = prove(m)
    assert v.ok, v.cti
    names = {lem.name for lem in v.lemmas}
    assert {k for k in v.cores if k.startswith("consecution:")} == {f"consecution:{n}" for n in names}
    used = set(v.cores["safety:deadlock_free"])
    assert used <= names
    # the lock discipline of the fourth process is part of the argument
    assert any(n.startswith("owner_running[") and n.endswith(",P4]") for n in used)


def test_same_route_fails_where_it_deadlocks() -> None:
    m = four_processes("pre-fix")
    v = prove(m)
    assert not v.ok and v.cti is not None and (v.cti.check, v.cti.lemma) == ("safety", "deadlock_free")
    assert m.is_deadlock(v.cti.pre)
