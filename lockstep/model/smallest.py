"""Smallest counterexamples: every scenario up to a bound, smallest first.

`enumerate_scenarios(bounds)` lists scenarios in increasing size, one per
isomorphism class, and `smallest_violation` checks them in that order with the
explicit engine until one violates a property; since BFS gives a shortest trace,
the result is a smallest scenario with a shortest trace to the violation.
`exhaustive` checks every scenario up to the bound (a bounded cross-check of a
claim "for every size").

Size. Scenarios are ordered by the key (processes, derivations, total request
length, weight, code), where weight counts the non-default attributes: input
edges, outputs beyond the first, builders other than "ok", substitutable
derivations, substitute outcomes "fail", processes with keep_going and
processes with max_jobs != 1. `code` (below) breaks ties deterministically.

Codes. A scenario is coded by derivation indices instead of names: a derivation
is (inputs, outputs, substitute, builder) with inputs as sorted indices,
substitute 0 = none, 1 = "ok", 2 = "fail", builder the index in BUILDERS; a
process is (request, max_jobs, keep_going) with the request as sorted indices;
the code is (derivations, processes sorted). A code is topologically labelled
when every input index is below its derivation's. The canonical code of a
scenario is the least topologically labelled code over all renamings of its
derivations (processes re-sorted after each); two scenarios have the same
canonical code exactly when one is the other with derivations renamed, outputs
renamed, requests reordered and processes permuted. None of these changes the
model's behaviour: it never compares names, reads a request as a set, and
processes differ only by their number (the explicit engine's symmetry).
Canonical codes become scenarios with derivations d1..dN (index order, which is
also name order for N <= 9) and outputs out, o2, o3, ...

What is enumerated: one scenario per canonical code within the bounds, except
codes removed by three reductions that do not change the model's state graph
up to unused variables (so no verdict changes):
  - every derivation is in the closure of some request (others never change);
  - a substitutable derivation has no inputs and builder "ok": the model never
    builds it (HaveDerivation needs a non-substitutable derivation; a failed
    substitution ends the request), so neither inputs nor builder are read;
  - max_jobs is at most the process's capacity, the number of goals that can be
    BUSY at once (non-substitutable derivations in its closure plus the output
    paths of substitutable ones): a slot is asked for only by a goal that is not
    BUSY, so every max_jobs >= capacity gives the same guards; a larger value
    within the bounds is replaced by the capacity.
Duplicates that remain: scenarios that are not isomorphic but behave alike,
e.g. keep_going on a process whose goals cannot fail, or a "fail" builder on a
derivation whose every requester has a hanging input. They are checked twice;
no verdict is lost.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .explicit import Explorer
from .machine import Model
from .properties import PROPERTIES
from .scenario import BUILDERS, SUBSTITUTES, Derivation, Process, Scenario
from .trace import Trace

DrvCode = tuple[tuple[int, ...], int, int, int]  # inputs, outputs, substitute, builder
ProcCode = tuple[tuple[int, ...], int, int]  # request, max_jobs, keep_going
Code = tuple[tuple[DrvCode, ...], tuple[ProcCode, ...]]

OK_BUILDER = BUILDERS.index("ok")
MAX_DERIVATIONS = 9  # names d1..d9 sort in index order


@dataclass(frozen=True)
class Bounds:
    """What `enumerate_scenarios` ranges over; every count is an upper bound from 1."""

    processes: int = 2
    derivations: int = 2
    outputs: int = 1  # outputs per derivation
    max_jobs: tuple[int, ...] = (1,)
    builders: tuple[str, ...] = BUILDERS
    substitutes: tuple[str, ...] = SUBSTITUTES  # () = no derivation is substitutable
    keep_going: tuple[bool, ...] = (False, True)
    inputs: bool = True  # derivations may have inputs (any DAG)

    def __post_init__(self) -> None:
        if not 1 <= self.derivations <= MAX_DERIVATIONS:
            raise ValueError(f"bounds: derivations = {self.derivations}; use 1..{MAX_DERIVATIONS}")
        if self.processes < 1 or self.outputs < 1:
            raise ValueError(f"bounds: processes = {self.processes}, outputs = {self.outputs}; use 1 or more")
        if not self.max_jobs or min(self.max_jobs) < 0:
            raise ValueError(f"bounds: max_jobs = {self.max_jobs}; give one or more values >= 0")
        if not set(self.builders) <= set(BUILDERS) or not set(self.substitutes) <= set(SUBSTITUTES):
            raise ValueError(f"bounds: builders {self.builders} / substitutes {self.substitutes}; "
                             f"use values from {BUILDERS} / {SUBSTITUTES}")
        if not self.builders and not self.substitutes:
            raise ValueError("bounds: no builder and no substitute outcome; give at least one")
        if not self.keep_going:
            raise ValueError("bounds: keep_going is empty; give (False,), (True,) or both")


# -- codes -----------------------------------------------------------------------------


def _permute_procs(procs: tuple[ProcCode, ...], perm: tuple[int, ...]) -> tuple[ProcCode, ...]:
    return tuple(sorted((tuple(sorted(perm[x] for x in r)), mj, kg) for r, mj, kg in procs))


def _permute(code: Code, perm: tuple[int, ...]) -> Code | None:
    """`code` with derivation i renamed perm[i]; None if the result is not topologically labelled."""
    drvs, procs = code
    new: list[DrvCode | None] = [None] * len(drvs)
    for i, (inputs, outs, sub, builder) in enumerate(drvs):
        j = perm[i]
        mapped = tuple(sorted(perm[x] for x in inputs))
        if mapped and mapped[-1] > j:
            return None
        new[j] = (mapped, outs, sub, builder)
    return tuple(d for d in new if d is not None), _permute_procs(procs, perm)


def canonical_code(code: Code) -> Code:
    """The least topologically labelled code among all renamings of `code`'s derivations."""
    found = (_permute(code, p) for p in itertools.permutations(range(len(code[0]))))
    return min(c for c in found if c is not None)


