"""`lockstep daemon` / `lockstep build` through daemon_cli (the lead wires them into cli.py)."""

from __future__ import annotations

import argparse

import pytest

from lockstep.harness.daemon_cli import add_daemon_parsers, run_daemon_command

from .conftest import Daemon


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lockstep")
    add_daemon_parsers(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_build_command_prints_outputs_and_returns_failure_status(
        daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    c = daemon.client()
    ok = daemon.add(c, "ok", "mkdir $out")
    bad = daemon.add(c, "bad", "exit 1")
    assert run_daemon_command(parse(["build", "--socket", daemon.socket, "--proc", "2", ok])) == 0
    assert capsys.readouterr().out.split() == [daemon.output(ok)]
    assert run_daemon_command(parse(["build", "--socket", daemon.socket, bad])) == 100
    assert "failed" in capsys.readouterr().err
    assert any(r["proc"] == 2 for r in daemon.reports())


def test_build_command_without_daemon(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_daemon_command(parse(["build", "--socket", "/nonexistent/sock", "/x.drv"])) == 2
