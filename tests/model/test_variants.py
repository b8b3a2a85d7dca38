"""Broken model variants are caught by the property each one breaks (STYLE.md 4).

Each variant (lockstep.model.VARIANTS) removes one piece of the daemon's lock
discipline. The test explores a small scenario with the variant and without it:
the variant must violate its property, with a trace that replays and ends in the
step that breaks it, while the unbroken model keeps that property on the same
scenario and policy. Otherwise the property could be violated for another reason,
or the variant could be vacuous.
"""

from __future__ import annotations

import pytest

from lockstep.model import VARIANTS, Model
from lockstep.model import actions as A
from lockstep.model.explicit import Explorer

from .support import assert_witness, scenario

# variant -> (scenario, the property it breaks, the action that breaks it)
CAUGHT_BY: dict[str, tuple[str, str, type[A.Action]]] = {
    # the built path stays locked by a finished goal
    "forget-unlock-after-build": ("multi-output", "no_retained_lock", A.BuildSucceeded),
    # a builder runs while its outputs are unlocked
    "build-without-lock": ("max-jobs-2", "build_holds_lock", A.StartBuild),
    # Nix Z10 (9a14335845): a goal woken from waitForBuildSlot builds without re-locking;
    # two-level has max_jobs 1 and independent leaves, so goals do wait for a slot
    "resume-without-relock": ("two-level", "build_holds_lock", A.StartBuild),
}


def test_every_variant_has_a_catching_property() -> None:
    assert set(CAUGHT_BY) == set(VARIANTS)


@pytest.mark.parametrize("policy", ["guix", "release-on-done"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_is_caught_by_the_property_it_breaks(variant: str, policy: str) -> None:
    name, prop, culprit = CAUGHT_BY[variant]
    scn = scenario(name)
    sound = Explorer(Model(scn, policy), symmetry=True).explore()
    assert sound.complete
    assert sound.results[prop].result == "holds", f"{prop} already fails without {variant}"

    broken = Model(scn, policy, frozenset({variant}))
    ex = Explorer(broken, symmetry=True).explore()
    assert ex.complete
    r = ex.results[prop]
    assert r.result == "violated", (
        f"variant {variant!r} ({VARIANTS[variant]}) is not caught by {prop} on scenario {name} "
        f"under {policy}: the broken model has {ex.states} states, the sound one {sound.states}")
    assert_witness(broken, prop, r)
    assert r.trace is not None
    assert isinstance(r.trace.actions[-1], culprit), r.trace.render()
