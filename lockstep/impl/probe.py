"""The probe: every goal and lock transition of a daemon process, reported where it happens.

Normal runs use :class:`Probe`, which does nothing. A harness gets the reports in two
ways, which combine:

* a **log**: one JSON object per line, appended (``O_APPEND``, one ``write`` per line) to
  a file shared by every daemon process (``LOCKSTEP_PROBE_LOG`` in the daemon's
  environment, or the ``lockstep-probe-log`` option of set-options);
* a **control connection**: a Unix stream socket (``LOCKSTEP_CONTROL`` or the
  ``lockstep-control`` option). The process connects on its first report, writes each
  report as one JSON line and then *blocks* until the controller answers with one JSON
  line. Every report is therefore a scheduling point: the process has completed the
  transition it reports and does nothing more until told to go on. The answer to an
  ordinary report is ``{}`` (or ``{"go": true}``); the answer to ``WaitForInput`` drives
  virtual time (see ``clock.py``). A closed control connection ends the process
  (:class:`ControlLost`), as if the controller had killed it.

Every report carries ``seq`` (1, 2, ... per process), ``proc`` (the harness's process
number, 1..N, from the ``lockstep-proc`` option of set-options or ``LOCKSTEP_PROC``; null
if unset), ``pid`` (the daemon child's pid, the one the kernel's lock table names),
``action``, and ``drv`` (the derivation's name, e.g. ``path1`` for
``/store/<hash>-path1.drv``) or ``path`` (the output path's name after the hash, e.g.
``path1`` or ``path1-dev``). Extra fields are informative (store paths, ``blocked_on``).
Under control, every report also carries ``goals``: the worker's picture of every goal made by the running request (``Worker.snapshot``: kind, name,
state method, exit code, pinned, destroyed, wait list, waitees, failures, lock files held).

Report names. Those in the first two groups are the model's actions (lockstep/model/
actions.py) and fire exactly when that action's effect on goals, locks and validity is
complete; the others are steps the model abstracts away (stutters for the bridge).

Derivation goals (``drv=``):
  AlreadyValid      haveDerivation: every output valid, goal done
  Substitute        haveDerivation: substitution goals made for the invalid outputs
  HaveDerivation    outputsSubstituted: outputs still invalid, input goals made (or, with
                    no inputs, state tryToBuild); also when haveDerivation made no
                    substitution goals (substitutes off or allowSubstitutes="0") and went
                    on directly
  Substituted       outputsSubstituted: all outputs valid after substitution, goal done
  SubstitutesFailed outputsSubstituted: a substitute failed; reported after the request
                    has been torn down (every goal destroyed, every lock released)
  InputsRealised    inputsRealised: state tryToBuild
  DependencyFailed  inputsRealised: an input failed, goal done (failed)
  WaitForAnyGoal    tryToBuild A: an output is locked by another goal of this process
  LockFailed        tryToBuild B: non-blocking lock failed, goal in waitingForAWhile
                    (``blocked_on``: output path names; ``blocked_paths``: store paths,
                    whose ``.lock`` the kernel's lock table can be asked about)
  Beaten            tryToBuild C: outputs valid after locking; lock released (guix,
                    release-on-done) or kept (pre-fix / Z1; field ``kept``); goal done
  NoBuildSlot       tryToBuild G: no slot, locks released, goal in wantingToBuild
  StartBuild        tryToBuild H: builder running, locks held (Z10: without locks)
  BuildSucceeded    buildDone: outputs registered valid, locks released and deleted
  BuildFailed       buildDone: builder failed (or produced bad outputs), locks released
  BuildTimedOut     timedOut: builder killed, goal done (failed); locks kept unless
                    release-on-done
  DestroyGoal       destructor of an unfinished goal nobody references any more
Substitution goals (``path=``):
  SubstAlreadyValid init: path valid, goal done
  SubstInit         init/tryNext/referencesValid: a substitute exists, state tryToRun
  SubstNoSlot       tryToRun: no build slot, goal in wantingToBuild
  SubstWaitForAnyGoal tryToRun: path locked by another goal of this process
  SubstLockFailed   tryToRun: non-blocking lock failed, goal in waitingForAWhile
  SubstBecameValid  tryToRun: valid after locking; lock released (or kept: pre-fix / Z1)
  SubstStart        tryToRun: substituter running, lock held
  SubstSucceeded    finished: registered valid, lock released and deleted
  SubstFailed       finished: substituter failed; lock kept unless release-on-done
  DestroySubstGoal  destructor of an unfinished substitution goal nobody references
  ReleaseKept       destructor of a finished goal that still held its lock (one report
                    per path, each right after that path's own unlock)
Process (no drv/path):
  RequestDone       build-paths / ensure-path: worker finished, every goal destroyed,
                    every lock released; reported before the reply goes to the client
                    (field ``ok``)
  WorkerStuck       assert(!awake.empty()) failed, or max-jobs 0 with nothing to do;
                    reported after teardown (the process then dies, as the daemon aborts)
Stutters and extras (not model actions):
  RequestStart      build-paths / ensure-path received, top-level goals made, none run yet.
                    Under control the answer may carry ``defer`` (top-level goal names
                    the worker keeps back until its first wait for input, worker.run) and
                    ``lock_file_reports`` (true: report LockFileOpened, below)
  LockFileOpened    pathlocks: a goal opened ``<path>.lock`` and has not locked it yet
                    (first path of a lock set only; only when RequestStart's answer
                    asked for it): the scheduling point of the Z7 race
  NoSubstituters    substitution goal: no substitute known, goal done (ecNoSubstituters)
  SubstWaitReferences substitution goal waits for its references' substitution goals
  SubstReferencesFailed a reference could not be substituted, goal done (failed)
  SubstTimedOut     substituter timed out, goal done (failed); lock kept
  MissingDerivation derivation goal: the .drv is invalid and not substitutable
  WaitForDrv        derivation goal: the .drv is invalid, a substitution goal made for it
  StartFailed       tryToBuild H: the builder could not be started, locks released
  WaitForInput      the worker is about to wait (select) for child output, polls or
                    timeouts; fields ``now``, ``poll_at``, ``deadline``, ``children``,
                    ``pollers``. Under control, the answer decides what happens next.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

ENV_LOG = "LOCKSTEP_PROBE_LOG"
ENV_CONTROL = "LOCKSTEP_CONTROL"
ENV_PROC = "LOCKSTEP_PROC"

Reply = dict[str, Any]


class ControlLost(Exception):
    """The controller closed the control connection (or answered garbage)."""


class Probe:
    """The default probe: reports nothing, never blocks."""

    controlled = False
    # Set by the worker of the running request: a picture of its goals (Worker.snapshot),
    # sent as the ``goals`` field of every controlled report so that a controller reads
    # the goal states from the process itself at each scheduling point.
    snapshot: Callable[[], list[dict[str, Any]]] | None = None

    def report(self, action: str, **fields: Any) -> Reply:
        return {}

    def close(self) -> None:
        pass


class RecordingProbe(Probe):
    """Keeps every report in memory (in-process tests)."""

    def __init__(self, proc: int | None = None) -> None:
        self.proc = proc
        self.reports: list[dict[str, Any]] = []

    def report(self, action: str, **fields: Any) -> Reply:
        self.reports.append({"seq": len(self.reports) + 1, "proc": self.proc,
                             "pid": os.getpid(), "action": action, **fields})
        return {}


class ReportingProbe(Probe):
    """Log and/or control connection, as the module docstring describes."""

    def __init__(self, proc: int | None, log_path: str | None, control_path: str | None) -> None:
        self.proc = proc
        self.seq = 0
        self.controlled = control_path is not None
        self._control_path = control_path
        # Invariant: _log_fd is open in append mode iff a log path was given.
        self._log_fd = (os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                        if log_path else None)
        self._sock: socket.socket | None = None
        self._rbuf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            assert self._control_path is not None
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self._control_path)
            except OSError as e:
                s.close()
                raise ControlLost(f"cannot connect to the controller at {self._control_path!r}: {e}") from e
            os.set_inheritable(s.fileno(), False)
            self._sock = s
        return self._sock

    def report(self, action: str, **fields: Any) -> Reply:
        self.seq += 1
        record = {"seq": self.seq, "proc": self.proc, "pid": os.getpid(), "action": action, **fields}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        if self._log_fd is not None:
            os.write(self._log_fd, line)
        if not self.controlled:
            return {}
        if self.snapshot is not None:
            record["goals"] = self.snapshot()
            line = (json.dumps(record, sort_keys=True) + "\n").encode()
        sock = self._connect()
        try:
            sock.sendall(line)
            while b"\n" not in self._rbuf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ControlLost(f"controller closed the connection after report {record}")
                self._rbuf += chunk
        except OSError as e:
            raise ControlLost(f"control connection failed at report {record}: {e}") from e
        answer, _, self._rbuf = self._rbuf.partition(b"\n")
        try:
            reply = json.loads(answer) if answer.strip() else {}
        except ValueError:
            raise ControlLost(f"controller answered {answer!r}, not a JSON object") from None
        if not isinstance(reply, dict):
            raise ControlLost(f"controller answered {answer!r}, not a JSON object")
        return reply

    def close(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def make_probe(proc: int | None, log_path: str | None, control_path: str | None) -> Probe:
    """The probe a daemon process uses: a no-op unless a log or a controller is given."""
    if not log_path and not control_path:
        return Probe()
    return ReportingProbe(proc, log_path or None, control_path or None)
