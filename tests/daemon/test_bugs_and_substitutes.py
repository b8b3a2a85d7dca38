"""Each historical-bug switch changes behaviour observably; substitution succeeds and fails
as the reference says (reference s4, s9 Z1 Z6 Z10 Z12).

The controller pauses the daemon process at chosen reports; at those points the test
reads the kernel's lock table (``lock_holder_pid``) or makes a path valid behind the
daemon's back, which is how "someone beat us to it" is forced deterministically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lockstep.impl.archive import Directory, Regular, tree_nar
from lockstep.impl.client import Client
from lockstep.impl.hash import sha256
from lockstep.impl.local_store import LocalStore
from lockstep.impl.pathlocks import lock_holder_pid
from lockstep.impl.substituter import write_substitute
from lockstep.impl.worker_protocol import DaemonError

from .conftest import Daemon
from .controller import Controller, Report


@pytest.fixture
def controller(daemon: Daemon) -> Iterator[Controller]:
    c = Controller(os.path.join(daemon.root, "control"))
    yield c
    c.close()


def controlled(daemon: Daemon, ctl: Controller, bugs: str = "", **options: object) -> Client:
    overrides = {"lockstep-control": ctl.path}
    if bugs:
        overrides["lockstep-bugs"] = bugs
    return daemon.client(overrides=overrides, **options)


def make_valid(daemon: Daemon, path: str) -> None:
    """Someone else (this test) makes `path` valid: the daemon is beaten to it."""
    with LocalStore(daemon.store_dir, daemon.state_dir) as s:
        os.mkdir(path)
        s.register_valid_paths([s.path_info_from_disk(path)])


def substitute(daemon: Daemon, path: str, broken: bool = False) -> None:
    nar = tree_nar(Directory({"f": Regular(b"substituted\n")}))
    write_substitute(daemon.cache, daemon.store, path, nar, broken=broken)


def holder_at(ctl: Controller, action: str, path_of: dict[str, str]) -> dict[str, object]:
    """Record the holder of the lock of path_of["out"] at each `action` report (and its pid)."""
    seen: dict[str, object] = {}
    prev = ctl.on_report

    def on_report(r: Report) -> None:
        prev(r)
        if r["action"] in (action, "RequestDone"):
            seen[r["action"]] = lock_holder_pid(path_of["out"] + ".lock")
            seen["pid"] = r["pid"]
            seen.setdefault("kept", r.get("kept"))
    ctl.on_report = on_report
    return seen


@pytest.mark.parametrize("policy,bugs,kept", [("guix", "", False), ("pre-fix", "", True),
                                              ("release-on-done", "", False), ("guix", "Z1", True)])
def test_beaten_to_it_releases_or_keeps_the_lock(daemon: Daemon, controller: Controller,
                                                 policy: str, bugs: str, kept: bool) -> None:
    path_of: dict[str, str] = {}
    controller.on_report = lambda r: make_valid(daemon, path_of["out"]) \
        if r["action"] == "HaveDerivation" else None
    seen = holder_at(controller, "Beaten", path_of)
    c = controlled(daemon, controller, bugs, policy=policy, use_substitutes=False)
    x = daemon.add(c, "x", "mkdir $out")
    path_of["out"] = daemon.output(x)
    c.build_paths([x])
    assert not controller.errors
    assert ("Beaten", "x") in controller.actions() and ("StartBuild", "x") not in controller.actions()
    assert seen["kept"] is kept
    assert seen["Beaten"] == (seen["pid"] if kept else None)
    assert seen["RequestDone"] is None  # the request's end releases everything


@pytest.mark.parametrize("policy,bugs,kept", [("guix", "", False), ("pre-fix", "", True), ("guix", "Z1", True)])
def test_substitution_has_become_valid(daemon: Daemon, controller: Controller,
                                       policy: str, bugs: str, kept: bool) -> None:
    path_of: dict[str, str] = {}
    controller.on_report = lambda r: make_valid(daemon, path_of["out"]) if r["action"] == "SubstInit" else None
    seen = holder_at(controller, "SubstBecameValid", path_of)
    c = controlled(daemon, controller, bugs, policy=policy)
    x = daemon.add(c, "x", "exit 1")
    path_of["out"] = daemon.output(x)
    substitute(daemon, path_of["out"])
    c.build_paths([x])
    acts = controller.actions()
    assert ("SubstBecameValid", "x") in acts and ("Substituted", "x") in acts
    assert seen["SubstBecameValid"] == (seen["pid"] if kept else None)
    # a non-top-level goal's kept lock goes when the goal dies, at the end of its round
    assert (("ReleaseKept", "x") in acts) is kept


def test_substitute_succeeds(daemon: Daemon) -> None:
    c = daemon.client()
    dep = daemon.add(c, "dep", "mkdir $out")
    x = daemon.add(c, "x", "exit 1", {"dep": dep})  # would fail if built
    out, dep_out = daemon.output(x), daemon.output(dep)
    nar = tree_nar(Directory({"f": Regular(dep_out.encode())}))
    write_substitute(daemon.cache, daemon.store, dep_out, tree_nar(Directory()))
    write_substitute(daemon.cache, daemon.store, out, nar, references=[dep_out], deriver=x)
    c.build_paths([x])
    assert c.query_references(out) == {dep_out} and c.is_valid_path(dep_out)
    acts = daemon.actions()
    for act in ("SubstInit", "SubstStart", "SubstSucceeded"):
        assert (act, "x") in acts
    assert ("Substituted", "x") in acts and ("StartBuild", "x") not in acts
    plain = os.path.join(daemon.store_dir, sha256(b"p").base32[:32] + "-plain")
    write_substitute(daemon.cache, daemon.store, plain, tree_nar(Regular(b"p")))
    c.ensure_path(plain)
    assert c.is_valid_path(plain)


def test_failing_substitute_keeps_its_lock_and_fails_the_request(daemon: Daemon, controller: Controller) -> None:
    path_of: dict[str, str] = {}
    seen = holder_at(controller, "SubstFailed", path_of)
    c = controlled(daemon, controller)
    x = daemon.add(c, "x", "mkdir $out")
    path_of["out"] = daemon.output(x)
    substitute(daemon, path_of["out"], broken=True)
    with pytest.raises(DaemonError) as e:
        c.build_paths([x])
    assert "substitutes" in e.value.message
    acts = controller.actions()
    assert ("SubstFailed", "x") in acts and acts[-1] == ("SubstitutesFailed", "x")
    assert seen["SubstFailed"] == seen["pid"]  # Z12: kept by the failed goal
    assert lock_holder_pid(path_of["out"] + ".lock") is None and not c.is_valid_path(path_of["out"])


def test_failing_substitute_with_fallback_builds(daemon: Daemon) -> None:
    c = daemon.client(fallback=True)
    x = daemon.add(c, "x", "mkdir $out")
    substitute(daemon, daemon.output(x), broken=True)
    c.build_paths([x])
    acts = daemon.actions()
    # the failed goal's kept lock is released when it dies, before the build locks the path
    i = acts.index(("ReleaseKept", "x"))
    assert acts.index(("SubstFailed", "x")) < i < acts.index(("StartBuild", "x"))
    assert c.is_valid_path(daemon.output(x))


@pytest.mark.parametrize("bugs", ["", "Z6"])
def test_z6_two_goals_of_one_process_both_lock_the_same_output(daemon: Daemon, bugs: str) -> None:
    overrides = {"lockstep-bugs": bugs} if bugs else {}
    c = daemon.client(max_jobs=2, use_substitutes=False, overrides=overrides)
    fixed = ("sha256", sha256(b"hello"))
    one = daemon.add(c, "fixed", "sleep 0.2; printf hello > $out", fixed=fixed)
    two = daemon.add(c, "fixed", "sleep 0.2; printf hello > $out; true", fixed=fixed)
    assert one != two and daemon.output(one) == daemon.output(two)
    c.build_paths([one, two])
    acts = daemon.actions()
    if bugs:  # both "hold" the lock: two builders write the same output at once
        assert acts.count(("StartBuild", "fixed")) == 2 and ("WaitForAnyGoal", "fixed") not in acts
    else:
        assert acts.count(("StartBuild", "fixed")) == 1
        assert ("WaitForAnyGoal", "fixed") in acts and ("Beaten", "fixed") in acts


@pytest.mark.parametrize("bugs,locked", [("", True), ("Z10", False)])
def test_z10_resume_after_slot_wait_without_relocking(daemon: Daemon, controller: Controller,
                                                      bugs: str, locked: bool) -> None:
    path_of: dict[str, str] = {}
    seen: dict[str, object] = {}

    def on_report(r: Report) -> None:
        if r["action"] == "StartBuild" and r["drv"] == "b":
            seen["holder"], seen["pid"], seen["locked"] = lock_holder_pid(path_of["out"] + ".lock"), r["pid"], r["locked"]
    controller.on_report = on_report
    c = controlled(daemon, controller, bugs, max_jobs=1, use_substitutes=False)
    a = daemon.add(c, "a", "mkdir $out")
    b = daemon.add(c, "b", "mkdir $out")
    path_of["out"] = daemon.output(b)
    c.build_paths([a, b])
    assert ("NoBuildSlot", "b") in controller.actions()
    assert seen["locked"] is locked
    assert seen["holder"] == (seen["pid"] if locked else None)  # Z10: a builder without the lock


@pytest.mark.parametrize("policy", ["guix", "pre-fix"])
def test_pre_fix_kept_lock_of_a_top_level_goal_makes_the_worker_stuck(daemon: Daemon, policy: str) -> None:
    """Reference Z12 (inferred): a goal of the same process that needs a path kept by a
    finished top-level goal waits for any goal forever; the worker trips its assert."""
    c = daemon.client(max_jobs=1, use_substitutes=False, policy=policy)
    fixed = ("sha256", sha256(b"x"))
    drvs = [daemon.add(c, "fx", f"printf x > $out; echo {i}", fixed=fixed) for i in range(3)]
    if policy == "guix":
        c.build_paths(drvs)
        assert daemon.actions().count(("Beaten", "fx")) == 2
        return
    with pytest.raises(DaemonError) as e:
        c.build_paths(drvs)
    assert "stuck" in e.value.message
    assert daemon.actions()[-1] == ("WorkerStuck", "")
