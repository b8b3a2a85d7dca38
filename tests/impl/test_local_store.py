"""The local store in one process: layout, adding, registration checks, bad input."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from lockstep.impl import derivations as d
from lockstep.impl.archive import nar_bytes, tree_nar
from lockstep.impl.hash import sha256
from lockstep.impl.local_store import (
    InvalidReferenceError,
    LocalStore,
    ReferenceCycleError,
    SchemaError,
    StoreError,
    ValidPathInfo,
)
from lockstep.impl.store_api import InvalidStoreName, parse_drv_name

from .conftest import check_db_consistent, snapshot
from .vectors import VECTORS, input_names, input_tree, make_inputs


def test_layout(store: LocalStore) -> None:
    state = Path(store.state_dir)
    assert (state / "db" / "db.sqlite").is_file()
    assert (state / "db" / "schema").read_text() == "7"
    assert (state / "db" / "big-lock").is_file()
    assert (state / "temproots").is_dir() and (state / "gcroots").is_dir()
    assert store.db.execute("pragma journal_mode").fetchone() == ("wal",)
    assert store.db.execute("pragma foreign_keys").fetchone() == (1,)


def test_schema_version_is_checked(store_dirs: tuple[str, str]) -> None:
    LocalStore(*store_dirs).close()
    schema = Path(store_dirs[1]) / "db" / "schema"
    schema.write_text("8")
    with pytest.raises(SchemaError, match="current store schema is version 8 .* but I only support 7"):
        LocalStore(*store_dirs)
    schema.write_text("6")
    with pytest.raises(SchemaError, match="implausibly old schema"):
        LocalStore(*store_dirs)


def test_add_text_matches_nix_nar_hashes(store: LocalStore) -> None:
    """builtins.toFile: same NAR hash and size as Nix (paths differ: other store dir)."""
    files = VECTORS["store"]["to_file"]
    t1 = store.add_text_to_store("t1.txt", files["t1"]["content"])
    info = store.query_path_info(t1)
    assert info is not None
    assert (info.nar_hash.sri, info.nar_size) == (files["t1"]["path_info"]["narHash"], 128)
    assert info.references == frozenset()
    assert store.add_text_to_store("t1.txt", files["t1"]["content"]) == t1  # idempotent
    st = os.lstat(t1)
    assert stat.S_IMODE(st.st_mode) == 0o444 and st.st_mtime == 1
    assert not os.path.exists(t1 + ".lock")  # deleted once valid


@pytest.mark.parametrize("name", input_names())
def test_add_to_store_recursive_matches_nix(name: str, store: LocalStore, tmp_path: Path) -> None:
    src = os.fspath(make_inputs(tmp_path / "in") / name)
    path = store.add_to_store(src)
    vec = VECTORS["store"]["add"][name]["path_info"]
    info = store.query_path_info(path)
    assert info is not None
    assert (info.nar_hash.sri, info.nar_size) == (vec["narHash"], vec["narSize"])
    assert nar_bytes(path) == tree_nar(input_tree(name))
    assert store.store.store_path_to_name(path) == name
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            if not stat.S_ISLNK(st.st_mode):
                assert stat.S_IMODE(st.st_mode) in (0o444, 0o555)


def test_add_to_store_flat(store: LocalStore, tmp_path: Path) -> None:
    src = os.fspath(make_inputs(tmp_path / "in") / "script.sh")
    flat = store.add_to_store(src, recursive=False)
    assert flat != store.add_to_store(src, recursive=True)
    assert stat.S_IMODE(os.lstat(flat).st_mode) == 0o444  # flat drops the executable bit
    with pytest.raises(StoreError, match="is not a regular file; add it recursive"):
        store.add_to_store(os.fspath(tmp_path / "in" / "dir"), recursive=False)


def test_references_referrers_closure(store: LocalStore) -> None:
    a = store.add_text_to_store("a", "a")
    b = store.add_text_to_store("b", "b " + a, [a])
    c = store.add_text_to_store("c", "c " + b, [b, a])
    assert store.query_references(c) == {a, b}
    assert store.query_referrers(a) == {b, c}
    assert store.compute_fs_closure([c]) == {a, b, c}
    assert store.compute_fs_closure([a], flip_direction=True) == {a, b, c}
    assert store.query_valid_paths([a, c, a + "x"]) == {a, c}


def test_register_batch_with_internal_references_and_self_reference(store: LocalStore) -> None:
    paths = [store.store.text_path(n, n) for n in ("x", "y", "z")]
    for p in paths:
        Path(p).write_text("")
    x, y, z = paths
    h = sha256(b"")
    store.register_valid_paths([
        ValidPathInfo(z, h, frozenset({y, z}), nar_size=1),
        ValidPathInfo(y, h, frozenset({x}), nar_size=1),
        ValidPathInfo(x, h, frozenset(), nar_size=1),
    ])
    assert store.query_references(z) == {y, z}
    assert store.compute_fs_closure([z]) == set(paths)


# --- bad input: a clear error and an unchanged store ------------------------------------


def _bad_inputs(store: LocalStore, tmp_path: Path) -> list[tuple[str, object, str]]:
    a = store.add_text_to_store("a", "a")
    ghost = store.store.text_path("ghost", "never added")
    x, y = (store.store.text_path(n, n) for n in "xy")
    for p in (x, y):
        Path(p).write_text("")  # the builder wrote them; registration must still refuse
    h = sha256(b"")
    garbage = tmp_path / "garbage.nar"
    garbage.write_bytes(b"\x0d\0\0\0\0\0\0\0nix-archive-1\0\0\0\x99")
    return [
        ("invalid name", lambda: store.add_text_to_store("bad name", "t"), "invalid character ' '"),
        ("dot name", lambda: store.add_text_to_store(".x", "t"), "must not start with '.'"),
        ("invalid reference", lambda: store.add_text_to_store("r", "t", [ghost]),
         f"reference {ghost!r} is not a valid path; add {ghost!r} to the store first"),
        ("register invalid reference", lambda: store.register_valid_paths([ValidPathInfo(x, h, frozenset({ghost}))]),
         f"cannot register {x!r}: its reference {ghost!r} is not a valid path"),
        ("cycle", lambda: store.register_valid_paths([
            ValidPathInfo(x, h, frozenset({y, a})), ValidPathInfo(y, h, frozenset({x}))]),
         "cycle detected in the references of"),
        ("nar garbage", lambda: store.add_nar_to_store(garbage.read_bytes(), "g"), "invalid NAR for 'g'"),
        ("malformed drv", lambda: store.add_text_to_store("m.drv", "Derive([(") and None, "malformed derivation"),
    ]


def test_bad_input_changes_nothing(store: LocalStore, tmp_path: Path) -> None:
    cases = _bad_inputs(store, tmp_path)
    for what, action, fragment in cases:
        before = snapshot(store)
        if what == "malformed drv":
            continue  # add_text_to_store does not parse; see test_malformed_drv_registration
        with pytest.raises((StoreError, InvalidStoreName, ValueError)) as e:
            action()  # type: ignore[operator]
        assert fragment in str(e.value), what
        assert snapshot(store) == before, what
    check_db_consistent(store.state_dir)


def test_cycle_error_names_the_cycle_and_registers_nothing(store: LocalStore) -> None:
    x, y = (store.store.text_path(n, n) for n in "xy")
    h = sha256(b"")
    with pytest.raises(ReferenceCycleError) as e:
        store.register_valid_paths([ValidPathInfo(x, h, frozenset({y})), ValidPathInfo(y, h, frozenset({x}))])
    first, second = sorted((x, y))
    assert f"{first!r} -> {second!r} -> {first!r}" in str(e.value)
    assert "remove one of these references" in str(e.value)
    assert store.query_all_valid_paths() == set()


def test_malformed_drv_registration(store: LocalStore) -> None:
    path = store.store.text_path("m.drv", "Derive([(")
    Path(path).write_text("Derive([(")
    before = snapshot(store)
    with pytest.raises(d.DerivationParseError, match=f"malformed derivation {path}: at offset 9"):
        store.register_valid_path(ValidPathInfo(path, sha256(b"")))
    assert snapshot(store) == before


# --- derivations in the store -------------------------------------------------------------


def _simple_drv(store: LocalStore, name: str = "simple") -> d.Derivation:
    blank = d.Derivation(
        outputs={"out": d.DerivationOutput("")}, platform="x86_64-linux", builder="/bin/sh",
        args=("-c", "echo > $out"), env={"builder": "/bin/sh", "name": name, "system": "x86_64-linux"},
    )
    return d.fill_output_paths(blank, name, store.store, store.read_derivation, {})


def test_write_derivation_registers_outputs(store: LocalStore) -> None:
    src = store.add_text_to_store("src.txt", "x")
    drv = replace(_simple_drv(store), input_srcs=frozenset({src}))
    drv = d.fill_output_paths(drv, "simple", store.store, store.read_derivation, {})
    path = store.write_derivation(drv, "simple")
    assert path == d.drv_path(store.store, drv, "simple")
    assert store.query_references(path) == {src}
    assert store.query_derivation_outputs(path) == {"out": drv.outputs["out"].path}
    assert store.query_valid_derivers(drv.outputs["out"].path) == {path}
    dep = d.Derivation(
        outputs={"out": d.DerivationOutput("")}, input_drvs={path: frozenset({"out"})},
        platform="x86_64-linux", builder="/bin/sh", env={"name": "dep"},
    )
    dep = d.fill_output_paths(dep, "dep", store.store, store.read_derivation, {})
    dep_path = store.write_derivation(dep, "dep")
    assert store.compute_fs_closure([dep_path]) == {dep_path, path, src}


def test_wrong_output_path_is_rejected(store: LocalStore) -> None:
    drv = _simple_drv(store)
    wrong = replace(drv, outputs={"out": d.DerivationOutput(drv.outputs["out"].path[:-1] + "X")})
    before = snapshot(store)
    with pytest.raises(StoreError) as e:
        store.write_derivation(wrong, "simple")
    msg = str(e.value)
    assert "has incorrect output" in msg and drv.outputs["out"].path in msg and "should be" in msg
    drv_path = d.drv_path(store.store, wrong, "simple")
    assert not store.is_valid_path(drv_path) and not os.path.exists(drv_path)
    assert snapshot(store)[0] == before[0]


# --- checks must catch what they are for -----------------------------------------------------


def test_reference_check_is_what_rejects_invalid_references(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the reference check, registering a dangling reference must be caught."""
    ghost = store.store.text_path("ghost", "never added")
    x = store.store.text_path("x", "x")
    Path(x).write_text("")

    def register() -> None:
        store.register_valid_paths([ValidPathInfo(x, sha256(b""), frozenset({ghost}))])

    with pytest.raises(InvalidReferenceError):
        register()
    # Mutant: the check looks the reference up but lets a missing one through.
    monkeypatch.setattr(LocalStore, "_reference_id", lambda self, db, referrer, ref, batch: batch.get(ref, 10**6))
    with pytest.raises(Exception) as e:
        register()
    assert not isinstance(e.value, InvalidReferenceError)  # only SQLite's FK saves us now
    check_db_consistent(store.state_dir)
    assert not store.is_valid_path(x)


def test_cycle_check_is_what_rejects_cycles(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without topo_sort_paths, a reference cycle would be registered."""
    x, y = (store.store.text_path(n, n) for n in "xy")
    infos = [ValidPathInfo(x, sha256(b""), frozenset({y})), ValidPathInfo(y, sha256(b""), frozenset({x}))]
    import lockstep.impl.local_store as ls

    monkeypatch.setattr(ls, "topo_sort_paths", lambda refs: list(refs))
    store.register_valid_paths(infos)  # the mutant accepts it ...
    assert store.query_references(x) == {y} and store.query_references(y) == {x}  # ... a cycle


def test_output_check_is_what_rejects_wrong_outputs(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    drv = _simple_drv(store)
    wrong = replace(drv, outputs={"out": d.DerivationOutput(drv.outputs["out"].path[:-1] + "X")})
    monkeypatch.setattr(LocalStore, "_check_derivation_outputs", lambda self, p, drv: None)
    path = store.write_derivation(wrong, "simple")  # the mutant accepts it
    assert store.query_derivation_outputs(path)["out"] != drv.outputs["out"].path


def test_drv_name_helper() -> None:
    assert parse_drv_name("foo-1.0.drv") == "foo-1.0"
