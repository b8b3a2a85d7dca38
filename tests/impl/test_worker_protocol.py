"""Worker-protocol wire pieces (impl/worker_protocol.py, reference s11) over socketpairs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from lockstep.impl import serialise as s
from lockstep.impl import worker_protocol as wp


@dataclass
class End:
    """One end of a socketpair with its buffered source and sink."""

    sock: socket.socket
    source: s.SocketSource = field(init=False)
    sink: s.SocketSink = field(init=False)

    def __post_init__(self) -> None:
        self.source = s.SocketSource(self.sock)
        self.sink = s.SocketSink(self.sock)

    def send_raw(self, data: bytes, close: bool = False) -> None:
        self.sock.sendall(data)
        if close:
            self.sock.shutdown(socket.SHUT_WR)


@contextmanager
def pair() -> Iterator[tuple[End, End]]:
    a, b = socket.socketpair()
    with a, b:
        yield End(a), End(b)


def in_thread(target: Callable[[], object]) -> Callable[[], object]:
    """Run `target` in a thread; the returned function joins it and returns or re-raises."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = target()
        except BaseException as e:  # noqa: BLE001 - handed to the joining test
            box["error"] = e

    thread = threading.Thread(target=run)
    thread.start()

    def join() -> object:
        thread.join(60)
        assert not thread.is_alive(), "peer thread hung"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("value")

    return join


def test_constants_match_the_reference() -> None:
    assert (wp.WORKER_MAGIC_1, wp.WORKER_MAGIC_2) == (0x6E697863, 0x6478696F)
    assert wp.PROTOCOL_VERSION == 0x163
    assert (wp.protocol_major(0x163), wp.protocol_minor(0x163)) == (0x100, 0x63)
    codes = {op.name: int(op) for op in wp.Op}
    assert codes["BUILD_PATHS"] == 9 and codes["QUERY_PATH_INFO"] == 26
    assert codes["BUILTIN_BUILDERS"] == 80 and codes["VERIFY_STORE"] == 35
    unused = {0, 2, 15, 17, *range(36, 80)}
    assert unused.isdisjoint(int(op) for op in wp.Op)
    assert len(wp.Op) == 82 - len(unused)  # every code 1..81 but the unused ones
    frames = {f.name: int(f) for f in wp.Stderr}
    assert frames == {"NEXT": 0x6F6C6D67, "READ": 0x64617461, "WRITE": 0x64617416,
                      "LAST": 0x616C7473, "ERROR": 0x63787470}


@pytest.mark.parametrize("affinity, reserve", [(None, False), (3, True)])
def test_handshake_both_sides(affinity: int | None, reserve: bool) -> None:
    with pair() as (client, daemon):
        def serve() -> wp.ClientHello:
            hello = wp.server_handshake(daemon.source, daemon.sink)
            wp.write_next(daemon.sink, "opening store\n")
            wp.write_last(daemon.sink)
            daemon.sink.flush()
            return hello

        join = in_thread(serve)
        logs: list[bytes] = []
        version = wp.client_handshake(client.source, client.sink, affinity, reserve,
                                      on_log=logs.append)
        assert join() == wp.ClientHello(wp.PROTOCOL_VERSION, affinity, reserve)
        assert version == wp.PROTOCOL_VERSION and logs == [b"opening store\n"]


def test_old_client_sends_no_optional_fields() -> None:
    """A minor-10 client sends neither affinity nor reserve-space; the daemon defaults."""
    with pair() as (client, daemon):
        join = in_thread(lambda: wp.server_handshake(daemon.source, daemon.sink))
        client.send_raw(s.encode_int(wp.WORKER_MAGIC_1) + s.encode_int(0x10A))
        assert join() == wp.ClientHello(0x10A, None, True)
        assert s.read_int(client.source) == wp.WORKER_MAGIC_2


def test_store_open_failure_reaches_the_client_as_daemon_error() -> None:
    with pair() as (client, daemon):
        def serve() -> None:
            hello = wp.server_handshake(daemon.source, daemon.sink)
            wp.write_error(daemon.sink, "cannot open store", 1, hello.client_version)
            daemon.sink.flush()

        join = in_thread(serve)
        with pytest.raises(wp.DaemonError, match="cannot open store") as info:
            wp.client_handshake(client.source, client.sink)
        assert info.value.status == 1
        join()


def test_daemon_rejects_bad_magic() -> None:
    with pair() as (client, daemon):
        client.send_raw(s.encode_int(0x12345678))
        with pytest.raises(wp.ProtocolError, match="protocol mismatch: client magic 0x12345678"):
            wp.server_handshake(daemon.source, daemon.sink)


