"""A separate OS process acting on a store, for the multi-process tests.

Run as `python -m tests.impl.proc_worker` is not possible from a clean clone without
a tests package, so the tests run this file by path: `python proc_worker.py OP ...`.
Each operation opens its own LocalStore (its own SQLite connection, big lock and
temp-roots file), prints one JSON line on stdout, and exits 0 only if its own checks
held.
"""

from __future__ import annotations

import json
import os
import sys

from lockstep.impl.gc import collect_garbage
from lockstep.impl.hash import sha256
from lockstep.impl.local_store import LocalStore, ValidPathInfo


def chain_texts(store: LocalStore, seed: int, n: int, tag: str) -> list[str]:
    """Add texts 0..n-1 where text i refers to text i-1; a rotated order per seed, so
    processes with different seeds race on the same paths."""
    paths: dict[int, str] = {}

    def ensure(i: int) -> str:
        if i not in paths:
            refs = [ensure(i - 1)] if i > 0 else []
            body = f"{tag} text {i} refers to {refs}"
            paths[i] = store.add_text_to_store(f"{tag}-{i}.txt", body, refs)
        return paths[i]

    for k in range(n):
        ensure((k * 7 + seed * 5) % n)
    return [paths[i] for i in range(n)]


def all_live(store: LocalStore, paths: list[str]) -> list[str]:
    """The paths of `paths` that are not valid or not on disk (should be none)."""
    return [p for p in paths if not (store.is_valid_path(p) and os.path.exists(p))]


def op_add_texts(store: LocalStore, seed: int, n: int, tag: str) -> int:
    paths = chain_texts(store, seed, n, tag)
    own = chain_texts(store, seed, n // 2, f"own{seed}")
    missing = all_live(store, paths + own)
    print(json.dumps({"paths": paths + own, "missing": missing}))
    return 1 if missing else 0


def op_register(store: LocalStore, seed: int, n: int) -> int:
    """Register pre-written files p0..p(n-1) (p_i refers to p_(i-1)) in overlapping batches."""
    paths = [store.store.text_path(f"reg-{i}", str(i)) for i in range(n)]
    h = sha256(b"")
    for k in range(n):
        top = (k * 7 + seed * 11) % n  # 7 is coprime to the n used: every top occurs
        batch = [ValidPathInfo(paths[i], h, frozenset({paths[i - 1]} if i else ()), nar_size=0)
                 for i in range(top, -1, -1)]
        store.register_valid_paths(batch)
    missing = all_live(store, paths)
    print(json.dumps({"missing": missing}))
    return 1 if missing else 0


def op_gc_loop(store: LocalStore, stop_file: str) -> int:
    runs = 0
    deleted: list[str] = []
    while True:
        stopping = os.path.exists(stop_file)
        deleted += collect_garbage(store).deleted
        runs += 1
        if stopping:
            break
    print(json.dumps({"runs": runs, "deleted": deleted}))
    return 0


def main(argv: list[str]) -> int:
    op, store_dir, state_dir, *rest = argv
    with LocalStore(store_dir, state_dir) as store:
        if op == "add-texts":
            return op_add_texts(store, int(rest[0]), int(rest[1]), rest[2])
        if op == "add-one":
            print(json.dumps({"path": store.add_text_to_store(rest[0], rest[1])}))
            return 0
        if op == "register":
            return op_register(store, int(rest[0]), int(rest[1]))
        if op == "gc-loop":
            return op_gc_loop(store, rest[0])
        if op == "gc":
            print(json.dumps({"deleted": collect_garbage(store).deleted}))
            return 0
    raise SystemExit(f"proc_worker: unknown operation {op!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
