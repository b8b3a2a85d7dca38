"""Scenario loading: the shipped scenarios, and every rejection the loader implements.

Each rejection is checked for the three parts STYLE.md (8) asks of an error: the
scenario it is about, the field, and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.model import Model
from lockstep.model.scenario import (
    Derivation,
    Scenario,
    ScenarioError,
    builtin_dir,
    builtin_scenarios,
    find_scenario,
    load_scenario,
    parse_scenario,
)

SHIPPED = sorted(builtin_dir().glob("*.toml"))


def shipped() -> list[Scenario]:
    return [load_scenario(p) for p in SHIPPED]


# -- the shipped scenarios --------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads(path: Path) -> None:
    scn = load_scenario(path)
    assert scn.name == path.stem
    assert scn.description.strip() and "\n" not in scn.description
    assert scn.derivations and scn.processes
    assert find_scenario(path.stem) == scn
    assert find_scenario(str(path)) == scn
    Model(scn, "guix")  # the rules accept it


def test_shipped_names_are_unique_and_include_the_seed() -> None:
    names = [s.name for s in shipped()]
    assert len(names) == len(set(names))
    assert "seed" in names
    assert len(names) >= 9
    assert list(builtin_scenarios()) == sorted(names)
    assert find_scenario(None).name == "seed"


def test_shipped_scenarios_cover_the_issue() -> None:
    """Issue 2 lists what the shipped scenarios must exercise, beyond the seed."""
    scns = [s for s in shipped() if s.name != "seed"]

    def some(claim: str, pred: object) -> None:
        assert callable(pred)
        assert any(pred(s) for s in scns), f"no shipped scenario exercises {claim}"

    def drvs(s: Scenario) -> tuple[Derivation, ...]:
        return s.derivations

    def only_root_requested(s: Scenario) -> bool:
        for proc in s.processes:
            closure = s.closure(proc.request)
            inputs_of_inputs = {i for r in proc.request for d in s.drv(r).inputs
                                for i in s.drv(d).inputs}
            if len(proc.request) == 1 and inputs_of_inputs and len(closure) > 2:
                return True
        return False

    some("wider fan-in (4 inputs)", lambda s: any(len(d.inputs) >= 4 for d in drvs(s)))
    some("a two-level DAG with only the root requested", only_root_requested)
    some("multiple outputs", lambda s: any(len(d.outputs) > 1 for d in drvs(s)))
    some("a working substitute",
         lambda s: any(d.substitutable and d.substitute == "ok" for d in drvs(s)))
    some("a failing substitute",
         lambda s: any(d.substitutable and d.substitute == "fail" for d in drvs(s)))
    some("a failing builder", lambda s: any(d.builder == "fail" for d in drvs(s)))
    some("a hanging builder with keep_going",
         lambda s: any(d.builder == "hang" for d in drvs(s)) and any(p.keep_going for p in s.processes))
    some("a hanging builder without keep_going",
         lambda s: any(d.builder == "hang" for d in drvs(s))
         and not any(p.keep_going for p in s.processes))
    some("max_jobs 2", lambda s: any(p.max_jobs == 2 for p in s.processes))
    some("processes with different requests",
         lambda s: len({frozenset(p.request) for p in s.processes}) > 1)


def test_shipped_scenarios_stay_small() -> None:
    """Each must explore in seconds; the seed, with three processes, is the largest."""
    for s in shipped():
        assert len(s.processes) <= 3, s.name
        assert len(s.paths) <= 5, s.name


# -- what a scenario means ---------------------------------------------------------


MINIMAL = """
name = "mini"
[derivations.b]
[derivations.a]
inputs = ["b"]
outputs = ["out", "dev"]
[[processes]]
request = ["a"]
count = 2
"""


def test_defaults_and_expansion() -> None:
    scn = parse_scenario(MINIMAL, "mini.toml")
    assert scn.name == "mini" and scn.description == ""
    assert [d.name for d in scn.derivations] == ["a", "b"]  # sorted by name
    b = scn.drv("b")
    assert (b.inputs, b.outputs, b.substitutable, b.substitute, b.builder) == ((), ("out",), False, "ok", "ok")
    assert scn.drv("a").output_paths == ("a", "a-dev")
    assert scn.paths == ("a", "a-dev", "b")
    assert scn.deriver("a-dev").name == "a"
    assert scn.closure(("a",)) == ("a", "b")
    assert len(scn.processes) == 2 and scn.processes[0] == scn.processes[1]
    p = scn.processes[0]
    assert (p.request, p.max_jobs, p.keep_going) == (("a",), 1, False)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    f = tmp_path / "nameless.toml"
    f.write_text('[derivations.a]\n[[processes]]\nrequest = ["a"]\n')
    assert find_scenario(str(f)).name == "nameless"


def test_max_jobs_zero_is_allowed() -> None:
    scn = parse_scenario('[derivations.a]\n[[processes]]\nrequest = ["a"]\nmax_jobs = 0\n', "z")
    assert scn.processes[0].max_jobs == 0


# -- rejections ----------------------------------------------------------------------

ONE = '[derivations.a]\n[[processes]]\nrequest = ["a"]\n'


def drv(body: str, request: str = '["a"]', extra: str = "") -> str:
    """A scenario named "bad" whose derivation a has `body`."""
    return f'name = "bad"\n[derivations.a]\n{body}\n{extra}\n[[processes]]\nrequest = {request}\n'


def proc(body: str) -> str:
    """A scenario named "bad" with one good derivation and a process with `body`."""
    return f'name = "bad"\n[derivations.a]\n[[processes]]\n{body}\n'


# (id, text, field, [rule and fix fragments])
REJECTIONS = [
    # unknown names
    ("unknown-input", drv('inputs = ["b"]'), "derivations.a.inputs",
     ["unknown input 'b'", "inputs must name derivations defined under [derivations] (a)"]),
    ("unknown-request", proc('request = ["zz"]'), "processes[0].request",
     ["unknown derivation 'zz'", "request only derivations defined under [derivations] (a)"]),
    # cycles, with the cycle's path
    ("self-cycle", drv('inputs = ["a"]'), "derivations.a.inputs",
     ["dependency cycle a -> a", "derivations must form a DAG; remove one of these inputs"]),
    ("three-cycle",
     'name = "bad"\n[derivations.a]\ninputs = ["b"]\n[derivations.b]\ninputs = ["c"]\n'
     '[derivations.c]\ninputs = ["a"]\n[[processes]]\nrequest = ["a"]\n',
     "derivations.c.inputs", ["dependency cycle a -> b -> c -> a", "form a DAG"]),
    ("cycle-below-root",
     'name = "bad"\n[derivations.x]\ninputs = ["y"]\n[derivations.y]\ninputs = ["z"]\n'
     '[derivations.z]\ninputs = ["y"]\n[[processes]]\nrequest = ["x"]\n',
     "derivations.z.inputs", ["dependency cycle y -> z -> y", "remove one of these inputs"]),
    # requests
    ("empty-request", proc("request = []"), "processes[0].request",
     ["empty request", "name at least one derivation to build"]),
    ("empty-second-request",
     'name = "bad"\n[derivations.a]\n[[processes]]\nrequest = ["a"]\n[[processes]]\nrequest = []\n',
     "processes[1].request", ["empty request", "name at least one derivation"]),
    ("missing-request", proc("max_jobs = 1"), "processes[0].request",
     ["missing", 'request = ["path1"]']),
    # duplicate names
    ("duplicate-in-request", proc('request = ["a", "a"]'), "processes[0].request",
     ["duplicate name 'a'", "list each name once"]),
    ("duplicate-in-inputs", drv('inputs = ["b", "b"]', extra="[derivations.b]"), "derivations.a.inputs",
     ["duplicate name 'b'", "list each name once"]),
    ("duplicate-in-outputs", drv('outputs = ["out", "dev", "out"]'), "derivations.a.outputs",
     ["duplicate name 'out'", "list each name once"]),
    # numbers
    ("negative-max-jobs", proc('request = ["a"]\nmax_jobs = -1'), "processes[0].max_jobs",
     ["max_jobs = -1 is negative", "use 0 or more (the daemon's --max-jobs)"]),
    ("zero-count", proc('request = ["a"]\ncount = 0'), "processes[0].count",
     ["count = 0", "use 1 or more identical processes"]),
    # unknown keys
    ("unknown-top-key", 'name = "bad"\ncolour = "red"\n' + ONE, "colour",
     ["unknown key", "allowed keys are derivations, description, name, processes"]),
    ("unknown-derivation-key", drv('builds = "ok"'), "derivations.a.builds",
     ["unknown key", "allowed keys are builder, inputs, outputs, substitutable, substitute"]),
    ("unknown-process-key", proc('request = ["a"]\nmax_job = 2'), "processes[0].max_job",
     ["unknown key", "allowed keys are count, keep_going, max_jobs, request"]),
    ("nested-derivation-table", 'name = "bad"\n[derivations.a.b]\n[[processes]]\nrequest = ["a"]\n',
     "derivations.a.b", ["unknown key", "allowed keys are"]),
    # builders and substitutes
    ("bad-builder", drv('builder = "crash"'), "derivations.a.builder",
     ["unknown builder 'crash'", "use one of 'ok', 'fail', 'hang'"]),
    ("bad-substitute", drv('substitutable = true\nsubstitute = "maybe"'), "derivations.a.substitute",
     ["unknown substitute outcome 'maybe'", "use one of 'ok', 'fail'"]),
    ("substitute-without-substitutable", drv('substitute = "fail"'), "derivations.a.substitute",
     ["a substitute outcome for a derivation without substitutes",
      "set substitutable = true or drop the substitute key"]),
    ("substitute-with-substitutable-false", drv('substitutable = false\nsubstitute = "ok"'),
     "derivations.a.substitute", ["set substitutable = true or drop the substitute key"]),
    # types
    ("inputs-not-list", drv('inputs = "b"'), "derivations.a.inputs",
     ["expected a list of names, got str 'b'", "write it as a list of names"]),
    ("input-not-string", drv("inputs = [1]"), "derivations.a.inputs[0]",
     ["expected a string, got int 1", "write it as a string"]),
    ("outputs-not-list", drv('outputs = "out"'), "derivations.a.outputs",
     ["expected a list of names", "write it as a list of names"]),
    ("outputs-empty", drv("outputs = []"), "derivations.a.outputs",
     ["empty output list", 'give at least one output, e.g. ["out"]']),
    ("substitutable-not-bool", drv('substitutable = "yes"'), "derivations.a.substitutable",
     ["expected true or false, got str 'yes'", "write it as true or false"]),
    ("builder-not-string", drv("builder = 1"), "derivations.a.builder",
     ["expected a string, got int 1", "write it as a string"]),
    ("derivation-not-table", 'name = "bad"\nderivations = {a = 3}\n[[processes]]\nrequest = ["a"]\n',
     "derivations.a", ["expected a table, got int 3", "write it as a table"]),
    ("derivations-not-table", 'name = "bad"\nderivations = ["a"]\n[[processes]]\nrequest = ["a"]\n',
     "derivations", ["expected a table of [derivations.NAME]"]),
    ("max-jobs-not-int", proc('request = ["a"]\nmax_jobs = "2"'), "processes[0].max_jobs",
     ["expected an integer, got str '2'", "write it as an integer"]),
    ("max-jobs-bool", proc('request = ["a"]\nmax_jobs = true'), "processes[0].max_jobs",
     ["expected an integer, got bool True", "write it as an integer"]),
    ("keep-going-not-bool", proc('request = ["a"]\nkeep_going = 1'), "processes[0].keep_going",
     ["expected true or false, got int 1", "write it as true or false"]),
    ("count-not-int", proc('request = ["a"]\ncount = 1.5'), "processes[0].count",
     ["expected an integer, got float 1.5", "write it as an integer"]),
    ("request-not-list", proc('request = "a"'), "processes[0].request",
     ["expected a list of names, got str 'a'", "write it as a list of names"]),
    ("processes-not-array", 'name = "bad"\n[derivations.a]\n[processes]\nrequest = ["a"]\n', "processes",
     ["expected an array of tables [[processes]], got dict", "write it as an array of tables"]),
    ("process-not-table", 'name = "bad"\nprocesses = [1]\n[derivations.a]\n', "processes[0]",
     ["expected a table, got int 1", "write it as a table"]),
    ("description-not-string", 'name = "bad"\ndescription = ["x"]\n' + ONE, "description",
     ["expected a string", "write it as a string"]),
    # names
    ("derivation-name-dot", 'name = "bad"\n[derivations.".a"]\n[[processes]]\nrequest = [".a"]\n',
     "derivations..a", ["invalid name '.a'", "do not start with '.'"]),
    ("derivation-name-space", 'name = "bad"\n[derivations."a b"]\n[[processes]]\nrequest = ["a b"]\n',
     "derivations.a b", ["invalid name 'a b'", "names use letters, digits and +-._?="]),
    ("output-name-slash", drv('outputs = ["out", "x/y"]'), "derivations.a.outputs",
     ["invalid name 'x/y'", "names use letters, digits"]),
    # output paths
    ("output-path-collision", drv('outputs = ["out", "dev"]', extra="[derivations.a-dev]"),
     "derivations.a-dev.outputs", ["output path 'a-dev' also produced by 'a'", "rename the derivation or the output"]),
    ("output-path-collision-reversed",
     'name = "bad"\n[derivations.a-dev]\n[derivations.a]\noutputs = ["out", "dev"]\n'
     '[[processes]]\nrequest = ["a"]\n',
     "derivations.a.outputs", ["output path 'a-dev' also produced by 'a-dev'", "rename the derivation or the output"]),
    # missing parts
    ("no-derivations", 'name = "bad"\n[[processes]]\nrequest = ["a"]\n', "derivations",
     ["no derivations", "add at least one [derivations.NAME] table"]),
    ("no-processes", 'name = "bad"\nprocesses = []\n[derivations.a]\n', "processes",
     ["no processes", "add at least one [[processes]] table"]),
    ("missing-processes", 'name = "bad"\n[derivations.a]\n', "processes",
     ["missing", "add at least one [[processes]] table"]),
]


@pytest.mark.parametrize(("text", "field", "fragments"), [c[1:] for c in REJECTIONS],
                         ids=[c[0] for c in REJECTIONS])
def test_rejection_names_scenario_field_and_fix(text: str, field: str, fragments: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "inline.toml")
    msg = str(info.value)
    assert msg.startswith(f"scenario 'bad': {field}: "), msg
    assert "; " in msg, msg  # rule; fix
    for f in fragments:
        assert f in msg, msg


def test_rejection_without_a_name_names_the_source() -> None:
    with pytest.raises(ScenarioError, match=r"^scenario 'specs/x\.toml': derivations\.a\.builder: "):
        parse_scenario('[derivations.a]\nbuilder = "x"\n[[processes]]\nrequest = ["a"]\n', "specs/x.toml")


def test_rejection_of_a_non_string_name() -> None:
    with pytest.raises(ScenarioError, match=r"^scenario '3': name: expected a string, got int 3; write it as a string"):
        parse_scenario("name = 3\n" + ONE, "x.toml")


@pytest.mark.parametrize("text", [
    'name = "bad"\n[derivations.a]\n[derivations.a]\n[[processes]]\nrequest = ["a"]\n',
    'name = "bad"\n[derivations.a]\nbuilder = "ok"\nbuilder = "fail"\n[[processes]]\nrequest = ["a"]\n',
], ids=["duplicate-table", "duplicate-key"])
def test_duplicate_toml_table_or_key(text: str) -> None:
    """TOML itself forbids a table or key twice; the message still names scenario, place and fix."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "dup.toml")
    msg = str(info.value)
    assert msg.startswith("scenario 'dup.toml': not valid TOML ("), msg
    assert "line " in msg and "may appear once; fix the syntax" in msg, msg


