"""The `lockstep` command line as a contract (DESIGN section 8): JSON fields, exit codes,
trace files that `show` reads back, and one-line errors that name the bad object.

Everything runs in-process through `lockstep.harness.cli.main([...])` on small
scenarios, so each test takes well under a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockstep.harness.cli import main
from lockstep.model import Model, find_scenario
from lockstep.model.properties import ALWAYS, CATALOGUE
from lockstep.model.scenario import builtin_scenarios, load_scenario
from lockstep.model.trace import load_itf, replay

JSON_FIELDS = {"scenario", "policy", "engine", "property", "result", "trace_length", "states",
               "seconds", "trace_file"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def json_rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def assert_one_line_error(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("lockstep: error: ")
    for n in names:
        assert n in lines[0], f"{n!r} not named in {lines[0]!r}"


# -- check ----------------------------------------------------------------------------------


def test_check_json_all_hold(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "multi-output", "--policy", "guix", "--json")
    assert code == 0, err
    rows = json_rows(out)
    assert [r["property"] for r in rows] == [p.name for p in CATALOGUE]
    for r in rows:
        assert JSON_FIELDS <= r.keys(), JSON_FIELDS - r.keys()
        assert (r["scenario"], r["policy"], r["engine"]) == ("multi-output", "guix", "explicit")
        assert r["result"] in ("holds", "violated", "unknown", "reached", "unreached")
        assert isinstance(r["states"], int) and r["states"] > 0
        assert isinstance(r["seconds"], int | float) and r["seconds"] >= 0
        assert r["trace_file"] is None
    by = {r["property"]: r for r in rows}
    assert all(by[n]["result"] == "holds" and by[n]["trace_length"] is None for n in ALWAYS)
    assert by["beaten_to_it"]["result"] == "reached" and by["beaten_to_it"]["trace_length"] > 0


def test_check_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "hang-keep-going", "--policy", "guix")
    assert code == 1
    assert "== scenario hang-keep-going, policy guix, engine explicit:" in out
    assert "deadlock_free" in out and "violated" in out
    assert "-- counterexample to deadlock_free (policy guix):" in out
    assert "final state: deadlock" in out


def test_check_all_policies_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "hang-stop", "--json")
    rows = json_rows(out)
    assert {r["policy"] for r in rows} == {"pre-fix", "guix", "release-on-done"}
    # no_retained_lock fails under pre-fix and guix (Z12): exit 1
    assert code == 1


def test_check_violation_writes_a_trace_that_show_renders_and_replays(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "deadlock.itf.json"
    code, out, _ = run(capsys, "check", "hang-keep-going", "--policy", "guix", "--json",
                       "--trace-out", str(out_file))
    assert code == 1
    rows = {r["property"]: r for r in json_rows(out)}
    dl = rows["deadlock_free"]
    assert dl["result"] == "violated" and dl["trace_file"] == str(out_file)
    assert out_file.exists()
    data = load_itf(out_file)
    assert data["#meta"]["property"] == "deadlock_free"
    assert len(data["states"]) == dl["trace_length"] + 1
    model = Model(find_scenario("hang-keep-going"), "guix")
    tr = replay(model, data)
    assert model.is_deadlock(tr.last)

    code, shown, err = run(capsys, "show", str(out_file))
    assert code == 0, err
    assert shown == tr.render()
    assert "cycle: P1 -> P2 -> P1" in shown


def test_check_with_trace_out_and_nothing_violated_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "none.json"
    code, _, _ = run(capsys, "check", "multi-output", "--policy", "guix", "--trace-out", str(out_file))
    assert code == 0
    assert not out_file.exists()


def test_check_incomplete_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "two-level", "--policy", "guix", "--json", "--max-states", "20")
    rows = {r["property"]: r for r in json_rows(out)}
    assert rows["deadlock_free"]["result"] == "unknown"
    assert code == 3


def test_check_a_broken_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "multi-output", "--policy", "guix", "--json",
                       "--variant", "build-without-lock")
    assert code == 1
    rows = {r["property"]: r for r in json_rows(out)}
    assert rows["build_holds_lock"]["result"] == "violated"


def test_check_a_scenario_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "one.toml"
    f.write_text('name = "one"\n[derivations.a]\n[[processes]]\nrequest = ["a"]\ncount = 2\n')
    code, out, _ = run(capsys, "check", str(f), "--policy", "guix", "--json")
    assert code == 0
    assert {r["scenario"] for r in json_rows(out)} == {"one"}


# -- bad input: exit 2, one line naming the object ------------------------------------------


def test_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "multi-output", "--policy", "nope")
    assert code == 2 and out == ""
    assert_one_line_error(err, "--policy", "'nope'", "pre-fix", "guix", "release-on-done")


def test_unknown_engine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "multi-output", "--engine", "spin")
    assert code == 2 and out == ""
    assert_one_line_error(err, "--engine", "'spin'", "explicit")


def test_unknown_property(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "multi-output", "--property", "liveness")
    assert code == 2
    assert_one_line_error(err, "'liveness'", "deadlock_free")


def test_unknown_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "multi-output", "--variant", "no-such-bug")
    assert code == 2
    assert_one_line_error(err, "'no-such-bug'", "build-without-lock")


def test_missing_scenario_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    code, out, err = run(capsys, "check", str(missing))
    assert code == 2 and out == ""
    assert_one_line_error(err, str(missing), "does not exist")


def test_unknown_scenario_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "no-such-scenario")
    assert code == 2
    assert_one_line_error(err, "'no-such-scenario'", "seed")


def test_bad_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('name = "bad"\n[derivations.a]\ninputs = ["ghost"]\n[[processes]]\nrequest = ["a"]\n')
    code, out, err = run(capsys, "check", str(f))
    assert code == 2 and out == ""
    assert_one_line_error(err, "'bad'", "derivations.a.inputs", "'ghost'")


def test_scenario_that_is_not_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("name = \n")
    code, _, err = run(capsys, "check", str(f))
    assert code == 2
    assert_one_line_error(err, str(f), "TOML")


def test_show_missing_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "gone.itf.json"
    code, _, err = run(capsys, "show", str(missing))
    assert code == 2
    assert_one_line_error(err, str(missing))


def test_show_not_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{ not json")
    code, _, err = run(capsys, "show", str(f))
    assert code == 2
    assert_one_line_error(err, str(f), "JSON")


# -- scenarios ------------------------------------------------------------------------------


def test_scenarios_lists_every_shipped_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scenarios")
    assert code == 0
    lines = out.splitlines()
    shipped = builtin_scenarios()
    assert len(lines) == len(shipped)
    for line, (name, path) in zip(lines, shipped.items(), strict=True):
        assert line.split()[0] == name
        assert load_scenario(path).description in line


# -- show -----------------------------------------------------------------------------------


@pytest.fixture
def deadlock_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    f = tmp_path / "hkg.itf.json"
    code, _, _ = run(capsys, "check", "hang-keep-going", "--policy", "guix", "--quiet",
                     "--property", "deadlock_free", "--trace-out", str(f))
    assert code == 1 and f.exists()
    return f


def test_show_step(capsys: pytest.CaptureFixture[str], deadlock_trace: Path) -> None:
    n = len(load_itf(deadlock_trace)["states"]) - 1
    code, out, _ = run(capsys, "show", str(deadlock_trace), "--step", "0")
    assert code == 0
    assert out.startswith(f"Step 0 of {n}: scenario hang-keep-going, policy guix\n")
    assert "action:" not in out and "locks: none held" in out
    code, out, _ = run(capsys, "show", str(deadlock_trace), "--step", str(n))
    assert code == 0
    assert out.startswith(f"Step {n} of {n}:")
    assert "  action: " in out
    assert "KEPT_TOP" in out
    assert "  cycle: P1 -> P2 -> P1" in out
    assert "  DEADLOCK: only failed lock attempts are enabled" in out
    assert "  enabled: " in out and "LockFailed" in out


def test_show_step_out_of_range(capsys: pytest.CaptureFixture[str], deadlock_trace: Path) -> None:
    code, _, err = run(capsys, "show", str(deadlock_trace), "--step", "999")
    assert code == 2
    assert_one_line_error(err, "--step 999")


def test_show_dot(capsys: pytest.CaptureFixture[str], deadlock_trace: Path) -> None:
    code, out, _ = run(capsys, "show", str(deadlock_trace), "--dot")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digraph waitfor {" and lines[-1] == "}"
    edges = [ln for ln in lines if "->" in ln]
    assert len(edges) == 2 and all("color=red" in ln for ln in edges)
    assert any(ln.strip().startswith("P1 -> P2") for ln in edges)
    assert any(ln.strip().startswith("P2 -> P1") for ln in edges)
    assert sum("holds slow" in ln for ln in lines) == 2
    code, first, _ = run(capsys, "show", str(deadlock_trace), "--dot", "--step", "0")
    assert code == 0 and "->" not in first


def test_show_rejects_a_tampered_trace(capsys: pytest.CaptureFixture[str], deadlock_trace: Path,
                                       tmp_path: Path) -> None:
    data = json.loads(deadlock_trace.read_text())
    data["states"][2]["mbt::actionTaken"] = "BuildSucceeded"
    bad = tmp_path / "bad.itf.json"
    bad.write_text(json.dumps(data))
    code, out, err = run(capsys, "show", str(bad))
    assert code == 2 and out == ""
    assert_one_line_error(err, str(bad), "trace step 2")
