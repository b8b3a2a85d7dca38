"""DerivationGoal (Guix build.cc): realise the outputs of one .drv, with its lock points.

States, as reference section 3: init -> haveDerivation -> outputsSubstituted ->
inputsRealised -> tryToBuild -> buildDone. A state method that continues directly into
the next (Guix's "to prevent hang (no wake-up event)") makes one report for the whole
work() call, named after where it ends (probe.py lists every report).

Lock points (reference 3.1). Acquisition: only tryToBuild step B, non-blocking and
all-or-nothing. Release: C (unless the policy is pre-fix or Z1 is on), G (no slot), H on
a start failure, buildDone (success with deletion, failure without), timedOut only under
release-on-done, and the destructor (``release_on_destroy``).

Invariant (reference s12.15, Z10): a builder runs only while this goal holds the
output locks, except with bug Z10 on, where a goal woken from a build-slot wait starts
its builder without re-locking.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lockstep.impl import bugs
from lockstep.impl import derivations as drvs
from lockstep.impl.archive import delete_path
from lockstep.impl.build import (
    Builder,
    BuildError,
    builder_succeeded,
    input_paths,
    kill_builder,
    register_outputs,
    remove_tmp_dir,
    start_builder,
)
from lockstep.impl.goals import BuildStatus, ExitCode, Goal
from lockstep.impl.pathlocks import PathLocks, path_is_locked_by_me
from lockstep.impl.store_api import parse_drv_name

if TYPE_CHECKING:
    from lockstep.impl.worker import Worker

BM_NORMAL, BM_REPAIR, BM_CHECK = 0, 1, 2


class SubstitutesFailed(Exception):
    """outputsSubstituted without --fallback: the whole request fails."""

    def __init__(self, goal: DerivationGoal) -> None:
        super().__init__(
            f"some substitutes for the outputs of derivation {goal.drv_path!r} failed "
            f"(usually happens due to networking issues); try --fallback to build the "
            f"derivation from source")
        self.goal = goal


class DerivationGoal(Goal):
    def __init__(self, worker: Worker, drv_path: str, mode: int) -> None:
        super().__init__(worker)
        self.drv_path = drv_path
        store_name = worker.store.store.store_path_to_name(drv_path)
        self.name = parse_drv_name(store_name)
        self.key = f"b${store_name}${drv_path}"
        self.mode = mode
        self.state: Callable[[], None] = self.init
        self.drv: drvs.Derivation | None = None
        # Invariant: holds locks only between B and a release point (or kept, see C).
        self.output_locks = PathLocks()
        self.builder: Builder | None = None
        self.inputs: set[str] = set()
        self.status: BuildStatus | None = None
        worker.store.add_temp_root(drv_path)

    # -- helpers ---------------------------------------------------------------------

    def report(self, action: str, **fields: object) -> None:
        self.worker.probe.report(action, drv=self.name, drv_path=self.drv_path, **fields)

    @property
    def outputs(self) -> list[str]:
        assert self.drv is not None
        return sorted(self.drv.output_paths().values())

    def output_names(self) -> list[str]:
        return [self.worker.store.store.store_path_to_name(p) for p in self.outputs]

    def valid_outputs(self) -> list[str]:
        return [p for p in self.outputs if self.worker.store.is_valid_path(p)]

    def work(self) -> None:
        self.state()

    def done(self, status: BuildStatus, message: str = "") -> None:
        self.status = status
        self.error_message = message
        if status is BuildStatus.TIMED_OUT:
            self.worker.timed_out = True
        if status is BuildStatus.PERMANENT_FAILURE:
            self.worker.permanent_failure = True
        if self.worker.settings.releases_on_done():
            self.output_locks.unlock()  # Nix's fix (Z2): every completion path releases
        if message:
            self.worker.log(message)
        self.am_done(ExitCode.SUCCESS if status.success else ExitCode.FAILED)

    # -- states ------------------------------------------------------------------------

    def init(self) -> None:
        store = self.worker.store
        if self.mode == BM_NORMAL and store.is_valid_path(self.drv_path):
            self.have_derivation()
            return
        self.add_waitee(self.worker.make_substitution_goal(self.drv_path))
        self.state = self.have_derivation
        self.report("WaitForDrv")

    def have_derivation(self) -> None:
        store = self.worker.store
        if self.nr_failed:
            self.done(BuildStatus.MISC_FAILURE, f"cannot build missing derivation {self.drv_path!r}")
            self.report("MissingDerivation")
            return
        store.add_temp_root(self.drv_path)
        self.drv = store.read_derivation(self.drv_path)
        for path in self.outputs:
            store.add_temp_root(path)
        invalid = [p for p in self.outputs if not store.is_valid_path(p)]
        if not invalid and self.mode == BM_NORMAL:
            self.done(BuildStatus.ALREADY_VALID)
            self.report("AlreadyValid")
            return
        allow = self.drv.env.get("allowSubstitutes", "1") == "1"
        if self.worker.settings.use_substitutes and allow:
            for path in invalid:
                self.add_waitee(self.worker.make_substitution_goal(path, self.mode == BM_REPAIR))
        if not self.waitees:  # to prevent hang (no wake-up event)
            self.outputs_substituted()
            return
        self.state = self.outputs_substituted
        self.report("Substitute", outputs=[self.worker.store.store.store_path_to_name(p) for p in invalid])

    def outputs_substituted(self) -> None:
        if (self.nr_failed and self.nr_failed > self.nr_no_substituters + self.nr_incomplete_closure
                and not self.worker.settings.try_fallback):
            raise SubstitutesFailed(self)
        self.nr_failed = self.nr_no_substituters = self.nr_incomplete_closure = 0
        assert self.drv is not None
        if len(self.valid_outputs()) == len(self.outputs) and self.mode == BM_NORMAL:
            self.done(BuildStatus.SUBSTITUTED)
            self.report("Substituted")
            return
        if self.mode == BM_CHECK and self.valid_outputs() != self.outputs:
            raise BuildError(f"some outputs of {self.drv_path!r} are not valid, so checking is not possible")
        for in_drv in sorted(self.drv.input_drvs):
            self.add_waitee(self.worker.make_derivation_goal(in_drv, BM_REPAIR if self.mode == BM_REPAIR else BM_NORMAL))
        for src in sorted(self.drv.input_srcs):
            self.add_waitee(self.worker.make_substitution_goal(src))
        if not self.waitees:  # to prevent hang (no wake-up event)
            self.inputs_realised(direct=True)
        else:
            self.state = self.inputs_realised_state
        self.report("HaveDerivation")

    def inputs_realised_state(self) -> None:
        self.inputs_realised(direct=False)

    def inputs_realised(self, direct: bool) -> None:
        assert self.drv is not None
        if self.nr_failed:
            self.done(BuildStatus.DEPENDENCY_FAILED,
                      f"cannot build derivation {self.drv_path!r}: {self.nr_failed} dependencies couldn't be built")
            self.report("DependencyFailed")
            return
        try:
            self.inputs = input_paths(self.worker.store, self.drv)
        except BuildError as e:
            self.done(BuildStatus.DEPENDENCY_FAILED, str(e))
            self.report("DependencyFailed")
            return
        self.state = self.try_to_build
        self.worker.wake_up(self)
        if not direct:
            self.report("InputsRealised")

    def try_to_build(self) -> None:
        worker = self.worker
        names = self.output_names()
        # A: another goal of this process holds an output (fcntl cannot tell us apart).
        if not bugs.is_enabled("Z6") and any(path_is_locked_by_me(p) for p in self.outputs):
            worker.wait_for_any_goal(self)
            self.report("WaitForAnyGoal")
            return
        # B: non-blocking, sorted, all-or-nothing: never waits while holding.
        if not self.output_locks.lock_paths_nowait(self.outputs):
            worker.wait_for_a_while(self)
            self.report("LockFailed", blocked_on=names, blocked_paths=self.outputs)
            return
        # C: someone beat us to it.
        valid = self.valid_outputs()
        if self.mode != BM_CHECK and len(valid) == len(self.outputs):
            self.output_locks.set_deletion(True)
            if not worker.settings.keeps_lock_when_beaten():
                self.output_locks.unlock()  # the fix of 78da695178
            self.done(BuildStatus.ALREADY_VALID)
            self.report("Beaten", kept=bool(self.output_locks.lock_files))
            return
        # D: delete invalid leftovers (safe: we hold the locks).
        for path in self.outputs:
            if path not in valid:
                delete_path(path)
        # E (cached failures) and F (build hook) are not implemented: no hook, no cache.
        self.check_slot_and_start(relocked=True)

    def resume_after_slot(self) -> None:
        """Z10 only: a goal woken from wantingToBuild resumes after the locking step."""
        self.check_slot_and_start(relocked=False)

    def check_slot_and_start(self, relocked: bool) -> None:
        worker = self.worker
        assert self.drv is not None
        build_locally = self.mode != BM_NORMAL or self.drv.env.get("preferLocalBuild") == "1"
        cur = worker.nr_local_builds
        # G: no build slot: release and wait (re-lock from A when woken).
        if cur >= worker.settings.max_build_jobs and not (build_locally and cur == 0):
            worker.wait_for_build_slot(self)
            self.output_locks.unlock()
            if bugs.is_enabled("Z10"):
                self.state = self.resume_after_slot
            self.report("NoBuildSlot")
            return
        # H: start the builder.
        try:
            self.builder = start_builder(worker.store, self.drv, self.drv_path, worker.settings.build_dir)
        except BuildError as e:
            self.output_locks.unlock()
            self.done(BuildStatus.INPUT_REJECTED, str(e))
            self.report("StartFailed")
            return
        worker.child_started(self, self.builder.pid, [self.builder.fd], in_build_slot=True,
                             respect_timeouts=True)
        self.state = self.build_done
        self.report("StartBuild", locked=relocked and bool(self.output_locks.lock_files))

    def handle_child_output(self, fd: int, data: bytes) -> None:
        self.worker.log(data.decode("utf-8", "replace"))

    def handle_eof(self, fd: int) -> None:
        self.worker.wake_up(self)

    def build_done(self) -> None:
        worker = self.worker
        assert self.builder is not None and self.drv is not None
        builder, self.builder = self.builder, None
        ok, how = builder_succeeded(builder)
        worker.child_terminated(builder.pid)
        os.close(builder.fd)
        try:
            if not ok:
                raise BuildError(f"builder for {self.drv_path!r} failed with {how}")
            register_outputs(worker.store, self.drv, self.drv_path, self.inputs)
        except (BuildError, OSError, ValueError) as e:
            remove_tmp_dir(builder.tmp_dir)
            self.output_locks.unlock()  # without deletion: the paths are not valid
            rejected = isinstance(e, BuildError) and e.rejected_output
            self.done(BuildStatus.OUTPUT_REJECTED if rejected else BuildStatus.PERMANENT_FAILURE, str(e))
            self.report("BuildFailed")
            return
        remove_tmp_dir(builder.tmp_dir)
        # Safe now: whoever locks next sees the paths valid.
        self.output_locks.set_deletion(True)
        self.output_locks.unlock()
        self.done(BuildStatus.BUILT)
        self.report("BuildSucceeded")

    def timed_out(self, why: str) -> None:
        """Silence or build timeout: kill the builder, fail; the locks stay (Z12)."""
        self.kill_child()
        self.done(BuildStatus.TIMED_OUT, f"build of {self.drv_path!r} {why}")
        self.report("BuildTimedOut", kept=bool(self.output_locks.lock_files))

    def kill_child(self) -> None:
        if self.builder is not None:
            builder, self.builder = self.builder, None
            kill_builder(builder)
            self.worker.child_terminated(builder.pid)
            os.close(builder.fd)
            remove_tmp_dir(builder.tmp_dir)

    def release_on_destroy(self, quiet: bool) -> None:
        unfinished = self.exit_code is ExitCode.BUSY
        held = [self.worker.store.store.store_path_to_name(p[: -len(".lock")])
                for p in self.output_locks.lock_files]
        self.kill_child()
        if not quiet and not unfinished:
            # One release, one report: each ReleaseKept fires when its own lock is gone.
            for lock_path, name in zip(self.output_locks.lock_files, held, strict=True):
                self.output_locks.unlock_one(lock_path)
                self.worker.probe.report("ReleaseKept", path=name, by_drv=self.name)
            return
        self.output_locks.unlock()
        if unfinished and not quiet:
            self.report("DestroyGoal", released=held)
