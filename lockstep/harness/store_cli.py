"""`lockstep store ...`: the local store from the command line.

`add_store_parser(subparsers)` adds the `store` subcommand to the main parser;
`run_store(args)` runs it and returns the exit status: 0 success, 1 when `verify`
finds problems, 2 for bad input (one clear line on stderr).

The store and state directories come from `--store-dir` / `--state-dir`, else from
the environment variables LOCKSTEP_STORE_DIR / LOCKSTEP_STATE_DIR; there is no
silent default, so a test can never touch /gnu/store by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lockstep.impl.archive import NarError
from lockstep.impl.derivations import DerivationParseError
from lockstep.impl.gc import collect_garbage
from lockstep.impl.hash import BadHash
from lockstep.impl.local_store import LocalStore, StoreError
from lockstep.impl.store_api import BadStorePath, InvalidStoreName
from lockstep.impl.verify import verify_store

STORE_ENV = "LOCKSTEP_STORE_DIR"
STATE_ENV = "LOCKSTEP_STATE_DIR"

BAD_INPUT = (StoreError, InvalidStoreName, BadStorePath, DerivationParseError, NarError, BadHash,
             FileNotFoundError, NotADirectoryError, UnicodeDecodeError)


class UsageError(Exception):
    pass


def add_store_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("store", help="operate on a local store (add, query, verify, gc)")
    p.add_argument("--store-dir", help=f"store directory (default: ${STORE_ENV})")
    p.add_argument("--state-dir", help=f"state directory with db/, gcroots/, temproots/ (default: ${STATE_ENV})")
    sub = p.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    sub.add_parser("init", help="create the store and its database")
    add = sub.add_parser("add", help="copy a file or tree into the store; prints its store path")
    add.add_argument("path")
    add.add_argument("--flat", action="store_true", help="hash the file's contents, not its NAR (regular files only)")
    add.add_argument("--name", help="store name (default: the file's base name)")
    text = sub.add_parser("add-text", help="add a text file (read from stdin or --file); prints its store path")
    text.add_argument("name")
    text.add_argument("--file", help="read the text from this file instead of stdin")
    text.add_argument("--ref", action="append", default=[], help="a store path the text refers to (repeatable)")
    info = sub.add_parser("info", help="print the registration of a valid path as JSON")
    info.add_argument("path")
    refs = sub.add_parser("references", help="print the references of a valid path")
    refs.add_argument("path")
    refs.add_argument("--referrers", action="store_true", help="print the referrers instead")
    clo = sub.add_parser("closure", help="print the closure of valid paths under references")
    clo.add_argument("paths", nargs="+")
    ver = sub.add_parser("verify", help="check the database and the store; exit 1 on problems")
    ver.add_argument("--check-contents", action="store_true", help="also rehash every path")
    gc = sub.add_parser("gc", help="delete everything not reachable from a root")
    gc.add_argument("--max-freed", type=int, help="stop after freeing this many bytes")
    gc.add_argument("--dry-run", action="store_true", help="print what would be deleted")


def _dirs(args: argparse.Namespace) -> tuple[str, str]:
    store = args.store_dir or os.environ.get(STORE_ENV)
    state = args.state_dir or os.environ.get(STATE_ENV)
    if not store:
        raise UsageError(f"no store directory: pass --store-dir or set {STORE_ENV}")
    if not state:
        raise UsageError(f"no state directory: pass --state-dir or set {STATE_ENV}")
    return store, state


def _valid(store: LocalStore, path: str) -> str:
    store.store.parse_store_path(path)
    if not store.is_valid_path(path):
        raise StoreError(f"path {path!r} is not valid in this store; add it first")
    return path


def run_store(args: argparse.Namespace) -> int:
    try:
        store_dir, state_dir = _dirs(args)
        with LocalStore(store_dir, state_dir) as store:
            return _run(store, args)
    except UsageError as e:
        print(f"lockstep store: {e}", file=sys.stderr)
        return 2
    except BAD_INPUT as e:
        print(f"lockstep store {args.store_command}: error: {e}", file=sys.stderr)
        return 2


def _run(store: LocalStore, args: argparse.Namespace) -> int:
    cmd = args.store_command
    if cmd == "init":
        print(f"store {store.store.path}\nstate {store.state_dir}")
    elif cmd == "add":
        print(store.add_to_store(args.path, recursive=not args.flat, name=args.name))
    elif cmd == "add-text":
        if args.file:
            with open(args.file, "rb") as f:
                data = f.read()
        else:
            data = sys.stdin.buffer.read()
        print(store.add_text_to_store(args.name, data, args.ref))
    elif cmd == "info":
        info = store.query_path_info(_valid(store, args.path))
        assert info is not None
        print(json.dumps({
            "path": info.path, "narHash": info.nar_hash.sri, "narSize": info.nar_size,
            "deriver": info.deriver, "references": sorted(info.references),
            "registrationTime": info.registration_time,
        }, indent=1))
    elif cmd == "references":
        path = _valid(store, args.path)
        found = store.query_referrers(path) if args.referrers else store.query_references(path)
        print("\n".join(sorted(found)))
    elif cmd == "closure":
        print("\n".join(sorted(store.compute_fs_closure(_valid(store, p) for p in args.paths))))
    elif cmd == "verify":
        result = verify_store(store, args.check_contents)
        for problem in result.problems:
            print(problem)
        print("store is consistent" if result.ok else f"{len(result.problems)} problem(s) found")
        return 0 if result.ok else 1
    elif cmd == "gc":
        res = collect_garbage(store, args.max_freed, args.dry_run)
        for path in res.deleted:
            print(path)
        print(f"{len(res.deleted)} store entries {'would be ' if args.dry_run else ''}deleted, "
              f"{res.bytes_freed} bytes freed", file=sys.stderr)
    return 0
