"""Unbounded proofs with named, re-checked invariants; a broken candidate is rejected.

The seed's deadlock freedom under `guix` and `release-on-done` is proved by an
inductive invariant that Houdini finds among the lock-discipline lemmas
(induction.candidates, without the catalogue's properties). The invariant is
then re-checked from scratch: initiation, consecution of every lemma, and
safety, each a plain z3 query whose unsat core names the lemmas it used.
"""

from __future__ import annotations

from functools import cache

import pytest

from lockstep.model import Model, find_scenario
from lockstep.model.induction import Checker, Lemma, candidates, type_ok
from lockstep.model.properties import CATALOGUE, get
from lockstep.model.symbolic import check


@cache
def seed_invariant(policy: str) -> tuple[Checker, tuple[Lemma, ...]]:
    m = Model(find_scenario("seed"), policy)
    c = Checker(m)
    props = {p.name for p in CATALOGUE}
    return c, tuple(c.houdini([lem for lem in candidates(m) if lem.name not in props]))


@pytest.mark.parametrize("policy", ["guix", "release-on-done"])
def test_seed_deadlock_free_by_rechecked_invariant(policy: str) -> None:
    c, inv = seed_invariant(policy)
    v = c.check(list(inv), get("deadlock_free"))
    assert v.ok, v.cti
    names = {lem.name for lem in v.lemmas}
    assert "deadlock_free" not in names and "type_ok" in names
    # every lemma's consecution was a separate query with a core of named lemmas
    assert {k for k in v.cores if k.startswith("consecution:")} == {f"consecution:{n}" for n in names}
    used = set(v.cores["safety:deadlock_free"])
    # the heart of the argument: a held lock belongs to a running process whose goal is building
    assert any(n.startswith("owner_running[") for n in used)
    assert any(n.startswith("build_lock_busy[") for n in used)
    assert used <= names


@pytest.mark.parametrize("policy", ["guix", "release-on-done"])
def test_facade_reports_the_induction_proof(policy: str) -> None:
    (r,) = check(Model(find_scenario("seed"), policy), ["deadlock_free"], method="induction")
    assert (r.result, r.method, r.trace) == ("holds", "induction", None)
    assert "owner_running[path1,P1]" in r.invariant


def test_broken_candidate_rejected_by_consecution_naming_it() -> None:
    """'deadlock_free' alone is true in the seed under guix but not inductive."""
    c, _ = seed_invariant("guix")
    m = c.model
    cti = c.consecution([type_ok(m), Lemma("deadlock_free", get("deadlock_free").state(m.rules, m.transitions))])
    assert cti is not None and (cti.check, cti.lemma) == ("consecution", "deadlock_free")
    # the counterexample to induction is a real step of the concrete model, into a deadlock
    act = next(t.action for t in m.transitions if str(t.action) == cti.action)
    assert m.next_state(cti.pre, act) == cti.post
    assert not m.is_deadlock(cti.pre) and m.is_deadlock(cti.post)


def test_pre_fix_invariant_cannot_prove_deadlock_freedom() -> None:
    c, inv = seed_invariant("pre-fix")
    v = c.check(list(inv), get("deadlock_free"))
    assert not v.ok and v.cti is not None and (v.cti.check, v.cti.lemma) == ("safety", "deadlock_free")
    assert c.model.is_deadlock(v.cti.pre)
