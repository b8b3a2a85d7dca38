"""GC (roots, temp roots, order, lock files), reference scanning, optimise, verify."""

from __future__ import annotations

import os
from pathlib import Path

from lockstep.impl.gc import collect_garbage, find_roots
from lockstep.impl.local_store import LocalStore
from lockstep.impl.optimise_store import optimise_store
from lockstep.impl.references import scan_for_references
from lockstep.impl.verify import verify_store

from .conftest import check_db_consistent


def _chain(store: LocalStore, tag: str, n: int = 3) -> list[str]:
    paths: list[str] = []
    for i in range(n):
        paths.append(store.add_text_to_store(f"{tag}-{i}", f"{tag} {i} {paths[-1:]}", paths[-1:]))
    return paths


def test_gc_keeps_rooted_closure_and_deletes_rest_referrers_first(store_dirs: tuple[str, str]) -> None:
    with LocalStore(*store_dirs) as s:
        kept = _chain(s, "kept")
        dead = _chain(s, "dead", 4)
        s.add_permanent_root(kept[-1])
        leftover = Path(s.store.path) / ("0" * 32 + "-leftover")
        leftover.write_text("junk")  # an invalid entry: a crashed writer's output
    with LocalStore(*store_dirs) as s:  # a fresh process view: no temp roots of ours
        result = collect_garbage(s)
        assert result.deleted == dead[::-1] + [os.fspath(leftover)]  # referrers first
        assert result.bytes_freed > 0
        assert s.query_all_valid_paths() == set(kept)
        assert all(os.path.exists(p) for p in kept)
        assert not any(os.path.exists(p) for p in dead)
    check_db_consistent(store_dirs[1])


def test_gc_respects_own_and_other_temp_roots_and_their_lock_files(store_dirs: tuple[str, str]) -> None:
    with LocalStore(*store_dirs) as s:
        mine = s.add_text_to_store("mine", "mine")
        building = s.store.text_path("building", "b")
        s.add_temp_root(building)
        Path(building + ".lock").touch()  # held by a builder of ours
        Path(building).write_text("half")  # not yet registered
        stale_lock = Path(s.store.path) / ("1" * 32 + "-other.lock")
        stale_lock.touch()
        result = collect_garbage(s)
        assert result.deleted == [os.fspath(stale_lock)]
        assert os.path.exists(mine) and os.path.exists(building) and os.path.exists(building + ".lock")


def test_stale_temp_roots_file_is_removed(store_dirs: tuple[str, str]) -> None:
    with LocalStore(*store_dirs) as s:
        path = s.add_text_to_store("x", "x")
        dead = Path(s.state_dir) / "temproots" / "999999999"
        dead.write_bytes(path.encode() + b"\0")  # nobody holds its lock: its owner died
        assert path not in collect_garbage(s).deleted  # our own root still holds
        assert not dead.exists()


def test_indirect_roots(store_dirs: tuple[str, str], tmp_path: Path) -> None:
    with LocalStore(*store_dirs) as s:
        a = s.add_text_to_store("a", "a")
        b = s.add_text_to_store("b", "b")
        link = tmp_path / "result"
        link.symlink_to(a)
        auto = s.add_indirect_root(os.fspath(link))
        gone = tmp_path / "gone"
        gone.symlink_to(b)
        stale = s.add_indirect_root(os.fspath(gone))
        gone.unlink()
        assert find_roots(s) == {a}
        assert os.path.islink(auto) and not os.path.lexists(stale)  # stale auto link removed
    with LocalStore(*store_dirs) as s:
        assert collect_garbage(s).deleted == [b]


def test_max_freed_and_dry_run(store_dirs: tuple[str, str]) -> None:
    with LocalStore(*store_dirs) as s:
        paths = [s.add_text_to_store(f"p{i}", "x" * 5000 + str(i)) for i in range(4)]
    with LocalStore(*store_dirs) as s:
        assert sorted(collect_garbage(s, dry_run=True).deleted) == sorted(paths)
        assert s.query_all_valid_paths() == set(paths)
        assert len(collect_garbage(s, max_freed=1).deleted) == 1


def test_reference_scanning(store: LocalStore, tmp_path: Path) -> None:
    a = store.add_text_to_store("a", "a")
    b = store.add_text_to_store("b", "b")
    c = store.add_text_to_store("c", "c")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "f").write_bytes(b"\0binary" + a.encode() + b"tail")
    (out / "link").symlink_to(b + "/bin/sh")
    (out / "big").write_bytes(b"x" * 70000 + c[-40:].encode())  # straddles a chunk boundary
    assert scan_for_references(os.fspath(out), [a, b, c], store.store) == {a, b, c}
    (out / "big").unlink()
    assert scan_for_references(os.fspath(out), [a, b, c], store.store) == {a, b}


def test_optimise_links_identical_files_and_gc_cleans_links(store_dirs: tuple[str, str], tmp_path: Path) -> None:
    for name in ("one", "two"):
        d = tmp_path / name
        d.mkdir()
        (d / "same").write_text("same content" * 100)
        (d / "own").write_text(name)
    with LocalStore(*store_dirs) as s:
        p1 = s.add_to_store(os.fspath(tmp_path / "one"))
        p2 = s.add_to_store(os.fspath(tmp_path / "two"))
        s.add_permanent_root(p1)
        stats = optimise_store(s)
        assert stats.files_linked == 1
        assert os.stat(Path(p1) / "same").st_ino == os.stat(Path(p2) / "same").st_ino
        assert verify_store(s, check_contents=True).ok
        assert optimise_store(s).files_linked == 0  # idempotent
    with LocalStore(*store_dirs) as s:
        collect_garbage(s)
        links = os.listdir(Path(s.store.path) / ".links")
        assert len(links) == 2  # p1's two files; p2's own file's link was removed
        assert verify_store(s, check_contents=True).ok


def test_verify_reports_missing_and_modified_paths(store: LocalStore) -> None:
    a = store.add_text_to_store("a", "a")
    b = store.add_text_to_store("b", "b")
    assert verify_store(store, check_contents=True).ok
    os.chmod(a, 0o644)
    Path(a).write_text("tampered")
    os.unlink(b)
    problems = verify_store(store, check_contents=True).problems
    assert any(f"path {a!r} was modified" in p for p in problems)
    assert any(f"path {b!r} is valid but missing on disk" in p for p in problems)
    assert len(problems) == 2
