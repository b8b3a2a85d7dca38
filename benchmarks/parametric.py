"""Every-size proof benchmark: the theorem once per policy, the bridge per scenario.

Part 1: `parametric.theorem` for each policy (and under `no_keep_going`): its
verdict, the failing check if any, and the time (median of --runs).
Part 2: the bridge on scenarios far beyond the explicit engine: N processes,
each requesting a chain of L levels of W derivations (every derivation of level
k+1 takes every derivation of level k as input), under guix and
release-on-done. Prints grounded transitions, bridge queries and seconds, and
the explicit engine's state count with symmetry, capped (`>cap` when it gives
out; `oom` / `timeout` past `--gib` / 600 s: each search runs in a child
process, as in benchmarks/symbolic.py), so the cost of a proof can be read
against the size of the state space.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from symbolic import explicit_size  # benchmarks/symbolic.py: a capped search in a child process

from lockstep.model import Model
from lockstep.model.parametric import theorem
from lockstep.model.parametric_bridge import bridge
from lockstep.model.scenario import Derivation, Process, Scenario

T = TypeVar("T")


def layered(procs: int, width: int, levels: int) -> Scenario:
    drvs: list[Derivation] = []
    below: tuple[str, ...] = ()
    for k in range(levels):
        level = tuple(f"l{k}d{i}" for i in range(width))
        drvs += [Derivation(n, inputs=below) for n in level]
        below = level
    request = tuple(d.name for d in drvs)
    return Scenario(f"layered-{procs}x{width}x{levels}", "benchmark shape",
                    tuple(sorted(drvs, key=lambda d: d.name)), (Process(request),) * procs)


def timed(fn: Callable[[], T], runs: int) -> tuple[T, float]:
    """The last run's result and the median seconds of `runs` runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=int, default=2_000_000, help="explicit engine state cap")
    ap.add_argument("--gib", type=float, default=8.0, help="explicit engine memory limit")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shape", type=int, nargs=3, action="append", metavar=("P", "W", "L"),
                    help="only these shapes: processes, width, levels")
    args = ap.parse_args()
    print(f"{'policy':16s} {'assumptions':14s} {'holds':6s} {'failed check':34s} {'seconds':>8s}")
    for policy, assumed in [("release-on-done", ()), ("guix", ()), ("guix", ("no_keep_going",)),
                            ("pre-fix", ()), ("pre-fix", ("no_keep_going",))]:
        th, took = timed(lambda: theorem(policy, assumed), args.runs)  # noqa: B023
        failed = th.failed.name if th.failed else "-"
        print(f"{policy:16s} {','.join(assumed) or '-':14s} {th.holds!s:6s} {failed:34s} {took:8.2f}", flush=True)
    print()
    print(f"{'scenario':22s} {'policy':16s} {'trans':>6s} {'queries':>7s} {'bridge s':>8s} "
          f"{'explicit states':>15s} {'explicit s':>10s}")
    shapes = [(2, 2, 2), (3, 3, 2), (4, 4, 2)] if args.quick else [
        (2, 2, 2), (3, 3, 2), (4, 4, 2), (6, 4, 2), (6, 8, 1), (8, 4, 3), (10, 6, 3)]
    if args.shape:
        shapes = [tuple(s) for s in args.shape]
    for p, w, levels in shapes:
        scn = layered(p, w, levels)
        for policy in ("guix", "release-on-done"):
            m = Model(scn, policy)
            assumed = ("no_keep_going",) if policy == "guix" else ()
            b, took = timed(lambda: bridge(m, assumed), args.runs)  # noqa: B023
            assert b.ok, b.failure
            size = explicit_size(m, True, args.cap, 600.0, args.gib)
            states = {"complete": f"{size.states:,}", "capped": f">{args.cap:,}"}.get(size.outcome, size.outcome)
            print(f"{scn.name:22s} {policy:16s} {len(m.transitions):6d} {b.queries:7d} {took:8.2f} "
                  f"{states:>15s} {size.seconds:10.1f}", flush=True)


if __name__ == "__main__":
    main()
