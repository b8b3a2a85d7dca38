"""Controlled runs: the real daemon and one client per scenario process, scheduled by us.

`Run` builds a temporary store from a scenario (each derivation a real .drv whose
builder is ``/bin/sh -c``: ``mkdir`` its outputs (ok), ``exit 1`` (fail) or sleep for
ever (hang); each substitutable output a real substitute in a local binary cache, a
truncated NAR when the scenario says the substitute fails), starts the daemon, and
connects one client per scenario process with set-options naming this controller's
socket (``lockstep-control``). Every probe report of a daemon child is a scheduling
point: the child has completed the step it reports and blocks until answered.

Between two answers exactly one daemon child runs (builders run on their own, but they
touch neither locks nor the database), so the real state read at a report is stable.
A *choice* names the paused process to let go and, at ``WaitForInput``, what time does:

    "P2"           answer {} to P2's pending report
    "P2:poll"      WaitForInput: jump virtual time to the poll (pollers retry their locks)
    "P2:input"     WaitForInput: really wait for a builder or substituter to end
    "P2:timeout"   WaitForInput: jump virtual time to the build deadline (a hang builder)
    "P2:kill"      SIGKILL P2 (the model's Crash; only with faults on)

Two start-up answers (``start_replies``, per process, sent with RequestStart's answer)
widen what a schedule can force: ``defer`` keeps named top-level goals back until the
process first waits for input (an order of one process's goals the model allows and
the daemon's key order never takes), and ``lock_file_reports`` makes every first lock
file open a scheduling point (``LockFileOpened``, a stutter: the Z7 race window).

The list of choices is the schedule; the same schedule on a fresh store replays to the
same run. Store paths depend on the (temporary) store directory, so the derivations are
salted until their store names sort in scenario-name order: a process then steps its
goals in the same order in every run (the worker runs awake goals in key order).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lockstep.impl import derivations as drvs
from lockstep.impl.archive import Directory, Regular, tree_nar
from lockstep.impl.client import Client, shell_derivation
from lockstep.impl.hash import BASE32_CHARS
from lockstep.impl.store_api import StoreDir
from lockstep.impl.substituter import write_substitute
from lockstep.model.scenario import Derivation, Scenario

Report = dict[str, Any]
POLL_INTERVAL = 1.0  # virtual seconds
BUILD_TIMEOUT = 100.0  # virtual seconds: a hang builder times out when the controller says
REPORT_TIMEOUT = 60.0  # real seconds: only a broken daemon makes us wait this long
TERMINAL = ("RequestDone", "WorkerStuck", "SubstitutesFailed")


class ControlError(RuntimeError):
    """The real processes did something a controlled run cannot go on from."""


def builder_script(d: Derivation) -> str:
    if d.builder == "fail":
        return "exit 1"
    if d.builder == "hang":
        return "exec sleep 100000"
    return "mkdir " + " ".join(f"${o}" for o in d.outputs)


def _env_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


@dataclass
class ScenarioStore:
    """The scenario's derivations in a real store: .drv paths and output store paths."""

    drv_paths: dict[str, str] = field(default_factory=dict)  # derivation name -> .drv path
    outputs: dict[str, str] = field(default_factory=dict)  # scenario path name -> store path

    @classmethod
    def build(cls, scenario: Scenario, store: StoreDir, client: Client, cache: str) -> ScenarioStore:
        out = cls()
        order = _topological(scenario)
        previous = ""
        for k, name in enumerate(order):
            d = scenario.drv(name)
            inputs = {_env_name(i): out.drv_paths[i] for i in d.inputs}
            env = {} if d.substitutable else {"allowSubstitutes": "0"}
            slot = _hash_slot(k, len(order))
            for nonce in range(100000):  # salt until the store name sorts after the previous
                drv = shell_derivation(store, name, builder_script(d), inputs, outputs=d.outputs,
                                       env={**env, "lockstep_salt": str(nonce)})
                path = store.text_path(name + drvs.DRV_EXTENSION, drvs.unparse(drv), sorted(drv.references()))
                base = os.path.basename(path)
                if base > previous and (slot is None or base[0] in slot):
                    break
            previous = os.path.basename(path)
            added = client.add_derivation(drv, name)
            assert added == path, (added, path)
            out.drv_paths[name] = added
            for o, p in drv.output_paths().items():
                out.outputs[d.output_path(o)] = p
            if d.substitutable:
                nar = tree_nar(Directory({"f": Regular(b"substituted\n")}))
                for o in d.outputs:
                    write_substitute(cache, store, out.outputs[d.output_path(o)], nar,
                                     broken=d.substitute == "fail")
        return out


