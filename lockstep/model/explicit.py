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

import ctypes
import os
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cengine import CEngineUnavailable, CModel
from .compile import Compiled, Packed, Packing, StepCheck
from .expr import evaluate
from .machine import Model, State
from .properties import CATALOGUE, PROPERTIES
from .state import Status, symmetry_groups
from .trace import Trace

Canon = Callable[[Packed], Packed]


def make_canon(model: Model, pk: Packing) -> Canon | None:
    """The canonicalisation function over packed states, or None if no symmetry.

    Within each group, process blocks are sorted by (block, locks held); the
    lock table's process numbers are renamed to follow. Generated code: the
    common case, blocks already in strictly increasing order, returns at once.
    """
    lay = model.layout
    groups = [g for g in symmetry_groups(model.scenario) if len(g) > 1]
    if not groups:
        return None
    locks = [(lay.index[("lock", o)], lay.index[("holder", o)]) for o in model.scenario.paths]
    lines = ["def canon(s):"]
    fast = []
    blocks = {p: pk.range_mask(*lay.blocks[p]) for g in groups for p in g}
    clear = pk.all
    for g in groups:
        for p in g:
            shift, mask = blocks[p]
            lines.append(f"    b{p} = s >> {shift} & {mask}")
            clear &= ~(mask << shift)
        fast.append(" and ".join(f"b{p} < b{q}" for p, q in zip(g, g[1:], strict=False)))
    lines.append(f"    if {' and '.join(fast)}:")
    lines.append("        return s")
    lines.append(f"    out = s & {clear}")
    lines.append("    relabel = {}")
    for g in groups:
        keyed = []
        for p in g:
            held = ", ".join(f"({pk.read(h)} if {pk.read(li)} == {p + 1} else 0)" for li, h in locks)
            keyed.append(f"(b{p}, ({held},), {p})")
        lines.append(f"    keyed = sorted([{', '.join(keyed)}])")
        for pos, p in enumerate(g):
            lines.append(f"    out |= keyed[{pos}][0] << {blocks[p][0]}")
            lines.append(f"    if keyed[{pos}][2] != {p}: relabel[keyed[{pos}][2] + 1] = {p + 1}")
    lines.append("    if not relabel:")
    lines.append("        return s")
    for li, _ in locks:
        off, field = pk.offset[li], pk.field(li)
        lines.append(f"    v = {pk.read(li)}")
        lines.append(f"    if v in relabel: out = (out & {pk.all & ~field}) | (relabel[v] << {off})")
    lines.append("    return out")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines) + "\n", "<lockstep:canon>", "exec"), namespace)  # noqa: S102
    fn = namespace["canon"]
    assert callable(fn)
    return fn


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

    def __init__(self, model: Model, symmetry: bool = True, compiled: Compiled | None = None,
                 backend: str | None = None) -> None:
        self.model = model
        self.symmetry = symmetry
        self.backend = backend or os.environ.get("LOCKSTEP_BACKEND", "auto")
        if self.backend not in ("auto", "c", "python"):
            raise ValueError(f"backend {self.backend!r}: use auto, c or python")
        self._compiled = compiled
        self._canon_made = False
        self._canon: Canon | None = None
        self.ids: dict[Packed, int] = {}
        self.states: list[Packed] = []
        self.parent = array("i")
        self._c: tuple[CModel, Any] | None = None  # the C explorer whose results are being read
        self._deadlock_ids: list[int] = []

    # The Python backend's compiled model, built only when that backend runs.
    @property
    def compiled(self) -> Compiled:
        if self._compiled is None:
            self._compiled = Compiled(self.model)
        return self._compiled

    @property
    def packing(self) -> Packing:
        return self.compiled.packing

    @property
    def canon(self) -> Canon | None:
        if not self._canon_made:
            self._canon = make_canon(self.model, self.packing) if self.symmetry else None
            self._canon_made = True
        return self._canon

    def _trace(self, sid: int, prop: str, final_step: int | None = None) -> Trace:
        """A concrete trace to state `sid` (plus one more transition, for step properties)."""
        chain = []
        while sid != -1:
            chain.append(sid)
            sid = self.parent[sid]
        chain.reverse()
        m = self.model
        succ = self.compiled.successors
        concrete = [self.packing.pack(m.init_state())]
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
        return Trace(m, [self.packing.unpack(x) for x in concrete], acts, prop)

    def find(self, predicate: Callable[[State], bool], max_states: int | None = None) -> Trace | None:
        """Shortest trace to a state satisfying `predicate` (which must be symmetric)."""
        self.explore(stop=predicate, max_states=max_states)
        return self.found

    def explore(self, stop: Callable[[State], bool] | None = None, max_states: int | None = None,
                max_depth: int | None = None, stop_when_decided: bool = False,
                stop_at_deadlock: bool = False) -> Exploration:
        """Breadth-first search; every property's first witness is the shallowest one.

        `stop`: end at the first state satisfying it (its trace is `self.found`).
        `stop_when_decided`: end once every `always` property is violated.
        `stop_at_deadlock`: end at the first (shallowest) deadlock.
        """
        if stop is None and self.backend != "python":
            try:
                return self._explore_c(max_states, max_depth,
                                       int(stop_when_decided) | (2 if stop_at_deadlock else 0))
            except CEngineUnavailable:
                if self.backend == "c":
                    raise
        m, c = self.model, self.compiled
        canon = self.canon
        succ = c.successors
        running = c.someone_running
        start = time.perf_counter()
        ex = Exploration(m.scenario.name, m.policy, self.symmetry)
        kinds: dict[str, str] = {p.name: p.kind for p in CATALOGUE}
        first: dict[str, tuple[int, int | None]] = {}  # property -> (state id, -2 - transition for steps)
        # deadlock_free is decided from the successors (none, while someone runs)
        checks = [(n, ch, kinds[n] == "always") for n, ch in c.state_checks.items() if n != "deadlock_free"]
        steps: dict[int, list[tuple[str, StepCheck, bool]]] = {}
        for name, per_k in c.step_checks.items():
            for k, fn in per_k.items():
                steps.setdefault(k, []).append((name, fn, kinds[name] == "always"))
        step_targets: dict[str, Packed] = {}  # step property -> (canonical) successor that decided it
        self._step_targets = step_targets
        deadlock_at: int | None = None
        edges = array("i")  # flattened successor ids, for requests_complete
        offsets = array("l", [0])
        self.found: Trace | None = None
        always = {n for n, k in kinds.items() if k == "always"} - {"deadlock_free", "requests_complete"}

        init = self.packing.pack(m.init_state())
        init = canon(init) if canon else init
        unpack = self.packing.unpack
        ids, states, parent = self.ids, self.states, self.parent
        ids[init] = 0
        states.append(init)
        parent.append(-1)
        head = depth = 0
        level_end = 1
        complete = True
        while head < len(states):
            if head == level_end:
                depth += 1
                level_end = len(states)
                if max_depth is not None and depth > max_depth:
                    complete = False
                    break
            s = states[head]
            sid = head
            head += 1
            if stop is not None and stop(unpack(s)):
                self.found = self._trace(sid, "target")
                complete = False
                break
            if checks:
                for name, check, want in checks:
                    if check(s) != want:
                        first[name] = (sid, None)
                checks = [x for x in checks if x[0] not in first]
            out = succ(s)
            if not out and deadlock_at is None and running(s):
                deadlock_at = sid
            for k, t in out:
                if k in steps:
                    for name, fn, want in steps[k]:
                        if name not in first and fn(s, t) != want:
                            first[name] = (sid, -2 - k)
                            step_targets[name] = canon(t) if canon else t
                if canon:
                    t = canon(t)
                tid = ids.get(t)
                if tid is None:
                    tid = len(states)
                    ids[t] = tid
                    states.append(t)
                    parent.append(sid)
                edges.append(tid)
            offsets.append(len(edges))
            ex.transitions += len(out)
            if max_states is not None and len(states) >= max_states and head < len(states):
                complete = False
                break
            if stop_when_decided and deadlock_at is not None and always <= first.keys():
                complete = False
                break
            if stop_at_deadlock and deadlock_at is not None:
                complete = False
                break
        ex.states = len(states)
        ex.depth = depth
        ex.complete = complete and head >= len(states)
        self._offsets, self._edges = offsets, edges
        ex.results = self._results(first, deadlock_at, ex.complete, kinds)
        ex.seconds = time.perf_counter() - start
        return ex

    # -- the C backend ---------------------------------------------------------------

    def _explore_c(self, max_states: int | None, max_depth: int | None, stop_mode: int) -> Exploration:
        start = time.perf_counter()
        cm = CModel(self.model, self.symmetry)
        lib = cm.lib
        e = lib.lockstep_new()
        if not e:
            raise MemoryError("the C explorer could not allocate its tables")
        try:
            init = cm.encode(self.model.init_state())
            rc = lib.lockstep_explore(e, init, max_states or 0, -1 if max_depth is None else max_depth,
                                      int(cm.symmetry), 1, stop_mode)
            if rc < 0 or lib.lockstep_oom(e):
                raise MemoryError("the C explorer ran out of memory")
            ex = Exploration(self.model.scenario.name, self.model.policy, self.symmetry)
            ex.states = lib.lockstep_count(e)
            ex.transitions = lib.lockstep_transitions(e)
            ex.depth = lib.lockstep_depth(e)
            ex.complete = bool(lib.lockstep_complete(e))
            self._c = (cm, e)
            ex.results = self._results_c()
            self._deadlock_ids = [lib.lockstep_deadlock(e, i) for i in range(lib.lockstep_n_deadlocks(e))]
        finally:
            lib.lockstep_free(e)
            self._c = None
        ex.seconds = time.perf_counter() - start
        return ex

    def _c_trace(self, sid: int, name: str, step_target: int | None = None, k: int | None = None) -> Trace:
        assert self._c is not None
        cm, e = self._c
        lib = cm.lib

        def state(i: int) -> bytes:
            return ctypes.string_at(lib.lockstep_state(e, i), cm.nvp)

        chain = []
        while sid != -1:
            chain.append(sid)
            sid = lib.lockstep_parent(e, sid)
        chain.reverse()
        m = self.model
        cur = cm.encode(m.init_state())
        states = [m.init_state()]
        acts = []
        targets = [state(i) for i in chain[1:]]
        if step_target is not None:
            targets.append(state(step_target))
        for n, target in enumerate(targets):
            last = step_target is not None and n == len(targets) - 1
            for kk, t in cm.successors(cur):
                if cm.canon(t) != target:
                    continue
                if last:  # the step must decide the property as the stored one did
                    prop = PROPERTIES[name]
                    assert prop.step is not None and k is not None
                    expr = prop.step(m.rules, m.transitions[kk])
                    if bool(evaluate(expr, cm.decode(cur), cm.decode(t))) == (prop.kind == "always"):
                        continue
                cur = t
                states.append(cm.decode(t))
                acts.append(m.transitions[kk].action)
                break
            else:  # pragma: no cover - the search found this edge
                raise AssertionError("trace reconstruction lost an edge")
        return Trace(m, states, acts, name)

    def _results_c(self) -> dict[str, PropertyResult]:
        assert self._c is not None
        cm, e = self._c
        lib = cm.lib
        complete = bool(lib.lockstep_complete(e))
        index = {prop.name: p for p, prop in enumerate(CATALOGUE)}

        def witness(name: str) -> Trace | None:
            if name == "deadlock_free":
                at = lib.lockstep_deadlock_at(e)
                return self._c_trace(at, name) if at >= 0 else None
            p = index[name]
            fs = lib.lockstep_first_state(e, p)
            if fs < 0:
                return None
            if PROPERTIES[name].form == "step":
                return self._c_trace(fs, name, lib.lockstep_first_target(e, p), lib.lockstep_first_k(e, p))
            return self._c_trace(fs, name)

        bad = lib.lockstep_rc_bad(e)
        rc = _requests_complete_result(bad == -1, self._c_trace(bad, RC) if bad >= 0 else None)
        return _verdicts(complete, witness, rc)

    def find_deadlock(self, predicate: Callable[[State], bool]) -> Trace | None:
        """Shortest trace to a deadlock state satisfying `predicate` (which must be symmetric)."""
        if self.backend != "python":
            try:
                return self._find_deadlock_c(predicate)
            except CEngineUnavailable:
                if self.backend == "c":
                    raise
        return self.find(lambda s: self.model.is_deadlock(s) and predicate(s))

    def _find_deadlock_c(self, predicate: Callable[[State], bool]) -> Trace | None:
        cm = CModel(self.model, self.symmetry)
        lib = cm.lib
        e = lib.lockstep_new()
        try:
            lib.lockstep_explore(e, cm.encode(self.model.init_state()), 0, -1, int(cm.symmetry), 0, 0)
            self._c = (cm, e)
            for i in range(lib.lockstep_n_deadlocks(e)):
                sid = lib.lockstep_deadlock(e, i)
                s = cm.decode(ctypes.string_at(lib.lockstep_state(e, sid), cm.nvp))
                if predicate(s):
                    return self._c_trace(sid, "target")
            return None
        finally:
            lib.lockstep_free(e)
            self._c = None

    def _step_trace(self, sid: int, code: int | None, name: str) -> Trace:
        """The trace to state `sid`, plus, for a step property, the step that decided it.

        With symmetry the concrete last state may be a permutation of the stored
        one, so the deciding step is re-found among its successors: one whose
        canonical form is the stored successor and whose check agrees.
        """
        tr = self._trace(sid, name)
        if code is None:
            return tr
        c = self.compiled
        pk = self.packing
        s = pk.pack(tr.states[-1])
        target = self._step_targets[name]
        want = PROPERTIES[name].kind == "always"
        for k, t in c.successors(s):
            fn = c.step_checks[name].get(k)
            if fn is not None and fn(s, t) != want and (self.canon(t) if self.canon else t) == target:
                a = self.model.transitions[k].action
                return Trace(self.model, tr.states + [pk.unpack(t)], tr.actions + [a], name)
        raise AssertionError(f"step deciding {name} not found again")  # pragma: no cover

    def _results(self, first: dict[str, tuple[int, int | None]], deadlock_at: int | None,
                 complete: bool, kinds: Mapping[str, str]) -> dict[str, PropertyResult]:
        def witness(name: str) -> Trace | None:
            if name == "deadlock_free":
                return self._trace(deadlock_at, name) if deadlock_at is not None else None
            if name not in first:
                return None
            sid, code = first[name]
            return self._step_trace(sid, code, name)

        return _verdicts(complete, witness, self._requests_complete(complete))

    def _requests_complete(self, complete: bool) -> PropertyResult:
        if not complete:
            return _requests_complete_result(False, None)
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
        pk = self.packing
        ended = [(pk.offset[x], (1 << pk.width[x]) - 1) for x in status_idx]
        stack = [i for i, s in enumerate(self.states) if all((s >> o & m) in returned for o, m in ended)]
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
        return _requests_complete_result(True, self._trace(bad, RC) if bad != -1 else None)


