"""Build and place the emulated ``libnvidia-ml.so.1`` (the C source ``nvml_emu.c`` next to this file).

The library is compiled with the system C compiler (``$CC``, else ``cc``) against NVIDIA's own
``nvml.h`` (PyPI ``nvidia-nvml-dev``, in kwatt's ``dev`` and ``nvidia`` extras; the header lies in
``site-packages/nvidia/<cuda>/include/``), so struct layouts, enum values and the versioned entry
points (``_v2``, ``_v3``) are NVIDIA's. It is built once per source/header/compiler hash into a cache
(``$KWATT_CACHE_DIR``, else ``$XDG_CACHE_HOME/kwatt``, else ``~/.cache/kwatt``) and copied into each
node's state directory, ``ROOT/.kwatt-emulator/nvml/``, next to the ``state`` file that
:mod:`kwatt.emulators.nvidia` rewrites at every step. The library finds its state through
``$KWATT_NVML_STATE`` or, without it, as ``state`` beside itself, so a process started with
``LD_LIBRARY_PATH=ROOT/.kwatt-emulator/nvml`` sees that node through the real nvidia-ml-py
(``pynvml`` loads ``libnvidia-ml.so.1`` with ``ctypes.CDLL``, which searches ``LD_LIBRARY_PATH``;
the dynamic loader reads that variable only when a process starts).

:func:`load_in_process` serves a process that is already running (tests, ``kwatt doctor``): it
loads the node's copy by path; a later ``dlopen("libnvidia-ml.so.1")`` (pynvml's) then returns
the library already loaded under that soname.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

__all__ = [
    "LIBRARY_NAME",
    "SOURCE",
    "STATE_ENV",
    "LibraryUnavailable",
    "build",
    "find_compiler",
    "find_header",
    "install",
    "library_dir",
    "load_in_process",
    "state_path",
]

#: The soname pynvml (and every NVML client) loads.
LIBRARY_NAME = "libnvidia-ml.so.1"
#: Environment variable naming the state file (overrides the file beside the library).
STATE_ENV = "KWATT_NVML_STATE"
SOURCE = Path(__file__).with_name("nvml_emu.c")
_CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-fvisibility=hidden")


class LibraryUnavailable(RuntimeError):
    """The emulated NVML library cannot be built here (no compiler, no ``nvml.h``, a failed build)."""


def library_dir(root: Path) -> Path:
    """Where a node's copy of the library and its state file live."""
    return root / ".kwatt-emulator" / "nvml"


def state_path(root: Path) -> Path:
    return library_dir(root) / "state"


def find_header() -> Path:
    """NVIDIA's ``nvml.h``: ``$KWATT_NVML_INCLUDE``, the ``nvidia-nvml-dev`` wheel, or the CUDA
    toolkit; :class:`LibraryUnavailable` naming what to install when there is none."""
    env = os.environ.get("KWATT_NVML_INCLUDE")
    if env:
        header = Path(env) / "nvml.h"
        if header.is_file():
            return header
        raise LibraryUnavailable(f"KWATT_NVML_INCLUDE={env}: no nvml.h there")
    roots = [Path(p) for p in sys.path if p] + [Path(sysconfig.get_paths()["purelib"])]
    for base in roots:
        nvidia = base / "nvidia"
        if nvidia.is_dir():
            found = sorted(nvidia.glob("*/include/nvml.h"), reverse=True)
            if found:
                return found[0]
    for system in (Path("/usr/local/cuda/include/nvml.h"), Path("/usr/include/nvml.h")):
        if system.is_file():
            return system
    raise LibraryUnavailable(
        "NVIDIA's nvml.h was not found: install the nvidia-nvml-dev wheel "
        "(pip install 'kwatt[nvidia]' or 'kwatt[dev]') or set KWATT_NVML_INCLUDE to its directory"
    )


def find_compiler() -> str:
    """The C compiler (``$CC``, else ``cc``, ``gcc``, ``clang``); :class:`LibraryUnavailable`."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name:
            path = shutil.which(name)
            if path is not None:
                return path
    raise LibraryUnavailable(
        "no C compiler (cc, gcc or clang) on PATH: the emulated libnvidia-ml.so.1 is built from "
        "C source; install one (Debian: apt-get install gcc)"
    )


def _cache_dir() -> Path:
    env = os.environ.get("KWATT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kwatt"


def build(cache_dir: Path | None = None) -> Path:
    """The compiled library (built now unless the cache has this source's build)."""
    header = find_header()
    compiler = find_compiler()
    digest = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        header.read_bytes(),
        compiler.encode(),
        " ".join(_CFLAGS).encode(),
    ):
        digest.update(part)
        digest.update(b"\0")
    cache = (cache_dir or _cache_dir()) / f"libnvml-{digest.hexdigest()[:16]}"
    target = cache / LIBRARY_NAME
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LibraryUnavailable(f"cannot create the build cache {cache}: {e}") from None
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / LIBRARY_NAME
        argv = [
            compiler,
            *_CFLAGS,
            f"-I{header.parent}",
            f"-Wl,-soname,{LIBRARY_NAME}",
            "-o",
            str(out),
            str(SOURCE),
            "-lpthread",
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LibraryUnavailable(f"{compiler} could not build {SOURCE.name}: {e}") from None
        if proc.returncode != 0 or not out.is_file():
            raise LibraryUnavailable(
                f"{compiler} failed to build {SOURCE.name} (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()[-2000:]}"
            )
        out.replace(target)  # atomic: a concurrent builder of the same hash writes the same file
    return target


def install(root: Path, cache_dir: Path | None = None) -> Path:
    """Copy the built library into ``ROOT/.kwatt-emulator/nvml/``; returns that directory."""
    built = build(cache_dir)
    directory = library_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LIBRARY_NAME
    tmp = directory / f".{LIBRARY_NAME}.{os.getpid()}.tmp"
    shutil.copyfile(built, tmp)
    tmp.replace(target)
    return directory


def load_in_process(root: Path) -> ctypes.CDLL:
    """Load ``root``'s library into this process and point it at ``root``'s state.

    Only the first library loaded under the soname stays loaded; later calls repoint the state
    (``$KWATT_NVML_STATE``, read at ``nvmlInit``). Call before nvidia-ml-py's first ``nvmlInit``.
    """
    lib = library_dir(root) / LIBRARY_NAME
    if not lib.is_file():
        raise LibraryUnavailable(f"{lib}: not installed (the node's NVIDIA surface installs it)")
    os.environ[STATE_ENV] = str(state_path(root))
    return ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
