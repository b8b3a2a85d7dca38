"""Model-guided shrinking: a deadlock found on the real processes, cut down by the model.

Hypothesis shrinks a failing schedule by trying shorter ones on the real processes,
which costs a daemon run per attempt (minutes for the seed, so the default profiles skip
it). The model can do better at once: the states the real run visited end in a model
deadlock state with some wait-for *shape* (which process waits for which, up to renaming
identical processes). The explicit engine finds the shortest model trace to a deadlock of
that shape (``Explorer.find_deadlock``, breadth-first, so no trace is shorter); replaying
that trace against the real processes (replay.py) confirms that the real system deadlocks
there too, with a kernel wait-for cycle through as many processes. The confirmed trace,
with the replay's schedule, is then the failure's ITF trace: never longer than the
explicit minimum, because it is that minimum.

What this trusts: that the model is a sound abstraction (checked on every transition of
the replay itself, so a trace the real system cannot follow fails loudly, as
:class:`ShrinkError`, and the original failure stands).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lockstep.harness.refinement import DeadlockFound
from lockstep.harness.replay import ReplayResult, replay_trace
from lockstep.model.explicit import Explorer
from lockstep.model.machine import Model, State
from lockstep.model.trace import Trace

Shape = tuple[tuple[int, int], ...]


class ShrinkError(AssertionError):
    """The model's shortest trace to the same deadlock shape did not reproduce it."""


def wait_shape(model: Model, s: State) -> Shape:
    """The wait-for graph of `s` as process pairs, canonical under renaming processes.

    Invariant under the explicit engine's symmetry (it only permutes processes), so it
    may be used as a ``find_deadlock`` predicate."""
    pairs = {(a, b) for a, b, _path in model.wait_for(s).edges}
    n = len(model.scenario.processes)
    best: Shape | None = None
    for perm in itertools.permutations(range(1, n + 1)):
        cand = tuple(sorted((perm[a - 1], perm[b - 1]) for a, b in pairs))
        if best is None or cand < best:
            best = cand
    assert best is not None
    return best


@dataclass
class ModelShrunk:
    found: DeadlockFound  # the failure on the real processes, as found
    shape: Shape
    trace: Trace  # the explicit engine's shortest trace to a deadlock of that shape
    replay: ReplayResult  # that trace, driven on fresh real processes

    @property
    def schedule(self) -> list[str]:
        return list(self.replay.schedule)

    @property
    def procs(self) -> set[int]:
        return {a.proc for a in self.trace.actions}


def shrink_deadlock(found: DeadlockFound, model: Model, impl_policy: str | None = None,
                    bugs: tuple[str, ...] = ()) -> ModelShrunk:
    """The shortest model trace to a deadlock shaped like `found`'s, confirmed on the real
    processes. Raises :class:`ShrinkError` if the replay does not deadlock the same way."""
    shape = wait_shape(model, found.trace.last)
    if not model.is_deadlock(found.trace.last):
        raise ShrinkError("the failure's last model state is not a model deadlock state")
    tr = Explorer(model).find_deadlock(lambda s: wait_shape(model, s) == shape)
    if tr is None:  # pragma: no cover - the found state itself is such a deadlock
        raise ShrinkError(f"the explicit engine found no deadlock with wait-for shape {shape}")
    res = replay_trace(tr, impl_policy, bugs)
    if not res.ok or res.deadlock is None:
        raise ShrinkError("the shortest model trace to the same deadlock shape did not deadlock the "
                          "real processes:\n" + res.render())
    cycle = set(res.deadlock.graph.cycle() or [])  # pids p0, p1, ..., p0
    want = max((len(c) for c in _cycles(shape)), default=0)
    if len(cycle) != want:
        raise ShrinkError(f"replayed: the kernel's wait-for cycle has {len(cycle)} processes, the model's "
                          f"{want}:\n" + res.render())
    return ModelShrunk(found, shape, tr, res)


def _cycles(shape: Shape) -> list[list[int]]:
    """Simple cycles of a small process graph (each once, from its smallest process)."""
    succ: dict[int, list[int]] = {}
    for a, b in shape:
        succ.setdefault(a, []).append(b)
    out: list[list[int]] = []

    def walk(start: int, node: int, path: list[int]) -> None:
        for b in succ.get(node, []):
            if b == start:
                out.append(list(path))
            elif b > start and b not in path:
                walk(start, b, path + [b])

    for start in sorted(succ):
        walk(start, start, [start])
    return out


def save_shrunk(shrunk: ModelShrunk, path: str | Path, impl_policy: str, bugs: Sequence[str] = ()) -> None:
    """The confirmed minimal trace as the failure's ITF trace: ``#meta.schedule`` is the
    replay's schedule; the schedule Hypothesis found is kept as ``found_schedule``."""
    itf = shrunk.trace.to_itf()
    meta = itf["#meta"]
    meta["schedule"] = shrunk.schedule
    meta["impl_policy"] = impl_policy
    meta["bugs"] = list(bugs)
    meta["model_guided"] = {
        "found_schedule": list(shrunk.found.schedule),
        "found_steps": len(shrunk.found.trace),
        "steps": len(shrunk.trace),
        "wait_for_shape": [list(e) for e in shrunk.shape],
        "replayed_transitions": shrunk.replay.checked,
        "kernel_cycle": _kernel_cycle(shrunk.replay),
    }
    Path(path).write_text(json.dumps(itf, indent=1) + "\n")


def _kernel_cycle(res: ReplayResult) -> list[str]:
    """The replay's kernel wait-for cycle as process names, each once."""
    if res.deadlock is None:
        return []
    g = res.deadlock.graph
    return [g.names.get(p, str(p)) for p in (g.cycle() or [])[:-1]]
