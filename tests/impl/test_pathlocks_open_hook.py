"""pathlocks' lock-file-opened hook: the scheduling point controlled runs use for Z7."""

from __future__ import annotations

import os
from pathlib import Path

from lockstep.impl import pathlocks
from lockstep.impl.pathlocks import PathLocks


def test_hook_runs_after_open_before_lock_for_the_first_path_only(tmp_path: Path) -> None:
    seen: list[tuple[str, bool, bool]] = []

    def hook(lock_path: str) -> None:
        # opened (the file exists) but not yet locked by this owner
        seen.append((lock_path, os.path.exists(lock_path), lock_path in pathlocks._locked_paths))

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pathlocks.set_open_hook(hook)
    try:
        with PathLocks([b, a]):
            pass
    finally:
        pathlocks.set_open_hook(None)
    assert seen == [(a + ".lock", True, False)]  # sorted order; b is locked while a is held
    with PathLocks([a]):
        pass
    assert len(seen) == 1  # removed: the default path calls nothing
