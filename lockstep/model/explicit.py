"""Explicit-state engine: breadth-first search over the compiled model.

BFS visits states in order of distance from the initial state, so the first
state found violating a property ends a shortest counterexample. With symmetry
reduction on, each state is replaced by a canonical representative of its orbit
under permutations of identical processes (same request, max_jobs, keep_going):
the blocks of such processes are sorted by their local variables and the locks
they hold, and the lock table's process numbers are renamed to match. Distances
are preserved by the permutation, so counterexamples stay shortest; traces are
mapped back to concrete processes by re-executing each step.

`requests_complete` (from every reachable state, completion stays reachable)
needs the whole graph: after a complete search the engine walks the reverse
edges from the states where every request has returned.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .compile import Compiled
from .machine import Model, State
from .properties import CATALOGUE
from .state import Status, symmetry_groups
from .trace import Trace

Canon = Callable[[State], State]


def make_canon(model: Model) -> Canon | None:
    """The canonicalisation function for the model's symmetry groups, or None if none."""
    lay = model.layout
    groups = [g for g in symmetry_groups(model.scenario) if len(g) > 1]
    if not groups:
        return None
    locks = [(lay.index[("lock", o)], lay.index[("holder", o)]) for o in model.scenario.paths]
    shared = lay.shared_start

    def canon(s: State) -> State:
        out = list(s)
        relabel: dict[int, int] = {}
        for g in groups:
            keyed = []
            for p in g:
                a, b = lay.blocks[p]
                held = tuple(s[h] if s[li] == p + 1 else 0 for li, h in locks)
                keyed.append((s[a:b] + held, p))
            keyed.sort()
            for pos, (_, old) in enumerate(keyed):
                new = g[pos]
                if new != old:
                    relabel[old + 1] = new + 1
                    a, b = lay.blocks[new]
                    oa, ob = lay.blocks[old]
                    out[a:b] = s[oa:ob]
        if not relabel:
            return s
        for li, _ in locks:
            v = s[li]
            if v in relabel:
                out[li] = relabel[v]
        assert len(out) == len(s) and shared <= len(out)
        return tuple(out)

    return canon


@dataclass
class PropertyResult:
    name: str
    kind: str
    result: str  # holds | violated | unknown (always); reached | unreached | unknown (sometimes)
    trace: Trace | None = None
    reason: str = ""


@dataclass
class Exploration:
    scenario: str
    policy: str
    symmetry: bool
    states: int = 0
    transitions: int = 0
    depth: int = 0
    seconds: float = 0.0
    complete: bool = False
    results: dict[str, PropertyResult] = field(default_factory=dict)

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


