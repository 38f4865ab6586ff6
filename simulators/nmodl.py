"""Compile NMODL mechanism folders once into a content-keyed cache, then load them.

Compiling is slow (seconds) and every worker process needs the mechanisms, so a folder
is compiled at most once per (file contents, NEURON version, machine) and reused by all
later processes. Builds happen in a private temporary folder that is renamed into place
only when complete, under a file lock, so concurrent first uses never see (or produce)
a half-built library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import SimulatorError
from .locking import exclusive_lock

BUNDLED_MECHANISMS = Path(__file__).resolve().parent / "mechanisms"
"""The ns_AMPA / ns_NMDA / ns_GABAA synapses shipped with neurosearch (fixed step, also CoreNEURON)."""
CVODE_MECHANISMS = Path(__file__).resolve().parent / "mechanisms_cvode"
"""The same synapses with their decay as STATEs (what CVode needs); ~1.8x slower at fixed step on l5pc."""

SOURCE_SUFFIXES = (".mod", ".inc", ".h", ".hpp", ".c", ".cpp")
LIBRARY_NAME = "libnrnmech.so"
CORENEURON_LIBRARY_NAME = "libcorenrnmech.so"
FOR_CORENEURON = ' for CoreNEURON (integrator = "fixed" runs them without it)'

compile_count = 0
"""How many times this process actually ran nrnivmodl (cache misses); for tests and logs."""

_loaded: set[str] = set()
"""Build keys (a build folder's name: the hash of its sources, NEURON version and machine)
loaded into this process; the same sources compiled in another cache are the same library."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def cache_root() -> Path:
    """``$NEUROSEARCH_CACHE`` if set, else ``~/.cache/neurosearch``."""
    env = os.environ.get("NEUROSEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neurosearch"


def neuron_version() -> str:
    """NEURON's version without importing it (the main process need not load NEURON)."""
    for dist in ("neuron", "neuron-nightly", "neuron-gpu", "neuron-gpu-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import neuron  # a source build: no distribution metadata

    return str(neuron.__version__)


def source_files(folder: Path) -> list[Path]:
    """The files nrnivmodl reads from ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES)


def folder_digest(folder: Path) -> str:
    """sha256 over the names and contents of a mechanism folder's source files."""
    digest = hashlib.sha256()
    for path in source_files(folder):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def bundled_mechanisms(integrator: str) -> Path:
    """The synapse folder for ``integrator``: CVode needs the STATE form, the others the faster one."""
    return CVODE_MECHANISMS if integrator == "cvode" else BUNDLED_MECHANISMS


def _library(build_dir: Path) -> Path:
    return build_dir / platform.machine() / LIBRARY_NAME


def coreneuron_library(build_dir: Path) -> Path | None:
    """The CoreNEURON mechanism library of a build made with ``coreneuron=True`` (else None)."""
    path = build_dir / platform.machine() / CORENEURON_LIBRARY_NAME
    return path if path.exists() else None


def _nrnivmodl() -> str:
    found = shutil.which("nrnivmodl") or shutil.which("nrnivmodl", path=str(Path(sys.executable).parent))
    if not found:
        raise SimulatorError("nrnivmodl was not found on PATH; is NEURON installed in this environment?")
    return found


_NMODL_ERROR = re.compile(r"Error: (?P<what>.*?) at line (?P<line>\d+) in file (?P<file>\S+)")
_COMPILER_ERROR = re.compile(r"(?P<file>[^\s:]+)\.(?:cpp|c):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<what>.*)")


def first_error(output: str) -> str:
    """nrnivmodl's first diagnosis in one line: the .mod file, the line and what is wrong.

    NMODL's translator reports ``Error: … at line N in file x.mod`` followed by the
    offending source line; a C++ error in the code generated from ``x.mod`` (often its
    VERBATIM block) is reported against ``x.cpp``, so the .mod file is named instead."""
    lines = [line.strip() for line in _ANSI.sub("", output).splitlines()]
    for k, line in enumerate(lines):
        found = _NMODL_ERROR.search(line)
        if found:
            kind = lines[k - 1].rstrip(":") + ": " if k and lines[k - 1].endswith("error:") else ""
            source = f' ("{lines[k + 1]}")' if k + 1 < len(lines) and lines[k + 1] else ""
            return f"{found['file']} line {found['line']}: {kind}{found['what']}{source}"
        found = _COMPILER_ERROR.search(line)
        if found:
            mod = Path(found["file"]).name + ".mod"
            return f"{mod} (line {found['line']} of the C++ made from it): {found['what']}"
    errors = [line for line in lines if "error" in line.lower() and not line.startswith(("make:", "Traceback"))]
    return errors[0] if errors else next((line for line in reversed(lines) if line), "no output")


def compile_mechanisms(folder: Path | str, root: Path | None = None, *, coreneuron: bool = False) -> Path:
    """Compile ``folder``'s mechanisms (once) and return the cached build folder.

    The returned folder is what ``neuron.load_mechanisms`` expects (it holds
    ``<machine>/libnrnmech.so``). ``coreneuron``: build with ``nrnivmodl -coreneuron``,
    which adds ``<machine>/libcorenrnmech.so`` for CoreNEURON. Raises ``SimulatorError``
    with nrnivmodl's first error when the folder does not compile (its whole output goes
    to a log file).
    """
    global compile_count
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise SimulatorError(f"mechanism folder {folder} does not exist")
    sources = source_files(folder)
    if not any(p.suffix == ".mod" for p in sources):
        raise SimulatorError(f"mechanism folder {folder} holds no .mod files")
    flavour = "|coreneuron" if coreneuron else ""
    key = hashlib.sha256(
        f"{folder_digest(folder)}|neuron {neuron_version()}|{platform.machine()}{flavour}".encode()
    ).hexdigest()[:20]
    parent = (root or cache_root()) / "mechanisms"
    target = parent / key
    if _library(target).exists():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(parent / f".{key}.lock"):
        if _library(target).exists():  # another process built it while we waited
            return target
        build = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=parent))
        try:
            for path in sources:
                shutil.copy2(path, build / path.name)
            proc = subprocess.run(
                [_nrnivmodl(), *(["-coreneuron"] if coreneuron else [])],
                cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if proc.returncode != 0 or not _library(build).exists() or (coreneuron and not coreneuron_library(build)):
                log = parent / f"failed-{key}.log"
                log.write_text(proc.stdout)
                raise SimulatorError(
                    f"NEURON mechanisms in {folder} failed to compile{FOR_CORENEURON if coreneuron else ''}: "
                    f"{first_error(proc.stdout)} (nrnivmodl's whole output: {log})"
                )
            (build / "SOURCE").write_text(f"{folder}\n")
            if target.exists():  # a stale, incomplete leftover: replace it
                shutil.rmtree(target)
            os.rename(build, target)
            compile_count += 1
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)
    return target


def merged_sources(folders: list[Path], root: Path | None = None) -> Path:
    """One cached folder holding the sources of all ``folders``: CoreNEURON loads a single
    mechanism library per process, so the bundled synapses and a custom cell's channels
    are compiled together for it."""
    files: dict[str, Path] = {}
    for folder in folders:
        for path in source_files(folder):
            if path.name in files and files[path.name].read_bytes() != path.read_bytes():
                raise SimulatorError(f"mechanism file {path.name} is in both {files[path.name].parent} and {folder}")
            files[path.name] = path
    key = hashlib.sha256("|".join(folder_digest(f) for f in folders).encode()).hexdigest()[:20]
    parent = (root or cache_root()) / "sources"
    target = parent / key
    if target.is_dir():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent))
    for name, path in files.items():
        shutil.copy2(path, staging / name)
    try:
        os.rename(staging, target)
    except OSError:  # another process made it first: same content
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_compiled(build_dir: Path) -> None:
    """Load an already compiled build folder into this process's NEURON, once."""
    build_dir = Path(build_dir)
    if build_dir.name in _loaded:
        return
    import neuron

    if not _library(build_dir).exists():
        raise SimulatorError(f"no compiled mechanism library in {build_dir}")
    try:
        ok = neuron.load_mechanisms(str(build_dir), warn_if_already_loaded=False)
    except RuntimeError as exc:  # hoc error, e.g. a mechanism name that is already taken
        source = (build_dir / "SOURCE").read_text().strip() if (build_dir / "SOURCE").exists() else build_dir
        raise SimulatorError(f"NEURON could not load the mechanisms from {source}: {exc}") from None
    if not ok:
        raise SimulatorError(f"NEURON could not load the mechanisms from {build_dir}")
    _loaded.add(build_dir.name)


def load_mechanisms(folder: Path | str, root: Path | None = None) -> Path:
    """Compile (if needed) and load ``folder``'s mechanisms; idempotent within a process."""
    build_dir = compile_mechanisms(folder, root)
    load_compiled(build_dir)
    return build_dir
