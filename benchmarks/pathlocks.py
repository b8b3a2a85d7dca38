"""Uncontended path-lock throughput: lock/unlock pairs per second.

Run: ``.venv/bin/python benchmarks/pathlocks.py [--pairs N] [--runs R]``

Each run locks and unlocks one path N times through ``PathLocks`` in a fresh temporary
directory (on the same file system as the system temporary directory), once keeping the
lock file and once deleting it at every unlock (the stale-lock protocol: unlink, token,
close; the next lock creates the file again). Prints the median of R runs and the range.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lockstep.impl.pathlocks import PathLocks


def pairs_per_second(directory: Path, pairs: int, delete: bool) -> float:
    path = str(directory / "bench-out")
    locks = PathLocks()
    start = time.perf_counter()
    for _ in range(pairs):
        locks.lock_paths_nowait([path])
        locks.set_deletion(delete)
        locks.unlock()
    return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"pathlocks: uncontended lock/unlock pairs per second "
          f"({args.pairs} pairs per run, median of {args.runs} runs)")
    for delete in (False, True):
        rates = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                rates.append(pairs_per_second(Path(tmp), args.pairs, delete))
        label = "with deletion   " if delete else "without deletion"
        print(f"  {label}: median {statistics.median(rates):10,.0f}/s "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main()
