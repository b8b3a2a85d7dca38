"""Malformed or truncated protocol input ends that connection with an error message and
harms neither the daemon nor the store (issue 5)."""

from __future__ import annotations

import socket
import struct

import pytest

from lockstep.impl import worker_protocol as wp
from lockstep.impl.local_store import LocalStore
from lockstep.impl.verify import verify_store

from .conftest import Daemon


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def s(data: bytes) -> bytes:
    return u64(len(data)) + data + b"\0" * (-len(data) % 8)


def handshake() -> bytes:
    return u64(wp.WORKER_MAGIC_1) + u64(wp.PROTOCOL_VERSION) + u64(0) + u64(0)


def exchange(daemon: Daemon, data: bytes, half_close: bool = True) -> bytes:
    """Send raw bytes, then read everything until the daemon closes the connection."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(daemon.socket)
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


CASES = {
    "bad magic": u64(0x12345678),
    "truncated magic": b"\x63\x78",
    "unknown op": handshake() + u64(77),
    "truncated string": handshake() + u64(wp.Op.IS_VALID_PATH) + u64(40) + b"/short",
    "non-zero padding": handshake() + u64(wp.Op.IS_VALID_PATH) + u64(3) + b"abcXXXXX",
    "huge length": handshake() + u64(wp.Op.ADD_TEXT_TO_STORE) + u64(1 << 60),
    "truncated build-paths": handshake() + u64(wp.Op.BUILD_PATHS) + u64(5) + s(b"/x"),
    "garbage NAR": handshake() + u64(wp.Op.ADD_TO_STORE) + s(b"n") + u64(1) + u64(1) + s(b"sha256")
    + s(b"nix-archive-1") + s(b"(") + s(b"type") + s(b"weird"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_ends_the_connection_only(daemon: Daemon, case: str) -> None:
    c = daemon.client()
    drv = daemon.add(c, "ok", "mkdir $out")
    reply = exchange(daemon, CASES[case])
    if case not in ("bad magic", "truncated magic"):
        assert u64(wp.Stderr.ERROR) in reply  # an error message before the connection ends
    # the daemon still serves, the old connection still works, the store is sound
    c.build_paths([drv])
    assert daemon.client().is_valid_path(daemon.output(drv))
    with LocalStore(daemon.store_dir, daemon.state_dir) as store:
        result = verify_store(store, check_contents=True)
    assert result.ok, result.problems


def test_op_error_is_reported_and_the_connection_goes_on(daemon: Daemon) -> None:
    c = daemon.client()
    with pytest.raises(wp.DaemonError):
        c.is_valid_path("/not/in/the/store")
    with pytest.raises(wp.DaemonError):
        c.set_options(overrides={"no-such-setting": "1"})
    assert c.is_valid_path(daemon.store_dir + "/" + "0" * 32 + "-x") is False
