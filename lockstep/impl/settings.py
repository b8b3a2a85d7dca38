"""Per-process daemon settings (Guix globals.cc), as set-options changes them.

Settings are per daemon child: a client's set-options changes only the process serving
it (reference section 1), so ``max_build_jobs`` is a per-connection limit.

The lock release policy carries the model's names:

* ``guix`` (default): the code after Guix commit 78da695178;
* ``pre-fix``: the seed bug back on (Z1: "beaten to it" / "has become valid" keep the
  lock until the goal object dies);
* ``release-on-done``: every terminal transition releases the output locks (Nix's
  ``outputLocks.unlock()`` at the top of ``done()``, reference Z2).

Historical bugs are not settings; they live in ``bugs.py`` (``lockstep-bugs`` in
set-options switches them in this process only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lockstep.impl import bugs
from lockstep.impl.probe import ENV_CONTROL, ENV_LOG, ENV_PROC

POLICIES = ("pre-fix", "guix", "release-on-done")


class BadSetting(ValueError):
    pass


def _bool(name: str, value: str) -> bool:
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadSetting(f"setting {name!r}: {value!r} is not a boolean; use true or false")


def _number(name: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise BadSetting(f"setting {name!r}: {value!r} is not a number of seconds") from None
    if x < 0:
        raise BadSetting(f"setting {name!r}: {value!r} is negative; use 0 or more")
    return x


@dataclass
class Settings:
    max_build_jobs: int = 1
    keep_going: bool = False
    try_fallback: bool = False
    poll_interval: float = 5.0  # build-poll-interval
    max_silent_time: float = 0.0  # 0: no limit
    build_timeout: float = 0.0  # 0: no limit
    use_substitutes: bool = True
    substitute_cache: str | None = None  # local binary cache directory (substituter.py)
    policy: str = "guix"
    build_dir: str | None = None  # where temporary build directories go (default $TMPDIR)
    verbosity: int = 0
    proc: int | None = None  # the harness's process number (probe reports)
    probe_log: str | None = None
    control: str | None = None  # controller socket: reports block, time is virtual

    @classmethod
    def from_environment(cls) -> Settings:
        proc = os.environ.get(ENV_PROC)
        return cls(proc=int(proc) if proc and proc.isdigit() else None,
                   probe_log=os.environ.get(ENV_LOG) or None,
                   control=os.environ.get(ENV_CONTROL) or None)

    def keeps_lock_when_beaten(self) -> bool:
        """Pre-fix behaviour of tryToBuild C / tryToRun 'has become valid' (Z1)."""
        return self.policy == "pre-fix" or bugs.is_enabled("Z1")

    def releases_on_done(self) -> bool:
        return self.policy == "release-on-done"

    def set(self, name: str, value: str) -> None:
        """One set-options override (``name value``); unknown names are an error."""
        match name:
            case "build-max-jobs" | "max-jobs":
                if not value.isdigit():
                    raise BadSetting(f"setting {name!r}: {value!r} is not a non-negative integer")
                self.max_build_jobs = int(value)
            case "keep-going":
                self.keep_going = _bool(name, value)
            case "build-fallback":
                self.try_fallback = _bool(name, value)
            case "build-poll-interval":
                self.poll_interval = _number(name, value)
            case "build-max-silent-time":
                self.max_silent_time = _number(name, value)
            case "build-timeout":
                self.build_timeout = _number(name, value)
            case "use-substitutes" | "build-use-substitutes":
                self.use_substitutes = _bool(name, value)
            case "lockstep-substitute-cache":
                self.substitute_cache = value or None
            case "lockstep-policy":
                if value not in POLICIES:
                    raise BadSetting(f"setting {name!r}: unknown policy {value!r}; use one of {', '.join(POLICIES)}")
                self.policy = value
            case "lockstep-proc":
                if not value.isdigit() or int(value) < 1:
                    raise BadSetting(f"setting {name!r}: {value!r} is not a process number (1, 2, ...)")
                self.proc = int(value)
            case "lockstep-probe-log":
                self.probe_log = value or None
            case "lockstep-control":
                self.control = value or None
            case "lockstep-bugs":
                bugs.set_enabled(bugs.parse(value, "set-options lockstep-bugs"))
            case _:
                raise BadSetting(f"unknown setting {name!r} in set-options")
