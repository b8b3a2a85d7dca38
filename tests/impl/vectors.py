"""The Nix 2.8 reference vectors (a copy of shared/vectors/nix-2.8.json) and their inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lockstep.impl.archive import Directory, Node, Regular, Symlink

DATA = Path(__file__).resolve().parent / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "nix-2.8.json").read_text())
STORE_DIR: str = VECTORS["store_dir"]


def _unquote(spec: str) -> bytes:
    """`regular 'B\\n'` -> b"B\\n" (the vectors describe contents as Python-ish literals)."""
    quoted = spec[spec.index("'") : spec.rindex("'") + 1]
    return bytes(quoted[1:-1], "utf-8").decode("unicode_escape").encode("latin-1")


def input_tree(name: str) -> Node:
    """The input file `name` of the vectors, as an in-memory tree."""
    spec = VECTORS["inputs"][name]
    if spec["type"] == "regular":
        return Regular(spec["content"].encode(), bool(spec.get("executable")))
    if spec["type"] == "symlink":
        return Symlink(spec["target"])
    root: dict[str, Node] = {}
    for rel, desc in spec["entries"].items():
        *dirs, leaf = rel.split("/")
        entries = root
        for d in dirs:
            sub = entries.setdefault(d, Directory({}))
            assert isinstance(sub, Directory)
            entries = sub.entries
        if desc.startswith("directory"):
            entries.setdefault(leaf, Directory({}))
        elif desc.startswith("symlink"):
            entries[leaf] = Symlink(desc.split("-> ", 1)[1])
        else:
            entries[leaf] = Regular(_unquote(desc), desc.startswith("executable"))
    return Directory(root)


def input_names() -> list[str]:
    return sorted(VECTORS["inputs"])


def make_inputs(where: Path) -> Path:
    """Write every input of the vectors under `where` (like $W/in) and return it."""
    from lockstep.impl.archive import write_tree

    where.mkdir(parents=True, exist_ok=True)
    for name in input_names():
        write_tree(input_tree(name), os.fspath(where / name))
    return where
