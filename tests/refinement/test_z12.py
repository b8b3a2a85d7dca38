"""Z12 on real processes (reference section 9): a timed-out top-level goal keeps its lock
until the request ends, so two keep-going processes whose builders hang deadlock, even
under post-fix Guix. Scenario ``hang-keep-going``.

The explicit engine's shortest deadlock (8 steps, policy guix) is replayed against the
real daemon processes, implementation policy guix, refinement-checked on every report
(replay.py): they reach the trace's state at every step and deadlock at its last step,
with the same lock table in the kernel. Under ``release-on-done`` (timed-out goals drop
their locks) a fair schedule runs both requests to their end.

Each test owns its temporary store and daemon, so xdist workers share nothing.
"""

from __future__ import annotations

from lockstep.harness.refinement import Session
from lockstep.harness.replay import replay_trace
from lockstep.model import Model, find_scenario
from lockstep.model.explicit import Explorer
from lockstep.model.trace import Trace

SCENARIO = "hang-keep-going"


def explicit_deadlock(policy: str) -> Trace:
    m = Model(find_scenario(SCENARIO), policy)
    tr = Explorer(m).explore().results["deadlock_free"].trace
    assert tr is not None
    return tr


def test_model_guix_deadlocks_in_eight_steps_with_kept_top_level_locks() -> None:
    tr = explicit_deadlock("guix")
    m = tr.model
    assert len(tr) == 8 and m.is_deadlock(tr.last)
    assert [a.kind for a in tr.actions].count("BuildTimedOut") == 2
    assert m.describe(tr.last)["locks"] == {"slow1": {"proc": 1, "holder": "KEPT_TOP"},
                                            "slow2": {"proc": 2, "holder": "KEPT_TOP"}}


def test_z12_explicit_trace_deadlocks_the_real_guix_processes_at_the_same_step() -> None:
    tr = explicit_deadlock("guix")
    m = tr.model
    res = replay_trace(tr, impl_policy="guix")
    assert res.ok, res.render()
    # the same step: every trace step taken, the real state equal to the trace's at the end
    assert len(res.steps) == len(tr), res.render()
    assert res.steps[-1].same_state, res.render()
    assert all(s.same_shared for s in res.steps), res.render()
    # confirmed on the real processes: both only poll, for each other's locks
    assert res.deadlock is not None, res.render()
    graph = res.deadlock.graph
    assert graph.cycle()
    lay = m.layout
    want = {o: tr.last[lay.index[("lock", o)]] for o in m.scenario.paths}
    assert want == {"slow1": 1, "slow2": 2}
    assert res.final_locks == want
    kernel = {name: graph.names[pid] for name, pid in graph.locks.items()}
    assert kernel == {"slow1.lock": "P1", "slow2.lock": "P2"}
    # no process finished: nothing between the deadlock and the end of the trace
    assert not any(a.kind == "RequestDone" for a in res.deadlock.trace.actions)


def test_release_on_done_fair_schedule_runs_both_requests_to_completion() -> None:
    m = Model(find_scenario(SCENARIO), "release-on-done")
    assert Explorer(m).explore().results["deadlock_free"].trace is None
    s = Session(m, "release-on-done")
    try:
        s.start()
        s.run_fair()  # raises DeadlockFound on a confirmed deadlock
    finally:
        s.stop()
    assert s.finished
    # both requests return; both builds hang and time out, so both report failure
    assert {p.status for p in s.run.procs.values()} == {"FAILED"}
    assert {a.proc for a in s.actions if a.kind == "RequestDone"} == {1, 2}
    assert sum(a.kind == "BuildTimedOut" for a in s.actions) >= 2
    locks = {o: s.state[m.layout.index[("lock", o)]] for o in m.scenario.paths}
    assert locks == {"slow1": 0, "slow2": 0}
