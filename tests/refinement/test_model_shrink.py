"""Model-guided shrinking (harness/shrink.py) of a seed deadlock found on the real processes.

The saved trace must be no longer than the explicit engine's shortest seed deadlock and
involve three processes. The state machine (stateful.RefinementMachine with ``model_shrink``) is driven here by a
seeded random schedule instead of Hypothesis's search (which costs ~15 s for the seed):
the path from a found deadlock to the saved trace is the same (the machine's
``deadlock_free`` invariant confirms the deadlock, ``_record`` shrinks and saves it).
"""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest

from lockstep.harness.refinement import DeadlockFound, Session
from lockstep.harness.shrink import wait_shape
from lockstep.harness.stateful import RefinementMachine
from lockstep.model.trace import load_itf, replay

THREE_CYCLE = ((1, 2), (2, 3), (3, 1))


class SeedPreFixShrunk(RefinementMachine):
    model_policy = "pre-fix"
    properties = ()
    model_shrink = True


def drive_to_three_way_deadlock(tmp_path: Path) -> tuple[SeedPreFixShrunk, DeadlockFound]:
    """Seeded random choices until the machine's invariant confirms a three-process cycle."""
    SeedPreFixShrunk.failures = []
    SeedPreFixShrunk.shrunk = {}
    SeedPreFixShrunk.shrink_errors = []
    SeedPreFixShrunk.trace_dir = str(tmp_path)
    for seed in range(6, 40):  # seed 6 is the first; later ones only if the daemon changes
        rng = random.Random(seed)
        machine = SeedPreFixShrunk()
        try:
            s = machine.session
            for _ in range(200):
                if s.finished:
                    break
                if s.deadlocked():
                    if wait_shape(s.model, s.state) != THREE_CYCLE:
                        break
                    with pytest.raises(DeadlockFound) as e:
                        machine.deadlock_free()
                    return machine, e.value
                s.choose(rng.choice(s.options()))
        finally:
            machine.teardown()
    raise AssertionError("no seeded schedule reached the three-way seed deadlock")


def explicit_minimum() -> int:
    """The explicit engine's shortest seed pre-fix deadlock (any shape), as pinned in
    specs/manifest.toml (tests/model checks the pin; searching again costs ~4 s)."""
    data = tomllib.loads((Path(__file__).parents[2] / "specs" / "manifest.toml").read_text())
    entry = next(e for e in data["entry"] if e["scenario"] == "seed" and e["policy"] == "pre-fix")
    return int(entry["trace_lengths"]["deadlock_free"])


def test_found_deadlock_is_saved_as_the_replayed_explicit_minimum(tmp_path: Path) -> None:
    machine, found = drive_to_three_way_deadlock(tmp_path)
    m = machine.session.model
    explicit = explicit_minimum()
    assert SeedPreFixShrunk.shrink_errors == []
    shrunk = SeedPreFixShrunk.shrunk[THREE_CYCLE]
    assert shrunk.found is found
    assert len(shrunk.trace) <= explicit <= len(found.trace)
    assert shrunk.procs == {1, 2, 3}
    assert shrunk.replay.ok and shrunk.replay.steps[-1].same_state, shrunk.replay.render()
    assert shrunk.replay.deadlock is not None
    assert len(set(shrunk.replay.deadlock.graph.cycle() or [])) == 3  # the kernel's lock table agrees

    saved = load_itf(next(tmp_path.glob("seed.pre-fix.impl-pre-fix.deadlock_free.itf.json")))
    meta = saved["#meta"]
    assert meta["model_guided"]["found_schedule"] == found.schedule
    assert meta["model_guided"]["steps"] == len(shrunk.trace) <= explicit
    assert sorted(meta["model_guided"]["kernel_cycle"]) == ["P1", "P2", "P3"]
    tr = replay(m, saved)  # the saved trace is a model trace ending in that deadlock
    assert len(tr) == len(shrunk.trace) and m.is_deadlock(tr.last)
    assert {a.proc for a in tr.actions} == {1, 2, 3}
    assert {c.split(":")[0] for c in meta["schedule"]} == {"P1", "P2", "P3"}

    # the saved schedule alone deadlocks fresh real processes the same way
    again = Session(m, properties=(), granularity="fine")
    try:
        again.start()
        again.replay_schedule(meta["schedule"])
        assert again.deadlocked() and wait_shape(m, again.state) == THREE_CYCLE
        with pytest.raises(DeadlockFound):
            again.confirm_deadlock()
    finally:
        again.stop()
    json.dumps(meta)  # plain JSON
