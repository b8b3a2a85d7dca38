"""Fresh explorations reproduce the pinned numbers of specs/manifest.toml.

A changed count is a changed semantics: regenerate the manifest deliberately
(`python -m lockstep.harness.manifest --write`) and explain the diff.
"""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.harness.manifest import compute, load
from lockstep.model import POLICIES
from lockstep.model.scenario import builtin_scenarios

ENTRIES = load()


def test_manifest_covers_every_scenario_and_policy() -> None:
    pinned = {(e["scenario"], e["policy"]) for e in ENTRIES}
    assert pinned == {(s, p) for s in builtin_scenarios() for p in POLICIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e['scenario']}-{e['policy']}")
def test_pinned_counts_and_verdicts(entry: dict[str, Any]) -> None:
    got = compute(entry["scenario"], entry["policy"])
    assert got == entry


def test_seed_pins_the_known_verdicts() -> None:
    """The mission in three lines: pre-fix deadlocks, the fix and Nix's policy do not."""
    seed = {e["policy"]: e for e in ENTRIES if e["scenario"] == "seed"}
    assert seed["pre-fix"]["verdicts"]["deadlock_free"] == "violated"
    assert seed["guix"]["verdicts"]["deadlock_free"] == "holds"
    assert seed["release-on-done"]["verdicts"]["deadlock_free"] == "holds"
    assert seed["guix"]["states_symmetry"] < seed["guix"]["states"]
