"""The client library (guix/store.scm's role): talk to the daemon over its socket.

``Client(socket_path)`` connects and does the handshake; each method is one worker
operation. Errors the daemon reports raise :class:`~lockstep.impl.worker_protocol.DaemonError`
(``message``, ``status``: 100 permanent build failure, 101 timeout, 1 otherwise).
Log text (``STDERR_NEXT``) goes to ``on_log``.

``set_options`` sends Guix's fixed fields and then overrides (name, value); the
lockstep-specific ones are ``lockstep-policy``, ``lockstep-proc`` (this client's process
number in probe reports), ``lockstep-control``, ``lockstep-probe-log``,
``lockstep-bugs`` and ``lockstep-substitute-cache``.

``shell_derivation`` makes a derivation whose builder is ``/bin/sh -c SCRIPT`` (the
script sees ``$out``, each other output, and each input's output path in
``$in_<name>``), with its output paths computed, ready for ``add_derivation``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from lockstep.impl import derivations as drvs
from lockstep.impl import worker_protocol as wp
from lockstep.impl.archive import nar_bytes
from lockstep.impl.hash import Hash
from lockstep.impl.serialise import (
    SocketSink,
    SocketSource,
    read_int,
    read_long,
    read_string,
    read_string_set,
    write_int,
    write_string,
    write_string_set,
)
from lockstep.impl.store_api import StoreDir

BM_NORMAL, BM_REPAIR, BM_CHECK = 0, 1, 2


class Client:
    def __init__(self, socket_path: str, on_log: Callable[[bytes], None] | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)
        self.source = SocketSource(self.sock)
        self.sink = SocketSink(self.sock)
        self.on_log = on_log
        self.daemon_version = wp.client_handshake(self.source, self.sink, on_log=on_log)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _op(self, op: wp.Op, *strings: str) -> None:
        wp.write_op(self.sink, op)
        for s in strings:
            write_string(self.sink, s)

    def _wait(self) -> None:
        self.sink.flush()
        wp.process_stderr(self.source, self.sink, self.daemon_version, on_log=self.on_log)

    # -- queries ---------------------------------------------------------------------

    def is_valid_path(self, path: str) -> bool:
        self._op(wp.Op.IS_VALID_PATH, path)
        self._wait()
        return read_int(self.source) != 0

    def query_valid_paths(self, paths: Iterable[str]) -> set[str]:
        wp.write_op(self.sink, wp.Op.QUERY_VALID_PATHS)
        write_string_set(self.sink, paths)
        self._wait()
        return read_string_set(self.source)

    def query_path_info(self, path: str) -> dict[str, object] | None:
        self._op(wp.Op.QUERY_PATH_INFO, path)
        self._wait()
        if not read_int(self.source):
            return None
        return {"deriver": read_string(self.source) or None, "nar_hash": read_string(self.source),
                "references": read_string_set(self.source), "registration_time": read_long(self.source),
                "nar_size": read_long(self.source)}

    def query_references(self, path: str) -> set[str]:
        self._op(wp.Op.QUERY_REFERENCES, path)
        self._wait()
        return read_string_set(self.source)

    # -- adding ------------------------------------------------------------------------

    def add_text_to_store(self, name: str, text: str | bytes, references: Iterable[str] = ()) -> str:
        self._op(wp.Op.ADD_TEXT_TO_STORE, name, text if isinstance(text, str) else text.decode("utf-8", "surrogateescape"))
        write_string_set(self.sink, references)
        self._wait()
        return read_string(self.source)

    def add_to_store(self, src: str, recursive: bool = True, name: str | None = None, algo: str = "sha256") -> str:
        self._op(wp.Op.ADD_TO_STORE, name or os.path.basename(os.path.normpath(src)))
        write_int(self.sink, 1)  # fixed (obsolete, always 1 here)
        write_int(self.sink, int(recursive))
        write_string(self.sink, algo)
        self.sink.write(nar_bytes(src))
        self._wait()
        return read_string(self.source)

    def add_derivation(self, drv: drvs.Derivation, name: str) -> str:
        return self.add_text_to_store(name + drvs.DRV_EXTENSION, drvs.unparse(drv), sorted(drv.references()))

    # -- building ----------------------------------------------------------------------

    def build_paths(self, paths: Iterable[str], mode: int = BM_NORMAL) -> None:
        wp.write_op(self.sink, wp.Op.BUILD_PATHS)
        write_string_set(self.sink, paths)
        if wp.protocol_minor(self.daemon_version) >= 15:
            write_int(self.sink, mode)
        self._wait()
        read_int(self.source)

    def ensure_path(self, path: str) -> None:
        self._op(wp.Op.ENSURE_PATH, path)
        self._wait()
        read_int(self.source)

    def add_temp_root(self, path: str) -> None:
        self._op(wp.Op.ADD_TEMP_ROOT, path)
        self._wait()
        read_int(self.source)

    def add_indirect_root(self, path: str) -> None:
        self._op(wp.Op.ADD_INDIRECT_ROOT, path)
        self._wait()
        read_int(self.source)

    def set_options(self, *, keep_going: bool = False, fallback: bool = False, max_jobs: int = 1,
                    max_silent_time: int = 0, use_substitutes: bool = True,
                    overrides: Mapping[str, str] | None = None, poll_interval: float | None = None,
                    build_timeout: float | None = None, silent_time: float | None = None,
                    policy: str | None = None, proc: int | None = None) -> None:
        """wopSetOptions with Guix's fields; float timeouts and lockstep settings go as overrides."""
        extra = dict(overrides or {})
        for key, value in (("build-poll-interval", poll_interval), ("build-timeout", build_timeout),
                           ("build-max-silent-time", silent_time), ("lockstep-policy", policy),
                           ("lockstep-proc", proc)):
            if value is not None:
                extra[key] = str(value)
        minor = wp.protocol_minor(self.daemon_version)
        wp.write_op(self.sink, wp.Op.SET_OPTIONS)
        for value in (0, int(keep_going), int(fallback), 0, max_jobs, max_silent_time):
            write_int(self.sink, value)
        if minor >= 2:
            write_int(self.sink, 0)  # use build hook
        if minor >= 4:
            for value in (0, 0, 0):  # build verbosity, log type, print build trace
                write_int(self.sink, value)
        if minor >= 6:
            write_int(self.sink, 1)  # build cores
        if minor >= 10:
            write_int(self.sink, int(use_substitutes))
        if minor >= 12:
            write_int(self.sink, len(extra))
            for name, value in sorted(extra.items()):
                write_string(self.sink, name)
                write_string(self.sink, value)
        self._wait()

    def collect_garbage(self, dry_run: bool = False, max_freed: int = 0) -> tuple[set[str], int]:
        wp.write_op(self.sink, wp.Op.COLLECT_GARBAGE)
        write_int(self.sink, 1 if dry_run else 2)
        write_string_set(self.sink, [])
        write_int(self.sink, 0)
        write_int(self.sink, max_freed)
        for _ in range(3):
            write_int(self.sink, 0)
        self._wait()
        paths = read_string_set(self.source)
        freed = read_long(self.source)
        read_long(self.source)
        return paths, freed


