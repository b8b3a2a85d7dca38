"""The daemon (Guix nix-daemon.cc): a Unix socket, one forked process per client.

``serve`` listens on a socket; for every connection it forks a child, which starts a
new session and runs ``process_connection``: the handshake (worker_protocol.py), a
``LocalStore`` of its own, then one operation after another. Settings (set-options) are
the child's own. The parent only accepts and reaps; it never opens the store after
creating it, so the children share nothing but files, locks and SQLite.

Errors. Reading an operation's arguments is separate from performing it. Input that is
malformed or ends early (``SerialisationError``) cannot be resynchronised: the child
sends ``STDERR_ERROR`` if it can and ends the connection; the store is untouched because
nothing was performed. An error while performing (a bad path, a failed build) is sent
as ``STDERR_ERROR`` and the connection goes on, as upstream. ``WorkerStuck`` ends the
child (upstream aborts).

Deviation: on SIGTERM the parent SIGKILLs its children before exiting (upstream leaves
them running), so that stopping a test's daemon stops everything it started.

The probe and the clock (probe.py, clock.py) come from the environment
(``LOCKSTEP_PROBE_LOG``, ``LOCKSTEP_CONTROL``, ``LOCKSTEP_PROC``) and from the
``lockstep-*`` options of set-options; with a controller the clock is virtual.
"""

from __future__ import annotations

import argparse
import copy
import os
import select
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

from lockstep.impl import faults
from lockstep.impl import worker_protocol as wp
from lockstep.impl.archive import parse_nar, write_tree
from lockstep.impl.clock import Clock, VirtualClock
from lockstep.impl.gc import collect_garbage
from lockstep.impl.local_store import LocalStore
from lockstep.impl.probe import ControlLost, Probe, make_probe
from lockstep.impl.serialise import (
    SerialisationError,
    SocketSink,
    SocketSource,
    Source,
    read_bytes,
    read_int,
    read_long,
    read_string,
    read_string_set,
    write_int,
    write_string,
    write_string_set,
)
from lockstep.impl.settings import Settings
from lockstep.impl.worker import (
    BuildFailedError,
    ClientGone,
    NoBuildSlots,
    Worker,
    WorkerStuck,
    build_paths,
    ensure_path,
)

GC_RETURN_DEAD, GC_DELETE_DEAD = 1, 2
MAX_NAR_STRING = 1 << 30

AFTER_OP = faults.declare("daemon.op.after-perform", "process_connection: an op was performed, its reply not yet sent")


def read_nar(source: Source) -> bytes:
    """Copy one NAR from the stream, walking its grammar to find where it ends."""
    parts: list[bytes] = []

    def s(what: str = "NAR string") -> bytes:
        data = read_bytes(source, what, MAX_NAR_STRING)
        parts.append(len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8))
        return data

    def expect(token: bytes) -> None:
        got = s(f"NAR token {token!r}")
        if got != token:
            raise SerialisationError(f"bad archive: expected {token!r}, got {got[:40]!r}")

    def node() -> None:
        expect(b"(")
        expect(b"type")
        kind = s("NAR node type")
        if kind == b"regular":
            tag = s()
            if tag == b"executable":
                expect(b"")
                tag = s()
            if tag != b"contents":
                raise SerialisationError(f"bad archive: expected 'contents', got {tag[:40]!r}")
            s("file contents")
            expect(b")")
        elif kind == b"symlink":
            expect(b"target")
            s("symlink target")
            expect(b")")
        elif kind == b"directory":
            while True:
                tag = s()
                if tag == b")":
                    break
                if tag != b"entry":
                    raise SerialisationError(f"bad archive: expected 'entry' or ')', got {tag[:40]!r}")
                expect(b"(")
                expect(b"name")
                s("entry name")
                expect(b"node")
                node()
                expect(b")")
        else:
            raise SerialisationError(f"bad archive: unknown node type {kind[:40]!r}")

    expect(b"nix-archive-1")
    node()
    return b"".join(parts)


