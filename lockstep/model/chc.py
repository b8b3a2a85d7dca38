"""The second route to an unbounded proof: z3's CHC engine (Spacer).

The system becomes three constrained Horn clauses over one unknown relation
Inv(x), one argument per state variable:
  init(x)                         => Inv(x)
  Inv(x) and trans(x, x')         => Inv(x')
  Inv(x) and bad(x)               => false
(for a step property the last clause is Inv(x) and trans(x, x') and bad).
`unsat` means Spacer found an interpretation of Inv: an inductive invariant.
It is not believed as it stands: it is substituted into the state vector and
the three checks (initiation, consecution, safety) are run again with plain
z3 solvers, under a tracking literal named after the property. `sat` means
bad is reachable; the trace comes from BMC, which gives the shortest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import z3

from .machine import Model
from .properties import Property
from .z3lower import Lowering


@dataclass
class SpacerOutcome:
    result: str  # holds | violated | unknown
    invariant: str = ""  # the re-checked certificate, as z3 prints it
    reason: str = ""


def spacer(model: Model, prop: Property, timeout_ms: int = 10_000) -> SpacerOutcome:
    low = Lowering(model)
    x, y, act = low.vector("x"), low.vector("y"), low.selector("x")
    inv = z3.Function("Inv", *([z3.IntSort()] * low.size), z3.BoolSort())
    fp = z3.Fixedpoint()
    fp.set(engine="spacer", timeout=timeout_ms)
    fp.register_relation(inv)
    fp.declare_var(*x, *y, act)
    trans = low.trans(x, y, act, stutters=False)
    fp.rule(inv(*x), low.init(x))
    fp.rule(inv(*y), [inv(*x), low.domain(x), trans])
    if prop.state is not None:
        bad = z3.Not(low.holds_state(prop, x))
        if prop.kind == "sometimes":
            bad = z3.Not(bad)
        query = z3.And(inv(*x), bad)
    else:
        bad = z3.Not(low.holds_step(prop, x, y, act))
        if prop.kind == "sometimes":
            bad = z3.Not(bad)
        query = z3.And(inv(*x), trans, bad)
    try:
        r = fp.query(query)
    except z3.Z3Exception as e:  # the timeout cancels the query
        return SpacerOutcome("unknown", reason=f"Spacer did not finish in {timeout_ms} ms ({e})")
    if r == z3.sat:
        return SpacerOutcome("violated", reason="Spacer reached a bad state")
    if r != z3.unsat:
        return SpacerOutcome("unknown", reason=f"Spacer gave up ({fp.reason_unknown()})")
    cert = z3.substitute_vars(fp.get_cover_delta(-1, inv), *x)
    problem = recheck(low, cert, bad if prop.state is not None else None, prop, trans, x, y, act)
    if problem:
        return SpacerOutcome("unknown", str(cert), f"Spacer's invariant failed the re-check: {problem}")
    return SpacerOutcome("holds", str(cert))


def recheck(low: Lowering, cert: z3.BoolRef, bad_state: z3.BoolRef | None, prop: Property,
            trans: z3.BoolRef, x: list[z3.ArithRef], y: list[z3.ArithRef], act: z3.ArithRef) -> str:
    """Initiation, consecution and safety of `cert` with plain solvers; '' if all hold."""
    post = z3.substitute(cert, *zip(x, y, strict=True))
    tag = z3.Bool(f"spacer_invariant[{prop.name}]")
    checks = {
        "initiation": [low.init(x), z3.Not(cert)],
        "consecution": [low.domain(x), trans, z3.Not(post)],
        "safety": [low.domain(x), bad_state] if bad_state is not None else [
            low.domain(x), trans, z3.Not(low.holds_step(prop, x, y, act))
            if prop.kind == "always" else low.holds_step(prop, x, y, act)],
    }
    for name, parts in checks.items():
        s = z3.Solver()
        s.set("unsat_core", True)
        if name != "initiation":
            s.assert_and_track(cert, tag)
        s.add(*parts)
        r = s.check()
        if r != z3.unsat:
            return f"{name} is {r}"
    return ""
