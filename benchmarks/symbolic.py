"""z3 engine benchmark: time to counterexample or proof of `deadlock_free`.

Part 1: every scenario in specs/scenarios under every policy, through
`symbolic.check` (induction, then BMC, then Spacer; `--seconds` per phase).
Part 2: the scaling table: the seed's shape with 3..6 processes and fan-in
3..8 (path<k+1> with inputs path1..path<k>), under guix and release-on-done,
where the explicit engine gives out; the proof there is the inductive
invariant. Prints a plain table; `--quick` runs a reduced grid.
"""

from __future__ import annotations

import argparse
import time

from lockstep.model import Model, find_scenario
from lockstep.model.rules import POLICIES
from lockstep.model.scenario import Derivation, Process, Scenario, builtin_scenarios
from lockstep.model.symbolic import check


def fan_in(procs: int, width: int) -> Scenario:
    leaves = tuple(Derivation(f"path{i}") for i in range(1, width + 1))
    top = Derivation(f"path{width + 1}", inputs=tuple(d.name for d in leaves))
    request = tuple(d.name for d in (*leaves, top))
    return Scenario(f"fan-in-{procs}x{width}", "seed shape", (*leaves, top), (Process(request),) * procs)


def row(model: Model, seconds: float, depth: int) -> str:
    start = time.perf_counter()
    (r,) = check(model, ["deadlock_free"], depth=depth, seconds=seconds)
    took = time.perf_counter() - start
    return (f"{model.scenario.name:28s} {model.policy:16s} {len(model.layout.names):5d} "
            f"{len(model.transitions):5d} {r.result:9s} {r.method:10s} {r.depth:5d} {took:8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--depth", type=int, default=40)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    head = f"{'scenario':28s} {'policy':16s} {'vars':>5s} {'trans':>5s} {'result':9s} {'method':10s} {'depth':>5s} {'seconds':>8s}"
    print(head)
    for name in builtin_scenarios():
        for policy in POLICIES:
            print(row(Model(find_scenario(name), policy), args.seconds, args.depth), flush=True)
    print()
    print(head)
    procs = range(3, 5) if args.quick else range(3, 7)
    widths = range(3, 5) if args.quick else range(3, 9)
    for policy in ("guix", "release-on-done"):
        for p in procs:
            for w in widths:
                print(row(Model(fan_in(p, w), policy), args.seconds, args.depth), flush=True)


if __name__ == "__main__":
    main()
