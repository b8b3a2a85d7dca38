"""Scenarios: the data a model is built from (derivations and daemon processes).

A scenario is a TOML document (specs/scenarios/*.toml). It is validated when it is
loaded; every error names the scenario, the field, the rule broken and the fix.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILDERS = ("ok", "fail", "hang")
SUBSTITUTES = ("ok", "fail")
NAME_RE = re.compile(r"^[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]*$")

TOP_KEYS = {"name", "description", "derivations", "processes"}
DRV_KEYS = {"inputs", "outputs", "substitutable", "substitute", "builder"}
PROC_KEYS = {"request", "max_jobs", "keep_going", "count"}


class ScenarioError(ValueError):
    """A scenario broke a rule; the message names the scenario, the field and the fix."""


@dataclass(frozen=True, slots=True)
class Derivation:
    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("out",)
    substitutable: bool = False
    substitute: str = "ok"  # what the substituter does when asked: "ok" | "fail"
    builder: str = "ok"  # "ok" | "fail" | "hang" (runs past the timeout)

    def output_path(self, output: str) -> str:
        """The store-name of an output, as Nix names it: `name` for out, `name-id` otherwise."""
        return self.name if output == "out" else f"{self.name}-{output}"

    @property
    def output_paths(self) -> tuple[str, ...]:
        return tuple(self.output_path(o) for o in self.outputs)


@dataclass(frozen=True, slots=True)
class Process:
    """One daemon child serving one build-paths request."""

    request: tuple[str, ...]
    max_jobs: int = 1
    keep_going: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    derivations: tuple[Derivation, ...]  # sorted by name
    processes: tuple[Process, ...]

    def drv(self, name: str) -> Derivation:
        for d in self.derivations:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every output path of every derivation, sorted: the lock table's keys."""
        return tuple(sorted(p for d in self.derivations for p in d.output_paths))

    def deriver(self, path: str) -> Derivation:
        for d in self.derivations:
            if path in d.output_paths:
                return d
        raise KeyError(path)

    def closure(self, roots: tuple[str, ...]) -> tuple[str, ...]:
        """Derivations reachable from `roots` through inputs, sorted by name."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.drv(n).inputs)
        return tuple(sorted(seen))


def _fail(scn: str, field: str, rule: str, fix: str) -> ScenarioError:
    return ScenarioError(f"scenario {scn!r}: {field}: {rule}; {fix}")


def _check_keys(scn: str, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(scn, f"{where}.{key}" if where else key, "unknown key",
                        f"allowed keys are {', '.join(sorted(allowed))}")


def _typed(scn: str, field: str, value: Any, kind: type, what: str) -> Any:
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise _fail(scn, field, f"expected {what}, got {type(value).__name__} {value!r}",
                    f"write it as {what}")
    return value


def _names(scn: str, field: str, value: Any) -> tuple[str, ...]:
    items = _typed(scn, field, value, list, "a list of names")
    for i, item in enumerate(items):
        _typed(scn, f"{field}[{i}]", item, str, "a string")
    dups = sorted({x for x in items if items.count(x) > 1})
    if dups:
        raise _fail(scn, field, f"duplicate name {dups[0]!r}", "list each name once")
    return tuple(items)


def _valid_name(scn: str, field: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise _fail(scn, field, f"invalid name {name!r}",
                    "names use letters, digits and +-._?= and do not start with '.'")


def _derivation(scn: str, name: str, table: Any) -> Derivation:
    where = f"derivations.{name}"
    _valid_name(scn, where, name)
    table = _typed(scn, where, table, dict, "a table")
    _check_keys(scn, where, table, DRV_KEYS)
    outputs = _names(scn, f"{where}.outputs", table.get("outputs", ["out"]))
    if not outputs:
        raise _fail(scn, f"{where}.outputs", "empty output list", 'give at least one output, e.g. ["out"]')
    for o in outputs:
        _valid_name(scn, f"{where}.outputs", o)
    builder = _typed(scn, f"{where}.builder", table.get("builder", "ok"), str, "a string")
    if builder not in BUILDERS:
        raise _fail(scn, f"{where}.builder", f"unknown builder {builder!r}",
                    f"use one of {', '.join(map(repr, BUILDERS))}")
    substitute = _typed(scn, f"{where}.substitute", table.get("substitute", "ok"), str, "a string")
    if substitute not in SUBSTITUTES:
        raise _fail(scn, f"{where}.substitute", f"unknown substitute outcome {substitute!r}",
                    f"use one of {', '.join(map(repr, SUBSTITUTES))}")
    substitutable = _typed(scn, f"{where}.substitutable", table.get("substitutable", False),
                           bool, "true or false")
    if "substitute" in table and not substitutable:
        raise _fail(scn, f"{where}.substitute", "a substitute outcome for a derivation without substitutes",
                    "set substitutable = true or drop the substitute key")
    return Derivation(
        name=name,
        inputs=_names(scn, f"{where}.inputs", table.get("inputs", [])),
        outputs=outputs,
        substitutable=substitutable,
        substitute=substitute,
        builder=builder,
    )


def _processes(scn: str, value: Any, known: set[str]) -> tuple[Process, ...]:
    if value is None:
        raise _fail(scn, "processes", "missing", "add at least one [[processes]] table")
    tables = _typed(scn, "processes", value, list, "an array of tables [[processes]]")
    if not tables:
        raise _fail(scn, "processes", "no processes", "add at least one [[processes]] table")
    out: list[Process] = []
    for i, table in enumerate(tables):
        where = f"processes[{i}]"
        table = _typed(scn, where, table, dict, "a table")
        _check_keys(scn, where, table, PROC_KEYS)
        if "request" not in table:
            raise _fail(scn, f"{where}.request", "missing", 'give the derivations to build, e.g. request = ["path1"]')
        request = _names(scn, f"{where}.request", table["request"])
        if not request:
            raise _fail(scn, f"{where}.request", "empty request", "name at least one derivation to build")
        for r in request:
            if r not in known:
                raise _fail(scn, f"{where}.request", f"unknown derivation {r!r}",
                            f"request only derivations defined under [derivations] ({', '.join(sorted(known))})")
        max_jobs = _typed(scn, f"{where}.max_jobs", table.get("max_jobs", 1), int, "an integer")
        if max_jobs < 0:
            raise _fail(scn, f"{where}.max_jobs", f"max_jobs = {max_jobs} is negative",
                        "use 0 or more (the daemon's --max-jobs)")
        keep_going = _typed(scn, f"{where}.keep_going", table.get("keep_going", False), bool, "true or false")
        n = _typed(scn, f"{where}.count", table.get("count", 1), int, "an integer")
        if n < 1:
            raise _fail(scn, f"{where}.count", f"count = {n}", "use 1 or more identical processes")
        out.extend([Process(request, max_jobs, keep_going)] * n)
    return tuple(out)


def _check_acyclic(scn: str, drvs: dict[str, Derivation]) -> None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for i in drvs[n].inputs:
            if state.get(i) == 1:
                cycle = stack[stack.index(i):] + [i]
                raise _fail(scn, f"derivations.{n}.inputs", "dependency cycle " + " -> ".join(cycle),
                            "derivations must form a DAG; remove one of these inputs")
            if i not in state:
                visit(i, stack + [i])
        state[n] = 2

    for n in sorted(drvs):
        if n not in state:
            visit(n, [n])


def scenario_from_dict(data: dict[str, Any], source: str) -> Scenario:
    scn = str(data.get("name", source))
    _check_keys(scn, "", data, TOP_KEYS)
    name = _typed(scn, "name", data.get("name", Path(source).stem), str, "a string")
    description = _typed(scn, "description", data.get("description", ""), str, "a string")
    tables = _typed(scn, "derivations", data.get("derivations", {}), dict, "a table of [derivations.NAME]")
    if not tables:
        raise _fail(scn, "derivations", "no derivations", "add at least one [derivations.NAME] table")
    drvs = {n: _derivation(scn, n, t) for n, t in tables.items()}
    for d in drvs.values():
        for i in d.inputs:
            if i not in drvs:
                raise _fail(scn, f"derivations.{d.name}.inputs", f"unknown input {i!r}",
                            f"inputs must name derivations defined under [derivations] ({', '.join(sorted(drvs))})")
    _check_acyclic(scn, drvs)
    owner: dict[str, str] = {}
    for d in drvs.values():
        for p in d.output_paths:
            if p in owner:
                raise _fail(scn, f"derivations.{d.name}.outputs", f"output path {p!r} also produced by {owner[p]!r}",
                            "rename the derivation or the output")
            owner[p] = d.name
    processes = _processes(scn, data.get("processes"), set(drvs))
    return Scenario(name, description, tuple(drvs[n] for n in sorted(drvs)), processes)


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"scenario {source!r}: not valid TOML ({e}); "
                            "each [derivations.NAME] table may appear once; fix the syntax") from None
    return scenario_from_dict(data, source)


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {str(p)!r} does not exist; give a path to a .toml file "
                            "or a built-in scenario name (see `lockstep scenarios`)") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ScenarioError(f"scenario file {str(p)!r} cannot be read ({reason}); "
                            "give a path to a readable .toml file") from None
    return parse_scenario(text, str(p))


def builtin_dir() -> Path:
    """specs/scenarios of the source tree this package was installed from."""
    return Path(__file__).resolve().parents[2] / "specs" / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_dir().glob("*.toml"))}


def find_scenario(name_or_path: str | None) -> Scenario:
    """A scenario by file path, or by built-in name; None means the seed."""
    if name_or_path is None:
        name_or_path = "seed"
    builtins = builtin_scenarios()
    if name_or_path in builtins and not Path(name_or_path).exists():
        return load_scenario(builtins[name_or_path])
    if not name_or_path.endswith(".toml") and not Path(name_or_path).exists():
        raise ScenarioError(f"scenario {name_or_path!r}: no such file or built-in scenario; "
                            f"built-in scenarios are {', '.join(builtins) or '(none found)'}")
    return load_scenario(name_or_path)
