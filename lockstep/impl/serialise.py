"""The worker protocol's primitive encoding, as Nix's and Guix's serialise.cc.

Wire facts (Nix ``src/libutil/serialise.cc``; Guix ``nix/libutil/serialise.cc``):

* an integer is 8 bytes, little-endian, unsigned. Guix reads most protocol integers
  (op codes, versions, flags) with a reader that rejects anything above 32 bits, and
  sizes and times with a 64-bit one; here :func:`read_int` and :func:`read_long`;
* a string (bytes) is its length as an integer, the bytes, then zero bytes up to the
  next multiple of 8 (none when the length is already a multiple of 8). Readers reject
  padding that is not zero ("non-zero padding");
* a list or set of strings is its count, then each string. Sets are written in sorted
  order (they are ``std::set`` upstream); a reader merges duplicates, as upstream does.

Text is carried as bytes; :func:`read_string` / :func:`write_string` convert with UTF-8
and ``surrogateescape``, so any byte string (a builder's log line, say) round-trips.

Every reader is strict: input that ends early raises :class:`TruncatedInput` naming what
was being read and how much arrived; anything malformed raises :class:`SerialisationError`.
Readers never allocate more than they have received, so a hostile length prefix costs
nothing until its bytes arrive.

Sources and sinks: :class:`BufferedSource` / :class:`BufferedSink` over any read / write
function, with :class:`SocketSource`, :class:`SocketSink`, :class:`FdSource`,
:class:`FdSink` and the in-memory :class:`BytesSource` / :class:`BytesSink`. Like
upstream's, the default buffer is 32 KiB and a sink must be flushed before waiting for
an answer.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Protocol

BUFFER_SIZE = 32 * 1024
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

_U64 = struct.Struct("<Q")
_ZEROS = bytes(8)


class SerialisationError(ValueError):
    """Malformed wire data."""


class TruncatedInput(SerialisationError, EOFError):
    """The input ended in the middle of a value."""


class Source(Protocol):
    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly `n` bytes; :class:`TruncatedInput` (naming `what`) if they never come."""
        ...


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...


# --- integers -------------------------------------------------------------------------


def encode_int(n: int) -> bytes:
    if not 0 <= n <= U64_MAX:
        raise SerialisationError(f"cannot serialise integer {n}: outside 0 .. 2**64-1")
    return _U64.pack(n)


def write_int(sink: Sink, n: int) -> None:
    sink.write(encode_int(n))


def write_bool(sink: Sink, flag: bool) -> None:
    write_int(sink, 1 if flag else 0)


def read_long(source: Source, what: str = "integer") -> int:
    """A 64-bit unsigned integer."""
    value: int = _U64.unpack(source.read_exact(8, what))[0]
    return value


def read_int(source: Source, what: str = "integer") -> int:
    """An integer that must fit in 32 bits (op codes, versions, flags, counts)."""
    value = read_long(source, what)
    if value > U32_MAX:
        raise SerialisationError(
            f"{what}: serialised integer {value:#x} does not fit in 32 bits "
            f"(this reader, like Guix's readInt, takes only 32-bit values)"
        )
    return value


def read_bool(source: Source, what: str = "flag") -> bool:
    return read_int(source, what) != 0


# --- strings ---------------------------------------------------------------------------


def _padding(length: int) -> int:
    return -length % 8


def encode_bytes(data: bytes) -> bytes:
    return encode_int(len(data)) + data + _ZEROS[: _padding(len(data))]


def write_bytes(sink: Sink, data: bytes) -> None:
    sink.write(encode_bytes(data))


def write_string(sink: Sink, text: str | bytes) -> None:
    write_bytes(sink, text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))


def read_bytes(source: Source, what: str = "string", max_len: int | None = None) -> bytes:
    """A length-prefixed, zero-padded byte string of at most `max_len` bytes."""
    length = read_long(source, f"length of {what}")
    if max_len is not None and length > max_len:
        raise SerialisationError(f"{what}: string is too long ({length} > {max_len} bytes)")
    data = source.read_exact(length, f"{length} bytes of {what}")
    pad = source.read_exact(_padding(length), f"padding of {what}")
    if pad.count(0) != len(pad):
        raise SerialisationError(f"{what}: non-zero padding {pad!r} after {length} bytes")
    return data


