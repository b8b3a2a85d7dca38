"""The wire encoding (impl/serialise.py): integers, padded strings, lists, buffering."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.impl import serialise as s


def encoded(write: object, *args: object) -> bytes:
    sink = s.BytesSink()
    write(sink, *args)  # type: ignore[operator]
    return bytes(sink.data)


def test_integer_layout() -> None:
    assert s.encode_int(0x163) == bytes([0x63, 0x01, 0, 0, 0, 0, 0, 0])
    assert s.encode_int(s.U64_MAX) == b"\xff" * 8
    for bad in (-1, 1 << 64):
        with pytest.raises(s.SerialisationError, match="outside"):
            s.encode_int(bad)


def test_string_layout_and_padding() -> None:
    assert encoded(s.write_string, "") == bytes(8)
    assert encoded(s.write_string, "abc") == s.encode_int(3) + b"abc" + bytes(5)
    assert encoded(s.write_string, "12345678") == s.encode_int(8) + b"12345678"
    assert encoded(s.write_string, "123456789") == s.encode_int(9) + b"123456789" + bytes(7)
    assert encoded(s.write_strings, ["a", "b"]) == s.encode_int(2) + s.encode_bytes(b"a") + \
        s.encode_bytes(b"b")


def test_string_set_is_sorted_and_reader_merges_duplicates() -> None:
    data = encoded(s.write_string_set, {"b", "a", "c"})
    assert s.read_strings(s.BytesSource(data)) == ["a", "b", "c"]
    dup = encoded(s.write_strings, ["x", "x"])
    assert s.read_string_set(s.BytesSource(dup)) == {"x"}


@given(st.lists(st.binary(max_size=40)), st.integers(0, s.U64_MAX))
def test_round_trip(items: list[bytes], number: int) -> None:
    sink = s.BytesSink()
    s.write_int(sink, number)
    s.write_strings(sink, items)
    assert len(sink.data) % 8 == 0
    source = s.BytesSource(bytes(sink.data))
    assert s.read_long(source) == number
    texts = s.read_strings(source)
    assert [t.encode("utf-8", "surrogateescape") for t in texts] == items
    assert source.remaining() == 0


def test_read_int_rejects_more_than_32_bits() -> None:
    data = s.encode_int(1 << 32)
    assert s.read_long(s.BytesSource(data)) == 1 << 32
    with pytest.raises(s.SerialisationError, match="op code: .*does not fit in 32 bits"):
        s.read_int(s.BytesSource(data), "op code")


@pytest.mark.parametrize("cut", range(0, 24))
def test_truncated_string_is_an_error_at_every_cut(cut: int) -> None:
    data = s.encode_bytes(b"hello, world")  # 8 + 12 + 4 = 24 bytes
    with pytest.raises(s.TruncatedInput, match="input ended while reading"):
        s.read_bytes(s.BytesSource(data[:cut]))


def test_truncation_message_names_what_and_how_much() -> None:
    with pytest.raises(s.TruncatedInput, match=r"12 bytes of store path: got 3 of 12"):
        s.read_bytes(s.BytesSource(s.encode_int(12) + b"abc"), "store path")


def test_non_zero_padding_is_an_error() -> None:
    data = bytearray(s.encode_bytes(b"abc"))
    data[-1] = 1
    with pytest.raises(s.SerialisationError, match="non-zero padding"):
        s.read_bytes(s.BytesSource(bytes(data)))


def test_length_limit_is_checked_before_reading() -> None:
    huge = s.encode_int(1 << 62)  # a hostile prefix with nothing behind it
    with pytest.raises(s.SerialisationError, match="string is too long"):
        s.read_bytes(s.BytesSource(huge), max_len=1024)
    with pytest.raises(s.TruncatedInput):
        s.read_bytes(s.BytesSource(huge))  # no limit: fails on the missing bytes, no allocation


def test_non_utf8_text_round_trips() -> None:
    raw = b"log \xff\xfe line"
    text = s.read_string(s.BytesSource(s.encode_bytes(raw)))
    assert encoded(s.write_string, text) == s.encode_bytes(raw)


def test_buffered_sink_holds_until_flush_and_bypasses_for_large_writes() -> None:
    written: list[bytes] = []
    sink = s.BufferedSink(written.append, buffer_size=16)
    sink.write(b"12345678")
    assert written == []
    sink.write(b"abcdefgh")  # reaches the buffer size: buffer flushed first
    assert written == [b"12345678"]
    sink.flush()
    assert b"".join(written) == b"12345678abcdefgh"
    sink.write(b"x" * 40)
    assert written[-1] == b"x" * 40


def test_socket_source_and_sink_across_a_socketpair() -> None:
    left, right = socket.socketpair()
    items = [os.urandom(n) for n in (0, 1, 7, 8, 9, 70000)]  # one larger than the buffer
    with left, right:
        def produce() -> None:
            sink = s.SocketSink(left)
            s.write_int(sink, len(items))
            for item in items:
                s.write_bytes(sink, item)
            sink.flush()
            left.shutdown(socket.SHUT_WR)

        producer = threading.Thread(target=produce)
        producer.start()
        source = s.SocketSource(right, buffer_size=1000)
        count = s.read_int(source)
        assert [s.read_bytes(source) for _ in range(count)] == items
        with pytest.raises(s.TruncatedInput):
            s.read_int(source)
        producer.join(60)


def test_fd_source_and_sink_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        sink = s.FdSink(w)
        s.write_strings(sink, ["a", "bc"])
        sink.flush()
        os.close(w)
        w = -1
        source = s.FdSource(r)
        assert s.read_strings(source) == ["a", "bc"]
        with pytest.raises(s.TruncatedInput):
            s.read_int(source)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
