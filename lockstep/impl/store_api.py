"""Store names and store paths (Guix nix/libstore/store-api.cc).

A store path is `<storeDir>/<h>-<name>`: `<h>` is 32 Nix base-32 characters (20 bytes),
`<name>` passes `check_store_name`. Every path the store creates comes from
`make_store_path(type, hash, name)`, which hashes the fingerprint

    <type>:sha256:<base16 hash>:<storeDir>:<name>

with SHA-256 and XOR-folds the digest to 20 bytes. The type says how the content was
addressed: `text[:ref...]`, `source`, or `output:<id>`. Because the store directory is
part of the fingerprint, the same content has different hashes in /gnu/store and
/nix/store.

Name rule (as in every Guix version examined): no leading `.`; only `[A-Za-z0-9]` and
`+-._?=`. Guix checks neither emptiness nor length, and neither do we.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .hash import BASE32_CHARS, Hash, compress_hash, sha256, to_base32

DEFAULT_STORE_DIR: Final = "/gnu/store"
HASH_PART_LEN: Final = 32
_NAME_PUNCT: Final = "+-._?="
ALLOWED_NAME_CHARS: Final = "A-Z a-z 0-9 and " + " ".join(_NAME_PUNCT)


class InvalidStoreName(ValueError):
    """A store name breaks the naming rule of section 10.1."""


class BadStorePath(ValueError):
    """A string is not a store path of this store."""


def _name_char_ok(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in _NAME_PUNCT)


def check_store_name(name: str, path: str | None = None) -> None:
    """Raise InvalidStoreName unless `name` may name a store object.

    The message names the object (and the path it came from), the rule broken, and
    what is allowed instead.
    """
    where = f" (in store path {path!r})" if path is not None else ""
    if name.startswith("."):
        raise InvalidStoreName(
            f"invalid store name {name!r}{where}: names must not start with '.'; "
            f"rename it so that its first character is one of {ALLOWED_NAME_CHARS} other than '.'"
        )
    for pos, ch in enumerate(name):
        if not _name_char_ok(ch):
            raise InvalidStoreName(
                f"invalid character {ch!r} (U+{ord(ch):04X}) at position {pos} of store name "
                f"{name!r}{where}; store names may contain only {ALLOWED_NAME_CHARS}"
            )


def _is_hash_part(text: str) -> bool:
    return len(text) == HASH_PART_LEN and all(c in BASE32_CHARS for c in text)


@dataclass(frozen=True)
class StoreDir:
    """The store directory and the path arithmetic that depends on it.

    Invariant: `path` is absolute and has no trailing slash.
    """

    path: str = DEFAULT_STORE_DIR

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or (self.path != "/" and self.path.endswith("/")):
            raise ValueError(
                f"store directory {self.path!r} must be an absolute path without a trailing '/'"
            )

    # --- parsing -------------------------------------------------------------

    def is_in_store(self, path: str) -> bool:
        """True for the store directory's children and anything below them."""
        return path.startswith(self.path + "/") and len(path) > len(self.path) + 1

    def to_store_path(self, path: str) -> str:
        """The store path containing `path` (strip anything below the top-level entry)."""
        if not self.is_in_store(path):
            raise BadStorePath(f"path {path!r} is not in the store {self.path!r}")
        rest = path[len(self.path) + 1 :]
        return f"{self.path}/{rest.split('/', 1)[0]}"

    def parse_store_path(self, path: str) -> tuple[str, str]:
        """Split `<store>/<hash>-<name>` into (hash part, name), checking everything."""
        prefix = self.path + "/"
        if not path.startswith(prefix):
            raise BadStorePath(
                f"path {path!r} is not in the store directory {self.path!r}; "
                f"store paths look like {prefix}<32 base-32 chars>-<name>"
            )
        base = path[len(prefix) :]
        if "/" in base:
            raise BadStorePath(
                f"path {path!r} lies below a store path, not directly in {self.path!r}; "
                f"use {self.to_store_path(path)!r}"
            )
        hash_part, dash, name = base[:HASH_PART_LEN], base[HASH_PART_LEN : HASH_PART_LEN + 1], base[HASH_PART_LEN + 1 :]
        if not _is_hash_part(hash_part) or dash != "-":
            raise BadStorePath(
                f"store path {path!r} must start with 32 base-32 characters ({BASE32_CHARS}) "
                f"and a '-' after {prefix!r}"
            )
        check_store_name(name, path)
        return hash_part, name

    def is_store_path(self, path: str) -> bool:
        try:
            self.parse_store_path(path)
        except (BadStorePath, InvalidStoreName):
            return False
        return True

    def assert_store_path(self, path: str) -> str:
        self.parse_store_path(path)
        return path

    def store_path_to_name(self, path: str) -> str:
        return self.parse_store_path(path)[1]

    def store_path_to_hash_part(self, path: str) -> str:
        return self.parse_store_path(path)[0]

    # --- construction ----------------------------------------------------------

    def make_store_path(self, type_: str, h: Hash, name: str) -> str:
        """`makeStorePath`: fingerprint -> SHA-256 -> XOR-fold to 20 bytes -> base-32."""
        check_store_name(name)
        fingerprint = f"{type_}:sha256:{h.base16}:{self.path}:{name}"
        digest = compress_hash(sha256(fingerprint.encode()).digest, 20)
        return f"{self.path}/{to_base32(digest)}-{name}"

    def make_text_path(self, name: str, text_hash: Hash, references: Iterable[str]) -> str:
        """Path of a text file (e.g. a .drv) with these references; type `text:r1:r2...`."""
        type_ = "text"
        for ref in sorted(set(references)):
            type_ += ":" + ref
        return self.make_store_path(type_, text_hash, name)

    def text_path(self, name: str, text: str | bytes, references: Iterable[str] = ()) -> str:
        data = text.encode() if isinstance(text, str) else text
        return self.make_text_path(name, sha256(data), references)

    def make_fixed_output_path(self, recursive: bool, h: Hash, name: str) -> str:
        """Recursive SHA-256 is a `source` path; anything else hashes a `fixed:out:` string."""
        if recursive and h.algo == "sha256":
            return self.make_store_path("source", h, name)
        inner = sha256(f"fixed:out:{'r:' if recursive else ''}{h.algo}:{h.base16}:".encode())
        return self.make_store_path("output:out", inner, name)

    def make_output_path(self, output_id: str, drv_hash: Hash, drv_name: str) -> str:
        """Output `output_id` of a derivation named `drv_name` whose modulo hash is `drv_hash`."""
        name = drv_name if output_id == "out" else f"{drv_name}-{output_id}"
        return self.make_store_path(f"output:{output_id}", drv_hash, name)


def parse_drv_name(drv_path_name: str) -> str:
    """The derivation name of a `.drv` store name (`foo-1.0.drv` -> `foo-1.0`)."""
    if not drv_path_name.endswith(".drv"):
        raise BadStorePath(f"{drv_path_name!r} is not a derivation name: it must end in '.drv'")
    return drv_path_name[: -len(".drv")]
