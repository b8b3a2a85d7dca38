"""NAR, the Nix archive format (libutil/archive.cc), and restoring NARs safely.

A NAR is a sequence of strings; each string is its length as 8 bytes little-endian,
its bytes, and zero padding to a multiple of 8. The grammar:

    nar       = "nix-archive-1" node
    node      = "(" "type" ( regular | symlink | directory ) ")"
    regular   = "regular" [ "executable" "" ] "contents" <bytes>
    symlink   = "symlink" "target" <target>
    directory = "directory" { "entry" "(" "name" <name> "node" node ")" }

Directory entries appear in strictly increasing byte order of their names, so a tree
has exactly one NAR; that is what makes the NAR hash a content hash. Nothing else is
recorded: no owners, no times, no permission bits but the executable flag.

Parsing is strict (bad padding, unsorted or duplicate entries, names with `/`, `.`,
`..` or NUL, trailing bytes are all errors) and happens completely before anything is
written. Restoring writes into a fresh temporary sibling and renames it into place, so
a NAR that turns out to be garbage leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .hash import Hash, HashSink

NAR_MAGIC = "nix-archive-1"
Sink = Callable[[bytes], None]
_CHUNK = 1 << 16


class NarError(ValueError):
    """A byte string that is not a valid NAR, or a file tree that cannot be archived."""


@dataclass(frozen=True)
class Regular:
    contents: bytes
    executable: bool = False


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Directory:
    # Invariant: names are valid entry names (see `check_entry_name`).
    entries: dict[str, Node] = field(default_factory=dict)


Node = Regular | Symlink | Directory


def check_entry_name(name: str) -> str | None:
    """Why `name` cannot name a directory entry, or None if it can."""
    if name in ("", ".", ".."):
        return f"entry name {name!r} is not allowed"
    if "/" in name or "\0" in name:
        return f"entry name {name!r} contains '/' or NUL"
    return None


def _name_key(name: str) -> bytes:
    return os.fsencode(name)


# --- writing NARs ---------------------------------------------------------------


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 8)


def _str(sink: Sink, data: bytes | str) -> None:
    b = data.encode() if isinstance(data, str) else data
    sink(struct.pack("<Q", len(b)) + b + _pad(len(b)))


def _strs(sink: Sink, *items: str) -> None:
    for s in items:
        _str(sink, s)


def dump_tree(node: Node, sink: Sink) -> None:
    """Serialise an in-memory tree."""
    _str(sink, NAR_MAGIC)
    _dump_node(node, sink)


def _dump_node(node: Node, sink: Sink) -> None:
    _strs(sink, "(", "type")
    if isinstance(node, Regular):
        _str(sink, "regular")
        if node.executable:
            _strs(sink, "executable", "")
        _str(sink, "contents")
        _str(sink, node.contents)
    elif isinstance(node, Symlink):
        _strs(sink, "symlink", "target")
        _str(sink, os.fsencode(node.target))
    else:
        _str(sink, "directory")
        for name in sorted(node.entries, key=_name_key):
            _strs(sink, "entry", "(", "name")
            _str(sink, os.fsencode(name))
            _str(sink, "node")
            _dump_node(node.entries[name], sink)
            _str(sink, ")")
    _str(sink, ")")


def dump_path(path: str, sink: Sink) -> None:
    """Serialise the file tree at `path` (not following a top-level symlink)."""
    _str(sink, NAR_MAGIC)
    _dump_file(path, sink)


def _dump_file(path: str, sink: Sink) -> None:
    st = os.lstat(path)
    _strs(sink, "(", "type")
    if stat.S_ISREG(st.st_mode):
        _str(sink, "regular")
        if st.st_mode & stat.S_IXUSR:
            _strs(sink, "executable", "")
        _str(sink, "contents")
        sink(struct.pack("<Q", st.st_size))
        done = 0
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                done += len(chunk)
                sink(chunk)
        if done != st.st_size:
            raise NarError(f"file {path!r} changed size while being archived")
        sink(_pad(done))
    elif stat.S_ISLNK(st.st_mode):
        _strs(sink, "symlink", "target")
        _str(sink, os.readlink(os.fsencode(path)))
    elif stat.S_ISDIR(st.st_mode):
        _str(sink, "directory")
        for name in sorted(os.listdir(os.fsencode(path))):
            _strs(sink, "entry", "(", "name")
            _str(sink, name)
            _str(sink, "node")
            _dump_file(os.path.join(path, os.fsdecode(name)), sink)
            _str(sink, ")")
    else:
        raise NarError(
            f"file {path!r} has an unsupported type (mode {st.st_mode:o}); "
            "a NAR holds only regular files, symlinks and directories"
        )
    _str(sink, ")")


def nar_bytes(path: str) -> bytes:
    parts: list[bytes] = []
    dump_path(path, parts.append)
    return b"".join(parts)


def tree_nar(node: Node) -> bytes:
    parts: list[bytes] = []
    dump_tree(node, parts.append)
    return b"".join(parts)


def hash_path(path: str, algo: str = "sha256") -> tuple[Hash, int]:
    """(NAR hash, NAR size) of the tree at `path`, in one streaming pass."""
    sink = HashSink(algo)
    dump_path(path, sink)
    return sink.finish(), sink.size


# --- parsing NARs ---------------------------------------------------------------


class _Reader:
    """Invariant: `pos` is the offset of the next unread string."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source
        self.pos = 0

    def fail(self, expected: str, found: str) -> NarError:
        return NarError(
            f"invalid NAR {self.source}: at offset {self.pos}, expected {expected} but found "
            f"{found}; the archive is corrupt or truncated, so nothing was written"
        )

    def raw(self, expected: str) -> bytes:
        start = self.pos
        if start + 8 > len(self.data):
            raise self.fail(expected, "the end of the data (truncated)")
        (n,) = struct.unpack_from("<Q", self.data, start)
        end = start + 8 + n
        padded = end + (-n % 8)
        if padded > len(self.data):
            raise self.fail(expected, f"a {n}-byte string running past the end of the data")
        if any(self.data[end:padded]):
            raise self.fail(expected, "non-zero padding after a string")
        self.pos = padded
        return self.data[start + 8 : end]

    def text(self, expected: str) -> str:
        return os.fsdecode(self.raw(expected))

    def expect(self, token: str) -> None:
        start = self.pos
        got = self.raw(repr(token))
        if got != token.encode():
            self.pos = start
            raise self.fail(repr(token), repr(got[:40]))


