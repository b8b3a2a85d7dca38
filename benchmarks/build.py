"""Build throughput through the daemon (a script, not a test): `python benchmarks/build.py [--runs N]`.

Prints the median of N runs (each with a fresh store and daemon) of:
- trivial derivations (`mkdir $out`, no inputs) built per second, 1 client building
  all of them in one build-paths request (max-jobs 4);
- the same with 3 clients, each its own daemon process, each building its own third;
- the free-running seed reproducer's wall time under the guix policy (3 clients, 12
  inputs of 0.15 s + one top, max-jobs 1, poll 0.05 s; tests/daemon/test_seed_deadlock.py;
  the probe log is on, because the staggered start waits for each client's first build).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))

from tests.daemon import test_seed_deadlock as seed  # noqa: E402
from tests.daemon.conftest import Daemon, start_daemon  # noqa: E402


def with_daemon(fn, probe_log: bool = False):  # type: ignore[no-untyped-def]
    """Run fn(daemon) on a fresh store; the probe log is off unless asked for."""
    root = tempfile.mkdtemp(prefix="lockstep-b-")
    d = start_daemon(root, {} if probe_log else {"LOCKSTEP_PROBE_LOG": ""})
    try:
        return fn(d)
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def trivial_per_second(d: Daemon, n: int, clients: int) -> float:
    setup = d.client()
    drvs = [d.add(setup, f"t{i}", f"mkdir $out # {i}") for i in range(n)]
    conns = [d.client(max_jobs=4, use_substitutes=False) for _ in range(clients)]
    shares = [drvs[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=c.build_paths, args=(share,)) for c, share in zip(conns, shares, strict=True)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    assert setup.query_valid_paths([d.output(p) for p in drvs]) == {d.output(p) for p in drvs}
    return n / elapsed


def seed_wall(d: Daemon) -> float:
    t = time.perf_counter()
    outcome, _g, results = seed.run_seed(d, "guix")
    assert outcome == "completed" and results == {1: "ok", 2: "ok", 3: "ok"}, (outcome, results)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=60, help="trivial derivations per run")
    args = ap.parse_args()
    rows = [
        ("trivial builds/s, 1 client", lambda: with_daemon(lambda d: trivial_per_second(d, args.n, 1))),
        ("trivial builds/s, 3 clients", lambda: with_daemon(lambda d: trivial_per_second(d, args.n, 3))),
        ("seed reproducer wall s, guix", lambda: with_daemon(seed_wall, probe_log=True)),
    ]
    for label, run in rows:
        values = [run() for _ in range(args.runs)]
        print(f"{label:32s} median {statistics.median(values):8.2f}  (runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
