"""Derivations: the ATerm text format, hashDerivationModulo and output paths.

A `.drv` file is one line of ATerm:

    Derive([outputs],[inputDrvs],[inputSrcs],"platform","builder",[args],[env])

with no whitespace, maps and sets printed in sorted order, and strings quoted with
`\\"`, `\\\\`, `\\n`, `\\r`, `\\t` as the only escapes. Printing is canonical, so
`unparse(parse(t)) == t` for every text this module prints (and every Nix 2.8 .drv).

The parser is strict where Nix is lax, because silent acceptance hides bugs in tests:
unknown escapes, duplicate keys and trailing bytes are errors. Every error names the
source, the byte offset, what was expected and what was found.

Output paths. A derivation's output paths cannot be part of the text they are hashed
from, so `hash_derivation_modulo` hashes a copy with every output path and every
`env[output]` blanked, after replacing each input derivation's path by the base-16 of
*its* modulo hash. Fixed-output derivations hash to a digest of their declared content
hash instead, so changing how a fixed-output derivation fetches its content does not
change anything that depends on it. Mirrors Guix derivations.cc and
LocalStore::checkDerivationOutputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from .hash import Hash, parse_hash, sha256
from .store_api import StoreDir, parse_drv_name

DRV_EXTENSION = ".drv"


class DerivationParseError(ValueError):
    """Malformed or truncated derivation text."""


class BadDerivation(ValueError):
    """Well-formed text that breaks a rule (e.g. an output path that does not match)."""


@dataclass(frozen=True)
class DerivationOutput:
    """One output. `hash_algo` is "" or e.g. "sha256" / "r:sha256" (r: = recursive)."""

    path: str
    hash_algo: str = ""
    hash: str = ""

    @property
    def recursive(self) -> bool:
        return self.hash_algo.startswith("r:")

    def fixed_hash(self) -> Hash:
        """The declared content hash of a fixed output."""
        algo = self.hash_algo[2:] if self.recursive else self.hash_algo
        return parse_hash(self.hash, algo)


@dataclass(frozen=True)
class Derivation:
    """A parsed derivation. Mappings are printed sorted; `args` keeps its order."""

    outputs: Mapping[str, DerivationOutput]
    input_drvs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    input_srcs: frozenset[str] = frozenset()
    platform: str = ""
    builder: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def is_fixed_output(self) -> bool:
        out = self.outputs.get("out")
        return len(self.outputs) == 1 and out is not None and out.hash != ""

    def references(self) -> frozenset[str]:
        """What a written .drv refers to: its input sources and input derivations."""
        return self.input_srcs | frozenset(self.input_drvs)

    def output_paths(self) -> dict[str, str]:
        return {name: o.path for name, o in self.outputs.items()}


# --- printing ----------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _q(s: str) -> str:
    return '"' + "".join(_ESCAPES.get(c, c) for c in s) + '"'


def _list(items: Iterable[str]) -> str:
    return "[" + ",".join(items) + "]"


def unparse(drv: Derivation) -> str:
    """The canonical ATerm text of `drv`."""
    outputs = _list(
        f"({_q(k)},{_q(o.path)},{_q(o.hash_algo)},{_q(o.hash)})" for k, o in sorted(drv.outputs.items())
    )
    inputs = _list(
        f"({_q(p)},{_list(_q(o) for o in sorted(outs))})" for p, outs in sorted(drv.input_drvs.items())
    )
    srcs = _list(_q(s) for s in sorted(drv.input_srcs))
    args = _list(_q(a) for a in drv.args)
    env = _list(f"({_q(k)},{_q(v)})" for k, v in sorted(drv.env.items()))
    return f"Derive({outputs},{inputs},{srcs},{_q(drv.platform)},{_q(drv.builder)},{args},{env})"


# --- parsing -----------------------------------------------------------------


class _Parser:
    """Recursive descent over the text. Invariant: `pos` is the next unread offset."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0

    def fail(self, expected: str) -> DerivationParseError:
        if self.pos >= len(self.text):
            found = "the end of the text (it is truncated)"
        else:
            found = repr(self.text[self.pos : self.pos + 12])
        return DerivationParseError(
            f"malformed derivation {self.source}: at offset {self.pos}, expected {expected} "
            f"but found {found}; a derivation is Derive([outputs],[inputDrvs],[inputSrcs],"
            f'"platform","builder",[args],[env]) with no whitespace'
        )

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise self.fail(repr(token))
        self.pos += len(token)

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def string(self, what: str = "a quoted string") -> str:
        if not self.peek('"'):
            raise self.fail(what)
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            end = len(text)
            q = text.find('"', self.pos)
            b = text.find("\\", self.pos)
            stop = min(x for x in (q, b, end) if x != -1)
            out.append(text[self.pos : stop])
            self.pos = stop
            if stop == end:
                raise self.fail("the closing '\"' of a string")
            if stop == q:
                self.pos += 1
                return "".join(out)
            esc = text[self.pos + 1 : self.pos + 2]
            if esc not in _UNESCAPES:
                self.pos += 1
                raise self.fail("one of the escapes \\\" \\\\ \\n \\r \\t")
            out.append(_UNESCAPES[esc])
            self.pos += 2

    def path(self, what: str) -> str:
        start = self.pos
        s = self.string(f"a quoted {what}")
        if not s.startswith("/"):
            self.pos = start
            raise self.fail(f"an absolute {what} (starting with '/')")
        return s

    def items(self, item: Callable[[], None]) -> None:
        """`[item,item,...]`: calls `item` for each element."""
        self.expect("[")
        if self.peek("]"):
            self.pos += 1
            return
        while True:
            item()
            if self.peek("]"):
                self.pos += 1
                return
            self.expect(",")

    def unique(self, seen: set[str], key: str, start: int, what: str) -> None:
        if key in seen:
            self.pos = start
            raise self.fail(f"a {what} not listed before (duplicate {key!r})")
        seen.add(key)


