"""The abstraction function: the real system, read at a scheduling point, as a model state.

Three sources, each the authority for its part of the state vector (model/state.py):

* ``valid.<path>``: the daemon's SQLite database (``ValidPaths``), read-only;
* ``lock.<path>``: the kernel's lock table: ``F_GETLK`` on ``<store path>.lock`` names
  the holding pid, mapped to the process number through the reports' ``pid`` field;
* everything per process (goal states, waitees, failures, top-level results, status)
  and ``holder.<path>``: the goals picture each controlled report carries (``goals``,
  lockstep/impl/worker.py ``snapshot``), and for status the terminal reports.

A goal's model state is the state of the *latest* goal object made for that derivation
(or path) in that process: an unfinished, destroyed one is ABSENT, a finished one is
DONE_OK / DONE_FAIL whether or not it has been destroyed yet (the model keeps a done
goal's result until a new goal is made for it, as the daemon makes a new object).

The two views of a lock must agree: the goal that claims a lock file (its PathLocks
holds it) must belong to the process the kernel names, and no lock may be claimed
twice. Disagreement is not a model question but a broken real state, reported as a
violation of ``lock_exclusive`` (two owners of one lock, or a lock the kernel does not
show on the path's name: a lock on a deleted inode).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.impl.pathlocks import lock_holder_pid
from lockstep.model.machine import State
from lockstep.model.scenario import Scenario
from lockstep.model.state import GoalState as G
from lockstep.model.state import Holder as H
from lockstep.model.state import Layout, Status, Top, waitees

DRV_STATES = {"init": G.INIT, "have_derivation": G.INIT, "outputs_substituted": G.WAIT_SUBST,
              "inputs_realised_state": G.WAIT_INPUTS, "try_to_build": G.TRY,
              "resume_after_slot": G.TRY, "build_done": G.BUSY}
SUBST_STATES = {"init": G.INIT, "references_valid_state": G.INIT, "try_to_run": G.TRY,
                "finished": G.BUSY}


class AbstractionError(AssertionError):
    """The real state cannot be read as a model state; `prop` names what it breaks."""

    def __init__(self, message: str, prop: str = "lock_exclusive") -> None:
        super().__init__(message)
        self.prop = prop


@dataclass
class Observation:
    """What the harness read from the real system at one scheduling point."""

    statuses: dict[int, str]  # process -> RUNNING / OK / FAILED / ABORTED / KILLED
    goals: dict[int, list[dict[str, Any]]]  # process -> latest goals picture
    locks: dict[str, int]  # path name -> holding process, or 0
    valid: frozenset[str]  # path names registered valid


def read_valid(db_path: str, outputs: Mapping[str, str]) -> frozenset[str]:
    """Scenario path names whose store paths are in the ValidPaths table."""
    uri = f"file:{db_path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as db:
        marks = ",".join("?" * len(outputs))
        rows = db.execute(f"select path from ValidPaths where path in ({marks})",
                          list(outputs.values())).fetchall()
    by_path = {p: n for n, p in outputs.items()}
    return frozenset(by_path[r[0]] for r in rows)


def read_locks(outputs: Mapping[str, str], pids: Mapping[int, int]) -> dict[str, int]:
    """Path name -> holding process (0: free), from the kernel's lock table."""
    out: dict[str, int] = {}
    for name, path in outputs.items():
        pid = lock_holder_pid(path + ".lock")
        if pid is not None and pid not in pids:
            raise AbstractionError(f"the lock of {name} is held by pid {pid}, which is no "
                                   f"daemon process of this run")
        out[name] = 0 if pid is None else pids[pid]
    return out


def goal_state(g: Mapping[str, Any]) -> G:
    if g["exit"] == "success":
        return G.DONE_OK
    if g["exit"] != "busy":
        return G.DONE_FAIL
    if g["destroyed"]:
        return G.ABSENT
    table = DRV_STATES if g["kind"] == "drv" else SUBST_STATES
    st = table.get(g["state"])
    if st is None:
        raise AbstractionError(f"{g['kind']} goal {g['name']} is in state {g['state']!r}, "
                               f"which the model has no state for", prop="refinement")
    if st is G.TRY and "any" in g["wait"]:
        return G.WAIT_ANY
    if st is G.TRY and "slot" in g["wait"]:
        return G.WAIT_SLOT
    return st


