"""The explicit engine compiled to C, as SPIN compiles a model to pan.c.

The guards, effects, canonicaliser and property checks of one model are
generated as C from the same `Expr` trees the Python engine and z3 use, and
joined with the generic breadth-first explorer in explore.c; the result is
compiled with the system C compiler into a shared object (cached by a hash
of its source) and driven through ctypes. A state is one byte per variable.

The C engine computes the same thing as the Python engine (`explicit.py`):
the same states in the same BFS order, the same canonical forms, the same first
witnesses; tests compare the two on every shipped scenario. Traces are rebuilt
in Python from the parent links, replaying each step through the C successor
function so that concrete process numbers are recovered under symmetry.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .compile import Item, conjuncts, cost, shared_subexpressions, split
from .expr import C, Const, Op, Renderer, Var
from .machine import Model
from .properties import CATALOGUE
from .state import Status, symmetry_groups

RUNTIME = Path(__file__).with_name("explore.c")


class CEngineUnavailable(RuntimeError):
    """No C compiler, or the generated code did not compile."""


class CEmitter(Renderer):
    """C source for `Expr`s over byte states `s` (pre) and `t` (post); cheap conjuncts first."""

    def __init__(self) -> None:
        super().__init__(C, lambda v: f"{'s' if isinstance(v, Var) else 't'}[{v.index}]")

    def node(self, e: Op) -> str:
        if e.kind in ("and", "or"):
            e = Op(e.kind, tuple(sorted(e.args, key=cost)))
        return super().node(e)


def _tree(em: CEmitter, items: list[Item], indent: str, depth: int, lines: list[str]) -> None:
    cut = split(items, depth, 6)
    if cut is None:
        for item in items:
            _one(em, item, indent, lines)
        return
    best, groups, rest = cut
    lines.append(f"{indent}switch (s[{best}]) {{")
    for value, group in sorted(groups.items()):
        lines.append(f"{indent}case {value}: {{")
        _tree(em, group, indent + "    ", depth + 1, lines)
        lines.append(f"{indent}    break; }}")
    lines.append(f"{indent}default: break;")
    lines.append(f"{indent}}}")
    for item in rest:
        _one(em, item, indent, lines)


def _one(em: CEmitter, item: Item, indent: str, lines: list[str]) -> None:
    k, t, cs = item
    guard = em.expr(Op("and", tuple(cs))) if len(cs) > 1 else (em.expr(cs[0]) if cs else "1")
    lines.append(f"{indent}if ({guard}) {{")
    lines.append(f"{indent}    u8 *t = out + (uint64_t)n * NVP;")
    lines.append(f"{indent}    memcpy(t, s, NVP);")
    for i, e in t.updates.items():
        lines.append(f"{indent}    t[{i}] = (u8)({em.expr(e)});")
    lines.append(f"{indent}    if (memcmp(t, s, NVP)) kinds[n++] = {k};")
    lines.append(f"{indent}}}")


def generate(model: Model) -> str:
    lay = model.layout
    ts = model.transitions
    nv = len(lay.names)
    nvp = (nv + 7) // 8 * 8
    moving = [(k, t) for k, t in enumerate(ts) if not t.stutter]
    out: list[str] = []
    defines = [f"#define NV {nv}", f"#define NVP {nvp}", f"#define MAXSUCC {max(1, len(moving))}",
               f"#define NPROPS {len(CATALOGUE)}"]

    # successors
    em = CEmitter()
    out.append("static int successors(const u8 *s, u8 *out, int *kinds) {")
    out.append("    int n = 0;")
    for n, e in enumerate(shared_subexpressions([t.guard for _, t in moving])):
        out.append(f"    int c{n} = {em.expr(e)};")
        em.names[e] = f"c{n}"
    _tree(em, [(k, t, conjuncts(t.guard)) for k, t in moving], "    ", 0, out)
    out.append("    return n;")
    out.append("}")

    # canonicaliser
    out.append("static void canon(u8 *s) {")
    groups = [g for g in symmetry_groups(model.scenario) if len(g) > 1]
    locks = [(lay.index[("lock", o)], lay.index[("holder", o)]) for o in model.scenario.paths]
    nl = len(locks)
    nprocs = len(model.scenario.processes)
    if groups:
        out.append(f"    u8 tmp[NVP]; int relabel[{nprocs + 1}]; int moved = 0;")
        out.append(f"    for (int i = 0; i <= {nprocs}; i++) relabel[i] = i;")
        out.append("    memcpy(tmp, s, NVP);")
    for gi, g in enumerate(groups):
        a0, b0 = lay.blocks[g[0]]
        blen = b0 - a0
        m = len(g)
        starts = ", ".join(str(lay.blocks[p][0]) for p in g)
        out.append("    {")
        out.append(f"        static const int start[{m}] = {{{starts}}};")
        out.append(f"        static const int pid[{m}] = {{{', '.join(str(p + 1) for p in g)}}};")
        out.append(f"        u8 key[{m}][{blen + nl}]; int ord[{m}];")
        for i, p in enumerate(g):
            out.append(f"        memcpy(key[{i}], s + start[{i}], {blen}); ord[{i}] = {i};")
            for j, (li, hi) in enumerate(locks):
                out.append(f"        key[{i}][{blen + j}] = s[{li}] == {p + 1} ? s[{hi}] : 0;")
        out.append(f"        for (int x = 1; x < {m}; x++) {{ int v = ord[x]; int y = x - 1;")
        out.append(f"            while (y >= 0 && memcmp(key[ord[y]], key[v], {blen + nl}) > 0) {{ ord[y + 1] = ord[y]; y--; }}")
        out.append("            ord[y + 1] = v; }")
        out.append(f"        for (int x = 0; x < {m}; x++) if (ord[x] != x) {{")
        out.append(f"            memcpy(s + start[x], tmp + start[ord[x]], {blen});")
        out.append("            relabel[pid[ord[x]]] = pid[x];")
        out.append("            moved = 1; }")
        out.append("    }")
        del gi
    if groups:
        out.append("    if (moved) {")
        for li, _ in locks:
            out.append(f"        s[{li}] = (u8)relabel[s[{li}]];")
        out.append("    }")
    out.append("}")

    statuses = [lay.index[("status", p)] for p in range(nprocs)]
    out.append("static int someone_running(const u8 *s) { return "
               + " || ".join(f"s[{i}] == {Status.RUNNING}" for i in statuses) + "; }")
    returned = (Status.OK, Status.FAILED, Status.KILLED)
    out.append("static int all_returned(const u8 *s) { return "
               + " && ".join("(" + " || ".join(f"s[{i}] == {v}" for v in returned) + ")" for i in statuses)
               + "; }")

    # property checks
    em2 = CEmitter()
    out.append("static void state_checks(explorer_t *e, const u8 *s, int64_t sid) {")
    for p, prop in enumerate(CATALOGUE):
        if prop.state is None or prop.name == "deadlock_free":
            continue
        want = 1 if prop.kind == "always" else 0
        e = prop.state(model.rules, ts)
        out.append(f"    if (e->first_state[{p}] < 0 && (({em2.expr(e)}) ? 1 : 0) != {want}) "
                   f"e->first_state[{p}] = sid;")
    out.append("}")
    out.append("static int step_checks(explorer_t *e, const u8 *s, const u8 *t, int k, int64_t sid) {")
    out.append("    int decided = 0;")
    out.append("    (void)t; (void)s;")
    cases: dict[int, list[str]] = {}
    for p, prop in enumerate(CATALOGUE):
        if prop.step is None:
            continue
        want = 1 if prop.kind == "always" else 0
        for k, t in enumerate(ts):
            if t.stutter:
                continue
            e = prop.step(model.rules, t)
            if e == Const(want):
                continue
            cases.setdefault(k, []).append(
                f"if (e->first_state[{p}] < 0 && (({em2.expr(e)}) ? 1 : 0) != {want}) "
                f"{{ e->first_state[{p}] = sid; e->first_k[{p}] = k; decided |= 1 << {p}; }}")
    if cases:
        out.append("    switch (k) {")
        for k, stmts in sorted(cases.items()):
            out.append(f"    case {k}:")
            out.extend(f"        {x}" for x in stmts)
            out.append("        break;")
        out.append("    default: break;")
        out.append("    }")
    out.append("    return decided;")
    out.append("}")
    always = [p for p, prop in enumerate(CATALOGUE)
              if prop.kind == "always" and prop.name not in ("deadlock_free", "requests_complete")]
    out.append("static int always_decided(explorer_t *e) { return "
               + (" && ".join(f"e->first_state[{p}] >= 0" for p in always) or "1") + "; }")

    runtime = RUNTIME.read_text()
    return (runtime.replace("/*@DEFINES@*/", "\n".join(defines))
            .replace("/*@GENERATED@*/", "\n".join(out)))


def cache_dir() -> Path:
    base = os.environ.get("LOCKSTEP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lockstep")
    return Path(base)


def compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def build(source: str) -> Path:
    """Compile `source` to a shared object, cached by its hash; safe for parallel callers."""
    digest = hashlib.sha256((os.environ.get("LOCKSTEP_CFLAGS", "-O2") + source).encode()).hexdigest()[:24]
    d = cache_dir()
    so = d / f"lockstep-{digest}.so"
    if so.exists():
        return so
    cc = compiler()
    if cc is None:
        raise CEngineUnavailable("no C compiler found (set CC, or install gcc)")
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        src = Path(tmp) / "model.c"
        src.write_text(source)
        out = Path(tmp) / "model.so"
        flags = os.environ.get("LOCKSTEP_CFLAGS", "-O2").split()
        r = subprocess.run([cc, *flags, "-shared", "-fPIC", "-std=c99", "-o", str(out), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise CEngineUnavailable(f"{cc} failed on the generated model:\n{r.stderr[-2000:]}")
        os.replace(out, so)  # atomic: a concurrent builder of the same source wins harmlessly
    return so


_LOADED: dict[str, ctypes.CDLL] = {}  # source hash -> loaded library (generation is the costly part)
_SOURCES: dict[tuple[object, ...], str] = {}  # model identity -> generated source


def model_source(model: Model) -> str:
    key = (model.scenario, model.policy, model.variants, model.faults)
    if key not in _SOURCES:
        _SOURCES[key] = generate(model)
    return _SOURCES[key]


class CModel:
    """A loaded shared object for one (model, symmetry)."""

    def __init__(self, model: Model, symmetry: bool) -> None:
        self.model = model
        self.symmetry = symmetry and any(len(g) > 1 for g in symmetry_groups(model.scenario))
        self.nv = len(model.layout.names)
        self.nvp = (self.nv + 7) // 8 * 8
        self.maxsucc = max(1, sum(1 for t in model.transitions if not t.stutter))
        source = model_source(model)
        digest = hashlib.sha256(source.encode()).hexdigest()
        lib = _LOADED.get(digest)
        if lib is None:
            lib = _LOADED[digest] = ctypes.CDLL(str(build(source)))
        P, U8P = ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte)
        sig: dict[str, tuple[object, list[object]]] = {
            "lockstep_new": (P, []), "lockstep_free": (None, [P]),
            "lockstep_count": (ctypes.c_uint64, [P]), "lockstep_state": (U8P, [P, ctypes.c_uint64]),
            "lockstep_parent": (ctypes.c_int32, [P, ctypes.c_uint64]),
            "lockstep_transitions": (ctypes.c_uint64, [P]), "lockstep_depth": (ctypes.c_int64, [P]),
            "lockstep_complete": (ctypes.c_int, [P]), "lockstep_oom": (ctypes.c_int, [P]),
            "lockstep_deadlock_at": (ctypes.c_int64, [P]),
            "lockstep_first_state": (ctypes.c_int64, [P, ctypes.c_int]),
            "lockstep_first_k": (ctypes.c_int64, [P, ctypes.c_int]),
            "lockstep_first_target": (ctypes.c_int64, [P, ctypes.c_int]),
            "lockstep_rc_bad": (ctypes.c_int64, [P]),
            "lockstep_n_deadlocks": (ctypes.c_uint64, [P]),
            "lockstep_deadlock": (ctypes.c_int64, [P, ctypes.c_uint64]),
            "lockstep_successors": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, P]),
            "lockstep_canon": (None, [ctypes.c_char_p, ctypes.c_char_p]),
            "lockstep_explore": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int64,
                                                ctypes.c_int, ctypes.c_int, ctypes.c_int]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        self.lib = lib

    def encode(self, s: Sequence[int]) -> bytes:
        return bytes(s) + bytes(self.nvp - self.nv)

    def decode(self, b: bytes) -> tuple[int, ...]:
        return tuple(b[: self.nv])

    def successors(self, s: bytes) -> list[tuple[int, bytes]]:
        out = ctypes.create_string_buffer(self.maxsucc * self.nvp)
        kinds = (ctypes.c_int * self.maxsucc)()
        n = self.lib.lockstep_successors(s, out, kinds)
        raw = out.raw
        return [(kinds[i], raw[i * self.nvp:(i + 1) * self.nvp]) for i in range(n)]

    def canon(self, s: bytes) -> bytes:
        if not self.symmetry:
            return s
        out = ctypes.create_string_buffer(self.nvp)
        self.lib.lockstep_canon(s, out)
        return out.raw