def code_of(scn: Scenario) -> Code:
    """The canonical code of a scenario (names, output names and orders forgotten)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:  # inputs first: a topological labelling to start from
        if n not in seen:
            seen.add(n)
            for i in scn.drv(n).inputs:
                visit(i)
            order.append(n)

    for d in scn.derivations:
        visit(d.name)
    index = {n: i for i, n in enumerate(order)}
    drvs = tuple(
        (tuple(sorted(index[x] for x in d.inputs)), len(d.outputs),
         SUBSTITUTES.index(d.substitute) + 1 if d.substitutable else 0, BUILDERS.index(d.builder))
        for d in (scn.drv(n) for n in order))
    procs = tuple(sorted((tuple(sorted(index[r] for r in p.request)), p.max_jobs, int(p.keep_going))
                         for p in scn.processes))
    return canonical_code((drvs, procs))


def drv_name(i: int) -> str:
    return f"d{i + 1}"


def scenario_of(code: Code, name: str, description: str = "") -> Scenario:
    """The scenario of a code: derivations d1..dN, outputs out, o2, ..."""
    drvs, procs = code
    derivations = tuple(
        Derivation(drv_name(i), tuple(drv_name(x) for x in inputs),
                   ("out",) + tuple(f"o{k}" for k in range(2, outs + 1)),
                   substitutable=sub > 0, substitute=SUBSTITUTES[sub - 1] if sub else "ok",
                   builder=BUILDERS[builder])
        for i, (inputs, outs, sub, builder) in enumerate(drvs))
    processes = tuple(Process(tuple(drv_name(x) for x in r), mj, bool(kg)) for r, mj, kg in procs)
    return Scenario(name, description, derivations, processes)


def size_key(code: Code) -> tuple[int, int, int, int]:
    """(processes, derivations, total request length, weight): the order of enumeration."""
    drvs, procs = code
    weight = sum(len(inputs) + (outs - 1) + (builder != OK_BUILDER) + (sub > 0) + (sub == 2)
                 for inputs, outs, sub, builder in drvs)
    weight += sum((mj != 1) + kg for _, mj, kg in procs)
    return len(procs), len(drvs), sum(len(r) for r, _, _ in procs), weight


# -- enumeration --------------------------------------------------------------------------


def _drv_options(b: Bounds, i: int) -> list[DrvCode]:
    """Every code of derivation i in a topologically labelled code (inputs below i)."""
    subsets = [s for k in range(i + 1 if b.inputs else 1) for s in itertools.combinations(range(i), k)]
    out: list[DrvCode] = []
    for outs in range(1, b.outputs + 1):
        out += [(s, outs, 0, BUILDERS.index(x)) for s in subsets for x in b.builders]
        out += [((), outs, SUBSTITUTES.index(x) + 1, OK_BUILDER) for x in b.substitutes]
    return sorted(out)


def _derivation_sets(b: Bounds, n: int) -> Iterator[tuple[tuple[DrvCode, ...], list[tuple[int, ...]]]]:
    """Canonical derivation codes of n derivations, each with its automorphisms (identity excluded)."""
    perms = list(itertools.permutations(range(n)))[1:]
    for drvs in itertools.product(*(_drv_options(b, i) for i in range(n))):
        autos: list[tuple[int, ...]] = []
        least = True
        for p in perms:
            c = _permute((drvs, ()), p)
            if c is None:
                continue
            if c[0] < drvs:
                least = False
                break
            if c[0] == drvs:
                autos.append(p)
        if least:
            yield drvs, autos


def _closure(drvs: tuple[DrvCode, ...], request: tuple[int, ...]) -> frozenset[int]:
    """Derivations reachable from `request`; one downward pass, as inputs are labelled below."""
    reach = set(request)
    for i in reversed(range(len(drvs))):
        if i in reach:
            reach.update(drvs[i][0])
    return frozenset(reach)


def _process_kinds(b: Bounds, drvs: tuple[DrvCode, ...]) -> list[tuple[ProcCode, frozenset[int]]]:
    """Every process code over `drvs` (max_jobs capped at the capacity), with its closure."""
    out = []
    for k in range(1, len(drvs) + 1):
        for req in itertools.combinations(range(len(drvs)), k):
            closure = _closure(drvs, req)
            capacity = sum(drvs[i][1] if drvs[i][2] else 1 for i in closure)
            for mj in sorted({min(m, capacity) for m in b.max_jobs}):
                for kg in sorted(b.keep_going):
                    out.append(((req, mj, int(kg)), closure))
    return sorted(out, key=lambda x: x[0])


def _stratum(b: Bounds, nprocs: int, nders: int) -> list[Code]:
    """Every enumerated code with this many processes and derivations, in size order."""
    codes: list[Code] = []
    every = frozenset(range(nders))
    for drvs, autos in _derivation_sets(b, nders):
        kinds = _process_kinds(b, drvs)
        for chosen in itertools.combinations_with_replacement(kinds, nprocs):
            if frozenset().union(*(c for _, c in chosen)) != every:
                continue
            procs = tuple(p for p, _ in chosen)
            if all(_permute_procs(procs, a) >= procs for a in autos):
                codes.append((drvs, procs))
    return sorted(codes, key=lambda c: (size_key(c), c))


def enumerate_codes(bounds: Bounds) -> Iterator[Code]:
    """Canonical codes up to `bounds` in size order; one stratum (processes, derivations) in memory."""
    for nprocs in range(1, bounds.processes + 1):
        for nders in range(1, bounds.derivations + 1):
            yield from _stratum(bounds, nprocs, nders)


def enumerate_scenarios(bounds: Bounds) -> Iterator[Scenario]:
    """Every scenario up to `bounds`, one per isomorphism class (less the reductions above), smallest first."""
    for n, code in enumerate(enumerate_codes(bounds), 1):
        p, d, r, w = size_key(code)
        yield scenario_of(code, f"enum-{n}",
                          f"{p} processes, {d} derivations, request length {r}, weight {w}: "
                          "enumerated by lockstep.model.smallest")


# -- checking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """The first scenario in size order that violates the property."""

    scenario: Scenario
    model: Model
    trace: Trace  # shortest (BFS) trace to the violation
    checked: int  # scenarios checked, this one included
    states: int  # explicit states explored over all of them


@dataclass(frozen=True)
class Tally:
    checked: int
    violations: int
    states: int  # explicit states explored over all scenarios
    violating: tuple[Scenario, ...]
    seconds: float


def _check(scn: Scenario, policy: str, prop: str, backend: str) -> tuple[Model, Trace | None, int]:
    """Explore one scenario: the model, the shortest violating trace or None, the states explored."""
    model = Model(scn, policy)
    ex = Explorer(model, backend=backend).explore(stop_at_deadlock=prop == "deadlock_free")
    res = ex.results[prop]
    if res.result == "unknown":
        raise AssertionError(f"{prop} undecided on {scn.name}: {res.reason}")
    if res.result == "violated":
        assert res.trace is not None
        return model, res.trace, ex.states
    return model, None, ex.states


def _always(prop: str) -> None:
    if prop not in PROPERTIES or PROPERTIES[prop].kind != "always":
        always = [p.name for p in PROPERTIES.values() if p.kind == "always"]
        raise ValueError(f"property {prop!r}: not an always property; use one of {', '.join(always)}")


def smallest_violation(policy: str, property_name: str, bounds: Bounds,
                       backend: str = "python") -> Found | None:
    """The first scenario in size order whose model violates the property, or None within bounds.

    The Python backend is the default: the C backend compiles one shared object
    per scenario (about 0.3 s each, cached on disk), more than a tiny scenario's
    whole exploration.
    """
    _always(property_name)
    states = 0
    for n, scn in enumerate(enumerate_scenarios(bounds), 1):
        model, trace, k = _check(scn, policy, property_name, backend)
        states += k
        if trace is not None:
            return Found(scn, model, trace, n, states)
    return None


def exhaustive(policy: str, property_name: str, bounds: Bounds, backend: str = "python") -> Tally:
    """Check every scenario up to `bounds`."""
    _always(property_name)
    start = time.perf_counter()
    checked = states = 0
    bad: list[Scenario] = []
    for scn in enumerate_scenarios(bounds):
        _, trace, k = _check(scn, policy, property_name, backend)
        checked += 1
        states += k
        if trace is not None:
            bad.append(scn)
    return Tally(checked, len(bad), states, tuple(bad), time.perf_counter() - start)


# -- TOML ------------------------------------------------------------------------------------

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if BARE_KEY.match(k) else json.dumps(k)


def _strs(xs: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in xs) + "]"


def to_toml(scn: Scenario) -> str:
    """The scenario in the specs/scenarios format; parse_scenario gives it back unchanged.

    Defaults are left out; runs of identical processes are written once with `count`.
    """
    out = [f"name = {json.dumps(scn.name)}", f"description = {json.dumps(scn.description)}"]
    for d in scn.derivations:
        out += ["", f"[derivations.{_key(d.name)}]"]
        if d.inputs:
            out.append(f"inputs = {_strs(d.inputs)}")
        if d.outputs != ("out",):
            out.append(f"outputs = {_strs(d.outputs)}")
        if d.substitutable:
            out.append("substitutable = true")
            out.append(f"substitute = {json.dumps(d.substitute)}")
        if d.builder != "ok":
            out.append(f"builder = {json.dumps(d.builder)}")
    for proc, run in itertools.groupby(scn.processes):
        count = len(list(run))
        out += ["", "[[processes]]", f"request = {_strs(proc.request)}"]
        if proc.max_jobs != 1:
            out.append(f"max_jobs = {proc.max_jobs}")
        if proc.keep_going:
            out.append("keep_going = true")
        if count > 1:
            out.append(f"count = {count}")
    return "\n".join(out) + "\n"
