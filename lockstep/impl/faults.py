"""The fault seam: the one way lockstep injects crashes and I/O errors (STYLE rule 12).

Impl code marks the places where a fault is interesting with a *fault point*::

    faults.point("register.before-commit")

A point is a no-op unless a fault is *armed* on it. Arming says what happens and on
which hit, counted per process from the moment of arming:

=========  =====================================================================
action     effect at the point
=========  =====================================================================
``kill``   ``SIGKILL`` to this process: no cleanup, no ``finally``, no atexit,
           exactly like a power cut for everything the process had not written.
``EIO``    raise ``OSError(EIO)``, as a failing ``write``/``fsync`` would.
``ENOSPC`` raise ``OSError(ENOSPC)``, as a full disk would.
=========  =====================================================================

Arming, per process:

* environment (read lazily on the first :func:`point` call, so a child process started
  with it runs faulty): ``LOCKSTEP_FAULTS="register.before-commit:kill"``; several
  faults are separated by commas; ``point:action@N`` fires on the N-th hit only
  (default the first), e.g. ``pathlocks.delete.after-unlink:kill@3``;
* code: :func:`arm`, :func:`disarm_all`, or the context manager :func:`armed`.

A fault fires once; after firing it is spent. Point names are dotted lower-case words
(``module.place``). Impl modules declare their points with :func:`declare` at import,
with a one-line description, so :data:`POINTS` lists every place a fault can be put;
calling :func:`point` with an undeclared name is an error (a typo would otherwise make
a fault test silently pass). Arming cannot check declarations, because the declaring
module may not be imported yet; it checks the syntax only.

Nothing else in lockstep fakes a fault. Tests that need a crash or an I/O error arm it
here and list the outcomes they allow.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

ENV_VAR = "LOCKSTEP_FAULTS"

_POINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")


class Action(Enum):
    KILL = "kill"
    EIO = "EIO"
    ENOSPC = "ENOSPC"


@dataclass(frozen=True)
class Fault:
    """Fire `action` at `point` on its `nth` hit (1-based)."""

    point: str
    action: Action
    nth: int = 1

    def __str__(self) -> str:
        return f"{self.point}:{self.action.value}@{self.nth}"


class FaultSpecError(ValueError):
    """A malformed fault specification or an undeclared fault point."""


POINTS: dict[str, str] = {}
"""Every declared fault point -> its description. Filled by impl modules at import."""

# Invariant: _armed maps a point to the faults still waiting on it; _hits counts the
# hits of each armed point since it was armed. Both are per process.
_armed: dict[str, list[Fault]] | None = None
_hits: dict[str, int] = {}


def declare(name: str, description: str) -> str:
    """Declare fault point `name` (idempotent); returns the name for use as a constant."""
    _check_name(name)
    POINTS.setdefault(name, description)
    return name


def _check_name(name: str) -> None:
    if not _POINT_NAME.match(name):
        raise FaultSpecError(
            f"bad fault point name {name!r}: use dotted lower-case words such as "
            f"'register.before-commit'"
        )


def parse(spec: str) -> list[Fault]:
    """Parse ``point:action[@N]`` items separated by commas (see the module docstring)."""
    faults: list[Fault] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        point, sep, rest = item.partition(":")
        if not sep:
            raise FaultSpecError(f"fault {item!r} lacks ':action'; expected point:action[@N]")
        _check_name(point)
        action_text, at, nth_text = rest.partition("@")
        actions = {a.value.lower(): a for a in Action}
        action = actions.get(action_text.strip().lower())
        if action is None:
            raise FaultSpecError(
                f"fault {item!r}: unknown action {action_text!r}; "
                f"known actions: {', '.join(a.value for a in Action)}"
            )
        nth = 1
        if at:
            if not nth_text.isdigit() or int(nth_text) < 1:
                raise FaultSpecError(f"fault {item!r}: @N needs a positive integer")
            nth = int(nth_text)
        faults.append(Fault(point, action, nth))
    return faults


def _table() -> dict[str, list[Fault]]:
    global _armed
    if _armed is None:
        _armed = {}
        for fault in parse(os.environ.get(ENV_VAR, "")):
            _armed.setdefault(fault.point, []).append(fault)
    return _armed


def arm(fault: Fault | str) -> None:
    """Arm one fault (a :class:`Fault` or a ``point:action[@N]`` string)."""
    for item in [fault] if isinstance(fault, Fault) else parse(fault):
        _table().setdefault(item.point, []).append(item)
        _hits.setdefault(item.point, 0)


def disarm_all() -> None:
    """Disarm every fault, including those from the environment, and reset the counts."""
    global _armed
    _armed = {}
    _hits.clear()


def armed_faults() -> list[Fault]:
    """The faults armed and not yet fired in this process."""
    return [fault for faults in _table().values() for fault in faults]


@contextmanager
def armed(spec: Fault | str) -> Iterator[None]:
    """Arm `spec` for the body; disarm everything afterwards."""
    arm(spec)
    try:
        yield
    finally:
        disarm_all()


def point(name: str) -> None:
    """A fault point: fires the fault armed on `name` for this hit, if any."""
    if name not in POINTS:
        raise FaultSpecError(
            f"fault point {name!r} was never declared; declare it in its module with "
            f"faults.declare({name!r}, '<what happens here>')"
        )
    table = _table()
    pending = table.get(name)
    if not pending:
        return
    _hits[name] = hit = _hits.get(name, 0) + 1
    for fault in pending:
        if fault.nth == hit:
            pending.remove(fault)
            _fire(fault)
            return


def _fire(fault: Fault) -> None:
    if fault.action is Action.KILL:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: SIGKILL returned")  # pragma: no cover
    code = errno.EIO if fault.action is Action.EIO else errno.ENOSPC
    raise OSError(code, f"{os.strerror(code)} (injected fault {fault})")
