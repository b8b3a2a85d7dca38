"""The seed scenario (Guix bug 31785): issue 2's "Must show" for the explicit engine.

Three daemon processes each request path1..path4 (path4 has inputs path1..path3),
max_jobs 1. Under `pre-fix` a goal that is beaten to a path keeps its lock until
the request ends, and three such locks can close a wait-for cycle (reference
section 8.2); under `guix` and `release-on-done` every property holds.

Each policy's complete exploration runs once per module (and per xdist worker)
through the `seed` fixture; the searches that need a different stopping rule
(the three-way cycle, the depth bound) run their own `Explorer`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lockstep.model import Model
from lockstep.model.compile import Compiled
from lockstep.model.explicit import Exploration, Explorer
from lockstep.model.properties import ALWAYS, SOMETIMES
from lockstep.model.state import GoalState, Holder, Status, Top
from lockstep.model.trace import Trace

from .support import assert_replays, assert_witness, scenario

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("seed")]

PROCS = {1, 2, 3}
LEAVES = ("path1", "path2", "path3")


@pytest.fixture(scope="module")
def seed() -> Callable[[str], tuple[Model, Exploration]]:
    """The complete symmetric exploration of the seed under a policy, computed once."""
    cache: dict[str, tuple[Model, Exploration]] = {}

    def get(policy: str) -> tuple[Model, Exploration]:
        if policy not in cache:
            model = Model(scenario("seed"), policy)
            cache[policy] = (model, Explorer(model, symmetry=True).explore())
        return cache[policy]

    return get


def lock_of(model: Model, s: tuple[int, ...], path: str) -> tuple[int, Holder]:
    lay = model.layout
    return s[lay.index[("lock", path)]], Holder(s[lay.index[("holder", path)]])


def is_valid(model: Model, s: tuple[int, ...], path: str) -> bool:
    return bool(s[model.layout.index[("valid", path)]])


# -- pre-fix: the deadlock ---------------------------------------------------------------


def test_prefix_violates_deadlock_free(seed: Callable[[str], tuple[Model, Exploration]]) -> None:
    model, ex = seed("pre-fix")
    assert ex.complete
    r = ex.results["deadlock_free"]
    assert r.result == "violated"
    assert r.trace is not None and r.trace.prop == "deadlock_free"
    assert_witness(model, "deadlock_free", r)  # replays (next_state and ITF) and ends deadlocked


def test_prefix_deadlock_is_a_cycle_of_locks_kept_on_valid_paths(
        seed: Callable[[str], tuple[Model, Exploration]]) -> None:
    """Whatever shape BFS returns first, its cycle is made of retained locks on valid paths."""
    model, ex = seed("pre-fix")
    tr = ex.results["deadlock_free"].trace
    assert tr is not None
    last = tr.last
    assert all(last[model.layout.index[("status", p)]] == Status.RUNNING for p in range(3))
    wf = model.wait_for(last)
    cycle = wf.cycle()
    assert cycle is not None and len(cycle) >= 2
    for a, b, path in wf.edges:
        assert lock_of(model, last, path) == (b, Holder.KEPT_TOP), (a, b, path)
        assert is_valid(model, last, path)
    # path4 was never started: every process still waits for its inputs
    assert not is_valid(model, last, "path4")


def test_prefix_deadlock_trace_is_the_bfs_minimum(seed: Callable[[str], tuple[Model, Exploration]]) -> None:
    model, ex = seed("pre-fix")
    tr = ex.results["deadlock_free"].trace
    assert tr is not None
    n = len(tr)
    assert n <= ex.depth
    assert n == 21  # reference section 8.2: three builds, three beaten-to-it goals, the polls between
    bounded = Explorer(model, symmetry=True).explore(max_depth=n - 1)
    assert not bounded.complete
    assert bounded.results["deadlock_free"].result == "unknown"
    assert bounded.results["deadlock_free"].trace is None


def test_depth_bound_semantics_on_a_small_deadlock() -> None:
    """`max_depth=d` decides every state at depth <= d: the bound above is not off by one."""
    model = Model(scenario("hang-keep-going"), "guix")
    full = Explorer(model).explore()
    tr = full.results["deadlock_free"].trace
    assert tr is not None
    n = len(tr)
    assert Explorer(model).explore(max_depth=n - 1).results["deadlock_free"].result == "unknown"
    at = Explorer(model).explore(max_depth=n).results["deadlock_free"]
    assert at.result == "violated" and at.trace is not None and len(at.trace) == n


def three_way(model: Model) -> Callable[[tuple[int, ...]], bool]:
    """Deadlock whose wait-for graph is one cycle through all three processes (symmetric)."""
    lay = model.layout
    holders = [lay.index[("holder", o)] for o in model.scenario.paths]
    c = Compiled(model)

    def deadlocked(s: tuple[int, ...]) -> bool:  # the engine's test, compiled
        x = c.packing.pack(s)
        return not c.successors(x) and c.someone_running(x)

    def pred(s: tuple[int, ...]) -> bool:
        if sum(s[i] == Holder.KEPT_TOP for i in holders) < 3:  # cheap filter first
            return False
        return deadlocked(s) and model.wait_for(s).is_single_cycle_through(PROCS)

    return pred


def shortest_three_way(model: Model) -> Trace | None:
    """`Explorer.find` with the three-way predicate.

    The search stops at a predicate, so it runs in the Python backend (minutes on
    the seed); where the engine offers `find_deadlock` (the same search restricted
    to deadlock states, run by the C backend) the test uses that instead.
    """
    ex = Explorer(model, symmetry=True)
    pred = three_way(model)
    fast = getattr(ex, "find_deadlock", None)
    return fast(pred) if fast is not None else ex.find(pred)


def test_prefix_three_way_cycle(seed: Callable[[str], tuple[Model, Exploration]]) -> None:
    """Reference 8.2: each process holds the lock of a path another built, and waits for the next."""
    model, ex = seed("pre-fix")
    shortest = ex.results["deadlock_free"].trace
    assert shortest is not None
    tr = shortest_three_way(model)
    assert tr is not None, "no deadlock with a three-way wait-for cycle"
    assert_replays(tr)
    assert len(tr) == len(shortest), "the three-way cycle is among the shortest deadlocks"
    last = tr.last
    assert model.is_deadlock(last)
    wf = model.wait_for(last)
    assert wf.is_single_cycle_through(PROCS)
    assert len(wf.edges) == 3 and {a for a, _, _ in wf.edges} == PROCS
    held: dict[int, list[str]] = {p: [] for p in PROCS}
    for o in model.scenario.paths:
        proc, holder = lock_of(model, last, o)
        if proc:
            assert holder == Holder.KEPT_TOP, f"{o} is held by P{proc} as {holder.name}"
            assert is_valid(model, last, o), f"{o} is locked by P{proc} but not valid"
            held[proc].append(o)
    assert sorted(held.values()) == [[o] for o in LEAVES], "each process keeps one leaf's lock"
    lay = model.layout
    for p in range(3):
        (o,) = held[p + 1]
        # the kept lock belongs to a finished top-level goal, pinned until the request ends
        assert last[lay.index[("goal", p, o)]] == GoalState.DONE_OK
        assert last[lay.index[("top", p, o)]] == Top.OK
        assert last[lay.index[("top", p, "path4")]] == Top.PENDING
        assert last[lay.index[("goal", p, "path4")]] == GoalState.WAIT_INPUTS
        assert last[lay.index[("status", p)]] == Status.RUNNING
    for a, b, o in wf.edges:  # each waits for a leaf whose lock the next one keeps
        assert o in LEAVES and held[b] == [o] and o not in held[a]
    assert all(is_valid(model, last, o) for o in LEAVES)
    assert not is_valid(model, last, "path4")
    # what made it: three "beaten to it" steps that kept the lock
    assert sum(type(a).__name__ == "Beaten" for a in tr.actions) == 3


def test_prefix_keeps_exclusion(seed: Callable[[str], tuple[Model, Exploration]]) -> None:
    """The bug is retention, not lost exclusion: the safety properties hold even pre-fix."""
    model, ex = seed("pre-fix")
    for name in ("lock_exclusive", "build_holds_lock", "valid_under_lock"):
        assert ex.results[name].result == "holds", name
    for name in ("no_retained_lock", "requests_complete"):
        assert ex.results[name].result == "violated", name
        assert_replays(ex.results[name].trace)  # type: ignore[arg-type]


# -- the fix -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["guix", "release-on-done"])
def test_fixed_policies_hold_every_always_property(
        seed: Callable[[str], tuple[Model, Exploration]], policy: str) -> None:
    model, ex = seed(policy)
    assert ex.complete
    assert ex.states > 0 and ex.transitions >= ex.states - 1
    got = {n: ex.results[n].result for n in ALWAYS}
    assert got == dict.fromkeys(ALWAYS, "holds")
    assert all(ex.results[n].trace is None for n in ALWAYS)


@pytest.mark.parametrize("name", SOMETIMES)
def test_sometimes_reached_on_the_seed(seed: Callable[[str], tuple[Model, Exploration]], name: str) -> None:
    model, ex = seed("guix")
    r = ex.results[name]
    assert r.result == "reached", f"{name}: {r.result} {r.reason}"
    assert_witness(model, name, r)
