"""Shared helpers for the model tests: scenario lists, trace replay, witness checks.

A trace found by an engine is only believed after it replays through the model
twice: step by step through `Model.next_state`, and through `trace.replay` of
its ITF form after a JSON round trip (what `lockstep show` and refinement read).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache

from lockstep.model import Model, Scenario, find_scenario
from lockstep.model import actions as A
from lockstep.model.explicit import PropertyResult
from lockstep.model.expr import evaluate
from lockstep.model.properties import PROPERTIES
from lockstep.model.scenario import builtin_scenarios
from lockstep.model.state import Holder, Status, symmetry_groups
from lockstep.model.trace import Trace, replay

# Scenarios whose complete exploration, under every policy and without symmetry,
# takes well under a second: the ones every cross-check runs on.
SMALL = tuple(n for n in builtin_scenarios() if n not in ("seed", "fan-in"))
# The smallest of them, for checks that interpret every state (tens of ms per state).
TINY = ("build-fail", "different-requests", "hang-keep-going", "hang-stop",
        "multi-output", "substitute-fail", "substitute-ok")


@cache
def scenario(name: str) -> Scenario:
    return find_scenario(name)


def has_symmetry(scn: Scenario) -> bool:
    return any(len(g) > 1 for g in symmetry_groups(scn))


def run_actions(model: Model, actions: Iterable[A.Action]) -> list[tuple[int, ...]]:
    """The states visited by `actions` from the initial state; each must be enabled."""
    states = [model.init_state()]
    for i, a in enumerate(actions, 1):
        nxt = model.next_state(states[-1], a)
        assert nxt is not None, f"step {i}: {a} is not enabled"
        states.append(nxt)
    return states


def assert_replays(trace: Trace) -> None:
    """The trace replays through `next_state` and, as ITF JSON, through `trace.replay`."""
    m = trace.model
    assert len(trace.states) == len(trace.actions) + 1
    assert run_actions(m, trace.actions) == list(trace.states)
    data = json.loads(json.dumps(trace.to_itf()))
    again = replay(m, data)
    assert again.actions == trace.actions
    assert again.states == trace.states
    assert again.prop == trace.prop


def assert_witness(model: Model, name: str, r: PropertyResult) -> None:
    """A violated/reached result's trace replays and ends where the property is decided."""
    assert r.trace is not None, f"{name}: {r.result} without a trace"
    tr = r.trace
    assert tr.model is model
    assert_replays(tr)
    prop = PROPERTIES[name]
    last = tr.last
    if name == "deadlock_free":
        assert model.is_deadlock(last)
        assert any(last[model.layout.index[("status", p)]] == Status.RUNNING
                   for p in range(len(model.scenario.processes)))
    elif prop.form == "state":
        assert model.holds(name, last) is (prop.kind == "sometimes"), \
            f"{name}: the trace's last state does not decide it"
        assert prop.state is not None
        e = prop.state(model.rules, model.transitions)
        assert all(bool(evaluate(e, s)) is (prop.kind == "always") for s in tr.states[:-1]), \
            f"{name}: decided before the last state, so the trace is not the shortest"
    elif name == "beaten_to_it":
        assert isinstance(tr.actions[-1], A.Beaten | A.SubstBecameValid)
    elif name == "valid_under_lock":
        pre, post = tr.states[-2], tr.states[-1]
        a = tr.actions[-1]
        lay = model.layout
        newly = [o for o in model.scenario.paths
                 if not pre[lay.index[("valid", o)]] and post[lay.index[("valid", o)]]]
        assert newly, "the last step registers no path"
        held = (Holder.BUILD, Holder.SUBST)
        assert any(pre[lay.index[("lock", o)]] != a.proc or pre[lay.index[("holder", o)]] not in held
                   for o in newly), "every path it registers is locked by its registrar"


def verdicts(results: dict[str, PropertyResult]) -> dict[str, tuple[str, int | None]]:
    return {n: (r.result, len(r.trace) if r.trace is not None else None) for n, r in results.items()}
