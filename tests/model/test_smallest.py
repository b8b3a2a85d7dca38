"""Smallest counterexamples by enumeration (lockstep.model.smallest).

The search checks every scenario in size order with the explicit engine, so the
first deadlock it meets is a smallest one within the bounds. The bounds here are
narrowed (no substitutes; builders ok and hang without inputs, or hang with
inputs) to keep each test to a few seconds; benchmarks/smallest.py runs wider ones.
"""

from __future__ import annotations

import itertools

import pytest

from lockstep.model import Model, Scenario, parse_scenario
from lockstep.model.explicit import Explorer, PropertyResult
from lockstep.model.scenario import BUILDERS, SUBSTITUTES, Derivation, Process, builtin_scenarios
from lockstep.model.smallest import (
    Bounds,
    Code,
    code_of,
    enumerate_codes,
    enumerate_scenarios,
    exhaustive,
    size_key,
    smallest_violation,
    to_toml,
)

from .support import assert_witness, scenario

# Every scenario of at most 2 processes and 2 derivations whose builders build or
# hang, with or without keep_going, without inputs: 51 scenarios, a few seconds.
QUICK = Bounds(processes=2, derivations=2, builders=("ok", "hang"), substitutes=(), inputs=False)
# Hanging builders, any DAG of inputs: 39 scenarios.
DAG = Bounds(processes=2, derivations=2, builders=("hang",), substitutes=())
# Wider bounds (every builder and substitute outcome, 2 outputs, max_jobs 0..2, 3
# processes) take minutes: benchmarks/smallest.py.


def test_tiny_counts_by_hand() -> None:
    # One derivation: builder ok|fail|hang or substitutable with ok|fail (builder
    # unread) = 5 kinds; a process requests it, keep_going or not = 2 kinds.
    # 1 process: 5 * 2 = 10. 2 processes: 5 * (multisets of 2 of 2 kinds = 3) = 15.
    assert sum(1 for _ in enumerate_codes(Bounds(processes=1, derivations=1))) == 10
    assert sum(1 for _ in enumerate_codes(Bounds(processes=2, derivations=1))) == 10 + 15
    # Two derivations, one process. No edge: the request must be {d1, d2} (every
    # derivation is requested or an input); the pair is a multiset of the 5 kinds
    # (15), times keep_going (2) = 30. Edge d2 -> d1: d2 has inputs, so it is not
    # substitutable (3 builders), d1 any of 5 kinds = 15; requests covering both
    # are {d2} and {d1, d2}, times keep_going = 4; 15 * 4 = 60. Total 90 + 10.
    assert sum(1 for _ in enumerate_codes(Bounds(processes=1, derivations=2))) == 10 + 90


def _reduced(scn: Scenario) -> bool:
    """The enumeration's three reductions, restated on a scenario."""
    reached = set().union(*(scn.closure(p.request) for p in scn.processes))
    if reached != {d.name for d in scn.derivations}:
        return False
    if any(d.substitutable and (d.inputs or d.builder != "ok") for d in scn.derivations):
        return False
    for p in scn.processes:
        cap = sum(len(scn.drv(n).outputs) if scn.drv(n).substitutable else 1 for n in scn.closure(p.request))
        if p.max_jobs > cap:
            return False
    return True


def _acyclic(drvs: tuple[Derivation, ...]) -> bool:
    inputs = {d.name: d.inputs for d in drvs}
    done: set[str] = set()
    while len(done) < len(inputs):
        ready = [n for n, ins in inputs.items() if n not in done and set(ins) <= done]
        if not ready:
            return False
        done.update(ready)
    return True


def _brute(b: Bounds) -> set[Code]:
    """Canonical codes of every labelled scenario within `b` (every naming, order, DAG), reduced."""
    out: set[Code] = set()
    kinds = [(False, "ok", x) for x in b.builders] + [(True, s, x) for s in b.substitutes for x in BUILDERS]
    for nd in range(1, b.derivations + 1):
        names = [f"x{nd - i}" for i in range(nd)]  # not in the enumeration's order
        edges = [(a, c) for a in names for c in names if a != c]
        for chosen in itertools.product((False, True), repeat=len(edges) if b.inputs else 0):
            on = [e for e, x in zip(edges, chosen, strict=False) if x]
            for ks in itertools.product(kinds, repeat=nd):
                for outs in itertools.product(range(1, b.outputs + 1), repeat=nd):
                    drvs = tuple(Derivation(n, tuple(c for a, c in on if a == n), tuple(f"y{k}" for k in range(o)),
                                            sub, st, bl)
                                 for n, (sub, st, bl), o in zip(names, ks, outs, strict=True))
                    if not _acyclic(drvs):
                        continue
                    requests = [r for k in range(1, nd + 1) for r in itertools.permutations(names, k)]
                    procs = [Process(r, m, g) for r in requests for m in b.max_jobs for g in b.keep_going]
                    for np in range(1, b.processes + 1):
                        for ps in itertools.product(procs, repeat=np):
                            scn = Scenario("raw", "", drvs, ps)
                            if _reduced(scn):
                                out.add(code_of(scn))
    return out


