"""The historical-bug switches (impl/bugs.py) and the fault seam (impl/faults.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from lockstep.impl import bugs, faults

POINT = faults.declare("tests.probe", "a point declared by this test module")


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    bugs.set_enabled(())
    faults.disarm_all()
    yield
    bugs.set_enabled(())
    faults.disarm_all()


def test_registry_has_the_required_bugs() -> None:
    assert {"Z1", "Z6", "Z7", "Z10"} <= set(bugs.REGISTRY)
    for name, bug in bugs.REGISTRY.items():
        assert bug.name == name and "s9" in bug.citation and "\n" not in bug.summary


def test_bugs_are_off_by_default_and_switchable_by_name() -> None:
    assert not any(bugs.is_enabled(name) for name in bugs.REGISTRY)
    with bugs.switched_on("z7"):
        assert bugs.is_enabled("Z7") and not bugs.is_enabled("Z6")
    assert not bugs.is_enabled("Z7")
    bugs.set_enabled(["Z6", "Z1"])
    assert bugs.enabled() == {"Z1", "Z6"}


def test_bugs_parse_and_env_value() -> None:
    assert bugs.parse("Z7,Z6") == {"Z6", "Z7"}
    assert bugs.parse(" z10  z1 ") == {"Z1", "Z10"}
    assert bugs.parse("") == frozenset()
    assert bugs.env_value(["Z10", "Z7", "Z1"]) == "Z1,Z7,Z10"


def test_unknown_bug_names_are_errors_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown bug switch 'Z99'.*Z1, Z6, Z7, Z10"):
        bugs.parse("Z7,Z99")
    with pytest.raises(bugs.UnknownBugError):
        bugs.is_enabled("Z8 ")


def test_bugs_read_from_the_environment_in_a_child() -> None:
    code = "from lockstep.impl import bugs; print(sorted(bugs.enabled()))"
    env = dict(os.environ, LOCKSTEP_BUGS="Z7,Z6")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['Z6', 'Z7']"


def test_fault_spec_parsing() -> None:
    assert faults.parse("a.b:kill, c.d:EIO@3,e.f:enospc") == [
        faults.Fault("a.b", faults.Action.KILL),
        faults.Fault("c.d", faults.Action.EIO, 3),
        faults.Fault("e.f", faults.Action.ENOSPC),
    ]
    for bad, message in [("a.b", "lacks ':action'"), ("a.b:boom", "unknown action"),
                         ("a.b:kill@0", "positive integer"), ("Nodots:kill", "bad fault point")]:
        with pytest.raises(faults.FaultSpecError, match=message):
            faults.parse(bad)


def test_unarmed_point_is_a_no_op_and_undeclared_point_an_error() -> None:
    faults.point(POINT)
    with pytest.raises(faults.FaultSpecError, match="never declared"):
        faults.point("tests.undeclared")


@pytest.mark.parametrize("action, code", [("EIO", errno.EIO), ("ENOSPC", errno.ENOSPC)])
def test_io_fault_fires_once_on_the_nth_hit(action: str, code: int) -> None:
    faults.arm(f"{POINT}:{action}@3")
    faults.point(POINT)
    faults.point(POINT)
    with pytest.raises(OSError) as info:
        faults.point(POINT)
    assert info.value.errno == code and "injected fault" in str(info.value)
    faults.point(POINT)  # spent
    assert faults.armed_faults() == []


def test_kill_fault_from_the_environment_kills_the_process() -> None:
    code = ("from lockstep.impl import faults\n"
            "faults.declare('tests.child', 'x')\n"
            "faults.point('tests.child'); print('first', flush=True)\n"
            "faults.point('tests.child'); print('second', flush=True)\n")
    env = dict(os.environ, LOCKSTEP_FAULTS="tests.child:kill@2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL
    assert out.stdout == "first\n"


def test_pathlocks_declares_its_fault_point() -> None:
    from lockstep.impl import pathlocks

    assert pathlocks.AFTER_UNLINK in faults.POINTS
