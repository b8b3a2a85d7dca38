"""The `store` subcommand, through a parser built here (cli.py wires it in)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

from lockstep.harness.store_cli import STATE_ENV, STORE_ENV, add_store_parser, run_store


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="lockstep")
    add_store_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_store(args)
    finally:
        sys.stdin = old_stdin
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    return ["store", "--store-dir", os.fspath(tmp_path / "s"), "--state-dir", os.fspath(tmp_path / "v")]


def test_round_trip_through_the_cli(dirs: list[str], tmp_path: Path) -> None:
    assert run([*dirs, "init"])[0] == 0
    src = tmp_path / "hello.txt"
    src.write_text("hello\n")
    rc, out, _ = run([*dirs, "add", os.fspath(src)])
    assert rc == 0
    added = out.strip()
    assert added.endswith("-hello.txt")
    rc, out, _ = run([*dirs, "add-text", "t.txt", "--ref", added], stdin=f"see {added}\n")
    text = out.strip()
    info = json.loads(run([*dirs, "info", text])[1])
    assert info["references"] == [added] and info["narSize"] > 0
    assert run([*dirs, "references", text])[1].split() == [added]
    assert run([*dirs, "references", "--referrers", added])[1].split() == [text]
    assert sorted(run([*dirs, "closure", text])[1].split()) == sorted([added, text])
    rc, out, _ = run([*dirs, "verify", "--check-contents"])
    assert (rc, out.strip()) == (0, "store is consistent")
    rc, out, err = run([*dirs, "gc"])
    assert rc == 0 and sorted(out.split()) == sorted([added, text]) and "bytes freed" in err


def test_env_vars_name_the_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, os.fspath(tmp_path / "s"))
    monkeypatch.setenv(STATE_ENV, os.fspath(tmp_path / "v"))
    rc, out, _ = run(["store", "add-text", "x"], stdin="x")
    assert rc == 0 and out.startswith(os.fspath(tmp_path / "s") + "/")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["add-text", "bad name"], "invalid character ' '"),
        (["add-text", "x", "--ref", "/nowhere/x"], "is not in the store directory"),
        (["info", "/STORE/" + "0" * 32 + "-missing"], "is not valid in this store; add it first"),
        (["add", "/nonexistent/file"], "No such file or directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(dirs: list[str], argv: list[str], fragment: str) -> None:
    argv = [a.replace("/STORE", dirs[2]) for a in argv]
    rc, out, err = run([*dirs, *argv])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_missing_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    rc, _, err = run(["store", "init"])
    assert rc == 2 and "pass --store-dir or set LOCKSTEP_STORE_DIR" in err


def test_verify_exit_status(dirs: list[str]) -> None:
    rc, out, _ = run([*dirs, "add-text", "x"], stdin="x")
    os.unlink(out.strip())
    rc, out, _ = run([*dirs, "verify"])
    assert rc == 1 and "missing on disk" in out