class Connection:
    """One client's daemon process: its store, settings, probe and clock."""

    def __init__(self, sock: socket.socket, store_dir: str, state_dir: str, defaults: Settings) -> None:
        self.sock = sock
        self.source = SocketSource(sock)
        self.sink = SocketSink(sock)
        self.store_dir, self.state_dir = store_dir, state_dir
        self.settings = copy.copy(defaults)
        self.version = wp.PROTOCOL_VERSION
        self.store: LocalStore | None = None
        self.probe: Probe = Probe()
        self.clock: Clock = Clock()
        self._probe_key: tuple[object, ...] = ()
        self._refresh_probe()

    def _refresh_probe(self) -> None:
        s = self.settings
        key = (s.proc, s.probe_log, s.control)
        if key == self._probe_key:
            return
        self.probe.close()
        self._probe_key = key
        self.probe = make_probe(s.proc, s.probe_log, s.control)
        self.clock = VirtualClock(self.probe) if s.control else Clock()

    def log(self, text: str) -> None:
        wp.write_next(self.sink, text)
        self.sink.flush()

    def serve(self) -> None:
        hello = wp.server_handshake(self.source, self.sink)
        self.version = hello.client_version
        try:
            self.store = LocalStore(self.store_dir, self.state_dir)
        except Exception as e:
            wp.write_error(self.sink, f"cannot open the store: {e}", 1, self.version)
            self.sink.flush()
            return
        wp.write_last(self.sink)
        self.sink.flush()
        while True:
            if self.source.buffered() == 0:
                try:
                    if not self.sock.recv(1, socket.MSG_PEEK):
                        return  # the client closed the connection between operations
                except ConnectionResetError:
                    return
            op = wp.read_op(self.source, self.version)
            args = self.read_args(op)
            try:
                reply = self.perform(op, args)
            except (ClientGone, ControlLost):
                raise
            except WorkerStuck as e:
                wp.write_error(self.sink, str(e), 1, self.version)
                self.sink.flush()
                raise
            except BuildFailedError as e:
                wp.write_error(self.sink, str(e), e.status or 1, self.version)
                self.sink.flush()
                continue
            except Exception as e:
                wp.write_error(self.sink, f"{type(e).__name__}: {e}" if not str(e) else str(e), 1, self.version)
                self.sink.flush()
                continue
            faults.point(AFTER_OP)
            wp.write_last(self.sink)
            reply()
            self.sink.flush()

    # -- reading arguments (errors here end the connection) -------------------------

    def read_args(self, op: wp.Op) -> tuple[object, ...]:
        src, minor = self.source, wp.protocol_minor(self.version)
        match op:
            case (wp.Op.IS_VALID_PATH | wp.Op.QUERY_PATH_INFO | wp.Op.QUERY_REFERENCES | wp.Op.QUERY_REFERRERS
                  | wp.Op.QUERY_DERIVATION_OUTPUTS | wp.Op.ENSURE_PATH | wp.Op.ADD_TEMP_ROOT
                  | wp.Op.ADD_INDIRECT_ROOT | wp.Op.QUERY_DERIVER):
                return (read_string(src, "store path"),)
            case wp.Op.QUERY_VALID_PATHS:
                return (read_string_set(src, "paths"),)
            case wp.Op.ADD_TEXT_TO_STORE:
                return (read_string(src, "name"), read_bytes(src, "text"), read_string_set(src, "references"))
            case wp.Op.ADD_TO_STORE:
                name = read_string(src, "base name")
                fixed = read_int(src, "fixed flag") == 1
                recursive = read_int(src, "recursive flag") == 1
                algo = read_string(src, "hash algorithm")
                if not fixed:
                    algo, recursive = "sha256", True
                return (name, recursive, algo, read_nar(src))
            case wp.Op.BUILD_PATHS:
                paths = read_string_set(src, "paths")
                mode = read_int(src, "build mode") if minor >= 15 else 0
                return (paths, mode)
            case wp.Op.SYNC_WITH_GC | wp.Op.QUERY_ALL_VALID_PATHS:
                return ()
            case wp.Op.SET_OPTIONS:
                return (self._read_options(src, minor),)
            case wp.Op.COLLECT_GARBAGE:
                action = read_int(src, "gc action")
                paths = read_string_set(src, "paths to delete")
                ignore_liveness = read_int(src, "ignore liveness") != 0
                max_freed = read_long(src, "max freed")
                for i in range(3):
                    read_int(src, f"obsolete gc field {i}")
                return (action, paths, ignore_liveness, max_freed)
            case _:
                raise wp.ProtocolError(f"operation {op.name} ({op.value}) is not supported by this daemon")

    @staticmethod
    def _read_options(src: Source, minor: int) -> list[tuple[str, str]]:
        opts: list[tuple[str, str]] = []
        read_int(src, "keep-failed")
        opts.append(("keep-going", "true" if read_int(src, "keep-going") else "false"))
        opts.append(("build-fallback", "true" if read_int(src, "fallback") else "false"))
        read_int(src, "verbosity")
        opts.append(("build-max-jobs", str(read_int(src, "max jobs"))))
        opts.append(("build-max-silent-time", str(read_int(src, "max silent time"))))
        if minor >= 2:
            read_int(src, "use build hook")
        if minor >= 4:
            read_int(src, "build verbosity")
            read_int(src, "log type")
            read_int(src, "print build trace")
        if minor >= 6:
            read_int(src, "build cores")
        if minor >= 10:
            opts.append(("build-use-substitutes", "true" if read_int(src, "use substitutes") else "false"))
        if minor >= 12:
            for _ in range(read_int(src, "override count")):
                opts.append((read_string(src, "override name"), read_string(src, "override value")))
        return opts

    # -- performing (errors here are reported and the connection goes on) ------------

    def _worker(self) -> Worker:
        assert self.store is not None
        return Worker(self.store, self.settings, self.probe, self.clock, self.log, self.sock.fileno())

    def perform(self, op: wp.Op, args: tuple[object, ...]) -> Callable[[], None]:
        store, sink = self.store, self.sink
        assert store is not None

        def ok() -> None:
            write_int(sink, 1)

        match op, args:
            case wp.Op.IS_VALID_PATH, (str() as path,):
                store.store.parse_store_path(path)
                valid = store.is_valid_path(path)
                return lambda: write_int(sink, int(valid))
            case wp.Op.QUERY_VALID_PATHS, (set() as paths,):
                valid_set = store.query_valid_paths(paths)
                return lambda: write_string_set(sink, valid_set)
            case wp.Op.QUERY_ALL_VALID_PATHS, ():
                all_valid = store.query_all_valid_paths()
                return lambda: write_string_set(sink, all_valid)
            case wp.Op.QUERY_PATH_INFO, (str() as path,):
                store.store.parse_store_path(path)
                info = store.query_path_info(path)
                minor = wp.protocol_minor(self.version)

                def path_info() -> None:
                    if minor >= 17:
                        write_int(sink, int(info is not None))
                    elif info is None:
                        raise ValueError(f"path {path!r} is not valid")
                    if info is not None:
                        write_string(sink, info.deriver or "")
                        write_string(sink, info.nar_hash.base16)
                        write_string_set(sink, info.references)
                        write_int(sink, info.registration_time)
                        write_int(sink, info.nar_size or 0)
                return path_info
            case (wp.Op.QUERY_REFERENCES | wp.Op.QUERY_REFERRERS | wp.Op.QUERY_DERIVATION_OUTPUTS
                  | wp.Op.QUERY_DERIVER), (str() as path,):
                store.store.parse_store_path(path)
                if op is wp.Op.QUERY_DERIVER:
                    pi = store.query_path_info(path)
                    deriver = pi.deriver if pi and pi.deriver else ""
                    return lambda: write_string(sink, deriver)
                result = (store.query_references(path) if op is wp.Op.QUERY_REFERENCES
                          else store.query_referrers(path) if op is wp.Op.QUERY_REFERRERS
                          else set(store.query_derivation_outputs(path).values()))
                return lambda: write_string_set(sink, result)
            case wp.Op.ADD_TEXT_TO_STORE, (str() as name, bytes() as text, set() as refs):
                added = store.add_text_to_store(name, text, refs)
                return lambda: write_string(sink, added)
            case wp.Op.ADD_TO_STORE, (str() as name, bool() as recursive, str() as algo, bytes() as nar):
                tree = parse_nar(nar, f"add-to-store {name!r}")
                with tempfile.TemporaryDirectory(prefix="lockstep-add-") as tmp:
                    src = os.path.join(tmp, "x")
                    write_tree(tree, src)
                    added = store.add_to_store(src, recursive, name, algo)
                return lambda: write_string(sink, added)
            case wp.Op.BUILD_PATHS, (set() as paths, int() as mode):
                if mode not in (0, 1, 2):
                    raise ValueError(f"build mode {mode} is unknown; use 0 (normal), 1 (repair) or 2 (check)")
                build_paths(self._worker(), paths, mode)
                return ok
            case wp.Op.ENSURE_PATH, (str() as path,):
                store.store.parse_store_path(path)
                ensure_path(self._worker(), path)
                return ok
            case wp.Op.ADD_TEMP_ROOT, (str() as path,):
                store.store.parse_store_path(path)
                store.add_temp_root(path)
                return ok
            case wp.Op.ADD_INDIRECT_ROOT, (str() as path,):
                store.add_indirect_root(path)
                return ok
            case wp.Op.SYNC_WITH_GC, ():
                store.sync_with_gc()
                return ok
            case wp.Op.SET_OPTIONS, (list() as opts,):
                new = copy.copy(self.settings)
                for name, value in opts:
                    new.set(name, value)
                self.settings = new
                self._refresh_probe()
                return lambda: None
            case wp.Op.COLLECT_GARBAGE, (int() as action, set(), bool() as ignore, int() as max_freed):
                if action not in (GC_RETURN_DEAD, GC_DELETE_DEAD) or ignore:
                    raise ValueError(f"collect-garbage action {action} (ignore-liveness {ignore}) is not "
                                     f"supported; use 1 (return dead) or 2 (delete dead)")
                res = collect_garbage(store, max_freed or None, dry_run=action == GC_RETURN_DEAD)

                def gc_reply() -> None:
                    write_string_set(sink, set(res.deleted))
                    write_int(sink, res.bytes_freed)
                    write_int(sink, 0)
                return gc_reply
        raise wp.ProtocolError(f"operation {op.name}: bad arguments {args!r}")  # pragma: no cover

    def close(self) -> None:
        self.probe.close()
        if self.store is not None:
            self.store.close()