def _hash_slot(k: int, n: int) -> str | None:
    """The first hash characters allowed for the k-th of n salted names: the k-th of n
    equal slices of the base-32 alphabet, so each name leaves room for the ones after it
    (else a name that happens to sort near the end makes the next search run for
    thousands of salts: seconds, at worst past the limit). None (no bound) for an empty
    slice, which only more than 32 names make."""
    lo, hi = k * len(BASE32_CHARS) // n, (k + 1) * len(BASE32_CHARS) // n
    return BASE32_CHARS[lo:hi] or None


def _topological(scenario: Scenario) -> list[str]:
    """Derivation names, inputs first, otherwise by name (so salting keeps name order)."""
    done: list[str] = []
    todo = sorted(d.name for d in scenario.derivations)
    while todo:
        ready = [n for n in todo if all(i in done for i in scenario.drv(n).inputs)]
        done.append(ready[0])
        todo.remove(ready[0])
    return done


@dataclass
class Proc:
    """One scenario process: its client, its daemon child's control connection, its state."""

    number: int
    client: Client
    thread: threading.Thread | None = None
    conn: socket.socket | None = None
    reader: Any = None
    pid: int | None = None
    pending: Report | None = None  # the report it is blocked at, if any
    last: Report | None = None  # its latest report (snapshot of its goals)
    status: str = "RUNNING"  # RUNNING, OK, FAILED, ABORTED, KILLED
    outcome: object = None  # what build_paths returned or raised


