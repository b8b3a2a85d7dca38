"""z3 engine benchmark: time to counterexample or proof of `deadlock_free`.

Part 1: every scenario in specs/scenarios under every policy, through
`symbolic.check` with method auto (its docstring gives the order of the
methods; `--seconds` per phase).

Part 2: the scaling table, where the explicit engine gives out: the seed's
shape with 3..6 processes and fan-in 3..8 (`fan_in`: leaves path1..path<k>,
path<k+1> with all of them as inputs, every process requests all of them),
under guix and release-on-done. One row per configuration:
  vars, trans   the state vector's length and the number of grounded transitions;
  sym states    the explicit engine's state count with symmetry reduction (the
                C backend, breadth-first to completion): exact when the search
                completed, `>cap` when it stopped at `--explicit-cap` states,
                `timeout` / `oom` past `--explicit-seconds` / `--explicit-gib`
                (each search runs in a child process under those limits);
  sym s, B/st   that search's seconds and the child's peak memory per state;
  plain states  the same without symmetry reduction, searched only when the
                reduced search completed; otherwise `>cap*`: every reachable
                state's orbit representative is reachable, so the unreduced
                space is at least as large as the reduced one;
  result ...    `symbolic.check(..., method="induction")` of deadlock_free:
                Houdini over the candidate lemmas, then the three checks of the
                invariant it returns (plain z3 queries: the re-check); result,
                method, lemmas in that invariant (with type_ok), seconds for both.
`--quick` runs 3..4 x 3..4 with a cap of 10^6.

Part 3: the seed's pre-fix deadlock: Foata-frame BMC with no depth hint, with
and without `fewest` (median of `--runs`), then sequential BMC asked at the
explicit engine's depth with the Houdini invariant (bit-vectors; once). None of
them proves the trace shortest (docs/proofs.md).

Prints plain tables; `--part` picks parts (default all).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from multiprocessing.connection import Connection

from lockstep.model import Model, find_scenario
from lockstep.model.bmc import bmc, strengthening
from lockstep.model.bmc_steps import parallel_bmc
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


# -- Part 2: the explicit engine's state count, bounded ---------------------------------------

def _search(model: Model, symmetry: bool, cap: int, gib: float, out: Connection) -> None:
    """Child process: one capped explicit search under an address-space limit."""
    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        ex = Explorer(model, symmetry=symmetry, backend="c").explore(max_states=cap)
    except MemoryError:
        out.send(("oom", 0, 0.0))
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.send(("complete" if ex.complete else "capped", ex.states, peak / max(ex.states, 1)))


class Size:
    """The outcome of one bounded explicit search."""

    def __init__(self, outcome: str, states: int, seconds: float, per_state: float) -> None:
        self.outcome = outcome  # complete | capped | oom | timeout
        self.states = states
        self.seconds = seconds
        self.per_state = per_state

    def count(self, cap: int) -> str:
        return {"complete": str(self.states), "capped": f">{sci(cap)}"}.get(self.outcome, self.outcome)


def sci(n: int) -> str:
    """2e7 for 20000000."""
    mantissa, exponent = f"{n:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def explicit_size(model: Model, symmetry: bool, cap: int, seconds: float, gib: float) -> Size:
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_search, args=(model, symmetry, cap, gib, send))
    start = time.perf_counter()
    child.start()
    send.close()
    ready = recv.poll(seconds)
    took = time.perf_counter() - start
    if not ready:
        child.kill()
        child.join()
        return Size("timeout", 0, took, 0.0)
    try:
        outcome, states, per_state = recv.recv()
    except EOFError:  # killed from outside (e.g. by the kernel's OOM killer)
        outcome, states, per_state = "oom", 0, 0.0
    child.join()
    return Size(outcome, states, took, per_state)


SCALING_HEAD = (f"{'scenario':14s} {'policy':16s} {'vars':>4s} {'trans':>5s} | {'sym states':>10s} "
                f"{'sym s':>6s} {'B/st':>4s} | {'plain states':>12s} | {'result':7s} {'method':9s} "
                f"{'lemmas':>6s} {'z3 s':>6s}")


def scaling_row(model: Model, args: argparse.Namespace) -> str:
    cap = args.explicit_cap
    sym = explicit_size(model, True, cap, args.explicit_seconds, args.explicit_gib)
    if sym.outcome == "complete":
        plain = explicit_size(model, False, cap, args.explicit_seconds, args.explicit_gib).count(cap)
    else:
        plain = f">{sci(cap)}*" if sym.outcome == "capped" else "-"
    start = time.perf_counter()
    (r,) = check(model, ["deadlock_free"], depth=args.depth, method="induction", seconds=args.seconds)
    took = time.perf_counter() - start
    return (f"{model.scenario.name:14s} {model.policy:16s} {len(model.layout.names):4d} "
            f"{len(model.transitions):5d} | {sym.count(cap):>10s} {sym.seconds:6.1f} "
            f"{sym.per_state:4.0f} | {plain:>12s} | {r.result:7s} {r.method:9s} "
            f"{len(r.invariant):6d} {took:6.1f}")


def seed_deadlock(runs: int) -> list[str]:
    """The seed's pre-fix deadlock: BFS, Foata-frame BMC without a depth hint (median of `runs`),
    and sequential BMC asked at the BFS depth with the Houdini invariant (once: it is slow)."""
    m = Model(find_scenario("seed"), "pre-fix")
    start = time.perf_counter()
    tr = Explorer(m).explore().results["deadlock_free"].trace
    assert tr is not None
    explicit = time.perf_counter() - start
    out = [f"seed pre-fix deadlock_free: explicit BFS depth {len(tr)} ({explicit:.1f} s)"]
    for fewest in (False, True):
        times, found = [], None
        for _ in range(runs):
            start = time.perf_counter()
            found = parallel_bmc(m, [get("deadlock_free")], 40, fewest=fewest)["deadlock_free"]
            times.append(time.perf_counter() - start)
        assert found is not None and found.found is not None
        cycle = m.wait_for(found.found.last).cycle()
        out.append(f"  Foata-frame BMC{' + fewest' if fewest else ''}: {len(found.found)} steps, cycle {cycle}; "
                   f"median {statistics.median(times):.2f} s of {runs} ({found.reason})")
    start = time.perf_counter()
    lemmas = strengthening(m)
    houdini = time.perf_counter() - start
    start = time.perf_counter()
    o = bmc(m, [get("deadlock_free")], depth=len(tr), bits=8, lemmas=lemmas, first=len(tr))["deadlock_free"]
    took = time.perf_counter() - start
    cycle = m.wait_for(o.found.last).cycle() if o.found is not None else None
    out.append(f"  sequential BMC at depth {len(tr)} with houdini's {len(lemmas)} lemmas ({houdini:.1f} s): "
               f"{'found' if o.found else 'not found'} length {o.depth}, cycle {cycle}, "
               f"shortest proved by bmc: {o.shortest} ({took:.1f} s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="z3 budget per phase")
    ap.add_argument("--depth", type=int, default=40)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="part 3: runs per timing (median)")
    ap.add_argument("--part", type=int, action="append", choices=(1, 2, 3))
    ap.add_argument("--policy", action="append", choices=("guix", "release-on-done"),
                    help="part 2's policies (default both)")
    ap.add_argument("--explicit-cap", type=int, default=None, help="states (default 2e7; --quick 1e6)")
    ap.add_argument("--explicit-seconds", type=float, default=600.0)
    ap.add_argument("--explicit-gib", type=float, default=8.0, help="address-space limit per search")
    args = ap.parse_args()
    parts = set(args.part or (1, 2, 3))
    if args.explicit_cap is None:
        args.explicit_cap = 10**6 if args.quick else 2 * 10**7
    if 1 in parts:
        print(f"{'scenario':28s} {'policy':16s} {'vars':>5s} {'trans':>5s} {'result':9s} "
              f"{'method':10s} {'depth':>5s} {'seconds':>8s}")
        for name in builtin_scenarios():
            for policy in POLICIES:
                print(row(Model(find_scenario(name), policy), args.seconds, args.depth), flush=True)
        print()
    if 2 in parts:
        print(SCALING_HEAD)
        procs = range(3, 5) if args.quick else range(3, 7)
        widths = range(3, 5) if args.quick else range(3, 9)
        for policy in args.policy or ("guix", "release-on-done"):
            for p in procs:
                for w in widths:
                    print(scaling_row(Model(fan_in(p, w), policy), args), flush=True)
        print()
    if 3 in parts:
        for line in seed_deadlock(args.runs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
