"""The z3 engine's one entry point: `check(model, properties, depth, method)`.

For each property, three-valued: `always` properties hold, are violated (with
a shortest trace that replays through the concrete model) or are unknown
(with the reason); `sometimes` properties are reached (with a trace),
unreached or unknown. The library never prints.

method="auto" tries, per property, in this order:
  parametric `deadlock_free`, `lock_exclusive`, `build_holds_lock`: the every-size
             theorem for the policy's lock protocol (parametric.py), instantiated
             for this scenario by the bridge's quantifier-free obligations
             (parametric_bridge.py);
  induction  Houdini over the candidate lemmas (induction.py), then the three
             checks for the property; an `unreached` sometimes-property is
             proved the same way, as the invariant "never P";
  bmc        for state properties, first in Foata frames (bmc_steps.py: fast
             to find; the trace found is then offered to sequential BMC below
             its length, which proves it shortest or finds a shorter one, within
             the budget: `shortest` says which); then sequential deepening to
             `depth` (bmc.py) for the rest: finds the shortest violation or
             witness, and proves the rest when every path ends within `depth`.
             method="bmc" is the sequential deepening alone;
  spacer     z3's CHC engine for what is still open, its invariant re-checked.
`requests_complete` is a graph property (from every state completion stays
reachable: a branching-time claim, not a safety property) and is reported as
unknown by this engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .bmc import bmc
from .bmc_steps import parallel_bmc
from .chc import spacer
from .expr import Expr, not_
from .induction import Checker, Lemma, candidates
from .machine import Model
from .parametric import ASSUMPTIONS, CLAIMS, proved
from .parametric_bridge import bridge
from .properties import CATALOGUE, Property, get
from .rules import Rules, Transition
from .trace import Trace

METHODS = ("auto", "bmc", "induction", "spacer", "parametric")


@dataclass
class SymbolicResult:
    name: str
    kind: str  # always | sometimes
    result: str  # holds | violated | unknown; sometimes: reached | unreached | unknown
    trace: Trace | None = None
    depth: int = 0  # trace length, or the depth BMC searched
    method: str = ""  # bmc | induction | spacer | parametric
    seconds: float = 0.0
    reason: str = ""
    invariant: list[str] = field(default_factory=list)  # lemma names a proof used
    shortest: bool = True  # a trace's length was proved minimal by the engine itself


def negated(prop: Property) -> Property:
    """'never P' as an always property: proving it shows the sometimes-property P unreached."""
    state, step = prop.state, prop.step

    def never_state(r: Rules, ts: Sequence[Transition]) -> Expr:
        assert state is not None
        return not_(state(r, ts))

    def never_step(r: Rules, t: Transition) -> Expr:
        assert step is not None
        return not_(step(r, t))

    return replace(prop, kind="always", state=never_state if state else None,
                   step=never_step if step else None)


class _Engine:
    def __init__(self, model: Model, depth: int, seconds: float) -> None:
        self.model = model
        self.depth = depth
        self.seconds = seconds
        self._checker: Checker | None = None
        self._inv: list[Lemma] | None = None

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            self._checker = Checker(self.model)
        return self._checker

    def induction(self, prop: Property) -> SymbolicResult | None:
        c = self.checker
        start = time.perf_counter()
        if self._inv is None:  # the lock discipline lemmas only: no property proves itself
            props = {p.name for p in CATALOGUE}
            self._inv = c.houdini([lem for lem in candidates(self.model) if lem.name not in props])
        target = prop if prop.kind == "always" else negated(prop)
        v = c.check(self._inv, target)
        if not v.ok:
            return None
        used = v.cores.get(f"safety:{target.name}", [])
        return SymbolicResult(prop.name, prop.kind, "holds" if prop.kind == "always" else "unreached",
                              method="induction", seconds=time.perf_counter() - start,
                              reason=f"inductive invariant of {len(v.lemmas)} lemmas; safety uses {', '.join(used)}",
                              invariant=[lem.name for lem in v.lemmas])

    def parametric(self, prop: Property) -> SymbolicResult:
        """The every-size theorem, without assumptions first, then under each assumption."""
        start = time.perf_counter()
        if prop.name not in CLAIMS:
            return SymbolicResult(prop.name, prop.kind, "unknown", method="parametric", reason=(
                f"no every-size theorem for {prop.name}; there are for {', '.join(CLAIMS)}"))
        why: list[str] = []
        for assumed in ((), *((a,) for a in ASSUMPTIONS)):
            th = proved(self.model.policy, assumed, prop.name)
            under = f" under {', '.join(assumed)}" if assumed else ""
            if not th.holds:
                bad = th.failed
                assert bad is not None
                why.append(f"the every-size theorem for {self.model.policy}{under} fails at {bad.name}"
                           f" ({bad.answer}; abstract counterexample: {bad.counterexample.replace(chr(10), '; ')})")
                continue
            b = bridge(self.model, assumed, prop.name)
            if b.failure is not None:
                f = b.failure
                at = f" by {f.action}" if f.action else ""
                why.append(f"the every-size theorem for {self.model.policy}{under} holds, but this "
                           f"scenario does not instantiate it: {f.check}{at}")
                continue
            return SymbolicResult(prop.name, prop.kind, "holds", method="parametric",
                                  seconds=time.perf_counter() - start, invariant=list(th.lemmas), reason=(
                                      f"every-size theorem for {self.model.policy}{under} (invariant: "
                                      f"{', '.join(th.lemmas)}), instantiated for this scenario by "
                                      f"{b.queries} bridge queries"))
        return SymbolicResult(prop.name, prop.kind, "unknown", method="parametric",
                              seconds=time.perf_counter() - start, reason="; ".join(why))

    def spacer(self, prop: Property, seconds: float) -> SymbolicResult:
        start = time.perf_counter()
        target = prop if prop.kind == "always" else negated(prop)
        o = spacer(self.model, target, max(1, int(seconds * 1000)))
        result = {"holds": "holds" if prop.kind == "always" else "unreached",
                  "violated": "unknown", "unknown": "unknown"}[o.result]
        reason = o.reason or f"Spacer invariant, re-checked: {o.invariant}"
        if o.result == "violated":
            reason = "Spacer found the bad state reachable; run BMC deeper for the trace"
        return SymbolicResult(prop.name, prop.kind, result, method="spacer",
                              seconds=time.perf_counter() - start, reason=reason)

    def framed(self, props: Sequence[Property], seconds: float) -> dict[str, SymbolicResult]:
        """Parallel (Foata-frame) BMC for state properties; each trace it finds is then handed
        to sequential BMC below its length, which proves it shortest or finds a shorter one."""
        start = time.perf_counter()
        out: dict[str, SymbolicResult] = {}
        states = [p for p in props if p.form == "state"]
        if not states:
            return out
        lemmas = self._inv or ()
        for name, o in parallel_bmc(self.model, states, self.depth, seconds / 2, lemmas=lemmas,
                                    fewest=True).items():
            prop = get(name)
            if o.found is None:
                if o.complete:
                    out[name] = SymbolicResult(
                        name, prop.kind, "holds" if prop.kind == "always" else "unreached", None, o.depth,
                        "bmc", o.seconds, f"no path has {o.depth + 1} Foata frames, and every height up "
                                          f"to {o.depth} was asked")
                continue  # undecided: left to sequential BMC
            n = len(o.found)
            bad = "violated" if prop.kind == "always" else "reached"
            left = max(1.0, seconds - (time.perf_counter() - start))
            seq = bmc(self.model, [prop], n - 1, left, lemmas=lemmas)[name] if n > 1 else None
            if seq is not None and seq.found is not None:
                out[name] = SymbolicResult(name, prop.kind, bad, seq.found, seq.depth, "bmc",
                                           time.perf_counter() - start, "")
            elif seq is None or seq.complete or seq.depth >= n - 1:
                out[name] = SymbolicResult(name, prop.kind, bad, o.found, n, "bmc", time.perf_counter() - start,
                                           f"{o.reason}; sequential BMC refuted every shorter depth")
            else:
                out[name] = SymbolicResult(
                    name, prop.kind, bad, o.found, n, "bmc", time.perf_counter() - start,
                    f"{o.reason}; sequential BMC refuted depths up to {seq.depth} before its budget ran "
                    f"out: not proved shortest (the explicit engine's BFS decides that)", shortest=False)
        return out

    def bmc(self, props: Sequence[Property], seconds: float) -> dict[str, SymbolicResult]:
        out = {}
        for name, o in bmc(self.model, props, self.depth, seconds, lemmas=self._inv or ()).items():
            prop = get(name)
            if o.found is not None:
                result = "violated" if prop.kind == "always" else "reached"
            elif o.complete:
                result = "holds" if prop.kind == "always" else "unreached"
            else:
                result = "unknown"
            reason = "every path ends within this depth" if o.complete else o.reason
            out[name] = SymbolicResult(name, prop.kind, result, o.found, o.depth, "bmc", o.seconds,
                                       "" if o.found else reason)
        return out


def check(model: Model, properties: Sequence[str] | None = None, depth: int = 40,
          method: str = "auto", seconds: float = 60.0) -> list[SymbolicResult]:
    """Check `properties` (default: the whole catalogue) of `model` with z3.

    `seconds` is a budget per phase (BMC for all open properties together, then
    Spacer for each property still open).
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: unknown; use one of {', '.join(METHODS)}")
    props = [get(n) for n in properties] if properties is not None else list(CATALOGUE)
    eng = _Engine(model, depth, seconds)
    done: dict[str, SymbolicResult] = {}
    for p in props:
        if p.form == "graph":
            done[p.name] = SymbolicResult(p.name, p.kind, "unknown", method="bmc", reason=(
                "a graph property (completion stays reachable from every state) is not a safety "
                "property; the z3 engine does not decide it: use the explicit engine"))
    todo = [p for p in props if p.name not in done]
    if method in ("auto", "parametric"):
        for p in todo:
            if method == "parametric" or p.name in CLAIMS:
                pr = eng.parametric(p)
                if pr.result != "unknown" or method == "parametric":
                    done[p.name] = pr
    todo = [p for p in props if p.name not in done]
    if method in ("auto", "induction"):
        for p in todo:
            r = eng.induction(p)
            if r is not None:
                done[p.name] = r
    todo = [p for p in props if p.name not in done]
    if method == "auto" and todo:
        done.update(eng.framed(todo, seconds))
    todo = [p for p in props if p.name not in done]
    if method in ("auto", "bmc") and todo:
        done.update(eng.bmc(todo, seconds))
    todo = [p for p in props if p.name not in done or done[p.name].result == "unknown"]
    if method in ("auto", "spacer"):
        for p in todo:
            if p.form != "graph":
                done[p.name] = eng.spacer(p, seconds)
    for p in props:
        if p.name not in done:
            done[p.name] = SymbolicResult(p.name, p.kind, "unknown", method=method,
                                          reason=f"method {method} did not decide it")
    return [done[p.name] for p in props]