class Explorer:
    """One search over one model; keeps the state graph for traces and graph properties."""

    def __init__(self, model: Model, symmetry: bool = True, compiled: Compiled | None = None) -> None:
        self.model = model
        self.symmetry = symmetry
        self.compiled = compiled or Compiled(model)
        self.canon = make_canon(model) if symmetry else None
        self.ids: dict[State, int] = {}
        self.states: list[State] = []
        self.parent = array("i")
        self.via = array("i")  # transition index that led here (-1 for the initial state)
        self.depths = array("i")

    def _trace(self, sid: int, prop: str, final_step: int | None = None) -> Trace:
        """A concrete trace to state `sid` (plus one more transition, for step properties)."""
        chain = []
        while sid != -1:
            chain.append(sid)
            sid = self.parent[sid]
        chain.reverse()
        m = self.model
        succ = self.compiled.successors
        concrete = [m.init_state()]
        acts = []
        for nxt in chain[1:]:
            target = self.states[nxt]
            s = concrete[-1]
            for k, t in succ(s):
                if (self.canon(t) if self.canon else t) == target:
                    concrete.append(t)
                    acts.append(m.transitions[k].action)
                    break
            else:  # pragma: no cover - the search found this edge
                raise AssertionError("trace reconstruction lost an edge")
        if final_step is not None:
            s = concrete[-1]
            want = self.states[final_step] if final_step >= 0 else None
            for k, t in succ(s):
                if want is None or (self.canon(t) if self.canon else t) == want:
                    concrete.append(t)
                    acts.append(m.transitions[k].action)
                    break
        return Trace(m, concrete, acts, prop)

    def find(self, predicate: Callable[[State], bool], max_states: int | None = None) -> Trace | None:
        """Shortest trace to a state satisfying `predicate` (which must be symmetric)."""
        self.explore(stop=predicate, max_states=max_states)
        return self.found

    def explore(self, stop: Callable[[State], bool] | None = None, max_states: int | None = None,
                max_depth: int | None = None, stop_when_decided: bool = False) -> Exploration:
        m, c = self.model, self.compiled
        canon = self.canon
        succ = c.successors
        running = c.someone_running
        start = time.perf_counter()
        ex = Exploration(m.scenario.name, m.policy, self.symmetry)
        checks = list(c.state_checks.items())
        steps = [(name, ch) for name, ch in c.step_checks.items() if ch]
        kinds = {p.name: p.kind for p in CATALOGUE}
        first: dict[str, tuple[int, int | None]] = {}  # property -> (state id, successor id for steps)
        deadlock_at: int | None = None
        edges_from = array("i")  # flattened successor ids, for requests_complete
        offsets = array("l", [0])
        self.found: Trace | None = None

        init = m.init_state()
        init = canon(init) if canon else init
        ids, states, parent, via, depths = self.ids, self.states, self.parent, self.via, self.depths
        ids[init] = 0
        states.append(init)
        parent.append(-1)
        via.append(-1)
        depths.append(0)
        head = 0
        complete = True
        always_names = {n for n, k in kinds.items() if k == "always"}
        while head < len(states):
            s = states[head]
            sid = head
            head += 1
            if stop is not None and stop(s):
                self.found = self._trace(sid, "target")
                complete = False
                break
            for name, check in checks:
                if name in first:
                    continue
                ok = check(s)
                if ok != (kinds[name] == "always"):
                    first[name] = (sid, None)
            if max_depth is not None and depths[sid] >= max_depth:
                complete = False
                offsets.append(len(edges_from))
                continue
            out = succ(s)
            if not out and deadlock_at is None and running(s):
                deadlock_at = sid
            d1 = depths[sid] + 1
            for k, t in out:
                for name, ch in steps:
                    if name not in first and k in ch:
                        ok = ch[k](s, t)
                        if ok != (kinds[name] == "always"):
                            first[name] = (sid, -2 - k)
                if canon:
                    t = canon(t)
                tid = ids.get(t)
                if tid is None:
                    tid = len(states)
                    ids[t] = tid
                    states.append(t)
                    parent.append(sid)
                    via.append(k)
                    depths.append(d1)
                edges_from.append(tid)
            offsets.append(len(edges_from))
            ex.transitions += len(out)
            if max_states is not None and len(states) >= max_states:
                complete = head >= len(states)
                if not complete:
                    break
            if stop_when_decided and deadlock_at is not None and always_names <= set(first) | {
                    "deadlock_free", "requests_complete"}:
                complete = False
                break
        ex.seconds = time.perf_counter() - start
        ex.states = len(states)
        ex.depth = max(depths) if len(depths) else 0
        ex.complete = complete and head >= len(states)
        self._offsets, self._edges = offsets, edges_from
        ex.results = self._results(first, deadlock_at, ex.complete, kinds)
        ex.seconds = time.perf_counter() - start
        return ex

    def _step_trace(self, sid: int, code: int | None, name: str) -> Trace:
        if code is None:
            return self._trace(sid, name)
        k = -2 - code
        tr = self._trace(sid, name)
        s = tr.states[-1]
        t = self.model.next_state(s, self.model.transitions[k].action)
        assert t is not None
        return Trace(self.model, tr.states + [t], tr.actions + [self.model.transitions[k].action], name)

    def _results(self, first: dict[str, tuple[int, int | None]], deadlock_at: int | None,
                 complete: bool, kinds: Mapping[str, str]) -> dict[str, PropertyResult]:
        res: dict[str, PropertyResult] = {}
        for prop in CATALOGUE:
            n = prop.name
            if n == "deadlock_free":
                if deadlock_at is not None:
                    res[n] = PropertyResult(n, "always", "violated", self._trace(deadlock_at, n))
                else:
                    res[n] = PropertyResult(n, "always", "holds" if complete else "unknown",
                                            reason="" if complete else "exploration incomplete")
                continue
            if n == "requests_complete":
                res[n] = self._requests_complete(complete)
                continue
            if n in first:
                sid, code = first[n]
                verdict = "violated" if prop.kind == "always" else "reached"
                res[n] = PropertyResult(n, prop.kind, verdict, self._step_trace(sid, code, n))
            elif complete:
                res[n] = PropertyResult(n, prop.kind, "holds" if prop.kind == "always" else "unreached")
            else:
                res[n] = PropertyResult(n, prop.kind, "unknown", reason="exploration incomplete")
        return res

    def _requests_complete(self, complete: bool) -> PropertyResult:
        name = "requests_complete"
        if not complete:
            return PropertyResult(name, "always", "unknown", reason="needs a complete exploration")
        lay = self.model.layout
        status_idx = [lay.index[("status", p)] for p in range(len(self.model.scenario.processes))]
        returned = {Status.OK, Status.FAILED, Status.KILLED}
        n = len(self.states)
        good = bytearray(n)
        # reverse adjacency, by counting sort over the flattened edges
        offsets, edges = self._offsets, self._edges
        indeg = array("l", bytes(8 * (n + 1)))
        for t in edges:
            indeg[t + 1] += 1
        for i in range(n):
            indeg[i + 1] += indeg[i]
        rev = array("i", bytes(4 * len(edges)))
        fill = array("l", indeg)
        for src in range(n):
            for j in range(offsets[src], offsets[src + 1]):
                t = edges[j]
                rev[fill[t]] = src
                fill[t] += 1
        stack = [i for i, s in enumerate(self.states) if all(s[x] in returned for x in status_idx)]
        for i in stack:
            good[i] = 1
        while stack:
            t = stack.pop()
            for j in range(indeg[t], indeg[t + 1]):
                src = rev[j]
                if not good[src]:
                    good[src] = 1
                    stack.append(src)
        bad = good.find(0)
        if bad == -1:
            return PropertyResult(name, "always", "holds")
        return PropertyResult(name, "always", "violated", self._trace(bad, name),
                              reason="no state where every request has returned is reachable from the last state")


def explore(model: Model, symmetry: bool = True, **kw: object) -> Exploration:
    return Explorer(model, symmetry).explore(**kw)  # type: ignore[arg-type]
