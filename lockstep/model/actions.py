"""Actions as data: one small frozen record per step a daemon process can report.

Each record names the daemon function whose outcome it is. `proc` is 1-based
(P1, P2, ... as in the seed's commit message). The guard and effect of every
action live in `rules.py`; this module is only the vocabulary, shared by the
engines, the trace format, Hypothesis and the refinement bridge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Action:
    proc: int
    # daemon function the step abstracts; shown in docs/model.md and traces
    daemon: ClassVar[str] = ""
    # a stutter changes no state: a failed non-blocking lock attempt
    stutter: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                         for k, v in asdict(self).items())
        return f"{self.kind}({args})"


@dataclass(frozen=True, slots=True)
class DrvAction(Action):
    drv: str


@dataclass(frozen=True, slots=True)
class PathAction(Action):
    path: str


# -- DerivationGoal ------------------------------------------------------------

class AlreadyValid(DrvAction):
    daemon = "DerivationGoal::haveDerivation: all outputs valid -> done(AlreadyValid)"


class Substitute(DrvAction):
    daemon = "DerivationGoal::haveDerivation: makeSubstitutionGoal for each invalid output"


class HaveDerivation(DrvAction):
    daemon = "DerivationGoal::haveDerivation+outputsSubstituted: outputs invalid, no substitutes: addWaitee(makeDerivationGoal(input)) for each input, or tryToBuild if none"


class Substituted(DrvAction):
    daemon = "DerivationGoal::outputsSubstituted: all outputs valid -> done(Substituted)"


class SubstitutesFailed(DrvAction):
    daemon = "DerivationGoal::outputsSubstituted: 'some substitutes ... failed' thrown, request fails"


class InputsRealised(DrvAction):
    daemon = "DerivationGoal::inputsRealised: state = tryToBuild"


class DependencyFailed(DrvAction):
    daemon = "DerivationGoal::inputsRealised: nrFailed -> done(DependencyFailed)"


class WaitForAnyGoal(DrvAction):
    daemon = "DerivationGoal::tryToBuild A: pathIsLockedByMe -> waitForAnyGoal"


class LockFailed(DrvAction):
    daemon = "DerivationGoal::tryToBuild B: lockPaths(wait=false) fails -> waitForAWhile"
    stutter = True


class Beaten(DrvAction):
    daemon = "DerivationGoal::tryToBuild C: outputs valid after locking -> done(AlreadyValid)"


class NoBuildSlot(DrvAction):
    daemon = "DerivationGoal::tryToBuild G: no build slot -> unlock, waitForBuildSlot"


class StartBuild(DrvAction):
    daemon = "DerivationGoal::tryToBuild H: startBuilder, locks held"


class BuildSucceeded(DrvAction):
    daemon = "DerivationGoal::buildDone: registerOutputs, unlock with deletion, done(Built)"


class BuildFailed(DrvAction):
    daemon = "DerivationGoal::buildDone: BuildError -> unlock, done(PermanentFailure)"


class BuildTimedOut(DrvAction):
    daemon = "DerivationGoal::timedOut: killChild, done(TimedOut)"


class DestroyGoal(DrvAction):
    daemon = "~DerivationGoal of an abandoned goal: kill builder, release locks"


# -- SubstitutionGoal ----------------------------------------------------------

class SubstAlreadyValid(PathAction):
    daemon = "SubstitutionGoal::init: path valid -> amDone(ecSuccess)"


class SubstInit(PathAction):
    daemon = "SubstitutionGoal::init/tryNext/referencesValid: state = tryToRun"


class SubstNoSlot(PathAction):
    daemon = "SubstitutionGoal::tryToRun: no build slot -> waitForBuildSlot"


class SubstWaitForAnyGoal(PathAction):
    daemon = "SubstitutionGoal::tryToRun: pathIsLockedByMe -> waitForAnyGoal"


class SubstLockFailed(PathAction):
    daemon = "SubstitutionGoal::tryToRun: lockPaths(wait=false) fails -> waitForAWhile"
    stutter = True


class SubstBecameValid(PathAction):
    daemon = "SubstitutionGoal::tryToRun: 'has become valid' after locking -> amDone(ecSuccess)"


class SubstStart(PathAction):
    daemon = "SubstitutionGoal::tryToRun: start the substituter, lock held"


class SubstSucceeded(PathAction):
    daemon = "SubstitutionGoal::finished: registerValidPath, unlock with deletion, amDone(ecSuccess)"


class SubstFailed(PathAction):
    daemon = "SubstitutionGoal::finished: SubstError -> amDone(ecFailed)"


class DestroySubstGoal(PathAction):
    daemon = "~SubstitutionGoal of an abandoned goal: kill substituter, release lock"


class ReleaseKept(PathAction):
    daemon = "destructor of a finished, non-top-level goal that still held the lock"


# -- Worker / process ------------------------------------------------------------

class RequestDone(Action):
    daemon = "Worker::run returns, LocalStore::buildPaths returns: goal destructors release all"


class WorkerStuck(Action):
    daemon = "Worker::run: assert(!awake.empty()) aborts (or 'unable to start any build' with max-jobs 0)"


class Crash(Action):
    daemon = "fault: the daemon child is killed (SIGKILL); the kernel drops its locks"


DRV_ACTIONS: tuple[type[DrvAction], ...] = (
    AlreadyValid, Substitute, HaveDerivation, Substituted, SubstitutesFailed, InputsRealised,
    DependencyFailed, WaitForAnyGoal, LockFailed, Beaten, NoBuildSlot, StartBuild,
    BuildSucceeded, BuildFailed, BuildTimedOut, DestroyGoal,
)
PATH_ACTIONS: tuple[type[PathAction], ...] = (
    SubstAlreadyValid, SubstInit, SubstNoSlot, SubstWaitForAnyGoal, SubstLockFailed,
    SubstBecameValid, SubstStart, SubstSucceeded, SubstFailed, DestroySubstGoal, ReleaseKept,
)
PROC_ACTIONS: tuple[type[Action], ...] = (RequestDone, WorkerStuck, Crash)

ACTION_TYPES: dict[str, type[Action]] = {
    t.__name__: t for t in (*DRV_ACTIONS, *PATH_ACTIONS, *PROC_ACTIONS)
}


def action_from_json(data: dict[str, Any]) -> Action:
    """Inverse of `Action.to_json`; raises ValueError naming the bad field."""
    kind = data.get("kind")
    if kind not in ACTION_TYPES:
        raise ValueError(f"action {data!r}: unknown kind {kind!r}; known kinds: {', '.join(ACTION_TYPES)}")
    t = ACTION_TYPES[kind]
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return t(**fields)
    except TypeError as e:
        raise ValueError(f"action {data!r}: {e}") from None