def read_string(source: Source, what: str = "string", max_len: int | None = None) -> str:
    return read_bytes(source, what, max_len).decode("utf-8", "surrogateescape")


def write_strings(sink: Sink, items: Iterable[str | bytes]) -> None:
    """A list, in the given order."""
    items = list(items)
    write_int(sink, len(items))
    for item in items:
        write_string(sink, item)


def write_string_set(sink: Sink, items: Iterable[str]) -> None:
    """A set: sorted by the bytes, as ``std::set<std::string>`` iterates."""
    write_strings(sink, sorted({i.encode("utf-8", "surrogateescape") for i in items}))


def read_strings(source: Source, what: str = "string list") -> list[str]:
    count = read_int(source, f"count of {what}")
    return [read_string(source, f"{what} item {i}") for i in range(count)]


def read_string_set(source: Source, what: str = "string set") -> set[str]:
    return set(read_strings(source, what))


# --- sources and sinks -----------------------------------------------------------------


class BufferedSource:
    """Reads through a buffer from `read`, a function returning up to n bytes (b"" at EOF)."""

    def __init__(self, read: Callable[[int], bytes], buffer_size: int = BUFFER_SIZE) -> None:
        self._read = read
        self._buffer_size = buffer_size
        # Invariant: _buffer[_pos:] are the bytes received and not yet consumed.
        self._buffer = b""
        self._pos = 0
        self.consumed = 0  # bytes handed out so far, for error messages

    def read_exact(self, n: int, what: str = "data") -> bytes:
        parts: list[bytes] = []
        need = n
        while need:
            if self._pos == len(self._buffer):
                chunk = self._read(self._buffer_size)
                if not chunk:
                    raise TruncatedInput(
                        f"input ended while reading {what}: got {n - need} of {n} bytes "
                        f"(after {self.consumed} bytes in all)"
                    )
                self._buffer, self._pos = chunk, 0
            take = self._buffer[self._pos : self._pos + need]
            self._pos += len(take)
            need -= len(take)
            parts.append(take)
        self.consumed += n
        return b"".join(parts)

    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buffer) - self._pos


class BufferedSink:
    """Writes through a buffer to `write_all`; large writes bypass the buffer."""

    def __init__(self, write_all: Callable[[bytes], None], buffer_size: int = BUFFER_SIZE) -> None:
        self._write_all = write_all
        self._buffer_size = buffer_size
        self._buffer = bytearray()  # Invariant: len(_buffer) < _buffer_size after write()

    def write(self, data: bytes) -> None:
        if len(self._buffer) + len(data) >= self._buffer_size:
            self.flush()
            if len(data) >= self._buffer_size:
                self._write_all(bytes(data))
                return
        self._buffer += data

    def flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._write_all(data)


class SocketSource(BufferedSource):
    def __init__(self, sock: socket.socket, buffer_size: int = BUFFER_SIZE) -> None:
        super().__init__(sock.recv, buffer_size)


class SocketSink(BufferedSink):
    def __init__(self, sock: socket.socket, buffer_size: int = BUFFER_SIZE) -> None:
        super().__init__(sock.sendall, buffer_size)


class FdSource(BufferedSource):
    def __init__(self, fd: int, buffer_size: int = BUFFER_SIZE) -> None:
        super().__init__(lambda n: os.read(fd, n), buffer_size)


class FdSink(BufferedSink):
    def __init__(self, fd: int, buffer_size: int = BUFFER_SIZE) -> None:
        def write_all(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        super().__init__(write_all, buffer_size)


class BytesSource(BufferedSource):
    """A source over bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        super().__init__(lambda _n: b"")
        self._buffer = bytes(data)

    def remaining(self) -> int:
        return self.buffered()


class BytesSink:
    """A sink collecting everything written (flush is a no-op)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass
