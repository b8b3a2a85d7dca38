"""`lockstep daemon` and `lockstep build`: run the daemon, and build through it.

`add_daemon_parsers(subparsers)` adds both subcommands; `run_daemon_command(args)` runs
the chosen one and returns the exit status:

* ``daemon``: serve until SIGTERM/SIGINT (0);
* ``build``: 0 when every path was realised (the output paths are printed, one a
  line), else the daemon's error status (100 build failure, 101 timeout, 1 other) with
  its message on stderr; 2 for bad usage or an unreachable daemon.

The socket comes from ``--socket`` or ``LOCKSTEP_DAEMON_SOCKET``; store and state
directories from ``--store-dir``/``--state-dir`` or the store command's variables.
"""

from __future__ import annotations

import argparse
import os
import sys

from lockstep.impl.client import BM_CHECK, BM_NORMAL, BM_REPAIR, Client
from lockstep.impl.daemon import serve, settings_from_args
from lockstep.impl.derivations import parse
from lockstep.impl.settings import POLICIES
from lockstep.impl.worker_protocol import DaemonError

SOCKET_ENV = "LOCKSTEP_DAEMON_SOCKET"
STORE_ENV = "LOCKSTEP_STORE_DIR"
STATE_ENV = "LOCKSTEP_STATE_DIR"
MODES = {"normal": BM_NORMAL, "repair": BM_REPAIR, "check": BM_CHECK}


def add_daemon_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = subparsers.add_parser("daemon", help="run the store daemon on a Unix socket (one process per client)")
    d.add_argument("--socket", help=f"socket path (default: ${SOCKET_ENV})")
    d.add_argument("--store-dir", help=f"store directory (default: ${STORE_ENV})")
    d.add_argument("--state-dir", help=f"state directory (default: ${STATE_ENV})")
    d.add_argument("--substitute-cache", help="local binary cache directory to substitute from")
    d.add_argument("--poll-interval", type=float, help="default build-poll-interval in seconds (5)")
    d.add_argument("--policy", choices=POLICIES, help="default lock release policy (guix)")
    b = subparsers.add_parser("build", help="build derivations (or substitute paths) through the daemon")
    b.add_argument("paths", nargs="+", help=".drv paths (optionally drv!out,...) or store paths")
    b.add_argument("--socket", help=f"daemon socket (default: ${SOCKET_ENV})")
    b.add_argument("--max-jobs", type=int, default=1)
    b.add_argument("--keep-going", action="store_true")
    b.add_argument("--fallback", action="store_true", help="build when a substitute fails")
    b.add_argument("--no-substitutes", action="store_true")
    b.add_argument("--poll-interval", type=float)
    b.add_argument("--timeout", type=float, help="build timeout in seconds")
    b.add_argument("--max-silent-time", type=float)
    b.add_argument("--policy", choices=POLICIES)
    b.add_argument("--proc", type=int, help="this client's process number in probe reports")
    b.add_argument("--mode", choices=sorted(MODES), default="normal")
    b.add_argument("-v", "--verbose", action="store_true", help="print the build log on stderr")


def _need(value: str | None, env: str, what: str) -> str:
    value = value or os.environ.get(env)
    if not value:
        raise SystemExit(f"lockstep: no {what}: give --{what} or set ${env}")
    return value


def run_daemon_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "daemon":
            return serve(_need(args.socket, SOCKET_ENV, "socket"), _need(args.store_dir, STORE_ENV, "store-dir"),
                         _need(args.state_dir, STATE_ENV, "state-dir"), settings_from_args(args))
        return _build(args)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2


def _build(args: argparse.Namespace) -> int:
    def show(text: bytes) -> None:
        sys.stderr.write(text.decode("utf-8", "replace"))

    on_log = show if args.verbose else None
    try:
        client = Client(_need(args.socket, SOCKET_ENV, "socket"), on_log=on_log)
    except OSError as e:
        print(f"lockstep build: cannot connect to the daemon: {e}", file=sys.stderr)
        return 2
    with client:
        try:
            client.set_options(keep_going=args.keep_going, fallback=args.fallback, max_jobs=args.max_jobs,
                               use_substitutes=not args.no_substitutes, poll_interval=args.poll_interval,
                               build_timeout=args.timeout, silent_time=args.max_silent_time,
                               policy=args.policy, proc=args.proc)
            client.build_paths(args.paths, MODES[args.mode])
        except DaemonError as e:
            print(f"lockstep build: {e.message}", file=sys.stderr)
            return e.status
    for p in args.paths:
        path = p.split("!", 1)[0]
        if path.endswith(".drv"):
            for out in parse(open(path).read(), path).outputs.values():
                print(out.path)
        else:
            print(path)
    return 0