def parse(text: str, source: str = "<text>") -> Derivation:
    """Parse ATerm `text`; DerivationParseError names `source` and the offset on failure."""
    p = _Parser(text, source)
    p.expect("Derive(")
    outputs: dict[str, DerivationOutput] = {}
    input_drvs: dict[str, frozenset[str]] = {}
    srcs: set[str] = set()
    args: list[str] = []
    env: dict[str, str] = {}

    def output() -> None:
        p.expect("(")
        start = p.pos
        name = p.string("an output name")
        p.unique(set(outputs), name, start, "output name")
        p.expect(",")
        path = p.path("output path")
        p.expect(",")
        algo = p.string("a hash algorithm")
        p.expect(",")
        outputs[name] = DerivationOutput(path, algo, p.string("an output hash"))
        p.expect(")")

    def input_drv() -> None:
        p.expect("(")
        start = p.pos
        path = p.path("input derivation path")
        p.unique(set(input_drvs), path, start, "input derivation")
        p.expect(",")
        outs: set[str] = set()

        def out_name() -> None:
            s = p.pos
            p.unique(outs, p.string("an output name"), s, "output name")

        p.items(out_name)
        input_drvs[path] = frozenset(outs)
        p.expect(")")

    def src() -> None:
        s = p.pos
        p.unique(srcs, p.path("input source path"), s, "input source")

    def env_pair() -> None:
        p.expect("(")
        start = p.pos
        key = p.string("an environment variable name")
        p.unique(set(env), key, start, "environment variable")
        p.expect(",")
        env[key] = p.string("an environment value")
        p.expect(")")

    p.items(output)
    p.expect(",")
    p.items(input_drv)
    p.expect(",")
    p.items(src)
    p.expect(",")
    platform = p.string("the platform string")
    p.expect(",")
    builder = p.string("the builder string")
    p.expect(",")
    p.items(lambda: args.append(p.string("an argument string")))
    p.expect(",")
    p.items(env_pair)
    p.expect(")")
    if p.pos != len(text):
        raise p.fail("the end of the text after the closing ')'")
    return Derivation(outputs, input_drvs, frozenset(srcs), platform, builder, tuple(args), env)


# --- derivation paths with outputs ----------------------------------------------


def parse_drv_path_with_outputs(s: str) -> tuple[str, frozenset[str]]:
    """`/store/...-foo.drv!out,dev` -> (path, {"out", "dev"}); no `!` -> no outputs."""
    path, bang, outs = s.partition("!")
    if not bang:
        return path, frozenset()
    names = outs.split(",")
    if not all(names):
        raise BadDerivation(f"{s!r}: empty output name after '!'; write drvPath!out1,out2")
    return path, frozenset(names)


