"""What every emulated vendor executable shares: its launcher script, its ``--root`` option and the
tool faults applied to its output (:class:`kwatt.emulators.state.ToolFaults`)."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path

from kwatt.emulators.state import ToolFaults, write_atomic

__all__ = ["faulty_output", "install_executable", "split_root"]


def install_executable(
    root: Path,
    name: str,
    module: str,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
) -> Path:
    """Write ``ROOT/bin/NAME``, a script that runs ``module.main(['--root', ROOT, *extra, *argv])``
    with this interpreter, so a collector spawns it exactly as it would spawn the vendor's tool."""
    path = root / "bin" / name
    args = ", ".join(repr(a) for a in ("--root", str(root), *extra_args))
    script = (
        f"#!{python}\n"
        "import sys\n"
        f"from {module} import main\n"
        f"sys.exit(main([{args}, *sys.argv[1:]]))\n"
    )
    write_atomic(path, script)
    path.chmod(0o755)
    return path


def split_root(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """``--root ROOT`` (the emulator's own option, anywhere) and the real tool's arguments."""
    root: Path | None = None
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--root":
            value = next(it, None)
            root = None if value is None else Path(value)
        elif arg.startswith("--root="):
            root = Path(arg.removeprefix("--root="))
        else:
            rest.append(arg)
    return root, rest


def faulty_output(out: bytes, faults: ToolFaults, seed: int) -> bytes:
    """``out`` as a faulty tool prints it: random bytes (``garbage``) or its first half
    (``truncate``). ``hang_s`` and ``exit_code`` are the caller's: they frame the output."""
    if faults.garbage:
        return random.Random(seed).randbytes(max(len(out), 64))
    if faults.truncate:
        return out[: len(out) // 2]
    return out
