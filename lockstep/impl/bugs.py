"""Historical-bug switches: the one place that can turn a fixed daemon bug back on.

The reference (``guix-libstore.md`` section 9, the "known-bug zoo") lists bugs that
Guix and Nix fixed over the years. lockstep keeps each fix in the real code and lets a
test switch the old behaviour back on *by name*, so that it can show the harness (the
model, the refinement checker, the process tests) catches that bug. Every switch is off
by default; a normal run never sees one.

How a switch is set, per process:

* from the environment: ``LOCKSTEP_BUGS=Z7,Z6`` (read lazily, on the first query, so a
  child process started with that variable in its environment runs the broken variant);
* from code: :func:`set_enabled` (for instance from a settings object) or the context
  manager :func:`switched_on` in tests.

Impl code asks :func:`is_enabled` with a literal name. Every name, in every direction, is
checked against :data:`REGISTRY`: a misspelt switch is an error, never a silent no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

ENV_VAR = "LOCKSTEP_BUGS"


@dataclass(frozen=True)
class Bug:
    """One switchable historical bug."""

    name: str
    summary: str  # one line: what the broken variant does
    citation: str  # where the reference describes it, and the upstream commits
    used_by: str  # the impl module(s) that consult the switch


_BUGS = (
    Bug(
        "Z1",
        "a goal that finds its outputs valid after locking ('beaten to it' / 'has become "
        "valid') keeps the output lock until the goal object dies",
        "guix-libstore.md s9 Z1, s8; Guix #31785, fixed by 78da695178 (2024-12-30)",
        "goals (derivation and substitution goals)",
    ),
    Bug(
        "Z6",
        "lock_paths does not consult the process-global locked-path set, so two owners in "
        "one process both 'acquire' the same fcntl lock",
        "guix-libstore.md s9 Z6, s5; Nix c970b28ba0, e0d7e47862, cb1c1004cd (2007)",
        "pathlocks",
    ),
    Bug(
        "Z7",
        "stale lock files: the deleter does not write the 'd' token before closing and "
        "lockers do not check st_size, so a waiter on an unlinked inode becomes a second holder",
        "guix-libstore.md s9 Z7, s5; Nix 528f1d1867 (2003), 59682e6188 (2005)",
        "pathlocks",
    ),
    Bug(
        "Z10",
        "a goal woken after waiting for a build slot resumes after the locking step, so "
        "its builder starts without holding the output locks",
        "guix-libstore.md s9 Z10; Nix 9a14335845 (2021), regression from PR #4570",
        "goals (derivation goal, build-slot wait)",
    ),
)

REGISTRY: MappingProxyType[str, Bug] = MappingProxyType({bug.name: bug for bug in _BUGS})
"""Every switchable bug by name. Invariant: names are unique and match the reference."""


class UnknownBugError(ValueError):
    """A bug name that is not in :data:`REGISTRY`."""

    def __init__(self, name: str, source: str) -> None:
        known = ", ".join(sorted(REGISTRY, key=_sort_key))
        super().__init__(
            f"unknown bug switch {name!r} ({source}); known switches: {known}. "
            f"See lockstep/impl/bugs.py for what each one does."
        )
        self.name = name


def _sort_key(name: str) -> tuple[int, str]:
    digits = name[1:]
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


# Invariant: None until first read; afterwards a frozenset of names all in REGISTRY.
_enabled: frozenset[str] | None = None


def parse(spec: str, source: str = ENV_VAR) -> frozenset[str]:
    """Parse a comma- or space-separated list of bug names (case-insensitive).

    An empty string means none. Raises :class:`UnknownBugError` on any unknown name.
    """
    names = [part.strip().upper() for part in spec.replace(",", " ").split()]
    for name in names:
        if name not in REGISTRY:
            raise UnknownBugError(name, source)
    return frozenset(names)


def enabled() -> frozenset[str]:
    """The bug switches on in this process (read from the environment on first use)."""
    global _enabled
    if _enabled is None:
        _enabled = parse(os.environ.get(ENV_VAR, ""), f"environment variable {ENV_VAR}")
    return _enabled


def set_enabled(names: Iterable[str]) -> None:
    """Switch exactly `names` on in this process (and everything else off)."""
    global _enabled
    _enabled = parse(" ".join(names), "set_enabled()")


def is_enabled(name: str) -> bool:
    """Is bug `name` switched on? `name` must be in :data:`REGISTRY`."""
    if name not in REGISTRY:
        raise UnknownBugError(name, "is_enabled()")
    return name in enabled()


def env_value(names: Iterable[str]) -> str:
    """The ``LOCKSTEP_BUGS`` value that switches `names` on in a child process."""
    return ",".join(sorted(parse(" ".join(names), "env_value()"), key=_sort_key))


@contextmanager
def switched_on(*names: str) -> Iterator[frozenset[str]]:
    """Switch `names` on (in addition to any already on) for the body, then restore."""
    global _enabled
    before = enabled()
    _enabled = before | parse(" ".join(names), "switched_on()")
    try:
        yield _enabled
    finally:
        _enabled = before