class Run:
    """A controlled run of the real daemon on a fresh store built from `scenario`."""

    def __init__(self, scenario: Scenario, policy: str = "guix", bugs: tuple[str, ...] = (),
                 faults: bool = False, start_replies: dict[int, Report] | None = None) -> None:
        self.scenario = scenario
        # Per process: the answer to its RequestStart (probe.py: ``defer``,
        # ``lock_file_reports``); empty for the daemon's own behaviour.
        self.start_replies = dict(start_replies or {})
        self.policy = policy
        self.bugs = bugs
        self.faults = faults
        self.root = tempfile.mkdtemp(prefix="lockstep-r-")  # short: Unix socket paths
        self.store_dir = os.path.join(self.root, "store")
        self.state_dir = os.path.join(self.root, "state")
        self.cache = os.path.join(self.root, "cache")
        self.socket = os.path.join(self.root, "sock")
        self.control = os.path.join(self.root, "ctl")
        self.db_path = os.path.join(self.state_dir, "db", "db.sqlite")
        self.daemon: subprocess.Popen[bytes] | None = None
        self.listener: socket.socket | None = None
        self.procs: dict[int, Proc] = {}
        self.store = ScenarioStore()
        self.reports: list[Report] = []  # every report, in the order received
        self.pids: dict[int, int] = {}  # daemon child pid -> process number

    # -- starting and stopping -------------------------------------------------------

    def start(self) -> Iterator[tuple[int, Report]]:
        """Start everything; yields (proc, report) for each report of the fixed start-up.

        Start-up: every process reports RequestStart; then, in process order, each is let
        go once, so that it is paused at its first goal step. These answers are not
        choices (they are the same in every run).
        """
        os.makedirs(self.cache, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "lockstep.impl.daemon", "--socket", self.socket, "--store-dir",
             self.store_dir, "--state-dir", self.state_dir, "--substitute-cache", self.cache], env=env)
        with self._connect() as setup:
            setup.set_options(use_substitutes=False)
            self.store = ScenarioStore.build(self.scenario, StoreDir(self.store_dir), setup, self.cache)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.control)
        self.listener.listen(len(self.scenario.processes) + 1)
        self.listener.settimeout(REPORT_TIMEOUT)
        for i, sp in enumerate(self.scenario.processes, 1):
            c = Client(self.socket)
            overrides = {"lockstep-control": self.control}
            if self.bugs:
                overrides["lockstep-bugs"] = ",".join(self.bugs)
            c.set_options(max_jobs=sp.max_jobs, keep_going=sp.keep_going, use_substitutes=True,
                          poll_interval=POLL_INTERVAL, build_timeout=BUILD_TIMEOUT, policy=self.policy,
                          proc=i, overrides=overrides)
            self.procs[i] = Proc(i, c)
        for p in self.procs.values():
            paths = [self.store.drv_paths[d] for d in self.scenario.processes[p.number - 1].request]
            p.thread = threading.Thread(target=self._request, args=(p, paths), daemon=True)
            p.thread.start()
        for _ in self.procs:
            conn, _addr = self.listener.accept()
            conn.settimeout(REPORT_TIMEOUT)
            reader = conn.makefile("rb")
            first = self._read(reader, "a new connection")
            p = self.procs[first["proc"]]
            p.conn, p.reader = conn, reader
            self._received(p, first)
        for p in self.procs.values():
            yield p.number, self._pending(p)
        for p in sorted(self.procs.values(), key=lambda q: q.number):
            r = self.answer(p.number, self.start_replies.get(p.number, {}))
            if r is not None:
                yield p.number, r

    def _connect(self) -> Client:
        """The first client, once the daemon accepts connections."""
        assert self.daemon is not None
        deadline = time.monotonic() + REPORT_TIMEOUT
        while True:
            if self.daemon.poll() is not None:
                raise ControlError(f"the daemon exited with status {self.daemon.returncode} at start")
            try:
                return Client(self.socket)
            except OSError:
                if time.monotonic() > deadline:
                    raise ControlError("the daemon did not come up") from None
                time.sleep(0.01)

    @staticmethod
    def _request(p: Proc, paths: list[str]) -> None:
        try:
            p.client.build_paths(paths)
            p.outcome = "ok"
        except Exception as e:  # reported by the run's owner; a killed daemon child ends here
            p.outcome = e

    def stop(self) -> None:
        """Kill everything this run started and remove its files."""
        doomed = _descendants(self.daemon.pid) if self.daemon is not None else []
        for p in self.procs.values():
            p.client.close()
            if p.conn is not None:
                p.conn.close()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()  # SIGKILL: no 0.5 s select round; its children go below
            self.daemon.wait()
        for pid in doomed:  # daemon children (own sessions) and their builders
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            if p.thread is not None:
                p.thread.join(timeout=REPORT_TIMEOUT)
        if self.listener is not None:
            self.listener.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reports ---------------------------------------------------------------------

    @staticmethod
    def _read(reader: Any, who: str) -> Report:
        try:
            line = reader.readline()
        except TimeoutError:
            raise ControlError(f"{who} sent no report for {REPORT_TIMEOUT:g} s") from None
        if not line:
            raise ControlError(f"{who} closed its control connection (the daemon child died)")
        report: Report = json.loads(line)
        return report

    def _received(self, p: Proc, r: Report) -> None:
        p.pending = p.last = r
        p.pid = r["pid"]
        if r["action"] == "RequestDone":
            p.status = "OK" if r.get("ok") else "FAILED"
        elif r["action"] == "SubstitutesFailed":
            p.status = "FAILED"
        elif r["action"] == "WorkerStuck":
            p.status = "FAILED" if self.scenario.processes[p.number - 1].max_jobs == 0 else "ABORTED"
        self.pids[r["pid"]] = p.number
        self.reports.append(r)

    @staticmethod
    def _pending(p: Proc) -> Report:
        assert p.pending is not None
        return p.pending

    def answer(self, proc: int, reply: Report) -> Report | None:
        """Let `proc` go with `reply`; its next report, or None if its request ended."""
        p = self.procs[proc]
        r = self._pending(p)
        assert p.conn is not None
        p.conn.sendall((json.dumps(reply) + "\n").encode())
        p.pending = None
        if r["action"] in TERMINAL:
            return None
        nxt = self._read(p.reader, f"P{proc}")
        self._received(p, nxt)
        return nxt

    # -- choices ---------------------------------------------------------------------

    def running(self) -> list[Proc]:
        return [p for _, p in sorted(self.procs.items()) if p.pending is not None]

    def options(self) -> list[str]:
        """Every choice possible now, in a fixed order."""
        out: list[str] = []
        for p in self.running():
            r = self._pending(p)
            name = f"P{p.number}"
            if r["action"] != "WaitForInput":
                out.append(name)
            else:
                if r.get("poll_at") is not None:
                    out.append(name + ":poll")
                if r.get("children"):
                    out.append(name + (":timeout" if self._hanging(p) else ":input"))
            if self.faults and r["action"] not in TERMINAL:
                out.append(name + ":kill")
        return out

    def _hanging(self, p: Proc) -> bool:
        """Does a builder of `p` hang (so that only a timeout ends it)?"""
        for g in (p.last or {}).get("goals", []):
            if g["kind"] == "drv" and g["state"] == "build_done" and g["exit"] == "busy" \
                    and not g["destroyed"] and self.scenario.drv(g["name"]).builder == "hang":
                return True
        return False

    def apply(self, choice: str) -> tuple[int, Report | None]:
        """Carry out one choice: (proc, its next report or None when it ended or died)."""
        name, _, how = choice.partition(":")
        if not name.startswith("P") or not name[1:].isdigit() or int(name[1:]) not in self.procs:
            raise ValueError(f"choice {choice!r}: no process {name!r}; processes are "
                             f"{', '.join(f'P{i}' for i in self.procs)}")
        proc = int(name[1:])
        p = self.procs[proc]
        if p.pending is None:
            raise ValueError(f"choice {choice!r}: P{proc} is not paused at a report (it has ended)")
        r = self._pending(p)
        if how == "kill":
            self.kill(proc)
            return proc, None
        if r["action"] == "WaitForInput":
            if how == "poll" and r.get("poll_at") is not None:
                return proc, self.answer(proc, {"advance": r["poll_at"]})
            if how == "timeout" and r.get("deadline") is not None:
                return proc, self.answer(proc, {"advance": r["deadline"]})
            if how == "input" and r.get("children"):
                return proc, self.answer(proc, {"input": True})
            raise ValueError(f"choice {choice!r}: P{proc} waits for input with poll_at "
                             f"{r.get('poll_at')}, deadline {r.get('deadline')}, {r.get('children')} children")
        if how:
            raise ValueError(f"choice {choice!r}: P{proc} is at {r['action']}, answer it with {name!r}")
        return proc, self.answer(proc, {})

    def kill(self, proc: int) -> None:
        """SIGKILL the daemon child of `proc` (and its builders); wait until the kernel
        has dropped its locks (the process is a zombie or gone)."""
        p = self.procs[proc]
        assert p.pid is not None
        kids = _descendants(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + REPORT_TIMEOUT
        while _alive(p.pid):
            if time.monotonic() > deadline:
                raise ControlError(f"P{proc} (pid {p.pid}) did not die after SIGKILL")
            time.sleep(0.002)
        p.pending = None
        p.status = "KILLED"
        assert p.conn is not None
        p.conn.close()
        p.conn = None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), children first."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out: list[int] = []
    todo = [pid]
    while todo:
        cur = todo.pop()
        kids = sorted(c for c, pp in parent.items() if pp == cur)
        out.extend(kids)
        todo.extend(kids)
    return out
