"""BMC: shortest counterexamples that replay through the concrete model.

The depth is compared with the explicit engine's breadth-first depth, computed
here rather than pinned. The seed's pre-fix deadlock (depth 21, three
processes) is beyond this BMC in CI time (see docs/proofs.md); the guix
deadlock of `hang-keep-going` is the checked case.
"""

from __future__ import annotations

import pytest

from lockstep.model import Model, find_scenario, load_scenario
from lockstep.model.bmc import bmc, strengthening
from lockstep.model.bmc_steps import parallel_bmc
from lockstep.model.explicit import Explorer
from lockstep.model.properties import CATALOGUE, get
from lockstep.model.scenario import builtin_scenarios
from lockstep.model.symbolic import check
from lockstep.model.trace import replay
from lockstep.model.z3lower import Lowering


@pytest.mark.parametrize("policy", ["pre-fix", "guix"])
def test_bmc_deadlock_at_bfs_depth_with_cycle(policy: str) -> None:
    m = Model(find_scenario("hang-keep-going"), policy)
    explicit = Explorer(m).explore().results["deadlock_free"]
    assert explicit.result == "violated" and explicit.trace is not None
    (r,) = check(m, ["deadlock_free"], method="bmc")
    assert (r.result, r.method) == ("violated", "bmc")
    assert r.trace is not None and len(r.trace) == r.depth == len(explicit.trace)
    again = replay(m, r.trace.to_itf())
    assert again.states == r.trace.states and m.is_deadlock(again.last)
    wf = m.wait_for(again.last)
    assert wf.cycle() == (1, 2) and wf.is_single_cycle_through({1, 2})


def test_release_on_done_fixes_it_for_good() -> None:
    m = Model(find_scenario("hang-keep-going"), "release-on-done")
    (r,) = check(m, ["deadlock_free"], method="induction")
    assert (r.result, r.method) == ("holds", "induction")


def test_seed_pre_fix_shortest_witnesses() -> None:
    """Short seed targets: BMC's depth is BFS's (beaten_to_it 5, no_retained_lock 5, ...)."""
    m = Model(find_scenario("seed"), "pre-fix")
    names = ["no_retained_lock", "lock_contended", "beaten_to_it", "build_runs", "path_registered"]
    found = bmc(m, [get(n) for n in names], depth=6)
    explicit = Explorer(m).explore(max_depth=6).results
    for n in names:
        tr = found[n].found
        assert tr is not None and explicit[n].trace is not None
        assert len(tr) == len(explicit[n].trace), n
        assert replay(m, tr.to_itf()).states == tr.states


@pytest.mark.slow
def test_seed_pre_fix_deadlock_at_bfs_depth() -> None:
    """The seed's pre-fix deadlock: a path of exactly BFS's length, asked at that depth.

    BMC is strengthened with Houdini's inductive invariant and asked only at the
    explicit engine's depth (21): it proves a deadlock exists there and the trace
    replays to a deadlocked state with a wait-for cycle. That no shorter path
    exists is the explicit engine's result here; BMC's own refutation of depths
    1..20 is still too slow (docs/proofs.md, "Limits").
    """
    m = Model(find_scenario("seed"), "pre-fix")
    explicit = Explorer(m).explore().results["deadlock_free"]
    assert explicit.trace is not None
    k = len(explicit.trace)
    found = bmc(m, [get("deadlock_free")], depth=k, bits=Lowering.width(m), lemmas=strengthening(m), first=k)
    o = found["deadlock_free"]
    assert o.found is not None and len(o.found) == o.depth == k and not o.shortest
    again = replay(m, o.found.to_itf())
    assert again.states == o.found.states and m.is_deadlock(again.last)
    wf = m.wait_for(again.last)
    assert wf.cycle() is not None
    # every running process waits on a lock another holds, as in the explicit trace's end
    assert {a for a, _, _ in wf.edges} == {a for a, _, _ in m.wait_for(explicit.trace.states[-1]).edges}


def test_parallel_bmc_finds_the_seed_deadlock() -> None:
    """Foata frames find the seed's pre-fix deadlock without being told the depth.

    With `fewest`, the step count is minimal among paths of the height found,
    and here it equals the explicit engine's shortest depth (21); the frames
    linearise to a trace the concrete model replays to a deadlock with a cycle.
    """
    m = Model(find_scenario("seed"), "pre-fix")
    explicit = Explorer(m).explore().results["deadlock_free"]
    assert explicit.trace is not None
    o = parallel_bmc(m, [get("deadlock_free")], frames=len(explicit.trace), fewest=True)["deadlock_free"]
    assert o.found is not None and len(o.found) == o.depth == len(explicit.trace) and not o.shortest
    again = replay(m, o.found.to_itf())
    assert again.states == o.found.states and m.is_deadlock(again.last)
    assert m.wait_for(again.last).cycle() is not None
    assert bmc(m, [get("deadlock_free")], depth=8, parallel=True)["deadlock_free"].found is not None


@pytest.mark.parametrize("name", ["hang-keep-going", "hang-stop", "multi-output", "substitute-fail"])
@pytest.mark.parametrize("policy", ["pre-fix", "guix"])
def test_parallel_bmc_verdicts_are_the_explicit_engines(name: str, policy: str) -> None:
    """Every state property: found iff the explicit engine finds it, and otherwise proved by completeness."""
    m = Model(load_scenario(builtin_scenarios()[name]), policy)
    explicit = Explorer(m).explore().results
    props = [p for p in CATALOGUE if p.form == "state"]
    found = parallel_bmc(m, props, frames=40)
    for p in props:
        o, e = found[p.name], explicit[p.name]
        assert o.found is not None or o.complete, (p.name, o.reason)
        assert (o.found is not None) == (e.result in ("violated", "reached")), (p.name, e.result, o.reason)
        if o.found is not None:
            assert e.trace is not None and len(o.found) >= len(e.trace)
            assert replay(m, o.found.to_itf()).states == o.found.states


def test_auto_proves_a_short_trace_shortest_and_says_when_it_cannot() -> None:
    """auto: Foata frames find the trace, sequential BMC below its length proves it shortest;
    when the budget runs out first the result says so (`shortest` False, reason)."""
    m = Model(find_scenario("hang-keep-going"), "pre-fix")
    (r,) = check(m, ["deadlock_free"], seconds=20)
    assert (r.result, r.method, r.shortest) == ("violated", "bmc", True)
    assert r.trace is not None and len(r.trace) == 8 and m.is_deadlock(r.trace.last)
    seed = Model(find_scenario("seed"), "pre-fix")
    (r,) = check(seed, ["deadlock_free"], seconds=30)  # finding takes ~1-3 s; refuting 20 depths, hours
    assert (r.result, r.method, r.shortest) == ("violated", "bmc", False)
    assert r.trace is not None and seed.is_deadlock(replay(seed, r.trace.to_itf()).last)
    assert "not proved shortest" in r.reason
