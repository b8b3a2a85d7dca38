"""`lockstep replay TRACE`: drive the real processes along a trace, step by step.

Exit status: 0 the real system reached the trace's lock table and valid paths at every
step (and deadlocked where the trace deadlocks), 1 it did not (or a transition failed
refinement), 2 bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from lockstep.harness.refinement import RefinementError
from lockstep.harness.replay import replay_trace
from lockstep.model import Model, ScenarioError
from lockstep.model.trace import TraceError, load_itf, replay


def add_replay_parser(sub: Any) -> None:
    r = sub.add_parser("replay", help="replay an ITF trace against the real daemon processes")
    r.add_argument("trace", help="an ITF trace written by lockstep (explicit, z3 or Hypothesis engine)")
    r.add_argument("scenario", nargs="?", help="scenario file (default: the trace's own scenario name)")
    r.add_argument("--impl-policy", metavar="POLICY",
                   help="the daemon's lock policy (default: the trace's impl_policy, else its policy)")
    r.add_argument("--bugs", default=None, metavar="Z1,Z10", help="historical bugs to switch on in the daemon")
    r.set_defaults(handler=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from lockstep.harness.stateful import resolve_scenario

    try:
        data = load_itf(args.trace)
        meta = data.get("#meta", {})
        scenario = resolve_scenario(args.scenario or meta.get("scenario") or "seed")
        model = Model(scenario, meta.get("policy", "guix"), frozenset(meta.get("variants", [])))
        trace = replay(model, data)
    except (TraceError, ScenarioError, ValueError) as e:
        print(f"lockstep replay: {e}")
        return 2
    bugs = tuple(b for b in (args.bugs if args.bugs is not None else ",".join(meta.get("bugs", []))).split(",") if b)
    impl = args.impl_policy or meta.get("impl_policy") or model.policy
    try:
        result = replay_trace(trace, impl, bugs)
    except RefinementError as e:
        print(str(e))
        return 1
    print(result.render(), end="")
    return 0 if result.ok else 1
