"""The reference state machine: initial state, actions, next state, properties.

`Model` is the small, pure interface every engine and the refinement bridge
use (in the manner of Stratright's Model): states are tuples of ints, actions
are records from `actions.py`, `next_state` is total (a disabled action gives
None) and is computed by interpreting the one definition in `rules.py`.
Settings that are not the model's (faults on/off, symmetry, depth) belong to
the engines; the model only knows its scenario, policy and variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import actions as A
from .expr import evaluate
from .properties import PROPERTIES, deadlocked
from .rules import Rules, Transition
from .scenario import Scenario
from .state import GoalState, Holder, Layout, Status, Top, waitees

State = tuple[int, ...]


@dataclass(frozen=True)
class WaitFor:
    """Process A waits for B when a goal of A is blocked on a lock B holds."""

    edges: tuple[tuple[int, int, str], ...]  # (waiter, holder, path), processes 1-based

    def successors(self, proc: int) -> set[int]:
        return {b for a, b, _ in self.edges if a == proc}

    def cycle(self) -> tuple[int, ...] | None:
        """A shortest cycle, as the processes on it starting from the smallest, or None."""
        best: tuple[int, ...] | None = None
        for start in sorted({a for a, _, _ in self.edges}):
            paths: dict[int, tuple[int, ...]] = {start: (start,)}
            frontier = [start]
            found: tuple[int, ...] | None = None
            while frontier and found is None:
                nxt: list[int] = []
                for node in frontier:
                    for b in sorted(self.successors(node)):
                        if b == start:
                            found = found or paths[node]
                        elif b not in paths:
                            paths[b] = paths[node] + (b,)
                            nxt.append(b)
                frontier = nxt
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        return best

    def is_single_cycle_through(self, procs: set[int]) -> bool:
        """The graph is exactly one cycle visiting every process in `procs`."""
        succ = {a: self.successors(a) for a in procs}
        if any(len(s) != 1 for s in succ.values()):
            return False
        start = min(procs)
        seen, cur = [start], next(iter(succ[start]))
        while cur != start:
            if cur in seen or cur not in procs:
                return False
            seen.append(cur)
            cur = next(iter(succ[cur]))
        return set(seen) == procs


class Model:
    def __init__(self, scenario: Scenario, policy: str = "guix",
                 variants: frozenset[str] = frozenset(), faults: bool = False) -> None:
        self.scenario = scenario
        self.policy = policy
        self.variants = variants
        self.faults = faults
        self.rules = Rules(scenario, policy, variants)
        self.layout: Layout = self.rules.lay
        self.transitions: list[Transition] = self.rules.ground(faults)
        self.by_action: dict[A.Action, Transition] = {t.action: t for t in self.transitions}
        self._deadlock = deadlocked(self.rules, self.transitions)

    # -- the four methods --------------------------------------------------------

    def init_state(self) -> State:
        return self.layout.initial()

    def actions(self) -> list[A.Action]:
        return [t.action for t in self.transitions]

    def next_state(self, s: State, action: A.Action) -> State | None:
        t = self.by_action.get(action)
        if t is None or not evaluate(t.guard, s):
            return None
        out = list(s)
        for i, e in t.updates.items():
            out[i] = evaluate(e, s)
        return tuple(out)

    def enabled(self, s: State) -> list[A.Action]:
        return [t.action for t in self.transitions if evaluate(t.guard, s)]

    # -- reading states --------------------------------------------------------

    def is_deadlock(self, s: State) -> bool:
        return bool(evaluate(self._deadlock, s))

    def holds(self, name: str, s: State) -> bool:
        """A state-form property evaluated on one state."""
        prop = PROPERTIES[name]
        if prop.state is None:
            raise ValueError(f"property {name!r} is a {prop.form} property, not a state predicate")
        return bool(evaluate(prop.state(self.rules, self.transitions), s))

    def wait_for(self, s: State) -> WaitFor:
        edges: list[tuple[int, int, str]] = []
        for t in self.transitions:
            if t.stutter and evaluate(t.guard, s):
                a = t.action
                paths = (self.scenario.drv(a.drv).output_paths if isinstance(a, A.DrvAction)
                         else (a.path,) if isinstance(a, A.PathAction) else ())
                for o in paths:
                    holder = s[self.layout.index[("lock", o)]]
                    if holder and holder != a.proc:
                        edges.append((a.proc, holder, o))
        return WaitFor(tuple(sorted(set(edges))))

    def describe(self, s: State) -> dict[str, Any]:
        """A structured view of a state, as shown in traces (ITF values are built from it)."""
        lay = self.layout
        procs: dict[str, Any] = {}
        for p, proc in enumerate(self.scenario.processes):
            goals = {d: GoalState(s[lay.index[("goal", p, d)]]).name for d in lay.closure_of(p)}
            subst = {o: GoalState(s[lay.index[("subst", p, o)]]).name for o in lay.subst_paths[p]}
            waits: dict[str, list[str]] = {}
            for d in lay.closure_of(p):
                ws = [w[1] for w in waitees(self.scenario, d) if s[lay.index[("waits", p, d, w)]]]
                if ws:
                    waits[d] = ws
            procs[f"P{p + 1}"] = {
                "status": Status(s[lay.index[("status", p)]]).name,
                "goals": {k: v for k, v in goals.items() if v != "ABSENT"},
                "substitutions": {k: v for k, v in subst.items() if v != "ABSENT"},
                "waits": waits,
                "top": ({d: Top(s[lay.index[("top", p, d)]]).name for d in proc.request}
                        if s[lay.index[("status", p)]] == Status.RUNNING else {}),  # ended: goals gone
            }
        locks = {}
        for o in self.scenario.paths:
            holder = s[lay.index[("lock", o)]]
            if holder:
                locks[o] = {"proc": holder, "holder": Holder(s[lay.index[("holder", o)]]).name}
        valid = [o for o in self.scenario.paths if s[lay.index[("valid", o)]]]
        return {"procs": procs, "locks": locks, "valid": valid}

    def check_state(self, s: Sequence[int]) -> None:
        """Raise ValueError if `s` is not a well-formed state of this model's layout."""
        lay = self.layout
        if len(s) != len(lay.names):
            raise ValueError(f"state has {len(s)} values; the layout of scenario "
                             f"{self.scenario.name!r} has {len(lay.names)}")
        for i, (v, dom) in enumerate(zip(s, lay.domains, strict=True)):
            if not 0 <= v < dom:
                raise ValueError(f"state variable {lay.names[i]} = {v} is outside 0..{dom - 1}")
