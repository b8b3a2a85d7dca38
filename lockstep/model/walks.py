"""Hypothesis engine over the model: random walks that shrink.

Each example is a walk from the initial state: at every step Hypothesis picks
one of the enabled, state-changing actions. State properties are checked after
every step, step properties on every transition, and a state with a running
process and no such action is a deadlock. A failing walk is shrunk (fewer
steps, earlier choices) and returned as a trace. Random walks can find
violations but never prove their absence: a property that is not violated is
reported as `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .compile import Compiled
from .machine import Model
from .properties import PROPERTIES
from .trace import Trace


@dataclass
class WalkResult:
    name: str
    kind: str
    result: str
    trace: Trace | None
    seconds: float
    examples: int
    reason: str = ""


class _Found(Exception):
    pass


def random_walks(model: Model, props: Sequence[str], max_steps: int = 60,
                 examples: int = 200) -> list[WalkResult]:
    c = Compiled(model)
    return [_walk(model, c, name, max_steps, examples) for name in props]


def _walk(model: Model, c: Compiled, name: str, max_steps: int, examples: int) -> WalkResult:
    pk = c.packing
    prop = PROPERTIES[name]
    start = time.perf_counter()
    if prop.form == "graph":
        return WalkResult(name, prop.kind, "unknown", None, 0.0, 0,
                          "a graph property: random walks cannot decide it")
    want = prop.kind == "always"
    state_check = c.state_checks.get(name) if name != "deadlock_free" else None
    step_checks = c.step_checks.get(name, {})
    found: list[list[int]] = []
    count = [0]

    def bad_state(s: int) -> bool:
        if name == "deadlock_free":
            return not c.successors(s) and c.someone_running(s)
        return state_check is not None and state_check(s) != want

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(st.data())
    def walk(data: st.DataObject) -> None:
        count[0] += 1
        s = pk.pack(model.init_state())
        taken: list[int] = []
        if bad_state(s):
            found.append(taken)
            raise _Found
        for _ in range(max_steps):
            out = c.successors(s)
            if not out:
                return
            k, t = out[data.draw(st.integers(0, len(out) - 1))]
            taken.append(k)
            fn = step_checks.get(k)
            if (fn is not None and fn(s, t) != want) or bad_state(t):
                found.append(list(taken))
                raise _Found
            s = t

    try:
        walk()
    except _Found:
        pass
    secs = time.perf_counter() - start
    if not found:
        return WalkResult(name, prop.kind, "unknown", None, secs, count[0],
                          f"not {'violated' if want else 'reached'} in {count[0]} random walks")
    states = [model.init_state()]
    acts = []
    for k in found[-1]:  # Hypothesis replays the shrunk example last
        a = model.transitions[k].action
        nxt = model.next_state(states[-1], a)
        assert nxt is not None
        states.append(nxt)
        acts.append(a)
    verdict = "violated" if want else "reached"
    return WalkResult(name, prop.kind, verdict, Trace(model, states, acts, name), secs, count[0])
