"""Formats beyond the vectors: round trips (Hypothesis) and clear errors on bad input."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.impl import derivations as d
from lockstep.impl.archive import (
    Directory,
    NarError,
    Node,
    Regular,
    Symlink,
    parse_nar,
    read_tree,
    restore_path,
    tree_nar,
)
from lockstep.impl.hash import BASE32_CHARS, BadHash, from_base32, parse_hash, to_base32
from lockstep.impl.store_api import BadStorePath, InvalidStoreName, StoreDir, check_store_name

from .vectors import VECTORS

EXAMPLES = settings(max_examples=60, deadline=None)
STORE = StoreDir("/gnu/store")

# --- base-32 and hash strings ------------------------------------------------------


@EXAMPLES
@given(st.binary(max_size=70))
def test_base32_round_trip(data: bytes) -> None:
    text = to_base32(data)
    assert set(text) <= set(BASE32_CHARS)
    assert from_base32(text, len(data)) == data


def test_base32_rejects_bad_input() -> None:
    with pytest.raises(BadHash, match=r"invalid character 'e' at position 0 .*allowed are"):
        from_base32("e" * 52, 32)
    with pytest.raises(BadHash, match="has 3 characters; a 32-byte hash needs exactly 52"):
        from_base32("abc", 32)
    with pytest.raises(BadHash, match="encodes more than 32 bytes"):
        from_base32("z" * 52, 32)


def test_hash_strings() -> None:
    h = parse_hash("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    assert str(h) == "sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"
    assert parse_hash(str(h)) == h == parse_hash(h.sri)
    assert h.to_string(base32=False) == "sha256:" + h.base16
    with pytest.raises(BadHash, match="names no algorithm"):
        parse_hash(h.base16)
    with pytest.raises(BadHash, match="unknown hash algorithm 'sha3'"):
        parse_hash("sha3:00")
    with pytest.raises(BadHash, match="wrong length for sha256"):
        parse_hash("sha256:abcd")


# --- store names and paths ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        (".hidden", "must not start with '.'"),
        ("..", "must not start with '.'"),
        ("foo bar", "invalid character ' ' (U+0020) at position 3"),
        ("a/b", "invalid character '/'"),
        ("caf\u00e9", "invalid character '\u00e9'"),
    ],
)
def test_invalid_store_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidStoreName) as e:
        check_store_name(name)
    msg = str(e.value)
    assert fragment in msg and repr(name) in msg
    assert "A-Z a-z 0-9" in msg  # what is allowed


@pytest.mark.parametrize("name", ["", "a", "foo-1.0", "x+y=z?_", "A" * 300])
def test_valid_store_names_as_guix(name: str) -> None:
    check_store_name(name)  # Guix checks neither emptiness nor length


def test_store_path_parsing() -> None:
    p = STORE.make_store_path("source", parse_hash("sha256:" + "0" * 64), "foo")
    assert STORE.parse_store_path(p) == (p[len("/gnu/store/") :][:32], "foo")
    assert STORE.store_path_to_name(p) == "foo"
    assert STORE.to_store_path(p + "/bin/sh") == p
    with pytest.raises(BadStorePath, match="not in the store directory '/gnu/store'"):
        STORE.parse_store_path("/nix/store/" + p[11:])
    with pytest.raises(BadStorePath, match="32 base-32 characters"):
        STORE.parse_store_path("/gnu/store/short-foo")
    with pytest.raises(InvalidStoreName, match=r"in store path '/gnu/store/.*-b ad'"):
        STORE.parse_store_path(p[:-3] + "b ad")
    with pytest.raises(BadStorePath, match="lies below a store path"):
        STORE.parse_store_path(p + "/bin")


def test_store_dir_is_part_of_the_path() -> None:
    h = parse_hash("sha256:" + "0" * 64)
    assert StoreDir("/gnu/store").make_store_path("source", h, "x")[11:] != StoreDir(
        "/nix/store"
    ).make_store_path("source", h, "x")[11:]


# --- derivations ---------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)
_paths = st.text("abcdefgh-.", min_size=1, max_size=8).map(lambda s: "/gnu/store/" + s)


@st.composite
def derivations(draw: st.DrawFn) -> d.Derivation:
    outs = draw(st.dictionaries(st.sampled_from(["out", "dev", "lib", "doc"]), st.tuples(_paths, _text, _text), min_size=1))
    return d.Derivation(
        outputs={k: d.DerivationOutput(*v) for k, v in outs.items()},
        input_drvs=draw(st.dictionaries(_paths, st.frozensets(_text, max_size=3), max_size=3)),
        input_srcs=draw(st.frozensets(_paths, max_size=3)),
        platform=draw(_text),
        builder=draw(_text),
        args=tuple(draw(st.lists(_text, max_size=4))),
        env=draw(st.dictionaries(_text, _text, max_size=5)),
    )


@EXAMPLES
@given(derivations())
def test_aterm_round_trip(drv: d.Derivation) -> None:
    text = d.unparse(drv)
    assert d.parse(text) == drv
    assert d.unparse(d.parse(text)) == text


SIMPLE = VECTORS["store"]["derivations"]["simple"]["aterm"]


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("", 0, "'Derive('"),
        ("Derive", 0, "'Derive('"),
        (SIMPLE[:40], 40, "the end of the text (it is truncated)"),
        (SIMPLE[:-1], len(SIMPLE) - 1, "')'"),
        (SIMPLE + " ", len(SIMPLE), "the end of the text after the closing ')'"),
        (SIMPLE.replace('"/nix/store/90', '"nix/store/90', 1), 15, "an absolute output path"),
        (SIMPLE.replace("[(\"out\"", "[(out", 1), 9, "an output name"),
        (SIMPLE.replace("echo simple", "echo \\a", 1), None, "one of the escapes"),
        (SIMPLE.replace('("name","simple")', '("name","simple"),("name","x")', 1), None, "duplicate 'name'"),
    ],
)
def test_malformed_derivation_errors(text: str, offset: int | None, expected: str) -> None:
    with pytest.raises(d.DerivationParseError) as e:
        d.parse(text, "/gnu/store/x-bad.drv")
    msg = str(e.value)
    assert "malformed derivation /gnu/store/x-bad.drv" in msg  # the object
    assert expected in msg  # what was expected / found
    if offset is not None:
        assert f"at offset {offset}," in msg
    assert "Derive([outputs]" in msg  # what a derivation looks like


def test_truncation_at_every_offset_is_an_error() -> None:
    for n in range(len(SIMPLE)):
        with pytest.raises(d.DerivationParseError):
            d.parse(SIMPLE[:n])


def test_drv_path_with_outputs() -> None:
    p = "/gnu/store/" + "a" * 32 + "-foo.drv"
    assert d.parse_drv_path_with_outputs(p) == (p, frozenset())
    assert d.parse_drv_path_with_outputs(p + "!out,dev") == (p, frozenset({"out", "dev"}))
    assert d.print_drv_path_with_outputs(p, ["out", "dev"]) == p + "!dev,out"
    assert d.print_drv_path_with_outputs(p, []) == p
    with pytest.raises(d.BadDerivation, match="empty output name"):
        d.parse_drv_path_with_outputs(p + "!out,")


# --- NAR -----------------------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
_leaves = st.one_of(
    st.builds(Regular, st.binary(max_size=40), st.booleans()),
    st.builds(Symlink, st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=10)),
)
trees = st.recursive(_leaves, lambda kids: st.builds(Directory, st.dictionaries(_names, kids, max_size=4)), max_leaves=12)


@EXAMPLES
@given(trees)
def test_nar_round_trip_in_memory(tree: Node) -> None:
    nar = tree_nar(tree)
    assert len(nar) % 8 == 0
    assert parse_nar(nar) == tree
    assert tree_nar(parse_nar(nar)) == nar


@settings(max_examples=25, deadline=None)
@given(trees)
def test_nar_round_trip_on_disk(tmp_path_factory: pytest.TempPathFactory, tree: Node) -> None:
    dest = os.fspath(tmp_path_factory.mktemp("nar") / "t")
    restore_path(dest, tree_nar(tree))
    assert read_tree(dest) == tree


def _str(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b + b"\0" * (-len(b) % 8)


GOOD = tree_nar(Directory({"a": Regular(b"x"), "b": Symlink("a")}))


@pytest.mark.parametrize(
    ("nar", "fragment"),
    [
        (b"", "expected 'nix-archive-1' but found the end of the data (truncated)"),
        (b"garbage!" * 5, "running past the end of the data"),
        (_str(b"nix-archive-2"), "expected 'nix-archive-1' but found b'nix-archive-2'"),
        (GOOD[:-8], "truncated"),
        (GOOD + _str(b"x"), "expected the end of the archive but found 16 more bytes"),
        (GOOD.replace(b"symlink\0", b"socket\0\0"), "a node type"),
        (_str(b"nix-archive-1") + _str(b"(") + _str(b"type") + _str(b"directory")
         + _str(b"entry") + _str(b"(") + _str(b"name") + _str(b"..") , "entry name '..' is not allowed"),
        (tree_nar(Directory({"b": Regular(b"")})).replace(b"\x01\0\0\0\0\0\0\0b", b"\x01\0\0\0\0\0\0\0/"),
         "contains '/' or NUL"),
        (_str(b"nix-archive-1")[:-1] + b"\x01", "non-zero padding"),
    ],
)
def test_nar_garbage_errors_and_leaves_nothing(nar: bytes, fragment: str, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(NarError) as e:
        restore_path(os.fspath(dest), nar, "from the test")
    msg = str(e.value)
    assert "invalid NAR from the test: at offset" in msg
    assert fragment in msg
    assert "nothing was written" in msg
    assert list(tmp_path.iterdir()) == []


def test_nar_rejects_unsorted_entries() -> None:
    nar = tree_nar(Directory({"a": Regular(b""), "b": Regular(b"")}))
    swapped = nar.replace(_str(b"a"), _str(b"X")).replace(_str(b"b"), _str(b"a")).replace(_str(b"X"), _str(b"b"))
    with pytest.raises(NarError, match="entry 'a' is not after 'b'"):
        parse_nar(swapped)
