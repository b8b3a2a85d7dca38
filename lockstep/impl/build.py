"""Builder processes and output registration (Guix build.cc startBuilder / registerOutputs).

A builder is the .drv's ``builder`` run with its ``args`` in a fresh temporary build
directory, with the environment Guix gives it: ``PATH=/path-not-set``,
``HOME=/homeless-shelter``, ``NIX_STORE``, ``NIX_BUILD_TOP`` and the ``TMPDIR`` family
pointing at the build directory, then every ``env`` entry of the derivation (which
includes ``out`` and each other output's path). stdin is /dev/null; stdout and stderr go
to one pipe that the worker watches. The builder runs in its own session, so killing
the process group kills everything it started.

Deviation: there is no chroot and no build user (the daemon is not root). As Guix with
``build-use-chroot = false``, a builder writes its outputs directly at their store
paths; "moving into the store" is therefore a no-op, and the rest of registerOutputs
(existence, fixed-output hash check, canonicalisation, hashing, reference scanning,
one registration transaction) is as upstream.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass

from lockstep.impl import derivations as drvs
from lockstep.impl.archive import hash_path
from lockstep.impl.hash import HashSink
from lockstep.impl.local_store import LocalStore, ValidPathInfo, canonicalise_path_metadata
from lockstep.impl.references import scan_for_references
from lockstep.impl.store_api import parse_drv_name


class BuildError(Exception):
    """The build failed (Guix BuildError): the goal fails, the worker goes on."""

    def __init__(self, message: str, rejected_output: bool = False) -> None:
        super().__init__(message)
        self.rejected_output = rejected_output


@dataclass
class Builder:
    """A running builder: its pid and the read side of its output pipe."""

    proc: subprocess.Popen[bytes]
    fd: int
    tmp_dir: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def builder_env(store: LocalStore, drv: drvs.Derivation, tmp_dir: str) -> dict[str, str]:
    env = {
        "PATH": "/path-not-set",
        "HOME": "/homeless-shelter",
        "NIX_STORE": store.store.path,
        "NIX_BUILD_CORES": "1",
        "NIX_BUILD_TOP": tmp_dir,
        "TMPDIR": tmp_dir,
        "TEMPDIR": tmp_dir,
        "TMP": tmp_dir,
        "TEMP": tmp_dir,
        "PWD": tmp_dir,
    }
    env.update(drv.env)
    return env


def start_builder(store: LocalStore, drv: drvs.Derivation, drv_path: str, build_dir: str | None) -> Builder:
    """Fork and exec the builder; BuildError if it cannot even be started."""
    name = parse_drv_name(store.store.store_path_to_name(drv_path))
    tmp_dir = tempfile.mkdtemp(prefix=f"lockstep-build-{name}-", dir=build_dir)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [drv.builder, *drv.args], executable=drv.builder, cwd=tmp_dir,
            env=builder_env(store, drv, tmp_dir), stdin=subprocess.DEVNULL, stdout=w, stderr=w,
            start_new_session=True, close_fds=True, umask=0o022,
        )
    except OSError as e:
        os.close(r)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise BuildError(f"cannot start builder {drv.builder!r} of {drv_path!r}: {e.strerror}") from e
    finally:
        os.close(w)
    os.set_blocking(r, False)
    return Builder(proc, r, tmp_dir)


def kill_builder(builder: Builder) -> None:
    """killChild: SIGKILL the builder's whole process group and reap it."""
    try:
        os.killpg(builder.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    builder.proc.wait()


def _check_fixed_output(path: str, out: drvs.DerivationOutput) -> None:
    want = out.fixed_hash()
    if out.recursive:
        got, _ = hash_path(path, want.algo)
    else:
        if not os.path.isfile(path) or os.path.islink(path):
            raise BuildError(f"output {path!r} of a flat fixed-output derivation is not a regular file",
                             rejected_output=True)
        sink = HashSink(want.algo)
        with open(path, "rb") as f:
            sink(f.read())
        got = sink.finish()
    if got != want:
        raise BuildError(f"hash mismatch in fixed-output path {path!r}: wanted {want}, got {got}",
                         rejected_output=True)


def input_paths(store: LocalStore, drv: drvs.Derivation) -> set[str]:
    """inputsRealised: the closure of the used outputs of the input drvs, plus the sources."""
    roots: set[str] = set(drv.input_srcs)
    for in_path, wanted in drv.input_drvs.items():
        in_drv = store.read_derivation(in_path)
        for name in wanted:
            if name not in in_drv.outputs:
                raise BuildError(f"derivation {in_path!r} has no output {name!r}")
            roots.add(in_drv.outputs[name].path)
    return store.compute_fs_closure(roots)


def register_outputs(store: LocalStore, drv: drvs.Derivation, drv_path: str, inputs: set[str]) -> None:
    """Check, canonicalise, hash and scan every output, then register all in one commit."""
    outputs = drv.output_paths()
    candidates = inputs | set(outputs.values())
    infos: list[ValidPathInfo] = []
    for name, path in sorted(outputs.items()):
        if not os.path.lexists(path):
            raise BuildError(f"builder for {drv_path!r} failed to produce output path {path!r}")
        st = os.lstat(path)
        if st.st_mode & 0o022 and not os.path.islink(path):
            raise BuildError(f"suspicious ownership or permission on {path!r}; rejecting this build output",
                             rejected_output=True)
        if drv.is_fixed_output():
            _check_fixed_output(path, drv.outputs[name])
        canonicalise_path_metadata(path)
        refs = scan_for_references(path, candidates, store.store)
        infos.append(store.path_info_from_disk(path, refs, drv_path))
    store.register_valid_paths(infos)


def builder_succeeded(builder: Builder) -> tuple[bool, str]:
    """Reap the builder; (exit ok, a description of its status)."""
    status = builder.proc.wait()
    if status == 0:
        return True, "exit status 0"
    if status < 0:
        return False, f"killed by signal {-status}"
    return False, f"exit status {status}"


def remove_tmp_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
