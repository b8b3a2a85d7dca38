"""The `lockstep` command line (DESIGN section 8: a contract that tests and CI rely on).

    lockstep check [SCENARIO] [--policy P]... [--engine E] [--json] [--trace-out FILE]
    lockstep scenarios
    lockstep show TRACE [--step N] [--dot]
    lockstep store ...

Exit status: 0 every checked property holds, 1 a property is violated, 2 bad
input, 3 inconclusive (some property unknown, none violated).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..model import POLICIES, VARIANTS, Model, ScenarioError, find_scenario
from ..model.properties import PROPERTIES
from ..model.scenario import builtin_scenarios, load_scenario
from ..model.trace import TraceError, load_itf, replay
from .check import ENGINES, CheckRow, run_check
from .render import render_state, wait_for_dot

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


class BadInput(Exception):
    """A user error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lockstep", description=(
        "Check the goal/lock design of a Guix/Nix-style store daemon against a formal model."))
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="check properties of a scenario with an engine")
    c.add_argument("scenario", nargs="?", help="scenario file or built-in name (default: the seed)")
    c.add_argument("--policy", action="append", metavar="POLICY",
                   help=f"lock release policy, repeatable: {', '.join(POLICIES)} (default: all)")
    c.add_argument("--engine", default="explicit", metavar="ENGINE",
                   help=f"engine: {', '.join(ENGINES)} (default: explicit)")
    c.add_argument("--property", action="append", metavar="NAME",
                   help="check only this property (repeatable; default: all)")
    c.add_argument("--json", action="store_true", help="print one JSON object per (engine, property)")
    c.add_argument("--trace-out", metavar="FILE",
                   help="write the first counterexample (ITF JSON) here")
    c.add_argument("--trace-dir", metavar="DIR",
                   help="write every counterexample and witness as DIR/<scenario>.<policy>.<property>.itf.json")
    c.add_argument("--no-symmetry", action="store_true", help="explicit engine: no symmetry reduction")
    c.add_argument("--max-states", type=int, metavar="N", help="explicit engine: stop after N states")
    c.add_argument("--depth", type=int, default=40, metavar="N", help="bound for bounded engines (default 40)")
    c.add_argument("--method", default="auto", metavar="METHOD",
                   help="z3 engine: auto, parametric, induction, bmc or spacer (default auto)")
    c.add_argument("--variant", action="append", default=[], metavar="NAME",
                   help=f"a deliberately broken model variant: {', '.join(VARIANTS)}")
    c.add_argument("--faults", action="store_true", help="include process crashes (SIGKILL) as actions")
    c.add_argument("--quiet", action="store_true", help="no counterexample traces in the text output")

    sub.add_parser("scenarios", help="list the built-in scenarios")

    s = sub.add_parser("show", help="print an ITF trace as numbered steps, or one step of it")
    s.add_argument("trace", help="an ITF trace written by lockstep")
    s.add_argument("scenario", nargs="?", help="scenario file (default: the trace's own scenario name)")
    s.add_argument("--step", type=int, metavar="N", help="show the full state after step N")
    s.add_argument("--dot", action="store_true", help="print the final (or step N) wait-for graph as Graphviz dot")

    for module, hook in (("store_cli", "add_store_parser"), ("daemon_cli", "add_daemon_parsers"),
                         ("replay_cli", "add_replay_parser")):
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError:
            continue
        getattr(mod, hook)(sub)
    return ap


def _scenario(name: str | None) -> Any:
    try:
        return find_scenario(name)
    except ScenarioError as e:
        raise BadInput(str(e)) from None


