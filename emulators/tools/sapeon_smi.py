"""The emulated ``sapeon-smi`` executable: an ASSUMED tool (see :mod:`kwatt.emulators.sapeon`).

``python -m kwatt.emulators.tools.sapeon_smi --root ROOT [--json|-j]`` prints the node's Sapeon devices in
the assumed JSON format (``--json``) or as a short summary for people. docs/device-interfaces.md
§3: Sapeon publishes no monitoring tool; this one is invented and labelled so (``schema``).

Tool faults (``Snapshot.tool_faults`` entry ``sapeon-smi``): ``hang_s`` sleeps before answering,
``garbage`` prints random bytes instead, ``truncate`` prints the first half of the output,
``exit_code`` exits with that status after printing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kwatt.emulators.executables import faulty_output
from kwatt.emulators.sapeon import TOOL, load_view, render_json, render_summary

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=TOOL, description="Sapeon devices (kwatt assumed tool)")
    parser.add_argument("--root", type=Path, required=True, help=argparse.SUPPRESS)
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        v = load_view(args.root)
    except (OSError, ValueError) as e:
        print(f"{TOOL}: no Sapeon driver: {e}", file=sys.stderr)
        return 1
    faults = v.snapshot.faults_for(TOOL)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    out = (render_json(v) if args.json else render_summary(v)).encode()
    sys.stdout.buffer.write(faulty_output(out, faults, v.snapshot.wall_ns))
    sys.stdout.buffer.flush()
    return faults.exit_code


if __name__ == "__main__":
    sys.exit(main())
