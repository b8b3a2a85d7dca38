"""Traces: the printed format (golden), the ITF JSON on disk, and replay's rejections.

The golden trace is the three-way deadlock of reference section 8.2, written out
as an action list rather than taken from a search (so a change in which shortest
trace an engine returns does not change it): P1 builds path1, P2 path2, P3 path3;
each process is then beaten to a path another built, keeps its lock (pre-fix), and
waits for the next. Run with LOCKSTEP_UPDATE_GOLDEN=1 to rewrite the golden file
after an intended change of format; the test never rewrites it otherwise.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lockstep.model import Model
from lockstep.model import actions as A
from lockstep.model.trace import Trace, TraceError, load_itf, replay

from .support import assert_replays, run_actions, scenario

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LOCKSTEP_UPDATE_GOLDEN") == "1"

P4, L1, L2, L3 = "path4", "path1", "path2", "path3"
SEED_DEADLOCK: list[A.Action] = [
    A.HaveDerivation(1, P4), A.HaveDerivation(2, P4), A.HaveDerivation(3, P4),
    A.HaveDerivation(1, L1), A.HaveDerivation(2, L1), A.HaveDerivation(3, L1),
    A.StartBuild(1, L1),
    A.HaveDerivation(2, L2), A.HaveDerivation(3, L2), A.StartBuild(2, L2),
    A.HaveDerivation(3, L3), A.StartBuild(3, L3), A.HaveDerivation(2, L3),
    A.BuildSucceeded(1, L1), A.Beaten(3, L1),
    A.HaveDerivation(1, L2), A.BuildSucceeded(2, L2), A.Beaten(1, L2),
    A.HaveDerivation(1, L3), A.BuildSucceeded(3, L3), A.Beaten(2, L3),
]


def seed_trace(policy: str = "pre-fix") -> Trace:
    model = Model(scenario("seed"), policy)
    return Trace(model, run_actions(model, SEED_DEADLOCK), list(SEED_DEADLOCK), "deadlock_free")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with LOCKSTEP_UPDATE_GOLDEN=1 to write it"
    want = path.read_text()
    assert text == want, (f"the output differs from {path}; if the change is intended, "
                          "rerun with LOCKSTEP_UPDATE_GOLDEN=1 and review the diff")


# -- the printed format ---------------------------------------------------------------------


def test_golden_seed_deadlock_trace() -> None:
    tr = seed_trace()
    assert tr.model.is_deadlock(tr.last)
    check_golden("seed-prefix-deadlock.txt", tr.render())


def test_rendered_trace_tells_the_story() -> None:
    """What a reader needs, independent of the exact layout the golden file pins."""
    text = seed_trace().render()
    lines = text.splitlines()
    assert lines[0] == ("Trace of 21 steps: scenario seed, policy pre-fix, property deadlock_free")
    for i, a in enumerate(SEED_DEADLOCK, 1):  # numbered steps: process, action, arguments
        assert f"{i:3d}  P{a.proc} {a.kind}(" in text
    assert "holder.path1: NONE -> KEPT_TOP" in text  # what changed, by variable name
    assert "     locks: path1: P3 KEPT_TOP, path2: P1 KEPT_TOP, path3: P2 KEPT_TOP" in lines
    assert "     cycle: P1 -> P2 -> P3 -> P1" in lines
    assert lines[-1] == "     final state: deadlock (only failed lock attempts are enabled)"


def test_the_same_steps_under_the_fix_do_not_keep_locks() -> None:
    """Under guix the beaten goals release at once: the story ends with no lock held."""
    model = Model(scenario("seed"), "guix")
    last = run_actions(model, SEED_DEADLOCK)[-1]
    assert model.describe(last)["locks"] == {}
    assert not model.is_deadlock(last)
    assert model.wait_for(last).edges == ()


# -- ITF ------------------------------------------------------------------------------------


def itf_ints_are_bigints(v: Any, where: str = "") -> None:
    """Every integer outside #meta is encoded as {"#bigint": "<digits>"}."""
    if isinstance(v, bool) or isinstance(v, str) or v is None:
        return
    assert not isinstance(v, int), f"bare int {v} at {where}"
    if isinstance(v, list):
        for i, x in enumerate(v):
            itf_ints_are_bigints(x, f"{where}[{i}]")
    elif isinstance(v, dict):
        if "#bigint" in v:
            assert set(v) == {"#bigint"} and isinstance(v["#bigint"], str)
            int(v["#bigint"])
            return
        for k, x in v.items():
            if k != "#meta":
                itf_ints_are_bigints(x, f"{where}.{k}")