def _holder_kind(g: Mapping[str, Any]) -> H:
    if g["exit"] == "busy":
        return H.BUILD if g["kind"] == "drv" else H.SUBST
    return H.KEPT_TOP if g["pinned"] else H.KEPT


def abstract(scenario: Scenario, lay: Layout, obs: Observation) -> State:
    """The model state of the real system (see the module docstring)."""
    s = [0] * len(lay.names)
    claims: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for p, proc in enumerate(scenario.processes):
        status = obs.statuses[p + 1]
        s[lay.index[("status", p)]] = Status[status]
        if status != "RUNNING":
            continue
        latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        for made in obs.goals.get(p + 1, []):
            latest[(made["kind"], made["name"])] = made
            for o in made["locks"]:
                claims.setdefault(o, []).append((p + 1, made))
        closure = lay.closure_of(p)
        for kind, name in latest:
            if kind == "drv" and name not in closure or kind == "subst" and name not in lay.subst_paths[p]:
                raise AbstractionError(f"P{p + 1} made a {kind} goal for {name}, which the scenario "
                                       f"does not let it make", prop="refinement")
        for d in closure:
            g = latest.get(("drv", d))
            st = G.ABSENT if g is None else goal_state(g)
            s[lay.index[("goal", p, d)]] = st
            live = g is not None and g["exit"] == "busy" and not g["destroyed"]
            ws = {tuple(w) for w in g["waitees"]} if g is not None and live else set()
            for w in waitees(scenario, d):
                s[lay.index[("waits", p, d, w)]] = int(w in ws)
            if waitees(scenario, d):
                s[lay.index[("failed", p, d)]] = int(live and g is not None and g["failed"] > 0)
        for o in lay.subst_paths[p]:
            g = latest.get(("subst", o))
            s[lay.index[("subst", p, o)]] = G.ABSENT if g is None else goal_state(g)
        for d in proc.request:
            tops = [t for t in obs.goals.get(p + 1, []) if t["kind"] == "drv" and t["name"] == d and t["pinned"]]
            top = Top.PENDING
            if tops:
                top = {"busy": Top.PENDING, "success": Top.OK}.get(tops[-1]["exit"], Top.FAILED)
            s[lay.index[("top", p, d)]] = top
    for o in scenario.paths:
        holder = obs.locks.get(o, 0)
        mine = [(q, g) for q, g in claims.get(o, []) if not g["destroyed"]]
        if len(mine) > 1:
            who = ", ".join(f"P{q} {g['kind']} goal {g['name']}" for q, g in mine)
            raise AbstractionError(f"lock_exclusive: the lock of {o} is claimed by {len(mine)} goals at "
                                   f"once ({who}); the kernel names P{holder}" if holder else
                                   f"lock_exclusive: the lock of {o} is claimed by {who}")
        if mine and mine[0][0] != holder:
            q, g = mine[0]
            raise AbstractionError(
                f"lock_exclusive: P{q}'s {g['kind']} goal {g['name']} believes it holds the lock of {o}, "
                f"but the kernel's lock table names {'P' + str(holder) if holder else 'nobody'} on "
                f"{o}.lock (a lock on a deleted inode excludes nobody)")
        if holder and not mine:
            raise AbstractionError(f"P{holder} holds the lock of {o} in the kernel's lock table, "
                                   f"but none of its goals claims it", prop="refinement")
        s[lay.index[("lock", o)]] = holder
        s[lay.index[("holder", o)]] = _holder_kind(mine[0][1]) if holder else H.NONE
        s[lay.index[("valid", o)]] = int(o in obs.valid)
    return tuple(s)


def lock_name(store_path: str) -> str:
    return os.path.basename(store_path).split("-", 1)[1]
