"""Reference scanning (Guix references.cc): which candidate store paths a tree mentions.

A store path is referenced when its 32-character hash part occurs anywhere in the NAR
serialisation of the tree: in file contents, symlink targets or entry names. The scan
streams the NAR and looks at every maximal run of base-32 characters; each 32-window
of a run is looked up in the set of candidate hash parts. A run may straddle two
chunks, so the last 31 bytes of each chunk are carried over into the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .archive import dump_path
from .hash import BASE32_CHARS
from .store_api import HASH_PART_LEN, StoreDir

_RUN = re.compile(b"[" + re.escape(BASE32_CHARS.encode()) + b"]{%d,}" % HASH_PART_LEN)


class RefScanSink:
    """A NAR sink that records which of the `hash_parts` it has seen."""

    def __init__(self, hash_parts: Iterable[str]) -> None:
        self.wanted = {h.encode() for h in hash_parts}
        self.seen: set[bytes] = set()
        self._tail = b""

    def __call__(self, data: bytes) -> None:
        if not self.wanted:
            return
        buf = self._tail + data
        for m in _RUN.finditer(buf):
            run = m.group()
            for i in range(len(run) - HASH_PART_LEN + 1):
                part = run[i : i + HASH_PART_LEN]
                if part in self.wanted:
                    self.seen.add(part)
        self.wanted -= self.seen
        self._tail = buf[-(HASH_PART_LEN - 1) :]


def scan_for_references(path: str, candidates: Iterable[str], store: StoreDir) -> set[str]:
    """The subset of `candidates` (store paths) whose hash parts occur in the tree at `path`."""
    by_hash = {store.store_path_to_hash_part(c): c for c in candidates}
    sink = RefScanSink(by_hash)
    dump_path(path, sink)
    return {by_hash[h.decode()] for h in sink.seen}
