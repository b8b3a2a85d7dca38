"""Smallest deadlocking scenario per policy, by enumeration in size order.

    python benchmarks/smallest.py [--processes 2] [--derivations 2] [--outputs 1]
                                  [--max-jobs 1 [--max-jobs 2 ...]] [--backend python]

For pre-fix and guix: the first scenario in the order of lockstep.model.smallest
that deadlocks (as TOML, in the specs/scenarios format), its shortest trace's
length, the wait-for cycle at its last state, the scenarios checked and the
seconds. For release-on-done, where deadlock freedom is claimed for every size:
every scenario up to the bounds is checked and the deadlocking ones counted.
Last, the setting of Guix bug 31785 (builders that succeed, no keep-going, up to
3 processes and 3 derivations): the smallest deadlock under pre-fix and guix.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from lockstep.model.smallest import Bounds, enumerate_codes, exhaustive, smallest_violation, to_toml


def smallest(policy: str, bounds: Bounds, total: int, backend: str) -> None:
    t0 = time.perf_counter()
    found = smallest_violation(policy, "deadlock_free", bounds, backend=backend)
    secs = time.perf_counter() - t0
    print(f"\n== {policy}: ", end="")
    if found is None:
        print(f"no deadlock in {total} scenarios ({secs:.1f} s)")
        return
    cycle = found.model.wait_for(found.trace.last).cycle()
    shown = " -> ".join(f"P{p}" for p in (*cycle, cycle[0])) if cycle else "none"
    print(f"smallest deadlock after {found.checked} scenarios "
          f"({found.states} states, {secs:.1f} s); trace {len(found.trace)} steps, wait-for cycle {shown}")
    scn = dataclasses.replace(found.scenario, name=f"smallest-deadlock-{policy}")
    print(to_toml(scn), end="")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--derivations", type=int, default=2)
    ap.add_argument("--outputs", type=int, default=1)
    ap.add_argument("--max-jobs", type=int, action="append", help="max_jobs values (default 1)")
    ap.add_argument("--backend", default="python", choices=("python", "c", "auto"))
    args = ap.parse_args()
    bounds = Bounds(args.processes, args.derivations, args.outputs, tuple(args.max_jobs or (1,)))
    t0 = time.perf_counter()
    total = sum(1 for _ in enumerate_codes(bounds))
    print(f"bounds: {bounds}")
    print(f"scenarios within the bounds: {total} (enumerated in {time.perf_counter() - t0:.2f} s)")
    for policy in ("pre-fix", "guix"):
        smallest(policy, bounds, total, args.backend)
    tally = exhaustive("release-on-done", "deadlock_free", bounds, backend=args.backend)
    print(f"\n== release-on-done: {tally.checked} scenarios checked, {tally.violations} deadlock, "
          f"{tally.checked - tally.violations} deadlock-free ({tally.states} states, {tally.seconds:.1f} s)")
    for scn in tally.violating[:3]:
        print(to_toml(scn), end="")
    bug = Bounds(3, 3, builders=("ok",), substitutes=(), keep_going=(False,))
    print(f"\n-- the setting of Guix bug 31785: {bug}")
    for policy in ("pre-fix", "guix"):
        smallest(policy, bug, sum(1 for _ in enumerate_codes(bug)), args.backend)


if __name__ == "__main__":
    main()