@pytest.mark.parametrize("bounds", [
    Bounds(processes=2, derivations=2, substitutes=("fail",), builders=("ok", "hang")),
    Bounds(processes=2, derivations=1, outputs=2, max_jobs=(0, 1, 2)),
], ids=["2x2", "2x1-outputs-jobs"])
def test_enumeration_is_one_per_class(bounds: Bounds) -> None:
    codes = list(enumerate_codes(bounds))
    assert len(set(codes)) == len(codes), "two enumerated scenarios are equal after canonical renaming"
    scns = list(enumerate_scenarios(bounds))
    assert [code_of(s) for s in scns] == codes, "an enumerated scenario is not in its canonical form"
    keys = [size_key(c) for c in codes]
    assert keys == sorted(keys), "not in size order"
    # Every scenario within the bounds, however named and ordered, is one of them
    # once the reductions apply (max_jobs capped: a capped value is within these bounds).
    assert _brute(bounds) == set(codes)


def test_reductions_keep_the_state_graph() -> None:
    """A substitutable derivation's builder and inputs, and a max_jobs above the capacity, are never read."""
    def explored(scn: Scenario) -> tuple[int, int, str]:
        ex = Explorer(Model(scn, "guix"), backend="python").explore()
        return ex.states, ex.transitions, ex.results["deadlock_free"].result

    def scn(builder: str, inputs: tuple[str, ...], max_jobs: int) -> Scenario:
        drvs = (Derivation("a", builder="hang"), Derivation("b", inputs, substitutable=True, substitute="fail",
                                                            builder=builder))
        return Scenario("r", "", drvs, (Process(("a", "b"), max_jobs, True),) * 2)

    base = explored(scn("ok", (), 2))  # capacity 2: a builds, b's one output substitutes
    assert explored(scn("hang", (), 2)) == base
    assert explored(scn("ok", ("a",), 2)) == base
    assert explored(scn("ok", (), 7)) == base
    assert explored(scn("ok", (), 1)) != base  # below the capacity max_jobs is read


def test_toml_round_trip() -> None:
    scns = [scenario(n) for n in builtin_scenarios()]
    scns += list(enumerate_scenarios(Bounds(processes=2, derivations=2, outputs=2, max_jobs=(1, 2))))[::97]
    for scn in scns:
        assert parse_scenario(to_toml(scn), "round-trip") == scn, scn.name


def test_bounds_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="derivations = 10"):
        Bounds(derivations=10)
    with pytest.raises(ValueError, match="not an always property"):
        smallest_violation("guix", "lock_contended", Bounds(processes=1, derivations=1))
    assert set(SUBSTITUTES) == set(Bounds().substitutes)


def _smallest_deadlock(policy: str, bounds: Bounds) -> tuple[Scenario, int]:
    found = smallest_violation(policy, "deadlock_free", bounds)
    assert found is not None, f"{policy}: no deadlock within {bounds}"
    assert_witness(found.model, "deadlock_free", PropertyResult("deadlock_free", "always", "violated", found.trace))
    assert found.model.wait_for(found.trace.last).cycle() is not None
    return found.scenario, len(found.trace)


def _shortest(scn: Scenario, policy: str) -> int:
    trace = Explorer(Model(scn, policy), backend="python").explore().results["deadlock_free"].trace
    assert trace is not None
    return len(trace)


@pytest.mark.parametrize("bounds", [QUICK, DAG], ids=["quick", "dag"])
@pytest.mark.parametrize("policy", ["guix", "pre-fix"])
def test_smallest_deadlock_is_hang_keep_going(policy: str, bounds: Bounds) -> None:
    """Pinned finding: under guix and under pre-fix alike, the first deadlock in size
    order is specs/scenarios/hang-keep-going.toml up to renaming (docs/proofs.md argued
    it smallest for guix); pre-fix's extra kept locks (Beaten) give no smaller one."""
    found, steps = _smallest_deadlock(policy, bounds)
    hkg = scenario("hang-keep-going")
    assert code_of(found) == code_of(hkg), to_toml(found)
    assert steps == _shortest(hkg, policy)


@pytest.mark.parametrize("bounds", [QUICK, DAG], ids=["quick", "dag"])
def test_release_on_done_never_deadlocks_within_bounds(bounds: Bounds) -> None:
    """A bounded cross-check of the every-size claim for release-on-done."""
    tally = exhaustive("release-on-done", "deadlock_free", bounds)
    assert tally.checked == sum(1 for _ in enumerate_codes(bounds))
    assert tally.violations == 0, [to_toml(s) for s in tally.violating]


# Builders that only succeed, no keep-going: the setting of Guix bug 31785 (the seed).
BUG_31785 = Bounds(processes=3, derivations=2, builders=("ok",), substitutes=(), keep_going=(False,))
# Pinned finding: the smallest pre-fix deadlock in that setting. Three processes
# each request two independent derivations; the seed needs four derivations.
PRE_FIX_MINIMAL = """
name = "pre-fix-minimal"
[derivations.a]
[derivations.b]
[[processes]]
request = ["b", "a"]
count = 3
"""


def test_smallest_bug_31785_deadlock() -> None:
    """pre-fix deadlocks with three processes and two derivations; guix (which releases
    a beaten goal's lock) never does within the same bounds."""
    found, steps = _smallest_deadlock("pre-fix", BUG_31785)
    pinned = parse_scenario(PRE_FIX_MINIMAL, "pinned")
    assert code_of(found) == code_of(pinned), to_toml(found)
    assert steps == _shortest(pinned, "pre-fix")
    assert smallest_violation("guix", "deadlock_free", BUG_31785) is None
