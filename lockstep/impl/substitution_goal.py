"""SubstitutionGoal (Guix build.cc): make one store path valid from a substitute.

States, as reference section 4: init -> tryNext -> referencesValid -> tryToRun ->
finished. Unlike a derivation goal, tryToRun checks for a build slot *before* locking,
and drops its own previous lock before asking ``pathIsLockedByMe`` (Nix cb1c1004cd).

Lock points. Acquisition: tryToRun only, non-blocking. Release: "has become valid"
(unless pre-fix / Z1), finished on success (with deletion), and the destructor.
finished on a substituter error and timedOut keep the lock (reference Z12) unless the
policy is release-on-done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lockstep.impl import bugs
from lockstep.impl.archive import delete_path, hash_path
from lockstep.impl.goals import ExitCode, Goal
from lockstep.impl.local_store import ValidPathInfo
from lockstep.impl.pathlocks import PathLocks, path_is_locked_by_me
from lockstep.impl.substituter import (
    SubstitutableInfo,
    parse_status,
    query_substitutable,
    start_substituter,
)

if TYPE_CHECKING:
    import subprocess

    from lockstep.impl.worker import Worker


class SubstitutionGoal(Goal):
    def __init__(self, worker: Worker, path: str, repair: bool = False) -> None:
        super().__init__(worker)
        self.path = path
        self.name = worker.store.store.store_path_to_name(path)
        self.key = f"a${self.name}${path}"
        self.repair = repair
        self.state: Callable[[], None] = self.init
        self.info: SubstitutableInfo | None = None
        # Invariant: holds the path's lock only from tryToRun's lock to a release point
        # (or kept: has-become-valid under pre-fix, failure, timeout).
        self.output_lock = PathLocks()
        self.proc: subprocess.Popen[bytes] | None = None
        self.fd: int | None = None
        self.status_text = b""

    def report(self, action: str, **fields: object) -> None:
        self.worker.probe.report(action, path=self.name, store_path=self.path, **fields)

    def work(self) -> None:
        self.state()

    def finish(self, result: ExitCode, release: bool = False) -> None:
        if release or self.worker.settings.releases_on_done():
            self.output_lock.unlock()
        self.am_done(result)

    # -- states ---------------------------------------------------------------------

    def init(self) -> None:
        store = self.worker.store
        store.add_temp_root(self.path)
        if not self.repair and store.is_valid_path(self.path):
            self.finish(ExitCode.SUCCESS)
            self.report("SubstAlreadyValid")
            return
        self.try_next()

    def try_next(self) -> None:
        settings = self.worker.settings
        info = query_substitutable(settings.substitute_cache if settings.use_substitutes else None,
                                   self.worker.store.store, self.path)
        if info is None:
            self.finish(ExitCode.NO_SUBSTITUTERS)
            self.report("NoSubstituters")
            return
        self.info = info
        for ref in sorted(info.references - {self.path}):
            self.add_waitee(self.worker.make_substitution_goal(ref))
        if not self.waitees:  # to prevent hang (no wake-up event)
            self.references_valid(direct=True)
            return
        self.state = self.references_valid_state
        self.report("SubstWaitReferences")

    def references_valid_state(self) -> None:
        self.references_valid(direct=False)

    def references_valid(self, direct: bool) -> None:
        if self.nr_failed:
            incomplete = self.nr_no_substituters or self.nr_incomplete_closure
            self.finish(ExitCode.INCOMPLETE_CLOSURE if incomplete else ExitCode.FAILED)
            self.report("SubstReferencesFailed")
            return
        self.state = self.try_to_run
        self.worker.wake_up(self)
        self.report("SubstInit")

    def try_to_run(self) -> None:
        worker, store = self.worker, self.worker.store
        if worker.nr_local_builds >= max(1, worker.settings.max_build_jobs):
            worker.wait_for_build_slot(self)
            self.report("SubstNoSlot")
            return
        self.output_lock.unlock()  # drop our own old lock first (Nix cb1c1004cd)
        if not bugs.is_enabled("Z6") and path_is_locked_by_me(self.path):
            worker.wait_for_any_goal(self)
            self.report("SubstWaitForAnyGoal")
            return
        self.output_lock = PathLocks()
        if not self.output_lock.lock_paths_nowait([self.path]):
            worker.wait_for_a_while(self)
            self.report("SubstLockFailed", blocked_on=[self.name], blocked_paths=[self.path])
            return
        if not self.repair and store.is_valid_path(self.path):  # "has become valid"
            self.output_lock.set_deletion(True)
            keep = worker.settings.keeps_lock_when_beaten()
            self.finish(ExitCode.SUCCESS, release=not keep)  # release: the fix of 78da695178
            self.report("SubstBecameValid", kept=bool(self.output_lock.lock_files))
            return
        dest = self.path + ".tmp" if self.repair else self.path
        delete_path(dest)
        cache = worker.settings.substitute_cache
        assert cache is not None
        self.proc = start_substituter(cache, self.path, dest)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        worker.child_started(self, self.proc.pid, [self.fd], in_build_slot=True, respect_timeouts=True)
        self.state = self.finished
        self.report("SubstStart")

    def handle_child_output(self, fd: int, data: bytes) -> None:
        self.status_text += data

    def handle_eof(self, fd: int) -> None:
        self.worker.wake_up(self)

    def _reap(self) -> int:
        assert self.proc is not None
        proc, self.proc = self.proc, None
        status = proc.wait()
        self.worker.child_terminated(proc.pid)
        if proc.stdout is not None:
            proc.stdout.close()
        self.fd = None
        return status

    def finished(self) -> None:
        store = self.worker.store
        self._reap()
        assert self.info is not None
        dest = self.path + ".tmp" if self.repair else self.path
        try:
            nar_hash, nar_size = parse_status(self.status_text.decode("utf-8", "replace").splitlines()[0]
                                              if self.status_text else "")
            if nar_hash != self.info.nar_hash:
                raise ValueError(f"hash-mismatch: substitute of {self.path!r} has {nar_hash}, "
                                 f"its narinfo says {self.info.nar_hash}")
            got, size = hash_path(dest)
            if got != nar_hash:
                raise ValueError(f"hash-mismatch: {dest!r} does not hash to {nar_hash}")
            if self.repair:
                delete_path(self.path)
                os.rename(dest, self.path)
            info = store.path_info_from_disk(self.path, self.info.references, self.info.deriver)
            store.register_valid_paths([ValidPathInfo(self.path, info.nar_hash, info.references,
                                                      info.deriver, size)])
        except (ValueError, OSError) as e:
            self.worker.log(f"substitution of path {self.path!r} failed: {e}\n")
            self.finish(ExitCode.FAILED)  # the lock stays until the goal dies (Z12)
            self.report("SubstFailed", kept=bool(self.output_lock.lock_files))
            return
        self.output_lock.set_deletion(True)
        self.finish(ExitCode.SUCCESS, release=True)
        self.report("SubstSucceeded")

    def timed_out(self, why: str) -> None:
        self.kill_child()
        self.worker.log(f"substitution of {self.path!r} {why}\n")
        self.finish(ExitCode.FAILED)
        self.report("SubstTimedOut", kept=bool(self.output_lock.lock_files))

    def kill_child(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self._reap()

    def release_on_destroy(self, quiet: bool) -> None:
        unfinished = self.exit_code is ExitCode.BUSY
        held = bool(self.output_lock.lock_files)
        self.kill_child()
        self.output_lock.unlock()
        if quiet:
            return
        if unfinished:
            self.report("DestroySubstGoal", released=held)
        elif held:
            self.worker.probe.report("ReleaseKept", path=self.name, by_path=self.name)
