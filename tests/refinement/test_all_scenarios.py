"""One fair schedule of the real daemon processes for every shipped scenario and policy,
refinement-checked on every transition (as ``refinement.check`` does for its run 0).

The implementation policy is the model policy. A case conforms when the run checks
against the model at every report and then either every request returns (status OK or
FAILED, a RequestDone or SubstitutesFailed for each process), or the processes deadlock where the model
does: the confirmed real deadlock (kernel lock table) sits in a model deadlock state.

Each case owns its temporary store and daemon, so xdist workers share nothing; each
takes well under a second to about two seconds (measured: 0.2-2.3 s per case).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockstep.harness.controller import _hash_slot, _topological
from lockstep.harness.refinement import DeadlockFound, Session
from lockstep.model import POLICIES, Model
from lockstep.model.scenario import load_scenario

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "specs" / "scenarios"
SCENARIO_FILES = sorted(SCENARIO_DIR.glob("*.toml"))
ENDS = ("RequestDone", "SubstitutesFailed")
CASES = [pytest.param(f, policy, id=f"{f.stem}-{policy}") for f in SCENARIO_FILES for policy in POLICIES]


def test_every_shipped_scenario_is_covered() -> None:
    assert len(SCENARIO_FILES) >= 11
    assert len(CASES) == len(SCENARIO_FILES) * len(POLICIES)


def test_salt_slots_split_the_hash_alphabet_in_order() -> None:
    for n in (1, 2, 5, 32):
        slots = [_hash_slot(k, n) for k in range(n)]
        assert all(slots) and "".join(s for s in slots if s) == "0123456789abcdfghijklmnpqrsvwxyz"
    assert None in [_hash_slot(k, 40) for k in range(40)]  # more names than characters


@pytest.mark.parametrize(("path", "policy"), CASES)
def test_fair_schedule_of_the_real_processes_conforms(path: Path, policy: str) -> None:
    model = Model(load_scenario(path), policy)
    s = Session(model, policy)
    deadlock: DeadlockFound | None = None
    try:
        s.start()
        try:
            s.run_fair()  # RefinementError on any non-conforming transition
        except DeadlockFound as e:
            deadlock = e
    finally:
        s.stop()
    assert s.checked > 0
    # the salted .drv names sort inputs first, by name (controller.ScenarioStore.build)
    names = [os.path.basename(s.run.store.drv_paths[d]) for d in _topological(model.scenario)]
    assert names == sorted(names)
    if deadlock is not None:
        # allowed only where the model deadlocks too: the real abstract state is one
        assert model.is_deadlock(s.state), str(deadlock)
        assert deadlock.graph.cycle(), str(deadlock)
        assert any(p.status == "RUNNING" for p in s.run.procs.values())
        return
    assert s.finished
    statuses = {i: p.status for i, p in s.run.procs.items()}
    assert set(statuses.values()) <= {"OK", "FAILED"}, statuses
    # a request ends at RequestDone, or where a failed substitution aborts it
    ended = [a.proc for a in s.actions if a.kind in ENDS]
    assert sorted(ended) == sorted(s.run.procs), "\n".join(s.log)