def test_saved_trace_is_valid_itf(tmp_path: Path) -> None:
    tr = seed_trace()
    path = tmp_path / "t.itf.json"
    tr.save(path)
    data = json.loads(path.read_text())
    meta = data["#meta"]
    assert meta["format"] == "ITF" and meta["source"] == "lockstep"
    assert (meta["scenario"], meta["policy"], meta["property"]) == ("seed", "pre-fix", "deadlock_free")
    assert isinstance(data["vars"], list) and "mbt::actionTaken" in data["vars"]
    states = data["states"]
    assert len(states) == len(tr) + 1
    for i, st in enumerate(states):
        assert st["#meta"] == {"index": i}
        assert set(data["vars"]) <= set(st), f"state {i} lacks a declared variable"
        assert set(st) - {"#meta"} == set(data["vars"]), f"state {i} has undeclared variables"
        itf_ints_are_bigints(st, f"states[{i}]")
        assert "#set" in st["valid"]
    assert states[0]["mbt::actionTaken"] == "init" and states[0]["mbt::nondetPicks"] == {}
    for i, a in enumerate(tr.actions, 1):
        assert states[i]["mbt::actionTaken"] == a.kind
        assert states[i]["mbt::nondetPicks"]["proc"] == {"#bigint": str(a.proc)}
    # the last state shows the kept locks, with process numbers as bigints
    assert states[-1]["locks"]["path1"] == {"proc": {"#bigint": "3"}, "holder": "KEPT_TOP"}
    loaded = replay(tr.model, load_itf(path))
    assert loaded.states == tr.states and loaded.actions == tr.actions


def test_engine_trace_round_trips() -> None:
    from lockstep.model.explicit import Explorer

    model = Model(scenario("substitute-ok"), "pre-fix")
    ex = Explorer(model).explore()
    for r in ex.results.values():
        if r.trace is not None:
            assert_replays(r.trace)


def tampered(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(seed_trace().to_itf())
    edit(data)
    out: dict[str, Any] = json.loads(json.dumps(data))
    return out


def test_replay_rejects_a_disabled_action() -> None:
    def edit(d: dict[str, Any]) -> None:  # step 15: P3 "builds" path1 instead of being beaten
        d["states"][15]["mbt::actionTaken"] = "StartBuild"

    with pytest.raises(TraceError, match=r"^trace step 15: action StartBuild\(proc=3, drv='path1'\) is not enabled"):
        replay(seed_trace().model, tampered(edit))


def test_replay_rejects_an_action_with_a_different_effect_at_its_step() -> None:
    """An enabled but different action: rejected at the step where the states part.

    Step 13 becomes HaveDerivation(P1, path3), which is enabled, so the model's
    state 13 differs from the recorded one; trace.py promises to name "the first
    step that differs". (Checking all actions before any state would instead
    blame step 19, where P1's own HaveDerivation(path3) is no longer enabled.)
    """
    def edit(d: dict[str, Any]) -> None:
        d["states"][13]["mbt::nondetPicks"]["proc"] = {"#bigint": "1"}

    with pytest.raises(TraceError, match=r"^trace step 13: "):
        replay(seed_trace().model, tampered(edit))


def test_replay_rejects_an_unknown_action() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["states"][4]["mbt::actionTaken"] = "Teleport"

    with pytest.raises(TraceError, match=r"^trace step 4: .*unknown kind 'Teleport'"):
        replay(seed_trace().model, tampered(edit))


def test_replay_rejects_an_edited_state() -> None:
    def edit(d: dict[str, Any]) -> None:  # step 18 claims P1 did not keep path2's lock
        del d["states"][18]["locks"]["path2"]

    with pytest.raises(TraceError, match=r"^trace step 18: recorded state differs"):
        replay(seed_trace().model, tampered(edit))


def test_replay_rejects_an_edited_goal_state() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["states"][7]["procs"]["P1"]["goals"]["path1"] = "TRY"

    with pytest.raises(TraceError, match=r"^trace step 7: "):
        replay(seed_trace().model, tampered(edit))


def test_replay_under_another_policy_names_the_first_differing_step() -> None:
    """The pre-fix trace does not fit guix: step 15 (Beaten) releases there."""
    data = seed_trace().to_itf()
    with pytest.raises(TraceError, match=r"^trace step 15: recorded state differs"):
        replay(Model(scenario("seed"), "guix"), json.loads(json.dumps(data)))
