"""Fixtures for daemon tests: each test gets its own store, state dir, binary cache and daemon.

The daemon runs as a real process (``python -m lockstep.impl.daemon``) with a probe log,
so tests read every daemon child's reports (lockstep/impl/probe.py) after the fact.
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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lockstep.impl.client import Client, shell_derivation
from lockstep.impl.store_api import StoreDir


@dataclass
class Daemon:
    root: str
    socket: str
    store_dir: str
    state_dir: str
    cache: str
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    clients: list[Client] = field(default_factory=list)

    @property
    def store(self) -> StoreDir:
        return StoreDir(self.store_dir)

    def client(self, **options: Any) -> Client:
        c = Client(self.socket)
        self.clients.append(c)
        options.setdefault("poll_interval", 0.05)
        c.set_options(**options)
        return c

    def reports(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def actions(self, proc: int | None = None) -> list[tuple[str, str]]:
        """(action, drv-or-path name) of every goal report, in log order."""
        return [(r["action"], r.get("drv") or r.get("path") or "") for r in self.reports()
                if proc is None or r["proc"] == proc]

    def add(self, c: Client, name: str, script: str, inputs: dict[str, str] | None = None,
            **kw: Any) -> str:
        """Add a shell derivation through the daemon; returns its .drv path."""
        drv = shell_derivation(self.store, name, script, inputs, **kw)
        return c.add_derivation(drv, name)

    def output(self, drv_path: str, name: str = "out") -> str:
        from lockstep.impl.derivations import parse
        return parse(open(drv_path).read(), drv_path).outputs[name].path

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()


def start_daemon(root: str, env: dict[str, str] | None = None) -> Daemon:
    d = Daemon(root, os.path.join(root, "sock"), os.path.join(root, "store"),
               os.path.join(root, "state"), os.path.join(root, "cache"), os.path.join(root, "probe.log"))
    full_env = {**os.environ, "LOCKSTEP_PROBE_LOG": d.log_path, **(env or {})}
    full_env.pop("LOCKSTEP_CONTROL", None)
    d.proc = subprocess.Popen(
        [sys.executable, "-m", "lockstep.impl.daemon", "--socket", d.socket, "--store-dir", d.store_dir,
         "--state-dir", d.state_dir, "--substitute-cache", d.cache], env=full_env)
    while True:  # wait until it accepts (not a timing assertion: it either comes up or the test fails)
        if d.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {d.proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(d.socket)
            return d
        except OSError:
            time.sleep(0.02)


@pytest.fixture
def daemon_root() -> Iterator[str]:
    # Unix socket paths are limited to ~107 bytes, so not under pytest's long tmp_path.
    root = tempfile.mkdtemp(prefix="lockstep-d-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(daemon_root: str) -> Iterator[Daemon]:
    d = start_daemon(daemon_root)
    yield d
    d.stop()


def make_writable(path: str | Path) -> None:
    for r, dirs, _files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(r, name), 0o755)
