"""The every-size theorem (parametric.py) and its bridge to concrete scenarios.

What must hold: the theorem is proved for release-on-done, and for guix only
under `no_keep_going` (without it, the abstract counterexample is the
hang-keep-going shape); every protocol rule is needed; the bridge instantiates
the theorem on every scenario in specs/ and on random scenarios, and rejects
each broken variant naming the rule and the transition; and a parametric
"holds" never contradicts the explicit engine.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.harness.cli import main
from lockstep.model import Model, Scenario
from lockstep.model.explicit import Explorer
from lockstep.model.parametric import RULES, proved, theorem
from lockstep.model.parametric_bridge import bridge
from lockstep.model.scenario import Derivation, Process, builtin_scenarios
from lockstep.model.symbolic import check

from .support import scenario


def test_release_on_done_every_size() -> None:
    th = proved("release-on-done")
    assert th.holds, th.failed
    safety = next(c for c in th.checks if c.name == "safety")
    # the argument: a held lock belongs to a running process whose goal is BUSY, and such a
    # process always has a step; every fact of the abstract deadlock is used
    assert {"owner_running", "build_lock_busy", "subst_lock_busy", "never_kept"} <= set(safety.core)
    assert {f"stuck:{n}" for n in ("blocked_on_other", "busy_goals_progress", "no_request_done")} <= set(safety.core)


def test_guix_needs_no_keep_going() -> None:
    bare = proved("guix")
    assert bare.failed is not None and bare.failed.name == "safety" and bare.failed.answer == "sat"
    # the abstract counterexample is hang-keep-going's shape: two keep-going processes,
    # each holding a lock kept by its failed top-level goal, each wanting the other's
    cex = bare.failed.counterexample
    assert cex.count("keep_going=True") == 2 and cex.count("as KEPT_TOP") == 2
    assert "P3" not in cex
    assumed = proved("guix", ("no_keep_going",))
    assert assumed.holds, assumed.failed
    safety = next(c for c in assumed.checks if c.name == "safety")
    assert {"assume:no_keep_going", "kept_top_failed"} <= set(safety.core)


def test_pre_fix_fails_where_the_seed_bug_lives() -> None:
    th = proved("pre-fix", ("no_keep_going",))
    # Beaten keeps the lock for a top-level goal that succeeded (Guix bug 31785): two active
    # processes, each holding such a lock, each wanting the other's
    assert th.failed is not None and th.failed.name == "safety" and th.failed.answer == "sat"
    cex = th.failed.counterexample
    assert cex.count("as KEPT_TOP") == 2 and "topfailed=True" not in cex


@pytest.mark.parametrize("policy", ["pre-fix", "guix", "release-on-done"])
@pytest.mark.parametrize("prop", ["lock_exclusive", "build_holds_lock"])
def test_lock_discipline_every_size_every_policy(policy: str, prop: str) -> None:
    th = proved(policy, (), prop)
    assert th.holds, th.failed
    safety = next(c for c in th.checks if c.name == "safety")
    assert "busy_holds_lock" in safety.core
    b = bridge(Model(scenario("seed"), policy), (), prop)
    assert b.ok, b.failure
    (r,) = check(Model(scenario("substitute-ok"), policy), [prop], method="parametric")
    assert (r.result, r.method) == ("holds", "parametric"), r.reason


def test_bridge_rejects_a_variant_that_breaks_the_claim() -> None:
    """build-without-lock breaks build_holds_lock: the bridge fails before the claim is used."""
    b = bridge(Model(scenario("seed"), "guix", frozenset({"build-without-lock"})), (), "build_holds_lock")
    assert b.failure is not None and b.failure.check == "step:busy_takes_lock"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_is_needed(rule: str) -> None:
    """Leaving any one protocol rule out breaks the proof for guix (a broken variant per rule)."""
    th = theorem("guix", ("no_keep_going",), without=frozenset({rule}))
    assert th.failed is not None and th.failed.name.startswith("consecution:")
    assert any(f"rule:{rule}" in c.core for c in proved("guix", ("no_keep_going",)).checks)


@pytest.mark.parametrize("name", builtin_scenarios())
@pytest.mark.parametrize("policy", ["release-on-done", "guix"])
def test_bridge_instantiates_every_spec(name: str, policy: str) -> None:
    b = bridge(Model(scenario(name), policy))
    assert b.ok, b.failure
    assert b.queries > len(scenario(name).processes)


@pytest.mark.parametrize(("variant", "policy", "check_", "action"), [
    ("forget-unlock-after-build", "release-on-done", "step:lock_taken", "BuildSucceeded"),
    ("build-without-lock", "release-on-done", "step:busy_takes_lock", "StartBuild"),
    ("resume-without-relock", "guix", "step:busy_takes_lock", "StartBuild"),
])
def test_bridge_rejects_broken_variants(variant: str, policy: str, check_: str, action: str) -> None:
    b = bridge(Model(scenario("seed"), policy, frozenset({variant})))
    assert b.failure is not None
    assert b.failure.check == check_ and b.failure.action is not None and b.failure.action.startswith(action)
    # the witness is a concrete step of the broken model
    m = Model(scenario("seed"), policy, frozenset({variant}))
    assert b.failure.state is not None
    act = next(t.action for t in m.transitions if str(t.action) == b.failure.action)
    assert m.next_state(b.failure.state, act) == b.failure.post


def test_bridge_checks_the_assumption() -> None:
    b = bridge(Model(scenario("hang-keep-going"), "guix"), ("no_keep_going",))
    assert b.failure is not None and b.failure.check == "assumption:no_keep_going"


def test_facade_reports_parametric() -> None:
    (r,) = check(Model(scenario("seed"), "guix"), ["deadlock_free"])
    assert (r.result, r.method) == ("holds", "parametric")
    assert "no_keep_going" in r.reason and "kept_top_failed" in r.invariant
    (r,) = check(Model(scenario("hang-keep-going"), "guix"), ["deadlock_free"], method="parametric")
    assert r.result == "unknown" and "safety" in r.reason and "assumption:no_keep_going" in r.reason


def test_cli_json_names_the_method(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "different-requests", "--engine", "z3", "--method", "parametric", "--policy",
                 "release-on-done", "--property", "deadlock_free", "--json"])
    row = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (row["property"], row["result"], row["method"]) == ("deadlock_free", "holds", "parametric")
    assert main(["check", "seed", "--method", "parametric"]) == 2
    assert "only the z3 engine has methods" in capsys.readouterr().err


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Small random scenarios: a DAG of up to 4 derivations, up to 3 processes."""
    n = draw(st.integers(1, 4))
    names = [f"d{i}" for i in range(1, n + 1)]
    drvs = []
    for i, name in enumerate(names):
        inputs = tuple(draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2))) if i else ()
        subst = draw(st.booleans())
        drvs.append(Derivation(name, tuple(sorted(inputs)), draw(st.sampled_from([("out",), ("dev", "out")])),
                               subst, draw(st.sampled_from(["ok", "fail"])) if subst else "ok",
                               draw(st.sampled_from(["ok", "fail", "hang"]))))
    procs = tuple(Process(tuple(sorted(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)))),
                          draw(st.integers(0, 2)), draw(st.booleans()))
                  for _ in range(draw(st.integers(1, 3))))
    return Scenario("random", "drawn by Hypothesis", tuple(drvs), procs)


@given(scenarios(), st.sampled_from(["release-on-done", "guix"]))
def test_parametric_agrees_with_explicit(scn: Scenario, policy: str) -> None:
    m = Model(scn, policy)
    (r,) = check(m, ["deadlock_free"], method="parametric")
    if policy == "release-on-done" or not any(p.keep_going for p in scn.processes):
        assert r.result == "holds", r.reason  # the bridge instantiates on every scenario
    # small scenarios: the Python backend saves the C compiler's start-up; the cap keeps the
    # rare large draw cheap (agreement is then asserted only where the search completed)
    explicit = Explorer(m, backend="python").explore(max_states=20_000)
    if r.result == "holds" and explicit.complete:
        assert explicit.results["deadlock_free"].result == "holds"
    if explicit.results["deadlock_free"].result == "violated":
        assert r.result == "unknown"