def shell_derivation(
    store: StoreDir, name: str, script: str, inputs: Mapping[str, str] | None = None,
    outputs: Iterable[str] = ("out",), env: Mapping[str, str] | None = None,
    fixed: tuple[str, Hash] | None = None,
) -> drvs.Derivation:
    """A derivation built by ``/bin/sh -c script``; `inputs` maps input names to .drv paths
    (each input's ``out`` is in ``$in_<name>``); `fixed` = (hash_algo, hash) makes it
    fixed-output. Output paths are computed (input .drv files are read from the store)."""
    inputs = dict(inputs or {})
    full_env = {"PATH": "/bin:/usr/bin", **(env or {})}
    for in_name, in_path in sorted(inputs.items()):
        in_drv = drvs.parse(open(in_path).read(), in_path)
        full_env[f"in_{in_name}"] = in_drv.outputs["out"].path
    outs = {o: drvs.DerivationOutput("") for o in outputs}
    if fixed is not None:
        outs = {"out": drvs.DerivationOutput("", fixed[0], fixed[1].base16)}
    drv = drvs.Derivation(
        outputs=outs, input_drvs={p: frozenset({"out"}) for p in inputs.values()},
        platform="x86_64-linux", builder="/bin/sh", args=("-c", script), env=full_env,
    )

    def load(path: str) -> drvs.Derivation:
        return drvs.parse(open(path).read(), path)

    return drvs.fill_output_paths(drv, name, store, load, {})
