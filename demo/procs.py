"""The demo's child processes: started in their own session with a log file, stopped by PID.

:class:`Procs` starts each child (emulator, agent, ingest) with stdout piped and stderr to
``LOG_DIR/NAME.log``, and stops them by PID in reverse start order (SIGTERM, then SIGKILL of the
process group after a timeout); :meth:`Procs.kill` is the crash a fault injects. :class:`Children`
holds the ingest and the agents as they are now (a killed one is replaced by its restart).
:func:`read_ready_line` waits for an emulator's JSON ready line. :class:`DemoError` is what the demo
reports and exits 1 on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Children",
    "DemoError",
    "Proc",
    "Procs",
    "log_tail",
    "python_command",
    "read_ready_line",
]


class DemoError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    env: Mapping[str, str] | None = None  # added to the demo's environment


@dataclass
class Procs:
    """Children of the demo, each in its own session, stopped by PID in reverse start order."""

    items: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None
    ) -> Proc:
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        proc = Proc(name, p, log_path, argv, env)
        self.items.append(proc)
        return proc

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc``'s process group by PID (a crash: no flush, no stats file)."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
        if proc.popen.stdout:
            proc.popen.stdout.close()

    def stop(self, proc: Proc, timeout_s: float = 15.0) -> int:
        p = proc.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p.stdout:
            p.stdout.close()
        return p.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            self.stop(proc, timeout_s=5.0)


@dataclass
class Children:
    """The ingest and the agents as they are now (a killed one is replaced by its restart)."""

    ingest: Proc
    agents: list[tuple[str, Proc, Path]]


def python_command() -> list[str]:
    return [sys.executable]


def read_ready_line(proc: Proc, timeout_s: float = 20.0) -> dict[str, str]:
    """The emulator prints one JSON line when its surfaces are up."""
    assert proc.popen.stdout is not None
    deadline = time.monotonic() + timeout_s
    os.set_blocking(proc.popen.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise DemoError(f"{proc.name} exited: {log_tail(proc.log_path)}")
        chunk = proc.popen.stdout.read()
        if chunk:
            buf += chunk
            if b"\n" in buf:
                doc = json.loads(buf.split(b"\n", 1)[0])
                if not isinstance(doc, dict):
                    raise DemoError(f"{proc.name}: unexpected ready line {buf!r}")
                return {str(k): str(v) for k, v in doc.items()}
        time.sleep(0.02)
    raise DemoError(f"{proc.name}: not ready within {timeout_s:g} s: {log_tail(proc.log_path)}")


def log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return "(no log)"
