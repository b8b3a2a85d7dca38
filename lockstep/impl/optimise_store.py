"""Deduplication by hard links (Guix optimise-store.cc).

Every regular file of a valid path is hashed (SHA-256 of its NAR, so the executable
bit counts) and linked to `<store>/.links/<base-32 hash>`. The first file with some
content becomes the link target; every later file with the same content is replaced,
atomically, by a hard link to it (link to a temporary name, then rename over the
file). Store files are read-only and never modified in place, so sharing inodes is
safe. `gc.remove_unused_links` deletes `.links` entries whose link count fell to 1.

Deviation (closes a race the Guix code documents): optimising takes gc.lock shared,
so a collection cannot see a link count of 1 and delete a `.links` entry at the moment
a new hard link to it is being made.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .archive import hash_path
from .gc import LINKS_DIR, lock_gc
from .local_store import LocalStore
from .pathlocks import LockType


@dataclass
class OptimiseStats:
    files_linked: int = 0
    bytes_freed: int = 0


def _files(path: str) -> list[str]:
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return [path]
    if stat.S_ISDIR(st.st_mode):
        return [f for name in sorted(os.listdir(path)) for f in _files(os.path.join(path, name))]
    return []


def optimise_path(store: LocalStore, path: str, stats: OptimiseStats) -> None:
    """Hard-link every regular file of `path` to its `.links` entry."""
    links = os.path.join(store.store.path, LINKS_DIR)
    os.makedirs(links, exist_ok=True)
    for f in _files(path):
        st = os.lstat(f)
        link = os.path.join(links, hash_path(f)[0].base32)
        try:
            os.link(f, link)  # first of its content: it becomes the target
            continue
        except FileExistsError:
            pass
        lst = os.lstat(link)
        if (lst.st_dev, lst.st_ino) == (st.st_dev, st.st_ino):
            continue  # already shared
        parent = os.path.dirname(f)
        pst = os.lstat(parent)
        os.chmod(parent, 0o755)  # store directories are read-only
        tmp = os.path.join(parent, f".tmp-link-{os.getpid()}")
        try:
            os.link(link, tmp)
            os.rename(tmp, f)  # atomic: readers see the old file or the link
        finally:
            os.chmod(parent, stat.S_IMODE(pst.st_mode))
            os.utime(parent, (pst.st_atime, pst.st_mtime), follow_symlinks=False)
        stats.files_linked += 1
        if st.st_nlink == 1:
            stats.bytes_freed += st.st_blocks * 512


def optimise_store(store: LocalStore) -> OptimiseStats:
    """Deduplicate every valid path."""
    stats = OptimiseStats()
    gc_fd = lock_gc(store.gc_lock_path, LockType.READ)
    try:
        for path in sorted(store.query_all_valid_paths()):
            if os.path.lexists(path):
                optimise_path(store, path, stats)
    finally:
        os.close(gc_fd)
    return stats
