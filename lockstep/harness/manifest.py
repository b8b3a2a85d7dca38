"""The expected-results manifest (specs/manifest.toml): pinned regression numbers.

For every (scenario, policy): distinct states and transitions with and without
symmetry reduction, the BFS depth, each property's verdict and the length of its
shortest counterexample or witness. Tests compare fresh explorations against it;
`python -m lockstep.harness.manifest --write` regenerates it after a deliberate
model change (review the diff: every changed number is a changed semantics).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..model import POLICIES, Model, find_scenario
from ..model.explicit import Explorer
from ..model.scenario import builtin_dir, builtin_scenarios

MANIFEST = builtin_dir().parent / "manifest.toml"


def compute(scenario: str, policy: str) -> dict[str, Any]:
    model = Model(find_scenario(scenario), policy)
    sym = Explorer(model, symmetry=True).explore()
    full = Explorer(model, symmetry=False).explore()
    verdicts = {n: r.result for n, r in sym.results.items()}
    lengths = {n: len(r.trace) for n, r in sym.results.items() if r.trace is not None}
    if {n: r.result for n, r in full.results.items()} != verdicts:
        raise AssertionError(f"{scenario}/{policy}: verdicts differ with and without symmetry")
    return {
        "scenario": scenario, "policy": policy,
        "states": full.states, "transitions": full.transitions,
        "states_symmetry": sym.states, "transitions_symmetry": sym.transitions,
        "depth": sym.depth, "verdicts": verdicts, "trace_lengths": lengths,
    }


def load(path: Path = MANIFEST) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        return list(tomllib.load(f)["entry"])


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def dump(entries: list[dict[str, Any]]) -> str:
    out = ["# Pinned explicit-engine results per (scenario, policy); see lockstep/harness/manifest.py.",
           "# Regenerate with `python -m lockstep.harness.manifest --write` and review the diff.", ""]
    for e in entries:
        out.append("[[entry]]")
        for k, v in e.items():
            if not isinstance(v, dict):
                out.append(f"{k} = {_toml_value(v)}")
        for k, v in e.items():
            if isinstance(v, dict):
                out.append(f"[entry.{k}]")
                out.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite specs/manifest.toml")
    args = ap.parse_args(argv)
    entries = [compute(s, p) for s in builtin_scenarios() for p in POLICIES]
    text = dump(entries)
    if args.write:
        MANIFEST.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
