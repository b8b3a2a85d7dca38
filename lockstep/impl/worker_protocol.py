"""The worker protocol's constants, handshake and stderr framing (worker-protocol.hh).

Reference section 11. A client connection is one daemon process. The handshake:

1. client: ``WORKER_MAGIC_1``;
2. daemon: ``WORKER_MAGIC_2``, its ``PROTOCOL_VERSION``;
3. client: its version (the majors must agree; the client checks this);
4. client, if the *other side's* minor is at least 14: an affinity flag, then a CPU
   number if the flag is set;
5. client, if that minor is at least 11: a reserve-space flag (otherwise it is true);
6. daemon: opens the store, then ``STDERR_LAST`` on success or ``STDERR_ERROR`` with the
   message (and a status when the client's minor is at least 8).

After that, each operation is its op code and arguments from the client; the daemon may
send any number of ``STDERR_NEXT`` (log text), ``STDERR_WRITE`` (data for the client's
sink) and ``STDERR_READ`` (a request for up to N bytes of the client's source) frames,
and ends the operation with ``STDERR_LAST`` followed by the result, or ``STDERR_ERROR``.

Each side checks the minor version of the *peer* before sending or expecting an
optional field, so an old client and a new daemon agree. Only this wire format is here;
the daemon and the client operations build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from lockstep.impl.serialise import (
    SerialisationError,
    Sink,
    Source,
    read_bool,
    read_bytes,
    read_int,
    read_string,
    write_bool,
    write_bytes,
    write_int,
    write_string,
)

WORKER_MAGIC_1 = 0x6E697863  # "nixc", sent by the client
WORKER_MAGIC_2 = 0x6478696F  # "dxio", sent by the daemon
PROTOCOL_VERSION = 0x163  # as guix/store.scm's %protocol-version; 0x164 adds op 81


def protocol_major(version: int) -> int:
    return version & 0xFF00


def protocol_minor(version: int) -> int:
    return version & 0x00FF


class Op(IntEnum):
    """Worker op codes (``wop*``). Codes 0, 2, 15, 17 and 36-79 are unused."""

    IS_VALID_PATH = 1
    HAS_SUBSTITUTES = 3
    QUERY_PATH_HASH = 4
    QUERY_REFERENCES = 5
    QUERY_REFERRERS = 6
    ADD_TO_STORE = 7
    ADD_TEXT_TO_STORE = 8
    BUILD_PATHS = 9
    ENSURE_PATH = 10
    ADD_TEMP_ROOT = 11
    ADD_INDIRECT_ROOT = 12
    SYNC_WITH_GC = 13
    FIND_ROOTS = 14
    EXPORT_PATH = 16
    QUERY_DERIVER = 18
    SET_OPTIONS = 19
    COLLECT_GARBAGE = 20
    QUERY_SUBSTITUTABLE_PATH_INFO = 21
    QUERY_DERIVATION_OUTPUTS = 22
    QUERY_ALL_VALID_PATHS = 23
    QUERY_FAILED_PATHS = 24
    CLEAR_FAILED_PATHS = 25
    QUERY_PATH_INFO = 26
    IMPORT_PATHS = 27
    QUERY_DERIVATION_OUTPUT_NAMES = 28
    QUERY_PATH_FROM_HASH_PART = 29
    QUERY_SUBSTITUTABLE_PATH_INFOS = 30
    QUERY_VALID_PATHS = 31
    QUERY_SUBSTITUTABLE_PATHS = 32
    QUERY_VALID_DERIVERS = 33
    OPTIMISE_STORE = 34
    VERIFY_STORE = 35
    BUILTIN_BUILDERS = 80
    SUBSTITUTE_URLS = 81  # protocol 0x164 and later only


_FIRST_VERSION: dict[Op, int] = {Op.SUBSTITUTE_URLS: 0x164}


class Stderr(IntEnum):
    """Frames the daemon sends while an operation runs."""

    NEXT = 0x6F6C6D67  # log text follows
    READ = 0x64617461  # the daemon wants up to N bytes of the client's data
    WRITE = 0x64617416  # data for the client's sink follows
    LAST = 0x616C7473  # the operation succeeded; its result follows
    ERROR = 0x63787470  # the operation failed: message (and status) follow


class ProtocolError(SerialisationError):
    """The peer broke the protocol (bad magic, version, op code or frame)."""


class DaemonError(Exception):
    """The daemon reported an error with ``STDERR_ERROR``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(f"daemon error (status {status}): {message}")
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ClientHello:
    """What the daemon learns from the handshake."""

    client_version: int
    affinity: int | None  # CPU the client asked the daemon to pin itself to
    reserve_space: bool


def read_op(source: Source, version: int = PROTOCOL_VERSION) -> Op:
    """An op code from a client speaking `version`; unused or too new codes are errors."""
    code = read_int(source, "op code")
    try:
        op = Op(code)
    except ValueError:
        raise ProtocolError(f"invalid operation {code}: not a worker op code") from None
    if version < _FIRST_VERSION.get(op, 0):
        raise ProtocolError(
            f"invalid operation {code} ({op.name}): needs protocol {_FIRST_VERSION[op]:#x}, "
            f"the client speaks {version:#x}"
        )
    return op


def write_op(sink: Sink, op: Op) -> None:
    write_int(sink, op)


