"""Substitutes from a local binary cache, through a substituter process (guix substitute).

The cache is a directory: for each substitutable store path ``/store/<h>-<name>``

    <cache>/<h>.narinfo       StorePath, NarFile, NarHash, NarSize, References, Deriver
    <cache>/nar/<h>.nar       the path's NAR

(the narinfo fields are those of a Guix/Nix narinfo; ``References`` and ``Deriver`` are
base names). :func:`write_substitute` and :func:`export_path` fill a cache.

Querying (``SubstitutionGoal::tryNext``) reads the narinfo in the daemon process.
Deviation: Guix asks a long-lived ``guix substitute --query`` agent; the answer is the
same and a query takes no lock. Fetching is a real child process, one per substitution
(Guix keeps one ``--substitute`` agent and feeds it a line per path):

    python -m lockstep.impl.substituter substitute <cache> <path> <dest>

It restores the NAR at ``<dest>`` and prints one status line on stdout,
``success <algo>:<base16 NAR hash> <NAR size>``, or ``error <message>`` (exit 1). The
daemon then compares the hash with the narinfo's (``hash-mismatch`` otherwise).

A substitute can be made to fail: ``write_substitute(..., broken=True)`` writes a
truncated NAR, so the substituter cannot restore it and reports an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from lockstep.impl.archive import NarError, nar_bytes, restore_path
from lockstep.impl.hash import Hash, parse_hash, sha256
from lockstep.impl.local_store import LocalStore
from lockstep.impl.store_api import StoreDir


@dataclass(frozen=True)
class SubstitutableInfo:
    path: str
    nar_hash: Hash
    nar_size: int
    references: frozenset[str]
    deriver: str | None


def _narinfo_path(cache_dir: str, store: StoreDir, path: str) -> str:
    return os.path.join(cache_dir, store.store_path_to_hash_part(path) + ".narinfo")


def write_substitute(
    cache_dir: str, store: StoreDir, path: str, nar: bytes,
    references: Iterable[str] = (), deriver: str | None = None, broken: bool = False,
) -> None:
    """Make `path` (whose contents are `nar`) substitutable from `cache_dir`."""
    store.parse_store_path(path)
    h = store.store_path_to_hash_part(path)
    os.makedirs(os.path.join(cache_dir, "nar"), exist_ok=True)
    data = nar[: len(nar) // 2] if broken else nar
    with open(os.path.join(cache_dir, "nar", h + ".nar"), "wb") as f:
        f.write(data)
    lines = [
        f"StorePath: {path}",
        f"NarFile: nar/{h}.nar",
        f"NarHash: {sha256(nar).to_string()}",
        f"NarSize: {len(nar)}",
        "References: " + " ".join(sorted(os.path.basename(r) for r in references)),
    ]
    if deriver:
        lines.append(f"Deriver: {os.path.basename(deriver)}")
    tmp = _narinfo_path(cache_dir, store, path) + f".tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(tmp, _narinfo_path(cache_dir, store, path))


def export_path(store: LocalStore, path: str, cache_dir: str, broken: bool = False) -> None:
    """Put the valid path `path` of `store` into the cache."""
    info = store.query_path_info(path)
    if info is None:
        raise ValueError(f"cannot export {path!r}: it is not valid in the store")
    write_substitute(cache_dir, store.store, path, nar_bytes(path), info.references, info.deriver, broken)


def query_substitutable(cache_dir: str | None, store: StoreDir, path: str) -> SubstitutableInfo | None:
    """querySubstitutablePathInfos for one path: None if the cache has no substitute."""
    if cache_dir is None:
        return None
    try:
        with open(_narinfo_path(cache_dir, store, path)) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    if fields.get("StorePath") != path:
        return None
    refs = frozenset(os.path.join(store.path, r) for r in fields.get("References", "").split())
    deriver = fields.get("Deriver")
    return SubstitutableInfo(path, parse_hash(fields["NarHash"]), int(fields["NarSize"]), refs,
                             os.path.join(store.path, deriver) if deriver else None)


def start_substituter(cache_dir: str, path: str, dest: str) -> subprocess.Popen[bytes]:
    """Spawn the substituter for one path; its stdout carries the status line."""
    return subprocess.Popen(
        [sys.executable, "-m", "lockstep.impl.substituter", "substitute", cache_dir, path, dest],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def parse_status(line: str) -> tuple[Hash, int]:
    """The substituter's status line; ValueError with its message unless it is success."""
    words = line.split()
    if len(words) == 3 and words[0] == "success":
        return parse_hash(words[1]), int(words[2])
    raise ValueError(line.strip() or "substituter exited without a status line")


def _substitute(cache_dir: str, path: str, dest: str) -> int:
    store = StoreDir(os.path.dirname(path))
    info_path = _narinfo_path(cache_dir, store, path)
    try:
        with open(info_path) as f:
            fields = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
        with open(os.path.join(cache_dir, fields["NarFile"]), "rb") as f:
            nar = f.read()
        restore_path(dest, nar, f"substitute of {path}")
    except (OSError, KeyError, NarError) as e:
        print(f"error cannot substitute {path}: {e}", flush=True)
        return 1
    h = sha256(nar)
    print(f"success sha256:{h.base16} {len(nar)}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "substitute":
        print("usage: python -m lockstep.impl.substituter substitute CACHE PATH DEST", file=sys.stderr)
        return 2
    return _substitute(argv[1], argv[2], argv[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