def test_client_rejects_bad_magic_and_other_major() -> None:
    for reply, message in [
        (s.encode_int(0xDEAD) + s.encode_int(0x163), "protocol mismatch: daemon magic 0xdead"),
        (s.encode_int(wp.WORKER_MAGIC_2) + s.encode_int(0x263), "0x263 not supported"),
    ]:
        with pair() as (client, daemon):
            daemon.send_raw(reply)
            with pytest.raises(wp.ProtocolError, match=message):
                wp.client_handshake(client.source, client.sink)


@pytest.mark.parametrize("cut", [0, 4, 8, 12])
def test_truncated_handshake_from_the_client(cut: int) -> None:
    hello = s.encode_int(wp.WORKER_MAGIC_1) + s.encode_int(wp.PROTOCOL_VERSION)
    with pair() as (client, daemon):
        client.send_raw(hello[:cut], close=True)
        with pytest.raises(s.TruncatedInput, match="input ended while reading"):
            wp.server_handshake(daemon.source, daemon.sink)


def test_stderr_frames_are_dispatched_in_order() -> None:
    with pair() as (client, daemon):
        def serve() -> bytes:
            wp.write_next(daemon.sink, b"building \xff\n")
            wp.write_data(daemon.sink, b"nar bytes")
            got = wp.request_data(daemon.source, daemon.sink, 5)
            wp.write_last(daemon.sink)
            s.write_bool(daemon.sink, True)  # the op's result follows LAST
            daemon.sink.flush()
            return got

        join = in_thread(serve)
        events: list[tuple[str, bytes]] = []
        wp.process_stderr(
            client.source, client.sink, wp.PROTOCOL_VERSION,
            on_log=lambda b: events.append(("log", b)),
            on_data=lambda b: events.append(("data", b)),
            provide_data=lambda n: b"abcdefgh"[:n],
        )
        assert s.read_bool(client.source)
        assert events == [("log", b"building \xff\n"), ("data", b"nar bytes")]
        assert join() == b"abcde"


def test_error_frame_with_and_without_status() -> None:
    for version, status in [(0x163, 100), (0x107, 1)]:
        sink = s.BytesSink()
        wp.write_error(sink, "build of /gnu/store/x failed", 100, version)
        with pytest.raises(wp.DaemonError, match="build of /gnu/store/x failed") as info:
            wp.process_stderr(s.BytesSource(bytes(sink.data)), s.BytesSink(), version)
        assert info.value.status == status
    with pytest.raises(ValueError, match="non-zero"):
        wp.write_error(s.BytesSink(), "x", 0, 0x163)


@pytest.mark.parametrize(
    "frames, error, message",
    [
        (s.encode_int(0x1234), wp.ProtocolError, "unknown message type 0x1234"),
        (s.encode_int(wp.Stderr.NEXT) + s.encode_int(5) + b"ab", s.TruncatedInput, "log text"),
        (s.encode_int(wp.Stderr.NEXT) + s.encode_int(1) + b"a\x00\x00\x00\x00\x00\x00\x07",
         s.SerialisationError, "non-zero padding"),
        (s.encode_int(wp.Stderr.WRITE) + s.encode_bytes(b"x"), wp.ProtocolError, "no sink"),
        (s.encode_int(wp.Stderr.READ) + s.encode_int(8), wp.ProtocolError, "no source"),
        (s.encode_int(wp.Stderr.ERROR) + s.encode_bytes(b"boom"), s.TruncatedInput, "status"),
        (b"", s.TruncatedInput, "stderr frame code"),
    ],
    ids=["unknown-code", "truncated-log", "bad-padding", "write-no-sink", "read-no-source",
         "error-no-status", "empty"],
)
def test_malformed_stderr_frames(frames: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        wp.process_stderr(s.BytesSource(frames), s.BytesSink(), wp.PROTOCOL_VERSION)


def test_op_codes() -> None:
    sink = s.BytesSink()
    wp.write_op(sink, wp.Op.BUILD_PATHS)
    assert wp.read_op(s.BytesSource(bytes(sink.data))) is wp.Op.BUILD_PATHS
    for code in (0, 2, 15, 17, 36, 79, 82):
        with pytest.raises(wp.ProtocolError, match=f"invalid operation {code}"):
            wp.read_op(s.BytesSource(s.encode_int(code)))
    substitute_urls = s.encode_int(81)
    with pytest.raises(wp.ProtocolError, match="needs protocol 0x164"):
        wp.read_op(s.BytesSource(substitute_urls), 0x163)
    assert wp.read_op(s.BytesSource(substitute_urls), 0x164) is wp.Op.SUBSTITUTE_URLS


def test_request_data_rejects_an_answer_longer_than_asked() -> None:
    with pair() as (client, daemon):
        client.send_raw(s.encode_bytes(b"too long!"))
        with pytest.raises(s.SerialisationError, match="string is too long"):
            wp.request_data(daemon.source, daemon.sink, 4)
