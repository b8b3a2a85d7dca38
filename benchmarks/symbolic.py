"""z3 engine benchmark: time to counterexample or proof of `deadlock_free`.

Part 1: every scenario in specs/scenarios under every policy, through
`symbolic.check` (induction, then BMC, then Spacer; `--seconds` per phase).
Part 2: the scaling table: the seed's shape with 3..6 processes and fan-in
3..8 (path<k+1> with inputs path1..path<k>), under guix and release-on-done,
where the explicit engine gives out; the proof there is the inductive
invariant. Part 3: the seed's pre-fix deadlock asked at the explicit engine's
depth (BMC with the Houdini invariant, bit-vectors; not a proof of shortness).
Prints a plain table; `--quick` runs a reduced grid.
"""

from __future__ import annotations

import argparse
import time

from lockstep.model import Model, find_scenario
from lockstep.model.bmc import bmc, strengthening
from lockstep.model.explicit import Explorer
from lockstep.model.properties import get
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


def seed_deadlock() -> str:
    m = Model(find_scenario("seed"), "pre-fix")
    start = time.perf_counter()
    tr = Explorer(m).explore().results["deadlock_free"].trace
    assert tr is not None
    explicit = time.perf_counter() - start
    start = time.perf_counter()
    lemmas = strengthening(m)
    houdini = time.perf_counter() - start
    start = time.perf_counter()
    o = bmc(m, [get("deadlock_free")], depth=len(tr), bits=8, lemmas=lemmas, first=len(tr))["deadlock_free"]
    took = time.perf_counter() - start
    cycle = m.wait_for(o.found.last).cycle() if o.found is not None else None
    return (f"seed pre-fix deadlock_free: explicit depth {len(tr)} ({explicit:.1f} s); houdini "
            f"{len(lemmas)} lemmas ({houdini:.1f} s); bmc at depth {len(tr)}: "
            f"{'found' if o.found else 'not found'} length {o.depth}, cycle {cycle}, "
            f"shortest proved by bmc: {o.shortest} ({took:.1f} s)")


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
    print()
    print(seed_deadlock(), flush=True)


if __name__ == "__main__":
    main()
