"""Explicit-engine figures: states, transitions, seconds (median of runs), states/s.

    python benchmarks/explicit.py [--runs 5] [--scenario NAME]... [--python]

Per (scenario, policy), with and without symmetry, on the C backend; with
--python also the pure-Python backend (the reference implementation). Also the
time to the seed's shortest pre-fix deadlock (BFS stopping at the first
deadlock). Compilation of the generated C is excluded (it is cached on disk);
the first, uncached build time is printed separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lockstep.model import POLICIES, Model, find_scenario
from lockstep.model.cengine import CModel
from lockstep.model.explicit import Explorer
from lockstep.model.scenario import builtin_scenarios


def median_run(model: Model, symmetry: bool, backend: str, runs: int, **kw: object) -> tuple[object, float]:
    times = []
    ex = None
    for _ in range(runs):
        t0 = time.perf_counter()
        ex = Explorer(model, symmetry, backend=backend).explore(**kw)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    return ex, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--python", action="store_true", help="also time the pure-Python backend")
    args = ap.parse_args()
    names = args.scenario or list(builtin_scenarios())
    print(f"{'scenario':18s} {'policy':16s} {'sym':4s} {'states':>10s} {'transitions':>12s} "
          f"{'depth':>5s} {'median s':>9s} {'states/s':>10s}  backend")
    for name in names:
        for policy in POLICIES:
            model = Model(find_scenario(name), policy)
            t0 = time.perf_counter()
            CModel(model, True)
            build = time.perf_counter() - t0
            backends = ["c"] + (["python"] if args.python else [])
            for backend in backends:
                rows = {}
                for sym in (True, False):
                    runs = args.runs if backend == "c" else 1
                    ex, secs = median_run(model, sym, backend, runs)
                    rows[sym] = ex
                    print(f"{name:18s} {policy:16s} {'yes' if sym else 'no':4s} {ex.states:10d} "  # type: ignore[attr-defined]
                          f"{ex.transitions:12d} {ex.depth:5d} {secs:9.3f} {ex.states / secs:10.0f}  {backend}"  # type: ignore[attr-defined]
                          + (f" (first build {build:.2f} s)" if backend == "c" and sym else ""))
                saved = 1 - rows[True].states / rows[False].states  # type: ignore[attr-defined]
                print(f"{'':18s} {'':16s} symmetry saves {saved:.1%} of the states")
    seed = Model(find_scenario("seed"), "pre-fix")
    ex, secs = median_run(seed, True, "c", args.runs, stop_at_deadlock=True)
    dl = ex.results["deadlock_free"]  # type: ignore[attr-defined]
    print(f"\nseed pre-fix: shortest deadlock ({len(dl.trace)} steps) found after {ex.states} states "  # type: ignore[attr-defined]
          f"in {secs:.3f} s (median of {args.runs}, trace reconstruction included)")


if __name__ == "__main__":
    main()
