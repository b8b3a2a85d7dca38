"""A minimal controller for tests: every probe report of a daemon process is a pause.

The daemon child connects to the controller's socket (set-options ``lockstep-control``)
and blocks at each report until answered. ``on_report(report)`` runs while the process
is paused, so a test can look at the kernel's lock table or change the store exactly
at that point. Virtual time: ``WaitForInput`` is answered with ``{"advance": t}`` for
the nearest timeout or poll (``advance_to``), else ``{"input": true}``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

Report = dict[str, Any]


class Controller:
    def __init__(self, path: str, on_report: Callable[[Report], None] | None = None) -> None:
        self.path = path
        self.on_report = on_report or (lambda r: None)
        self.reports: list[Report] = []
        self.errors: list[BaseException] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def answer_wait(self, r: Report) -> Report:
        """Virtual time: jump to the nearest deadline or poll; else wait for real input."""
        due = [t for t in (r.get("deadline"), r.get("poll_at")) if t is not None]
        if due:
            return {"advance": min(due)}
        return {"input": True}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    report: Report = json.loads(line)
                    self.reports.append(report)
                    reply: Report = {}
                    try:
                        if report["action"] == "WaitForInput":
                            reply = self.answer_wait(report)
                        else:
                            self.on_report(report)
                    except BaseException as e:  # noqa: B036 - surfaced by the test
                        self.errors.append(e)
                    conn.sendall((json.dumps(reply) + "\n").encode())

    def actions(self) -> list[tuple[str, str]]:
        return [(r["action"], r.get("drv") or r.get("path") or "") for r in self.reports
                if r["action"] != "WaitForInput"]

    def close(self) -> None:
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