# --- handshake -------------------------------------------------------------------------


def server_handshake(source: Source, sink: Sink) -> ClientHello:
    """Daemon side, steps 1-5. The caller opens the store and then calls
    :func:`write_last` or :func:`write_error` (step 6), and flushes."""
    magic = read_int(source, "client magic")
    if magic != WORKER_MAGIC_1:
        raise ProtocolError(f"protocol mismatch: client magic {magic:#x}, "
                            f"expected {WORKER_MAGIC_1:#x}")
    write_int(sink, WORKER_MAGIC_2)
    write_int(sink, PROTOCOL_VERSION)
    sink.flush()
    client_version = read_int(source, "client protocol version")
    affinity = None
    if protocol_minor(client_version) >= 14 and read_bool(source, "affinity flag"):
        affinity = read_int(source, "affinity CPU")
    reserve_space = True
    if protocol_minor(client_version) >= 11:
        reserve_space = read_bool(source, "reserve-space flag")
    return ClientHello(client_version, affinity, reserve_space)


def client_handshake(
    source: Source,
    sink: Sink,
    affinity: int | None = None,
    reserve_space: bool = False,
    version: int = PROTOCOL_VERSION,
    on_log: Callable[[bytes], None] | None = None,
) -> int:
    """Client side, steps 1-6; returns the daemon's version. Raises :class:`DaemonError`
    if the daemon could not open its store, :class:`ProtocolError` on a bad peer."""
    write_int(sink, WORKER_MAGIC_1)
    sink.flush()
    magic = read_int(source, "daemon magic")
    if magic != WORKER_MAGIC_2:
        raise ProtocolError(f"protocol mismatch: daemon magic {magic:#x}, "
                            f"expected {WORKER_MAGIC_2:#x}")
    daemon_version = read_int(source, "daemon protocol version")
    if protocol_major(daemon_version) != protocol_major(version):
        raise ProtocolError(
            f"daemon protocol version {daemon_version:#x} not supported: "
            f"this client speaks major {protocol_major(version):#x}"
        )
    write_int(sink, version)
    if protocol_minor(daemon_version) >= 14:
        write_bool(sink, affinity is not None)
        if affinity is not None:
            write_int(sink, affinity)
    if protocol_minor(daemon_version) >= 11:
        write_bool(sink, reserve_space)
    sink.flush()
    process_stderr(source, sink, daemon_version, on_log=on_log)
    return daemon_version


# --- stderr framing (daemon side) ------------------------------------------------------


def write_next(sink: Sink, text: str | bytes) -> None:
    """Log text for the client (not flushed: the caller decides when)."""
    write_int(sink, Stderr.NEXT)
    write_string(sink, text)


def write_data(sink: Sink, data: bytes) -> None:
    """``STDERR_WRITE``: data for the client's sink."""
    write_int(sink, Stderr.WRITE)
    write_bytes(sink, data)


def request_data(source: Source, sink: Sink, max_len: int) -> bytes:
    """``STDERR_READ``: ask the client for up to `max_len` bytes of its source and read
    them (an empty answer means its source is exhausted)."""
    write_int(sink, Stderr.READ)
    write_int(sink, max_len)
    sink.flush()
    data = read_bytes(source, "client data", max_len)
    return data


def write_last(sink: Sink) -> None:
    """End the current operation successfully (its result follows)."""
    write_int(sink, Stderr.LAST)


def write_error(sink: Sink, message: str, status: int, client_version: int) -> None:
    """End the current operation with an error; `status` goes only to minor >= 8 clients."""
    write_int(sink, Stderr.ERROR)
    write_string(sink, message)
    if protocol_minor(client_version) >= 8:
        if status == 0:
            raise ValueError("an error status must be non-zero (the client reads it as one)")
        write_int(sink, status)


# --- stderr framing (client side) ------------------------------------------------------


def process_stderr(
    source: Source,
    sink: Sink,
    daemon_version: int,
    on_log: Callable[[bytes], None] | None = None,
    on_data: Callable[[bytes], None] | None = None,
    provide_data: Callable[[int], bytes] | None = None,
) -> None:
    """Handle frames until ``STDERR_LAST`` (return) or ``STDERR_ERROR`` (raise)."""
    while True:
        code = read_int(source, "stderr frame code")
        if code == Stderr.NEXT:
            text = read_bytes(source, "log text")
            if on_log is not None:
                on_log(text)
        elif code == Stderr.WRITE:
            data = read_bytes(source, "STDERR_WRITE data")
            if on_data is None:
                raise ProtocolError("daemon sent STDERR_WRITE, but this operation has no sink")
            on_data(data)
        elif code == Stderr.READ:
            max_len = read_int(source, "STDERR_READ length")
            if provide_data is None:
                raise ProtocolError("daemon sent STDERR_READ, but this operation has no source")
            data = provide_data(max_len)
            if len(data) > max_len:
                raise ValueError(f"provide_data returned {len(data)} bytes, more than {max_len}")
            write_bytes(sink, data)
            sink.flush()
        elif code == Stderr.LAST:
            return
        elif code == Stderr.ERROR:
            message = read_string(source, "error message")
            status = read_int(source, "error status") if protocol_minor(daemon_version) >= 8 else 1
            raise DaemonError(message, status)
        else:
            raise ProtocolError(f"got unknown message type {code:#x} from the daemon")