def parse_nar(data: bytes, source: str = "<data>") -> Node:
    """Parse a complete NAR; NarError names the offset and what was expected."""
    r = _Reader(data, source)
    r.expect(NAR_MAGIC)
    node = _parse_node(r)
    if r.pos != len(data):
        raise r.fail("the end of the archive", f"{len(data) - r.pos} more bytes")
    return node


def _parse_node(r: _Reader) -> Node:
    r.expect("(")
    r.expect("type")
    start = r.pos
    kind = r.text("a node type")
    node: Node
    if kind == "regular":
        executable = False
        start = r.pos
        tag = r.text("'executable' or 'contents'")
        if tag == "executable":
            r.expect("")
            executable = True
            r.expect("contents")
        elif tag != "contents":
            r.pos = start
            raise r.fail("'executable' or 'contents'", repr(tag))
        node = Regular(r.raw("file contents"), executable)
    elif kind == "symlink":
        r.expect("target")
        node = Symlink(r.text("a symlink target"))
    elif kind == "directory":
        node = _parse_directory(r)
    else:
        r.pos = start
        raise r.fail("a node type ('regular', 'symlink' or 'directory')", repr(kind))
    r.expect(")")
    return node


def _parse_directory(r: _Reader) -> Directory:
    entries: dict[str, Node] = {}
    prev: bytes | None = None
    while True:
        start = r.pos
        tag = r.text("'entry' or ')'")
        r.pos = start
        if tag == ")":
            return Directory(entries)
        r.expect("entry")
        r.expect("(")
        r.expect("name")
        start = r.pos
        raw = r.raw("an entry name")
        name = os.fsdecode(raw)
        problem = check_entry_name(name)
        if problem is None and prev is not None and raw <= prev:
            problem = f"entry {name!r} is not after {os.fsdecode(prev)!r} (entries must be sorted and unique)"
        if problem is not None:
            r.pos = start
            raise r.fail("a valid entry name", problem)
        prev = raw
        r.expect("node")
        entries[name] = _parse_node(r)
        r.expect(")")


# --- reading and writing trees on disk ---------------------------------------------


def read_tree(path: str) -> Node:
    """The in-memory tree of the files at `path` (the inverse of `write_tree`)."""
    return parse_nar(nar_bytes(path), path)


def write_tree(node: Node, path: str) -> None:
    """Create `path` holding `node`; `path` must not exist."""
    if isinstance(node, Regular):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if node.executable else 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(node.contents)
    elif isinstance(node, Symlink):
        os.symlink(node.target, path)
    else:
        os.mkdir(path)
        for name, child in node.entries.items():
            write_tree(child, os.path.join(path, name))


def restore_path(dest: str, nar: bytes, source: str = "<data>") -> Node:
    """Unpack `nar` at `dest` (which must not exist), all or nothing.

    Invariant: on any exception `dest` does not exist and no temporary is left.
    """
    node = parse_nar(nar, source)
    tmp = f"{dest}.restore-{os.getpid()}"
    try:
        write_tree(node, tmp)
        os.rename(tmp, dest)
    except BaseException:
        delete_path(tmp)
        raise
    return node


def delete_path(path: str) -> int:
    """Remove a file or tree (making read-only directories writable first); bytes freed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    freed = st.st_blocks * 512 if stat.S_ISDIR(st.st_mode) or st.st_nlink == 1 else 0
    if stat.S_ISDIR(st.st_mode):
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o755)
            for name in dirs + files:
                sub = os.lstat(os.path.join(root, name))
                if stat.S_ISDIR(sub.st_mode) or sub.st_nlink == 1:
                    freed += sub.st_blocks * 512  # hard-linked files free nothing yet
                if stat.S_ISDIR(sub.st_mode):
                    os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return freed
