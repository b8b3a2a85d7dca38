"""The wait-for graph of real daemon processes: who polls which lock, and who holds it.

Two sources, neither trusting the other:

* the probe log (lockstep/impl/probe.py): a goal whose latest report is ``LockFailed``
  / ``SubstLockFailed`` is polling for the paths in ``blocked_paths``; a process whose
  latest report is ``RequestDone`` waits for nothing;
* the kernel's lock table: ``F_GETLK`` on each ``<path>.lock`` names the holding pid
  (``pathlocks.lock_holder_pid``), mapped to the process number through the reports.

An edge P -> Q means "P polls a lock that Q holds". A cycle is a deadlock: every lock in
it is held by a process that is itself polling (lock-polling never blocks, so this is
the livelock-style deadlock of Guix bug 31785).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockstep.impl.pathlocks import lock_holder_pid


@dataclass
class WaitForGraph:
    # (waiter pid, store path, holder pid or None)
    edges: list[tuple[int, str, int | None]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # pid -> "P<proc>"
    locks: dict[str, int] = field(default_factory=dict)  # lock file name -> holder pid

    def name(self, pid: int | None) -> str:
        if pid is None:
            return "nobody"
        return f"{self.names.get(pid, '?')} (pid {pid})"

    def cycle(self) -> list[int] | None:
        """A list of pids p0, p1, ..., p0 in which each waits for the next; None if acyclic."""
        succ: dict[int, set[int]] = {}
        for waiter, _path, holder in self.edges:
            if holder is not None and holder != waiter:
                succ.setdefault(waiter, set()).add(holder)
        for start in sorted(succ):
            path = [start]
            seen = {start}
            node = start
            while True:
                nxt = sorted(succ.get(node, ()))
                if not nxt:
                    break
                node = nxt[0]
                if node in seen:
                    return path[path.index(node):] + [node]
                seen.add(node)
                path.append(node)
        return None

    def format(self) -> str:
        lines = ["wait-for graph (probe reports + kernel lock table):"]
        for waiter, path, holder in sorted(self.edges, key=lambda e: (self.names.get(e[0], ""), e[1])):
            lines.append(f"  {self.name(waiter)} polls {path_name(path)}: lock held by {self.name(holder)}")
        lines.append("kernel lock table:")
        for lock, pid in sorted(self.locks.items()):
            lines.append(f"  {lock}: {self.name(pid)}")
        cyc = self.cycle()
        lines.append("cycle: " + (" -> ".join(self.names.get(p, str(p)) for p in cyc) if cyc else "none"))
        return "\n".join(lines)


def path_name(path: str) -> str:
    """`/store/<hash>-name` (or a lock file's base name) -> `name`."""
    return os.path.basename(path).split("-", 1)[1]


def read_reports(log_path: str) -> list[dict[str, Any]]:
    if not os.path.exists(log_path):
        return []
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def build_graph(reports: Iterable[dict[str, Any]], store_dir: str) -> WaitForGraph:
    g = WaitForGraph()
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    finished: set[int] = set()
    for r in reports:
        pid = r["pid"]
        g.names[pid] = f"P{r['proc']}" if r.get("proc") is not None else f"pid{pid}"
        if r["action"] == "RequestStart":
            finished.discard(pid)
            for key in [k for k in latest if k[0] == pid]:
                del latest[key]
        elif r["action"] in ("RequestDone", "WorkerStuck", "SubstitutesFailed"):
            finished.add(pid)
        goal = r.get("drv") or r.get("path")
        if goal is not None and r["action"] != "ReleaseKept":
            latest[(pid, ("d:" if "drv" in r else "p:") + goal)] = r
    for (pid, _goal), r in sorted(latest.items()):
        if pid in finished or r["action"] not in ("LockFailed", "SubstLockFailed"):
            continue
        for path in r.get("blocked_paths", []):
            g.edges.append((pid, path, lock_holder_pid(path + ".lock")))
    for entry in sorted(os.listdir(store_dir)):
        if entry.endswith(".lock"):
            holder = lock_holder_pid(os.path.join(store_dir, entry))
            if holder is not None:
                g.locks[path_name(entry)] = holder
    return g
