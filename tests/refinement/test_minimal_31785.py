"""The smallest Guix bug 31785 deadlock on real processes: scenario ``bug-31785-minimal``.

`lockstep/model/smallest.py` found it by enumerating scenarios in size order with only
succeeding builders: three processes, each requesting two independent derivations.
Under pre-fix a goal beaten to a path keeps the lock as a finished top-level goal until
its request ends (Z1), so two processes each keep the path the other still polls for.
The explicit engine's shortest trace (13 steps, against the seed's 21) is replayed
against the real pre-fix daemon processes and must deadlock at its last step with the
same kernel lock table; under guix the explicit engine finds no deadlock at all.

Each test owns its temporary store and daemon, so xdist workers share nothing.
"""

from __future__ import annotations

from lockstep.harness.replay import replay_trace
from lockstep.model import Model, find_scenario
from lockstep.model.explicit import Explorer

SCENARIO = "bug-31785-minimal"


def test_pre_fix_deadlocks_in_thirteen_steps_on_beaten_locks_and_guix_does_not() -> None:
    m = Model(find_scenario(SCENARIO), "pre-fix")
    tr = Explorer(m).explore().results["deadlock_free"].trace
    assert tr is not None and len(tr) == 13 and m.is_deadlock(tr.last)
    locks = m.describe(tr.last)["locks"]
    assert {v["holder"] for v in locks.values()} == {"KEPT_TOP"} and len(locks) == 2
    assert [a.kind for a in tr.actions].count("Beaten") == 2
    assert m.wait_for(tr.last).cycle() is not None
    fixed = Explorer(Model(find_scenario(SCENARIO), "guix")).explore()
    assert fixed.complete and fixed.results["deadlock_free"].result == "holds"


def test_the_trace_deadlocks_the_real_pre_fix_processes_at_the_same_step() -> None:
    m = Model(find_scenario(SCENARIO), "pre-fix")
    tr = Explorer(m).explore().results["deadlock_free"].trace
    assert tr is not None
    res = replay_trace(tr, impl_policy="pre-fix")
    assert res.ok, res.render()
    assert len(res.steps) == len(tr) and res.steps[-1].same_state, res.render()
    assert res.deadlock is not None and res.deadlock.graph.cycle(), res.render()
    want = {o: tr.last[m.layout.index[("lock", o)]] for o in m.scenario.paths}
    assert res.final_locks == want and all(want.values())
    kernel = {name: res.deadlock.graph.names[pid] for name, pid in res.deadlock.graph.locks.items()}
    assert kernel == {f"{o}.lock": f"P{p}" for o, p in want.items()}
