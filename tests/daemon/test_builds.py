"""Real builds through the daemon: DAGs, references, failures, keep-going, timeouts, GC.

Where a test must look at the lock table at one exact transition it uses the
controller (controller.py): the daemon process is paused at that report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from lockstep.impl.client import Client
from lockstep.impl.pathlocks import lock_holder_pid
from lockstep.impl.worker_protocol import DaemonError

from .conftest import Daemon
from .controller import Controller, Report


@pytest.fixture
def controller(daemon: Daemon) -> Iterator[Controller]:
    c = Controller(os.path.join(daemon.root, "control"))
    yield c
    c.close()


def controlled(daemon: Daemon, controller: Controller, overrides: dict[str, str] | None = None,
               **options: object) -> Client:
    """A client whose daemon process reports to (and waits for) `controller`."""
    return daemon.client(overrides={"lockstep-control": controller.path, **(overrides or {})}, **options)


def test_dag_builds_with_references_and_second_request_finds_it_valid(daemon: Daemon) -> None:
    c = daemon.client(max_jobs=2)
    a = daemon.add(c, "a", "echo hello > $out")
    b = daemon.add(c, "b", "mkdir $out; echo $in_a > $out/ref", {"a": a})
    m = daemon.add(c, "m", "mkdir $out $dev; echo $in_b > $dev/b; echo plain > $out/x", {"b": b},
                   outputs=("out", "dev"))
    top = daemon.add(c, "top", "mkdir $out; echo $in_m $in_a > $out/refs", {"m": m, "a": a})
    c.build_paths([top])
    oa, ob, otop = daemon.output(a), daemon.output(b), daemon.output(top)
    om, odev = daemon.output(m), daemon.output(m, "dev")
    assert c.query_valid_paths([oa, ob, om, odev, otop]) == {oa, ob, om, odev, otop}
    assert c.query_references(oa) == set()
    assert c.query_references(ob) == {oa}
    assert c.query_references(odev) == {ob}
    assert c.query_references(om) == set()  # dev refers to b, out refers to nothing
    assert c.query_references(otop) == {om, oa}
    info = c.query_path_info(otop)
    assert info is not None and info["deriver"] == top
    assert open(os.path.join(ob, "ref")).read().strip() == oa
    built = [n for act, n in daemon.actions() if act == "BuildSucceeded"]
    assert sorted(built) == ["a", "b", "m", "top"]
    assert not [f for f in os.listdir(daemon.store_dir) if f.endswith(".lock")]  # deleted after use
    before = len(daemon.reports())
    c.build_paths([top])
    again = [(r["action"], r.get("drv")) for r in daemon.reports()[before:]]
    assert again == [("RequestStart", None), ("AlreadyValid", "top"), ("RequestDone", None)]


def test_failing_builder_releases_locks_and_leftovers_are_deleted(daemon: Daemon) -> None:
    c = daemon.client()
    bad = daemon.add(c, "bad", "mkdir $out; echo partial > $out/x; exit 3")
    with pytest.raises(DaemonError) as e:
        c.build_paths([bad])
    assert e.value.status == 100 and "failed" in e.value.message
    out = daemon.output(bad)
    assert not c.is_valid_path(out) and os.path.exists(out)  # left invalid on disk
    assert lock_holder_pid(out + ".lock") is None
    assert ("BuildFailed", "bad") in daemon.actions()


def test_keep_going_builds_the_rest_and_fails_dependents(daemon: Daemon) -> None:
    c = daemon.client(keep_going=True)
    a = daemon.add(c, "a", "exit 1")
    b = daemon.add(c, "b", "mkdir $out")
    d = daemon.add(c, "d", "mkdir $out", {"a": a})
    with pytest.raises(DaemonError) as e:
        c.build_paths([a, b, d])
    assert e.value.status == 100
    assert a in e.value.message and d in e.value.message and b not in e.value.message
    assert c.is_valid_path(daemon.output(b))
    acts = daemon.actions()
    assert ("BuildFailed", "a") in acts and ("DependencyFailed", "d") in acts
    assert ("StartBuild", "d") not in acts


def test_without_keep_going_a_failure_cancels_the_request(daemon: Daemon) -> None:
    c = daemon.client(keep_going=False)
    a = daemon.add(c, "a", "exit 1")
    b = daemon.add(c, "b", "mkdir $out")  # key order: a's build starts first, b waits for the slot
    with pytest.raises(DaemonError):
        c.build_paths([a, b])
    assert not c.is_valid_path(daemon.output(b))
    acts = daemon.actions()
    assert ("NoBuildSlot", "b") in acts and ("StartBuild", "b") not in acts
    assert acts[-1] == ("RequestDone", "")


@pytest.mark.parametrize("policy,kept", [("guix", True), ("release-on-done", False)])
@pytest.mark.parametrize("kind", ["build-timeout", "build-max-silent-time"])
def test_timeout_kills_the_builder_and_the_lock_stays_until_the_request_ends(
        daemon: Daemon, controller: Controller, policy: str, kept: bool, kind: str) -> None:
    seen: dict[str, object] = {}

    def on_report(r: Report) -> None:
        if r["action"] in ("BuildTimedOut", "RequestDone"):
            seen[r["action"]] = lock_holder_pid(out + ".lock")
            seen["pid"] = r["pid"]

    controller.on_report = on_report
    c = controlled(daemon, controller, policy=policy, overrides={kind: "30"})
    hang = daemon.add(c, "hang", "echo started; sleep 600; mkdir $out")
    out = daemon.output(hang)
    with pytest.raises(DaemonError) as e:
        c.build_paths([hang])  # virtual time: the controller jumps to the deadline at once
    assert e.value.status == 101  # timeout
    assert not controller.errors
    assert seen["BuildTimedOut"] == (seen["pid"] if kept else None)
    assert seen["RequestDone"] is None
    assert ("BuildTimedOut", "hang") in controller.actions()


def test_builder_output_goes_to_the_client_log(daemon: Daemon) -> None:
    logs: list[bytes] = []
    c = daemon.client()
    c.on_log = logs.append
    drv = daemon.add(c, "chatty", "echo hello-from-builder; mkdir $out")
    c.build_paths([drv])
    assert b"hello-from-builder" in b"".join(logs)


def wait_gone(pid: int) -> None:
    """Until process `pid` has exited (its fcntl locks, e.g. on its temp roots, are gone)."""
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)


def test_gc_through_the_daemon_keeps_temp_roots(daemon: Daemon) -> None:
    c = daemon.client()
    a = daemon.add(c, "a", "mkdir $out")
    b = daemon.add(c, "b", "mkdir $out")
    c.build_paths([a, b])
    builder_pid = daemon.reports()[-1]["pid"]
    keep = daemon.client()
    keep.add_temp_root(daemon.output(a))
    gc = daemon.client()
    dead, _ = gc.collect_garbage(dry_run=True)
    assert daemon.output(b) not in dead  # the building process still has it as a temp root
    c.close()
    wait_gone(builder_pid)
    oa, ob = daemon.output(a), daemon.output(b)
    dead, _ = gc.collect_garbage(dry_run=True)
    assert ob in dead and oa not in dead
    deleted, _ = gc.collect_garbage()
    assert ob in deleted
    assert gc.is_valid_path(oa) and not gc.is_valid_path(ob)


def test_add_to_store_and_indirect_root(daemon: Daemon, tmp_path: object) -> None:
    c = daemon.client()
    src = os.path.join(daemon.root, "src")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "sub", "f"), "w") as f:
        f.write("data")
    p = c.add_to_store(src, name="tree")
    assert c.is_valid_path(p) and open(os.path.join(p, "sub", "f")).read() == "data"
    link = os.path.join(daemon.root, "link")
    os.symlink(p, link)
    c.add_indirect_root(link)
    deleted, _ = c.collect_garbage()
    assert p not in deleted