def print_drv_path_with_outputs(path: str, outputs: Iterable[str]) -> str:
    outs = sorted(outputs)
    return f"{path}!{','.join(outs)}" if outs else path


# --- hashing -------------------------------------------------------------------

DrvLoader = Callable[[str], Derivation]


def hash_derivation_modulo(drv: Derivation, load: DrvLoader, cache: dict[str, Hash]) -> Hash:
    """SHA-256 of `drv` with input derivations replaced by their own modulo hashes.

    `load` reads an input .drv by path; `cache` maps .drv paths to their modulo hash
    (valid forever: a .drv path is the hash of its text).
    """
    if drv.is_fixed_output():
        out = drv.outputs["out"]
        return sha256(f"fixed:out:{out.hash_algo}:{out.hash}:{out.path}".encode())
    inputs: dict[str, frozenset[str]] = {}
    for path, outs in sorted(drv.input_drvs.items()):
        h = cache.get(path)
        if h is None:
            h = hash_derivation_modulo(load(path), load, cache)
            cache[path] = h
        inputs[h.base16] = outs
    return sha256(unparse(replace(drv, input_drvs=inputs)).encode())


def compute_output_paths(
    drv: Derivation, drv_name: str, store: StoreDir, load: DrvLoader, cache: dict[str, Hash]
) -> dict[str, str]:
    """The output paths `drv` must have, computed as checkDerivationOutputs does."""
    if drv.is_fixed_output():
        out = drv.outputs["out"]
        return {"out": store.make_fixed_output_path(out.recursive, out.fixed_hash(), drv_name)}
    blank = replace(
        drv,
        outputs={k: DerivationOutput("", o.hash_algo, o.hash) for k, o in drv.outputs.items()},
        env={**drv.env, **{k: "" for k in drv.outputs}},
    )
    h = hash_derivation_modulo(blank, load, cache)
    return {k: store.make_output_path(k, h, drv_name) for k in drv.outputs}


def check_derivation_outputs(
    drv_path: str, drv: Derivation, store: StoreDir, load: DrvLoader, cache: dict[str, Hash]
) -> None:
    """BadDerivation unless every output path (and env entry) is the one it must be."""
    drv_name = parse_drv_name(store.store_path_to_name(drv_path))
    wanted = compute_output_paths(drv, drv_name, store, load, cache)
    for name, out in sorted(drv.outputs.items()):
        if out.path != wanted[name]:
            raise BadDerivation(
                f"derivation {drv_path!r} has incorrect output {out.path!r} for output {name!r}; "
                f"it should be {wanted[name]!r} (recompute the outputs after changing the derivation)"
            )
        if drv.env.get(name) != wanted[name]:
            raise BadDerivation(
                f"derivation {drv_path!r} has incorrect environment variable {name!r} = "
                f"{drv.env.get(name)!r}; it should be the output path {wanted[name]!r}"
            )


def fill_output_paths(
    drv: Derivation, drv_name: str, store: StoreDir, load: DrvLoader, cache: dict[str, Hash]
) -> Derivation:
    """`drv` with its output paths (and env entries) set to the computed ones."""
    paths = compute_output_paths(drv, drv_name, store, load, cache)
    return replace(
        drv,
        outputs={k: replace(o, path=paths[k]) for k, o in drv.outputs.items()},
        env={**drv.env, **paths},
    )


# --- writing -------------------------------------------------------------------


class TextAdder(Protocol):
    def add_text_to_store(self, name: str, text: str, references: Iterable[str] = ()) -> str: ...


def write_derivation(store: TextAdder, drv: Derivation, name: str) -> str:
    """Add `drv` as `<name>.drv` with its inputs as references; returns its store path."""
    return store.add_text_to_store(name + DRV_EXTENSION, unparse(drv), sorted(drv.references()))


def drv_path(store: StoreDir, drv: Derivation, name: str) -> str:
    """The store path `write_derivation` would give `drv`, without writing it."""
    return store.text_path(name + DRV_EXTENSION, unparse(drv), drv.references())
