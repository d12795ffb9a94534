"""What the emulated DCMI executables share: arguments, the snapshot, and the tool faults.

Both tools read ``ROOT/.kwatt-emulator/state.json`` (:func:`kwatt.emulators.state.read_snapshot`) and the
BMC statistics next to it (:mod:`kwatt.emulators.bmc`), and honour ``Snapshot.faults_for(tool)``:
``hang_s`` sleeps before answering, ``garbage`` prints random bytes instead of the text, ``truncate``
prints the first half of the text, ``exit_code`` is the exit status (after printing).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kwatt.emulators.bmc import PowerStats, read_stats
from kwatt.emulators.state import read_snapshot

__all__ = ["FREEIPMI_ERROR", "TOOL_ERROR", "run_dcmi"]

#: What ipmitool prints when there is no in-band IPMI device (no snapshot: no BMC).
TOOL_ERROR = "Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory\n"
#: What FreeIPMI prints in the same case.
FREEIPMI_ERROR = "ipmi-dcmi: could not find inband device\n"

Render = Callable[[float | None, PowerStats | None, int], str]


def run_dcmi(
    tool: str,
    argv: list[str],
    *,
    expected: Sequence[str],
    render: Render,
    usage: str,
    no_device: str,
) -> int:
    """Parse ``--root ROOT [options...] <expected>``, render, apply faults; the exit status."""
    root: Path | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--root" and i + 1 < len(argv):
            root = Path(argv[i + 1])
            i += 2
            continue
        rest.append(argv[i])
        i += 1
    if root is None or tuple(rest[-len(expected) :]) != tuple(expected):
        sys.stderr.write(usage)
        return 1
    try:
        snap = read_snapshot(root)
    except (OSError, ValueError, KeyError, TypeError):
        sys.stderr.write(no_device)
        return 1
    faults = snap.faults_for(tool)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    power_w = None if snap.host is None else snap.host.system_power_w
    stats = None if snap.host is None else read_stats(root)
    data = render(power_w, stats, snap.wall_ns).encode("utf-8")
    if faults.garbage:
        rng = random.Random(snap.wall_ns ^ os.getpid())
        data = bytes(rng.randrange(256) for _ in range(max(16, len(data))))
    elif faults.truncate:
        data = data[: len(data) // 2]
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return faults.exit_code
