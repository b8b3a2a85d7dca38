"""Hashes as the store writes them: Nix base-32, base-16, SRI, and `algo:digest` strings.

Nix base-32 is not RFC 4648. Its alphabet drops `e`, `o`, `t` and `u`, and its digit
order is reversed: the printed string starts with the *most significant* 5-bit group
of the little-endian byte array. Digit n (printed at position len-1-n) holds bits
5n .. 5n+4, where bit k is bit k%8 of byte k//8. A digest of b bytes prints as
ceil(8b/5) characters: 52 for SHA-256, 32 for the 20-byte compressed store hash.

Mirrors libutil/hash.cc (`printHash32`, `parseHash32`, `compressHash`, `printHash`).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final

BASE32_CHARS: Final = "0123456789abcdfghijklmnpqrsvwxyz"
_BASE32_VALUE: Final = {c: i for i, c in enumerate(BASE32_CHARS)}

# Digest size in bytes of every algorithm the store knows.
HASH_SIZES: Final = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}


class BadHash(ValueError):
    """A hash string that cannot be parsed: wrong length, alphabet or algorithm."""


def base32_len(size: int) -> int:
    """Number of Nix base-32 characters that encode `size` bytes."""
    return (size * 8 - 1) // 5 + 1 if size else 0


def to_base32(data: bytes) -> str:
    """Nix base-32 of `data` (most significant 5-bit group first)."""
    size = len(data)
    out = []
    for n in range(base32_len(size) - 1, -1, -1):
        bit = n * 5
        i, j = divmod(bit, 8)
        c = data[i] >> j
        if i + 1 < size:
            c |= data[i + 1] << (8 - j)
        out.append(BASE32_CHARS[c & 0x1F])
    return "".join(out)


def from_base32(text: str, size: int) -> bytes:
    """Decode Nix base-32 `text` into exactly `size` bytes; BadHash on any misfit."""
    if len(text) != base32_len(size):
        raise BadHash(
            f"base-32 string {text!r} has {len(text)} characters; "
            f"a {size}-byte hash needs exactly {base32_len(size)}"
        )
    out = bytearray(size)
    for pos, ch in enumerate(text):
        value = _BASE32_VALUE.get(ch)
        if value is None:
            raise BadHash(
                f"invalid character {ch!r} at position {pos} of base-32 string {text!r}; "
                f"allowed are {BASE32_CHARS!r}"
            )
        n = len(text) - 1 - pos
        i, j = divmod(n * 5, 8)
        out[i] |= (value << j) & 0xFF
        carry = value >> (8 - j)
        if i + 1 < size:
            out[i + 1] |= carry
        elif carry:
            raise BadHash(
                f"base-32 string {text!r} encodes more than {size} bytes "
                f"(its first digit {text[0]!r} is too large)"
            )
    return bytes(out)


def to_base16(data: bytes) -> str:
    return data.hex()


def from_base16(text: str, size: int) -> bytes:
    if len(text) != 2 * size:
        raise BadHash(
            f"base-16 string {text!r} has {len(text)} characters; "
            f"a {size}-byte hash needs exactly {2 * size}"
        )
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadHash(f"base-16 string {text!r} contains a character outside 0-9a-fA-F") from None


def compress_hash(digest: bytes, size: int) -> bytes:
    """XOR-fold `digest` into `size` bytes: byte i goes into byte i mod size.

    (Nix's comment speaks of "the first 160 bits"; the code XOR-folds, and so do we.)
    """
    out = bytearray(size)
    for i, b in enumerate(digest):
        out[i % size] ^= b
    return bytes(out)


def _algo_size(algo: str) -> int:
    size = HASH_SIZES.get(algo)
    if size is None:
        raise BadHash(f"unknown hash algorithm {algo!r}; known are {', '.join(sorted(HASH_SIZES))}")
    return size


@dataclass(frozen=True)
class Hash:
    """A digest together with its algorithm.

    Invariant: len(digest) == HASH_SIZES[algo].
    """

    algo: str
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != _algo_size(self.algo):
            raise BadHash(f"{self.algo} digest must be {HASH_SIZES[self.algo]} bytes, got {len(self.digest)}")

    @property
    def base16(self) -> str:
        return to_base16(self.digest)

    @property
    def base32(self) -> str:
        return to_base32(self.digest)

    @property
    def sri(self) -> str:
        return f"{self.algo}-{base64.b64encode(self.digest).decode()}"

    def to_string(self, base32: bool = True) -> str:
        """`algo:<base32>` (default) or `algo:<base16>`, as Nix prints hashes."""
        return f"{self.algo}:{self.base32 if base32 else self.base16}"

    def __str__(self) -> str:
        return self.to_string()


def parse_hash(text: str, algo: str | None = None) -> Hash:
    """Parse `algo:digest`, `algo-<base64>` (SRI) or a bare digest with `algo` given.

    The digest may be base-16, Nix base-32 or base-64, told apart by its length.
    """
    given = algo
    body = text
    if ":" in text:
        given, body = text.split(":", 1)
    elif "-" in text and text.split("-", 1)[0] in HASH_SIZES:
        given, body = text.split("-", 1)
        size = _algo_size(given)
        try:
            digest = base64.b64decode(body, validate=True)
        except ValueError:
            raise BadHash(f"SRI hash {text!r} has an invalid base-64 part") from None
        return Hash(given, digest) if len(digest) == size else _bad_length(text, given, size)
    if given is None:
        raise BadHash(f"hash {text!r} names no algorithm; write it as '<algo>:<digest>', e.g. 'sha256:...'")
    if algo is not None and given != algo:
        raise BadHash(f"hash {text!r} uses {given}, but {algo} is required here")
    size = _algo_size(given)
    if len(body) == 2 * size:
        return Hash(given, from_base16(body, size))
    if len(body) == base32_len(size):
        return Hash(given, from_base32(body, size))
    if len(body) == len(base64.b64encode(bytes(size))):
        try:
            return Hash(given, base64.b64decode(body, validate=True))
        except ValueError:
            pass
    return _bad_length(text, given, size)


def _bad_length(text: str, algo: str, size: int) -> Hash:
    raise BadHash(
        f"hash {text!r} has the wrong length for {algo}: expected {2 * size} base-16, "
        f"{base32_len(size)} base-32 or {len(base64.b64encode(bytes(size)))} base-64 characters"
    )


def hash_bytes(algo: str, data: bytes) -> Hash:
    _algo_size(algo)
    return Hash(algo, hashlib.new(algo, data).digest())


def sha256(data: bytes) -> Hash:
    return hash_bytes("sha256", data)


def sha1(data: bytes) -> Hash:
    return hash_bytes("sha1", data)


def md5(data: bytes) -> Hash:
    return hash_bytes("md5", data)


class HashSink:
    """Incremental hashing that also counts bytes (for NAR hash and size in one pass)."""

    def __init__(self, algo: str = "sha256") -> None:
        _algo_size(algo)
        self.algo = algo
        self._h = hashlib.new(algo)
        self.size = 0

    def __call__(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def finish(self) -> Hash:
        return Hash(self.algo, self._h.digest())