def handle_connection(sock: socket.socket, store_dir: str, state_dir: str, defaults: Settings) -> int:
    """The forked child's whole life; returns its exit status."""
    conn = Connection(sock, store_dir, state_dir, defaults)
    try:
        conn.serve()
        return 0
    except (SerialisationError, ConnectionError) as e:
        try:  # best effort: the client may be gone or may not be listening
            wp.write_error(conn.sink, f"error processing connection: {e}", 1, conn.version)
            conn.sink.flush()
        except Exception:
            pass
        print(f"lockstep daemon[{os.getpid()}]: connection ended: {e}", file=sys.stderr, flush=True)
        return 1
    except (ClientGone, ControlLost) as e:
        print(f"lockstep daemon[{os.getpid()}]: {e}", file=sys.stderr, flush=True)
        return 1
    except WorkerStuck:
        return 134  # as abort()
    except NoBuildSlots:  # pragma: no cover - reported to the client in serve()
        return 1
    finally:
        conn.close()
        sock.close()


def serve(socket_path: str, store_dir: str, state_dir: str, defaults: Settings,
          on_ready: Callable[[], None] | None = None) -> int:
    """daemonLoop: accept and fork until SIGTERM/SIGINT."""
    LocalStore(store_dir, state_dir).close()  # create the store and database once, up front
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    children: set[int] = set()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if on_ready is not None:
        on_ready()
    try:
        while not stopping:
            try:
                ready, _, _ = select.select([listener], [], [], 0.5)
            except InterruptedError:  # pragma: no cover
                continue
            _reap(children)
            if not ready or stopping:
                continue
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    listener.close()
                    os.setsid()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    status = handle_connection(conn, store_dir, state_dir, defaults)
                finally:
                    os._exit(status)
            conn.close()
            children.add(pid)
    finally:
        listener.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass
    return 0


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = Settings.from_environment()
    s.substitute_cache = getattr(args, "substitute_cache", None) or None
    s.poll_interval = getattr(args, "poll_interval", None) or s.poll_interval
    s.policy = getattr(args, "policy", None) or s.policy
    return s


def main(argv: list[str] | None = None) -> int:
    """``python -m lockstep.impl.daemon --socket S --store-dir D --state-dir E``."""
    p = argparse.ArgumentParser(prog="lockstep-daemon")
    p.add_argument("--socket", required=True)
    p.add_argument("--store-dir", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--substitute-cache")
    p.add_argument("--poll-interval", type=float)
    p.add_argument("--policy", choices=("pre-fix", "guix", "release-on-done"))
    args = p.parse_args(argv)
    return serve(args.socket, args.store_dir, args.state_dir, settings_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