def test_duplicate_toml_table_names_the_table() -> None:
    with pytest.raises(ScenarioError, match=r"\('derivations', 'a'\) twice"):
        parse_scenario('[derivations.a]\n[derivations.a]\n[[processes]]\nrequest = ["a"]\n', "dup.toml")


def test_rejection_is_a_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)


# -- finding files ------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ScenarioError) as info:
        find_scenario(str(path))
    msg = str(info.value)
    assert f"scenario file '{path}' does not exist" in msg
    assert "give a path to a .toml file or a built-in scenario name (see `lockstep scenarios`)" in msg


def test_unknown_builtin_name() -> None:
    with pytest.raises(ScenarioError) as info:
        find_scenario("no-such-scenario")
    msg = str(info.value)
    assert msg.startswith("scenario 'no-such-scenario': no such file or built-in scenario; ")
    assert "built-in scenarios are " in msg and "seed" in msg


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_unreadable_file(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path = tmp_path / "dir.toml"
        path.mkdir()
    else:
        path = tmp_path / "binary.toml"
        path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match=r"cannot be read .*; give a path to a readable \.toml file"):
        find_scenario(str(path))


def test_a_file_shadows_a_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that exists is read as a file, even when a built-in has the same name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seed").write_text('name = "local"\n' + ONE)
    assert find_scenario("seed").name == "local"
