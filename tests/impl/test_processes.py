"""Several real OS processes on one store: concurrent registration, crashes, GC races.

The interleavings are up to the OS; the assertions hold for every interleaving, so
the tests are deterministic in outcome. Each test has its own store (tmp_path).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockstep.impl import faults
from lockstep.impl.gc import collect_garbage
from lockstep.impl.local_store import LocalStore

from .conftest import check_db_consistent, db_rows

WORKER = os.fspath(Path(__file__).with_name("proc_worker.py"))
REPO = os.fspath(Path(__file__).resolve().parents[2])


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    full_env.update({"PYTHONPATH": REPO, **(env or {})})
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)


def finish(p: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    out, err = p.communicate(timeout=300)
    line = out.strip().splitlines()[-1] if out.strip() else "{}"
    return p.returncode, {**json.loads(line), "stderr": err}


def test_four_processes_adding_overlapping_texts(store_dirs: tuple[str, str]) -> None:
    n = 12
    procs = [start("add-texts", *store_dirs, str(seed), str(n), "shared") for seed in range(4)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], [r["stderr"] for _, r in results]
    shared = results[0][1]["paths"][:n]
    assert all(r["paths"][:n] == shared for _, r in results)  # everyone computed the same paths
    rows = db_rows(store_dirs[1])
    valid = [r[1] for r in rows["ValidPaths"]]
    assert len(valid) == len(set(valid)) == n + 4 * (n // 2)  # nothing lost, no duplicates
    assert len(rows["Refs"]) == (n - 1) + 4 * (n // 2 - 1)  # each chain link exactly once
    assert not any(p.endswith(".lock") for p in os.listdir(store_dirs[0]))  # all deleted once valid
    check_db_consistent(store_dirs[1])


def test_four_processes_registering_overlapping_batches(store_dirs: tuple[str, str]) -> None:
    n = 15
    with LocalStore(*store_dirs) as store:
        paths = [store.store.text_path(f"reg-{i}", str(i)) for i in range(n)]
    for p in paths:
        Path(p).write_text("")
    procs = [start("register", *store_dirs, str(seed), str(n)) for seed in range(4)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    rows = db_rows(store_dirs[1])
    assert sorted(r[1] for r in rows["ValidPaths"]) == sorted(paths)
    assert len(rows["Refs"]) == n - 1
    check_db_consistent(store_dirs[1])


# --- crashes -----------------------------------------------------------------------------

CRASH_POINTS = ["local-store.add.after-write", "local-store.register.before-commit"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_before_commit_leaves_path_invalid_and_db_consistent(
    point: str, store_dirs: tuple[str, str]
) -> None:
    with LocalStore(*store_dirs) as store:
        keep = store.add_text_to_store("keep.txt", "kept")
        store.add_permanent_root(keep)
        before = db_rows(store_dirs[1])
    p = start("add-one", *store_dirs, "victim.txt", "lost", env={faults.ENV_VAR: f"{point}:kill"})
    rc, _ = finish(p)
    assert rc == -signal.SIGKILL
    check_db_consistent(store_dirs[1])
    assert db_rows(store_dirs[1]) == before  # the transaction never happened
    with LocalStore(*store_dirs) as store:
        victim = store.store.text_path("victim.txt", "lost")
        assert not store.is_valid_path(victim)
        # Allowed leftovers: the written file and its (unlocked, empty) lock file.
        assert set(os.listdir(store_dirs[0])) <= {os.path.basename(x) for x in (keep, victim, victim + ".lock")}
        # The next writer takes the lock, deletes the leftovers and succeeds.
        assert store.add_text_to_store("victim.txt", "lost") == victim
        assert Path(victim).read_text() == "lost" and store.is_valid_path(victim)
        # The dead process's temp roots file is stale; GC removes it and the garbage.
        result = collect_garbage(store)
        assert victim not in result.deleted  # our own temp root protects it
    check_db_consistent(store_dirs[1])


def test_crash_during_gc_keeps_db_consistent(store_dirs: tuple[str, str]) -> None:
    with LocalStore(*store_dirs) as store:
        a = store.add_text_to_store("a", "a")
        b = store.add_text_to_store("b", "b", [a])
        root = store.add_text_to_store("r", "r")
        store.add_permanent_root(root)
    p = start("gc", *store_dirs, env={faults.ENV_VAR: "gc.before-delete:kill@2"})
    assert finish(p)[0] == -signal.SIGKILL
    check_db_consistent(store_dirs[1])
    with LocalStore(*store_dirs) as store:
        assert store.is_valid_path(root)
        assert not store.is_valid_path(b) and not os.path.exists(b)  # referrer went first
        assert store.is_valid_path(a) == os.path.exists(a)  # never valid without its files
        collect_garbage(store)
        assert store.query_all_valid_paths() == {root}


# --- GC racing with additions -------------------------------------------------------------


def test_gc_racing_with_additions_deletes_nothing_live(store_dirs: tuple[str, str], tmp_path: Path) -> None:
    with LocalStore(*store_dirs) as store:
        garbage = [store.add_text_to_store(f"garbage-{i}", str(i)) for i in range(10)]
    stop = os.fspath(tmp_path / "stop")
    gc = start("gc-loop", *store_dirs, stop)
    adders = [start("add-texts", *store_dirs, str(seed), "20", "race") for seed in range(3)]
    results = [finish(p) for p in adders]
    Path(stop).touch()
    gc_rc, gc_out = finish(gc)
    assert gc_rc == 0, gc_out["stderr"]
    for rc, out in results:
        assert rc == 0 and out["missing"] == [], out  # every adder's paths stayed live
    # Paths of finished adders may be collected (their temp roots died with them);
    # the adders' own checks above are what show nothing was collected while live.
    assert gc_out["runs"] >= 1
    assert set(garbage) <= set(gc_out["deleted"])  # the collector did collect (not vacuous)
    check_db_consistent(store_dirs[1])
    conn = sqlite3.connect(os.path.join(store_dirs[1], "db", "db.sqlite"))
    valid = {r[0] for r in conn.execute("select path from ValidPaths")}
    conn.close()
    assert all(os.path.exists(p) for p in valid)  # nothing valid lost its files


def test_gc_without_temp_roots_would_delete_live_paths(
    store_dirs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp-root check is what protects a live path of another process."""
    import lockstep.impl.gc as gc

    with LocalStore(*store_dirs) as store:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, *store_dirs], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": REPO},
        )
        assert holder.stdout is not None and holder.stdin is not None
        live = holder.stdout.readline().strip()  # the holder added it and keeps its temp root
        try:
            assert collect_garbage(store).deleted == []
            assert store.is_valid_path(live)
            monkeypatch.setattr(gc, "read_temp_roots", lambda s: (set(), []))  # the mutant
            assert collect_garbage(store).deleted == [live]  # ... deletes a live path
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)


_HOLDER = """
import sys
from lockstep.impl.local_store import LocalStore
s = LocalStore(sys.argv[1], sys.argv[2])
print(s.add_text_to_store("held.txt", "held"), flush=True)
sys.stdin.read()
"""
