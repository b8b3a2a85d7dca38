"""Issue 6: the real daemon processes checked against the model on every transition.

Each test owns its temporary store and daemon (controller.Run), so xdist workers share
nothing. Example counts per Hypothesis profile are in EXAMPLES (small by default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from lockstep.harness.refinement import SAFETY, DeadlockFound, RefinementError, Session
from lockstep.harness.replay import replay_trace
from lockstep.harness.stateful import RefinementMachine
from lockstep.model import Model, find_scenario
from lockstep.model.explicit import Explorer

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")
EXAMPLES = {"fast": 3, "ci": 5, "thorough": 200}.get(PROFILE, 3)
SHRINK = PROFILE == "thorough"  # shrinking real runs costs minutes; hunts only


def machine_settings(examples: int, steps: int) -> settings:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
                    database=None, phases=phases, suppress_health_check=list(HealthCheck))


def fair(model: Model, impl_policy: str | None = None, bugs: tuple[str, ...] = (),
         properties: tuple[str, ...] = SAFETY) -> Session:
    s = Session(model, impl_policy, bugs, properties)
    try:
        s.start()
        s.run_fair()
    finally:
        s.stop()
    return s


# -- seed, guix against guix -------------------------------------------------------------

def test_seed_guix_fair_schedule_completes_every_request() -> None:
    s = fair(Model(find_scenario("seed"), "guix"), properties=SAFETY + ("no_retained_lock",))
    assert {p.status for p in s.run.procs.values()} == {"OK"}
    assert all(p.outcome == "ok" for p in s.run.procs.values())
    assert s.checked > 40 and s.actions[-1].kind == "RequestDone"
    assert sum(a.kind == "BuildSucceeded" for a in s.actions) == 4  # each path built once


class SeedGuix(RefinementMachine):
    model_policy = "guix"
    properties = SAFETY + ("no_retained_lock",)


def test_seed_guix_refinement_and_properties_hold_under_hypothesis() -> None:
    SeedGuix.failures = []
    SeedGuix.TestCase.settings = machine_settings(EXAMPLES, 80)
    SeedGuix.TestCase().runTest()
    assert SeedGuix.failures == []


# -- seed, pre-fix against pre-fix: Hypothesis finds the deadlock ----------------------

class SeedPreFix(RefinementMachine):
    model_policy = "pre-fix"


def test_pre_fix_hypothesis_finds_the_seed_deadlock(tmp_path: Path) -> None:
    SeedPreFix.failures = []
    SeedPreFix.trace_dir = str(tmp_path)
    SeedPreFix.TestCase.settings = machine_settings(max(EXAMPLES, 30), 60)
    with pytest.raises(DeadlockFound):
        SeedPreFix.TestCase().runTest()
    found = SeedPreFix.failures[-1]
    assert isinstance(found, DeadlockFound) and found.graph.cycle()
    procs = {c.split(":")[0] for c in found.schedule}
    assert procs == {"P1", "P2", "P3"}
    m = Model(find_scenario("seed"), "pre-fix")
    shortest = len(Explorer(m).explore().results["deadlock_free"].trace)  # 21
    assert len(found.schedule) <= 2 * shortest, (len(found.schedule), shortest)
    saved = json.loads(next(tmp_path.glob("*.deadlock_free.itf.json")).read_text())
    assert saved["#meta"]["schedule"] == found.schedule


# -- pre-fix implementation against the guix model -------------------------------------

def test_pre_fix_impl_against_guix_model_reports_the_kept_lock() -> None:
    with pytest.raises(RefinementError) as e:
        fair(Model(find_scenario("seed"), "guix"), impl_policy="pre-fix")
    err = e.value
    assert err.prop == "refinement:next_state"
    assert "Beaten" in str(err).splitlines()[0]
    assert "lock.path2: model -, real P1" in str(err) and "KEPT_TOP" in str(err)
    assert err.details["action"].startswith("Beaten(proc=1")  # the first non-conforming step


# -- the explicit engine's counterexample, replayed -----------------------------------

def test_explicit_counterexample_replays_to_the_same_deadlock() -> None:
    m = Model(find_scenario("seed"), "pre-fix")
    tr = Explorer(m).find_deadlock(lambda s: m.wait_for(s).is_single_cycle_through({1, 2, 3}))
    assert tr is not None
    res = replay_trace(tr)
    assert res.ok, res.render()
    assert res.steps[-1].same_state and len(res.steps) == len(tr)
    assert res.deadlock is not None
    lay = m.layout
    want = {o: tr.last[lay.index[("lock", o)]] for o in m.scenario.paths}
    assert res.final_locks == want
    kernel = {name: res.deadlock.graph.names[pid] for name, pid in res.deadlock.graph.locks.items()}
    assert kernel == {f"{o}.lock": f"P{p}" for o, p in want.items() if p}


# -- historical bugs ------------------------------------------------------------------

def test_z1_is_caught_by_refinement_step_next_state_at_beaten() -> None:
    with pytest.raises(RefinementError) as e:
        fair(Model(find_scenario("seed"), "guix"), impl_policy="guix", bugs=("Z1",))
    assert e.value.prop == "refinement:next_state"
    assert e.value.details["action"].startswith("Beaten(")


def test_z10_is_caught_by_refinement_step_enabled_at_start_build() -> None:
    # a goal woken from waitForBuildSlot starts its builder without re-locking: here while
    # another process holds the output lock, so the model does not enable StartBuild at all
    with pytest.raises(RefinementError) as e:
        fair(Model(find_scenario("seed"), "guix"), bugs=("Z10",))
    assert e.value.prop == "refinement:enabled"
    assert e.value.details["action"].startswith("StartBuild(")


# -- determinism ----------------------------------------------------------------------

def test_one_schedule_one_trace_twice_in_a_row() -> None:
    m = Model(find_scenario("seed"), "pre-fix")
    first = fair(m, properties=())
    again = Session(m, properties=())
    try:
        again.start()
        with pytest.raises(DeadlockFound):
            again.replay_schedule(first.schedule)
            again.confirm_deadlock()
    finally:
        again.stop()
    assert again.log[:len(first.log)] == first.log
    assert again.actions == first.actions and again.states == first.states
