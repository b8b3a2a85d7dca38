"""Refinement benchmark: checked transitions per second on the real daemon; time from start
to the first seed deadlock (pre-fix) under seeded random schedules (median over seeds);
the Hypothesis-found schedule's length against the explicit engine's shortest trace.

    python benchmarks/refinement.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from lockstep.harness.refinement import DeadlockFound, Session
from lockstep.model import Model, find_scenario
from lockstep.model.explicit import Explorer


def transitions_per_second(runs: int) -> float:
    m = Model(find_scenario("seed"), "guix")
    checked, secs = 0, 0.0
    for _ in range(runs):
        s = Session(m)
        t = time.perf_counter()
        try:
            s.start()
            s.run_fair()
        finally:
            secs += time.perf_counter() - t
            checked += s.checked
            s.stop()
    return checked / secs


def first_deadlock(seed: int, limit: int = 400) -> tuple[float | None, int]:
    m = Model(find_scenario("seed"), "pre-fix")
    rng = random.Random(seed)
    s = Session(m, properties=())
    t = time.perf_counter()
    try:
        s.start()
        for _ in range(limit):
            if s.finished:
                return None, len(s.schedule)
            if s.deadlocked():
                try:
                    s.confirm_deadlock()
                except DeadlockFound:
                    return time.perf_counter() - t, len(s.schedule)
            s.choose(rng.choice(s.options()))
        return None, len(s.schedule)
    finally:
        s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    print(f"checked transitions per second (seed, guix, fair, incl. start-up): {transitions_per_second(3):.0f}")
    times, lengths, misses = [], [], 0
    seed = 0
    while len(times) < args.seeds and seed < 20 * args.seeds:
        secs, n = first_deadlock(seed)
        seed += 1
        if secs is None:
            misses += 1
        else:
            times.append(secs)
            lengths.append(n)
    shortest = len(Explorer(Model(find_scenario("seed"), "pre-fix")).explore().results["deadlock_free"].trace)
    if times:
        print(f"time to the first seed deadlock (pre-fix, random schedules): median {statistics.median(times):.2f} s "
              f"over {len(times)} deadlocking seeds ({misses} seeds completed without one)")
        print(f"schedule length at the deadlock: median {statistics.median(lengths)}, min {min(lengths)}; "
              f"explicit engine's shortest trace: {shortest} steps")


if __name__ == "__main__":
    main()