RC = "requests_complete"


def _requests_complete_result(decided: bool, doomed: Trace | None) -> PropertyResult:
    """The verdict of requests_complete: `doomed` leads to a state that cannot complete."""
    if doomed is not None:
        return PropertyResult(RC, "always", "violated", doomed, reason=(
            "no state where every request has returned is reachable from the last state"))
    if decided:
        return PropertyResult(RC, "always", "holds")
    return PropertyResult(RC, "always", "unknown", reason="needs a complete exploration")


def _verdicts(complete: bool, witness: Callable[[str], Trace | None],
              rc: PropertyResult) -> dict[str, PropertyResult]:
    """Every property's verdict: its first witness (shallowest), else holds/unreached if the
    search was complete, else unknown. Shared by both backends."""
    res: dict[str, PropertyResult] = {}
    for prop in CATALOGUE:
        n = prop.name
        if n == RC:
            res[n] = rc
        elif (tr := witness(n)) is not None:
            res[n] = PropertyResult(n, prop.kind, "violated" if prop.kind == "always" else "reached", tr)
        elif complete:
            res[n] = PropertyResult(n, prop.kind, "holds" if prop.kind == "always" else "unreached")
        else:
            res[n] = PropertyResult(n, prop.kind, "unknown", reason="exploration incomplete")
    return res


def explore(model: Model, symmetry: bool = True, **kw: object) -> Exploration:
    return Explorer(model, symmetry).explore(**kw)  # type: ignore[arg-type]
