"""Issue 6, "every historical-bug switch is caught": Z6 and Z7 (Z1 and Z10 are in
test_refinement.py). Each test names the property or refinement step that catches it.

Both bugs live inside one daemon step, where the daemon's own scheduling never lets the
controller in, so each test widens the schedule with a start-up answer (controller.py):

* Z6 (intra-process double lock) needs a goal for ``d`` made *after* ``d``'s top-level
  goal timed out and kept its lock (Z12). The daemon runs every top-level goal in its
  first round, so ``t`` would share ``d``'s live goal; ``defer`` keeps ``t`` back until
  the first wait for input, an order of one process's goals that the model allows (the
  explicit engine finds it). Z6 off: the fresh goal waits for any goal, then the worker
  is stuck, step for step as the model says. Z6 on: it re-locks (fcntl grants a
  process its own lock) and builds; ``lock_exclusive`` fails: two goals claim ``d``.
* Z7 (stale lock file without its token) needs a process paused between opening
  ``x.lock`` and locking it; ``lock_file_reports`` makes that a scheduling point (the
  stutter report LockFileOpened). Policy pre-fix, so that a beaten goal keeps its lock
  and the lock stays visible across a report.

Cheap: each run is one small scenario on a fresh store (well under a second).
"""

from __future__ import annotations

import pytest

from lockstep.harness.refinement import RefinementError, Session
from lockstep.harness.replay import replay_trace
from lockstep.model import Model
from lockstep.model import actions as A
from lockstep.model.explicit import Explorer
from lockstep.model.scenario import parse_scenario
from lockstep.model.state import GoalState as G
from lockstep.model.trace import Trace

SELF_LOCK = parse_scenario('''
name = "self-lock"
description = "d hangs and times out, keeping its lock (Z12); t, requested by the same process, needs d"
[derivations.d]
builder = "hang"
[derivations.t]
inputs = ["d"]
[[processes]]
request = ["d", "t"]
keep_going = true
''', "self-lock")

STALE = parse_scenario('''
name = "stale-lock"
description = "three processes request x; one builds it and deletes x.lock"
[derivations.x]
[[processes]]
request = ["x"]
count = 3
''', "stale-lock")

DEFER_T = {1: {"defer": ["t"]}}
LOCK_REPORTS = {"lock_file_reports": True}
# P1 builds x; P2 opens x.lock and pauses; P1's build succeeds (unlink, token, close);
# P3 opens the name afresh and is beaten (pre-fix: keeps the lock); then P2 locks.
STALE_SCHEDULE = ["P1", "P1", "P2", "P1:input", "P3", "P3", "P2"]


def wait_any_trace() -> Trace:
    m = Model(SELF_LOCK, "guix")
    goal_d = m.layout.index[("goal", 0, "d")]
    tr = Explorer(m, symmetry=False).find(lambda s: s[goal_d] == G.WAIT_ANY)
    assert tr is not None
    return tr


# -- Z6 --------------------------------------------------------------------------------

def test_model_reaches_wait_for_any_goal_with_a_kept_top_level_lock() -> None:
    tr = wait_any_trace()
    assert [str(a) for a in tr.actions] == [
        str(a) for a in (A.HaveDerivation(1, "d"), A.StartBuild(1, "d"), A.BuildTimedOut(1, "d"),
                         A.HaveDerivation(1, "t"), A.HaveDerivation(1, "d"), A.WaitForAnyGoal(1, "d"))]
    m = tr.model
    assert m.describe(tr.last)["locks"] == {"d": {"proc": 1, "holder": "KEPT_TOP"}}
    assert m.enabled(tr.last) == [A.WorkerStuck(1)]  # the worker's assert(!awake.empty())


def test_self_lock_trace_needs_defer_and_then_replays_state_for_state() -> None:
    tr = wait_any_trace()
    own_order = replay_trace(tr)  # the daemon's order: t shares d's live top-level goal
    assert not own_order.ok and own_order.steps[-1].how == "not taken"
    res = replay_trace(tr, start_replies=DEFER_T)
    assert res.ok, res.render()
    assert all(s.how == "taken" or s.index == 1 for s in res.steps)
    assert all(s.same_state for s in res.steps), res.render()
    assert res.final_locks == {"d": 1, "t": 0}


def test_z6_off_conforms_to_the_end_worker_stuck() -> None:
    s = Session(Model(SELF_LOCK, "guix"), granularity="fine", start_replies=DEFER_T)
    try:
        s.start()
        s.run_fair()
    finally:
        s.stop()
    assert [str(a) for a in s.actions[-2:]] == [str(A.WaitForAnyGoal(1, "d")), str(A.WorkerStuck(1))]
    assert s.run.procs[1].status == "ABORTED"


def test_z6_is_caught_by_lock_exclusive_at_the_fresh_goals_start_build() -> None:
    s = Session(Model(SELF_LOCK, "guix"), bugs=("Z6",), granularity="fine", start_replies=DEFER_T)
    try:
        s.start()
        with pytest.raises(RefinementError) as e:
            s.run_fair()
    finally:
        s.stop()
    assert e.value.prop == "lock_exclusive"
    assert "the lock of d is claimed by 2 goals at once (P1 drv goal d, P1 drv goal d)" in str(e.value)
    # the report that broke it: the fresh goal for d started building on a lock its own
    # process already held (the model enables WaitForAnyGoal there, not StartBuild)
    assert s.log[-1] == str(A.StartBuild(1, "d"))
    assert e.value.trace.actions[-1] == A.HaveDerivation(1, "d")


def test_z6_is_caught_on_replay_of_the_explicit_trace() -> None:
    with pytest.raises(RefinementError) as e:
        replay_trace(wait_any_trace(), bugs=("Z6",), start_replies=DEFER_T)
    assert e.value.prop == "lock_exclusive"


# -- Z7 --------------------------------------------------------------------------------

def stale_session(bugs: tuple[str, ...]) -> Session:
    return Session(Model(STALE, "pre-fix"), bugs=bugs, granularity="fine",
                   start_replies={2: LOCK_REPORTS, 3: LOCK_REPORTS})


def test_z7_off_the_stale_token_makes_the_waiter_retry_and_everything_conforms() -> None:
    s = stale_session(())
    try:
        s.start()
        s.replay_schedule(STALE_SCHEDULE)
        s.run_fair()
    finally:
        s.stop()
    assert {p.status for p in s.run.procs.values()} == {"OK"}
    p2 = [r["action"] for r in s.run.reports if r["proc"] == 2]
    # opened before P1 deleted it; the token sent P2 back to the name (twice: P3 deletes too)
    assert p2.count("LockFileOpened") >= 2
    assert p2.index("LockFileOpened") < p2.index("Beaten")
    assert not any(r["action"] == "LockFileOpened" for r in s.run.reports if r["proc"] == 1)  # not asked
    assert sum(a.kind == "BuildSucceeded" for a in s.actions) == 1


def test_z7_is_caught_by_lock_exclusive_two_holders_of_x() -> None:
    s = stale_session(("Z7",))
    try:
        s.start()
        with pytest.raises(RefinementError) as e:
            s.replay_schedule(STALE_SCHEDULE)
    finally:
        s.stop()
    assert e.value.prop == "lock_exclusive"
    # P2 locked the dead inode (no token to tell it so); P3 holds the live x.lock
    assert "the lock of x is claimed by 2 goals at once (P2 drv goal x, P3 drv goal x); " \
           "the kernel names P3" in str(e.value)
    assert s.log[-1] == str(A.Beaten(2, "x"))
    assert s.schedule == STALE_SCHEDULE
