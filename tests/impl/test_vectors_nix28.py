"""Byte-for-byte agreement with Nix 2.8 on every vector in nix-2.8.json (store /nix/store)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from lockstep.impl import derivations as d
from lockstep.impl.archive import hash_path, nar_bytes, parse_nar, tree_nar
from lockstep.impl.hash import Hash, from_base16, parse_hash, to_base32
from lockstep.impl.store_api import StoreDir, parse_drv_name

from .vectors import STORE_DIR, VECTORS, input_names, input_tree, make_inputs

STORE = StoreDir(STORE_DIR)
HASHES: dict[str, Any] = VECTORS["hashes"]
DRVS: dict[str, Any] = VECTORS["store"]["derivations"]
DRV_BY_PATH = {v["drv_path"]: d.parse(v["aterm"], k) for k, v in DRVS.items()}


def load(path: str) -> d.Derivation:
    return DRV_BY_PATH[path]


@pytest.mark.parametrize("vec", VECTORS["base32_conversions"], ids=lambda v: v["hex"][:8])
def test_base32_conversions(vec: dict[str, str]) -> None:
    raw = bytes.fromhex(vec["hex"])
    assert to_base32(raw) == vec["base32"]
    assert parse_hash(f"{vec['algo']}:{vec['base32']}").digest == raw


@pytest.mark.parametrize("name", sorted(HASHES))
def test_nar_bytes_and_hashes(name: str, tmp_path: Path) -> None:
    vec = HASHES[name]
    nar = bytes.fromhex(vec["nar"]["hex"])
    assert base64.b64decode(vec["nar"]["base64"]) == nar
    assert len(nar) == vec["nar"]["size"]
    # From the in-memory tree and from real files on disk.
    assert tree_nar(input_tree(name)) == nar
    path = os.fspath(make_inputs(tmp_path / "in") / name)
    assert nar_bytes(path) == nar
    assert parse_nar(nar) == input_tree(name)
    h, size = hash_path(path)
    assert (h.base16, size) == (vec["nar"]["sha256_hex"], vec["nar"]["size"])
    assert h.base16 == vec["nar_sha256_hex"]["value"]
    assert h.base32 == vec["nar_sha256_base32"]["value"]
    assert h.sri == vec["nar_sha256_sri"]["value"]
    assert parse_hash(vec["nar_sha256_sri"]["value"]) == h
    for algo in ("md5", "sha1", "sha512"):
        assert hash_path(path, algo)[0].base16 == vec[f"nar_{algo}_hex"]["value"]
    if "flat_sha256_hex" in vec:
        flat = hashlib.sha256(Path(path).read_bytes()).digest()
        assert flat.hex() == vec["flat_sha256_hex"]["value"]
        assert to_base32(flat) == vec["flat_sha256_base32"]["value"]


@pytest.mark.parametrize("name", input_names())
def test_added_paths(name: str, tmp_path: Path) -> None:
    """`nix-store --add` is recursive SHA-256 (`source`): path, narHash, narSize, ca."""
    vec = VECTORS["store"]["add"][name]
    path = os.fspath(make_inputs(tmp_path / "in") / name)
    h, size = hash_path(path)
    assert STORE.make_fixed_output_path(True, h, name) == vec["path"]
    info = vec["path_info"]
    assert (h.sri, size) == (info["narHash"], info["narSize"])
    assert info["ca"] == f"fixed:r:{h}"


@pytest.mark.parametrize("name", input_names())
def test_add_fixed_paths(name: str, tmp_path: Path) -> None:
    path = os.fspath(make_inputs(tmp_path / "in") / name)
    for vec in VECTORS["store"]["add_fixed"][name]:
        if vec["recursive"]:
            h = hash_path(path, vec["algo"])[0]
        else:
            h = Hash(vec["algo"], hashlib.new(vec["algo"], Path(path).read_bytes()).digest())
        assert STORE.make_fixed_output_path(vec["recursive"], h, name) == vec["path"], vec["cmd"]
        assert vec["ca"] == f"fixed:{'r:' if vec['recursive'] else ''}{h}"


@pytest.mark.parametrize("vec", VECTORS["store"]["print_fixed_path"], ids=lambda v: v["cmd"][-40:])
def test_print_fixed_path(vec: dict[str, Any]) -> None:
    h = Hash(vec["algo"], from_base16(vec["hash_hex"], len(vec["hash_hex"]) // 2))
    assert STORE.make_fixed_output_path(vec["recursive"], h, vec["name"]) == vec["path"]


@pytest.mark.parametrize("key", sorted(VECTORS["store"]["to_file"]))
def test_text_paths_with_references(key: str) -> None:
    vec = VECTORS["store"]["to_file"][key]
    name = STORE.store_path_to_name(vec["path"])
    info = vec["path_info"]
    assert STORE.text_path(name, vec["content"], info["references"]) == vec["path"]
    assert info["ca"] == f"text:{Hash('sha256', hashlib.sha256(vec['content'].encode()).digest())}"


@pytest.mark.parametrize("key", sorted(DRVS))
def test_derivation_aterm_round_trip(key: str) -> None:
    vec = DRVS[key]
    drv = d.parse(vec["aterm"], key)
    assert d.unparse(drv) == vec["aterm"]
    show = vec["show_derivation"]
    assert drv.env == show["env"]
    assert list(drv.args) == show["args"]
    assert {p: sorted(o) for p, o in drv.input_drvs.items()} == show["inputDrvs"]
    assert sorted(drv.input_srcs) == show["inputSrcs"]
    assert (drv.platform, drv.builder) == (show["system"], show["builder"])
    assert {k: o.path for k, o in drv.outputs.items()} == {k: o["path"] for k, o in show["outputs"].items()}


@pytest.mark.parametrize("key", sorted(DRVS))
def test_drv_paths_and_references(key: str) -> None:
    vec = DRVS[key]
    drv = d.parse(vec["aterm"], key)
    name = parse_drv_name(STORE.store_path_to_name(vec["drv_path"]))
    assert d.drv_path(STORE, drv, name) == vec["drv_path"]
    assert sorted(drv.references()) == sorted(vec["drv_references"])


@pytest.mark.parametrize("key", sorted(DRVS))
def test_output_paths(key: str) -> None:
    """Recomputed from scratch: blank the outputs, hash modulo the inputs, compare."""
    vec = DRVS[key]
    drv = d.parse(vec["aterm"], key)
    name = parse_drv_name(STORE.store_path_to_name(vec["drv_path"]))
    cache: dict[str, Hash] = {}
    paths = d.compute_output_paths(drv, name, STORE, load, cache)
    assert sorted(paths.values()) == sorted(vec["outputs_query"])
    d.check_derivation_outputs(vec["drv_path"], drv, STORE, load, cache)
    blank = d.Derivation({k: d.DerivationOutput("", o.hash_algo, o.hash) for k, o in drv.outputs.items()},
                         drv.input_drvs, drv.input_srcs, drv.platform, drv.builder, drv.args,
                         {k: v for k, v in drv.env.items() if k not in drv.outputs})
    filled = d.fill_output_paths(blank, name, STORE, load, cache)
    assert d.unparse(filled) == vec["aterm"]


def test_fixed_output_replacement_hides_the_builder() -> None:
    """on-fixed and on-fixed-alt differ only in their FOD's builder: same output path."""
    assert DRVS["fixed"]["drv_path"] != DRVS["fixedAlt"]["drv_path"]
    assert DRVS["onFixed"]["drv_path"] != DRVS["onFixedAlt"]["drv_path"]
    assert DRVS["onFixed"]["outputs_query"] == DRVS["onFixedAlt"]["outputs_query"]
    cache: dict[str, Hash] = {}
    h1 = d.hash_derivation_modulo(load(DRVS["fixed"]["drv_path"]), load, cache)
    h2 = d.hash_derivation_modulo(load(DRVS["fixedAlt"]["drv_path"]), load, cache)
    assert h1 == h2
