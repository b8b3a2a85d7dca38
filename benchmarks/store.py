"""Store throughput figures (a script, not a test): `python benchmarks/store.py [--runs N]`.

Prints the median of N runs (each in a fresh temporary store) of:
- add_text_to_store: texts added per second (one process);
- add_to_store: small trees (3 files, one subdirectory) added per second;
- register_valid_paths: paths registered per second, 1 process and 4 processes
  (each process registers its own pre-written paths, one path per transaction, so
  the figure measures the database under writer contention);
- path locks: left to the path-lock benchmark (see `bench_pathlocks` hook below).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))

from lockstep.impl.hash import sha256  # noqa: E402
from lockstep.impl.local_store import LocalStore, ValidPathInfo  # noqa: E402


def _dirs(root: str) -> tuple[str, str]:
    return os.path.join(root, "store"), os.path.join(root, "state")


def bench_add_text(root: str, n: int) -> float:
    with LocalStore(*_dirs(root)) as s:
        t = time.perf_counter()
        for i in range(n):
            s.add_text_to_store(f"t{i}.txt", f"text number {i}\n")
        return n / (time.perf_counter() - t)


def bench_add_tree(root: str, n: int) -> float:
    src = Path(root) / "src"
    for i in range(n):
        d = src / f"tree{i}"
        (d / "sub").mkdir(parents=True)
        (d / "a").write_text(f"a{i}")
        (d / "sub" / "b").write_text("b" * 100)
        (d / "sub" / "run").write_text("#!/bin/sh\n")
        os.chmod(d / "sub" / "run", 0o755)
    with LocalStore(*_dirs(root)) as s:
        t = time.perf_counter()
        for i in range(n):
            s.add_to_store(os.fspath(src / f"tree{i}"))
        return n / (time.perf_counter() - t)


def _register_worker(root: str, tag: int, n: int, start_evt: object) -> None:
    with LocalStore(*_dirs(root)) as s:
        paths = [s.store.text_path(f"r{tag}-{i}", "") for i in range(n)]
        for p in paths:
            Path(p).write_text("")
        start_evt.wait()  # type: ignore[attr-defined]
        for p in paths:
            s.register_valid_path(ValidPathInfo(p, sha256(b""), nar_size=0))


def bench_register(root: str, n: int, procs: int) -> float:
    LocalStore(*_dirs(root)).close()
    ctx = multiprocessing.get_context("spawn")
    start_evt = ctx.Event()
    workers = [ctx.Process(target=_register_worker, args=(root, k, n, start_evt)) for k in range(procs)]
    for w in workers:
        w.start()
    time.sleep(1.0)  # let every worker open its store and write its files
    t = time.perf_counter()
    start_evt.set()
    for w in workers:
        w.join()
    assert all(w.exitcode == 0 for w in workers)
    return procs * n / (time.perf_counter() - t)


def bench_pathlocks(root: str, n: int) -> float | None:
    """Hook for lock/unlock pairs per second; measured by the path-lock benchmark."""
    return None


def median_of(runs: int, f: Callable[[str], float | None]) -> float | None:
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as root:
            r = f(root)
            if r is None:
                return None
            results.append(r)
    return statistics.median(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=300, help="operations per run (per process)")
    a = ap.parse_args()
    rows = [
        ("add_text_to_store (texts/s)", lambda r: bench_add_text(r, a.n)),
        ("add_to_store small trees (trees/s)", lambda r: bench_add_tree(r, a.n)),
        ("register_valid_paths, 1 process (paths/s)", lambda r: bench_register(r, a.n, 1)),
        ("register_valid_paths, 4 processes (paths/s, total)", lambda r: bench_register(r, a.n, 4)),
        ("path lock/unlock pairs (pairs/s)", lambda r: bench_pathlocks(r, a.n)),
    ]
    print(f"median of {a.runs} runs, n={a.n}")
    for label, f in rows:
        m = median_of(a.runs, f)
        print(f"{label:55s} {'(see pathlocks benchmark)' if m is None else f'{m:10.0f}'}")


if __name__ == "__main__":
    main()
