"""Regression tests for model bugs found so far; each cites how it was found."""

from __future__ import annotations

from lockstep.model import Model, parse_scenario
from lockstep.model import actions as A
from lockstep.model.explicit import Explorer
from lockstep.model.state import GoalState

DESTROY_BUSY = """
name = "destroy-busy"
description = "one process, c needs a (ok) and b (fails), two slots: b's failure abandons a mid-build"
[derivations.a]
[derivations.b]
builder = "fail"
[derivations.c]
inputs = ["a", "b"]
[[processes]]
request = ["c"]
max_jobs = 2
"""


def test_destroying_a_building_goal_removes_it() -> None:
    """Found by the z3 engine (issue 3): DestroyGoal on a BUSY goal released its lock but
    left the goal BUSY (a later wake-up overwrote the ABSENT), so a builder ran without
    its lock and build_holds_lock failed after 7 steps."""
    model = Model(parse_scenario(DESTROY_BUSY, "destroy-busy"), "guix")
    seen: list[bool] = []
    ex = Explorer(model, symmetry=False, backend="python")
    result = ex.explore()
    assert result.results["build_holds_lock"].result == "holds"
    # the situation is reachable: a DestroyGoal from BUSY, after which the goal is ABSENT
    a_goal = model.layout.index[("goal", 0, "a")]
    for packed in ex.states:
        s = ex.packing.unpack(packed)
        if s[a_goal] == GoalState.BUSY:
            nxt = model.next_state(s, A.DestroyGoal(1, "a"))
            if nxt is not None:
                assert nxt[a_goal] == GoalState.ABSENT
                assert model.describe(nxt)["locks"].get("a") is None
                seen.append(True)
    assert seen, "no state where a building goal is abandoned: the regression is vacuous"