def cmd_check(args: argparse.Namespace) -> int:
    scenario = _scenario(args.scenario)
    policies = args.policy or list(POLICIES)
    for p in policies:
        if p not in POLICIES:
            raise BadInput(f"--policy {p!r}: unknown policy; use one of {', '.join(POLICIES)}")
    engines = list(ENGINES[:-1]) if args.engine == "all" else [args.engine]
    for e in engines:
        if e not in ENGINES:
            raise BadInput(f"--engine {e!r}: unknown engine; use one of {', '.join(ENGINES)}")
    props = args.property
    for n in props or ():
        if n not in PROPERTIES:
            raise BadInput(f"--property {n!r}: unknown property; known: {', '.join(PROPERTIES)}")
    for v in args.variant:
        if v not in VARIANTS:
            raise BadInput(f"--variant {v!r}: unknown variant; known: {', '.join(VARIANTS)}")
    if args.method != "auto":
        from ..model.symbolic import METHODS

        if args.method not in METHODS:
            raise BadInput(f"--method {args.method!r}: unknown z3 method; use one of {', '.join(METHODS)}")
        if "z3" not in engines:
            raise BadInput(f"--method {args.method}: only the z3 engine has methods; add --engine z3")
    if args.trace_dir:
        Path(args.trace_dir).mkdir(parents=True, exist_ok=True)
    rows: list[CheckRow] = []
    trace_written = False
    for policy in policies:
        model = Model(scenario, policy, frozenset(args.variant), faults=args.faults)
        for engine in engines:
            try:
                got = run_check(model, engine, props, depth=args.depth, symmetry=not args.no_symmetry,
                                max_states=args.max_states, method=args.method)
            except NotImplementedError as e:
                raise BadInput(f"--engine {engine}: {e}") from None
            for row in got:
                if row.trace is not None and args.trace_dir:
                    path = Path(args.trace_dir) / f"{scenario.name}.{policy}.{engine}.{row.prop}.itf.json"
                    row.trace.save(path)
                    row.trace_file = str(path)
                if (row.trace is not None and args.trace_out and not trace_written
                        and row.result == "violated"):
                    row.trace.save(args.trace_out)
                    row.trace_file = row.trace_file or args.trace_out
                    trace_written = True
            rows.extend(got)
            if not args.json:
                _print_rows(got, policy, engine, quiet=args.quiet)
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
    explicit = set(props or ())
    counted = [r for r in rows if r.kind == "always" or r.prop in explicit]
    if any(r.result in ("violated", "unreached") for r in counted):
        return EXIT_VIOLATED
    if any(r.result == "unknown" for r in counted):
        return EXIT_UNKNOWN
    return EXIT_OK


def _print_rows(rows: list[CheckRow], policy: str, engine: str, quiet: bool) -> None:
    if not rows:
        return
    r0 = rows[0]
    stats = f"{r0.states} states, {r0.transitions} transitions, depth {r0.depth}, " if r0.states else ""
    print(f"== scenario {r0.scenario}, policy {policy}, engine {engine}: {stats}{r0.seconds:.2f} s")
    for r in rows:
        extra = f"  (trace: {r.trace_length} steps)" if r.trace_length is not None else ""
        if r.reason:
            extra += f"  [{r.reason}]"
        if r.trace_file:
            extra += f"  -> {r.trace_file}"
        print(f"   {r.kind:9s} {r.prop:18s} {r.result}{extra}")
    if quiet:
        return
    for r in rows:
        if r.result == "violated" and r.trace is not None and r.kind == "always":
            print(f"\n-- counterexample to {r.prop} (policy {policy}):")
            print(r.trace.render(), end="")
    print()


def cmd_scenarios(args: argparse.Namespace) -> int:
    for name, path in builtin_scenarios().items():
        try:
            scn = load_scenario(path)
            desc = scn.description
        except ScenarioError as e:
            desc = f"(invalid: {e})"
        print(f"{name:24s} {desc}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    try:
        data = load_itf(args.trace)
    except TraceError as e:
        raise BadInput(str(e)) from None
    meta = data.get("#meta", {})
    scenario = _scenario(args.scenario or meta.get("scenario"))
    policy = meta.get("policy", "guix")
    if policy not in POLICIES:
        raise BadInput(f"trace {args.trace!r}: #meta.policy {policy!r} is not a policy ({', '.join(POLICIES)})")
    model = Model(scenario, policy, frozenset(meta.get("variants", [])),
                  faults=any(st.get("mbt::actionTaken") == "Crash" for st in data["states"]))
    try:
        trace = replay(model, data)
    except TraceError as e:
        raise BadInput(f"trace {args.trace!r}: {e}") from None
    if args.step is not None and not 0 <= args.step <= len(trace):
        raise BadInput(f"--step {args.step}: the trace has steps 0..{len(trace)}")
    step = len(trace) if args.step is None else args.step
    if args.dot:
        print(wait_for_dot(model, trace.states[step]), end="")
    elif args.step is not None:
        print(render_state(model, trace, step), end="")
    else:
        print(trace.render(), end="")
    return EXIT_OK


COMMANDS = {"check": cmd_check, "scenarios": cmd_scenarios, "show": cmd_show}


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
        if args.command == "store":
            from .store_cli import run_store
            return run_store(args)
        if args.command in ("daemon", "build"):
            from .daemon_cli import run_daemon_command
            return run_daemon_command(args)
        raise BadInput(f"command {args.command!r} is not available in this installation")
    except BadInput as e:
        print(f"lockstep: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
