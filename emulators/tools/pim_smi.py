"""The emulated ``pim-smi`` executable: an ASSUMED tool for the phase-2/3 PIM devices (see
:mod:`kwatt.emulators.pim`; no vendor publishes one).

``python -m kwatt.emulators.tools.pim_smi --root ROOT [--json|-j] [--vendor V]`` prints the node's PIM
devices in the assumed JSON format (``--json``) or as a short summary for people; ``--vendor`` keeps
one vendor's devices.

Tool faults (``Snapshot.tool_faults`` entry ``pim-smi``): ``hang_s`` sleeps before answering,
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
from kwatt.emulators.pim import PIM_VENDORS, TOOL, load_view, render_json, render_summary

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=TOOL, description="PIM devices (kwatt assumed tool)")
    parser.add_argument("--root", type=Path, required=True, help=argparse.SUPPRESS)
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("--vendor", choices=PIM_VENDORS, help="only this vendor's devices")
    args = parser.parse_args(argv)
    try:
        v = load_view(args.root, args.vendor)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"{TOOL}: no PIM driver: {e}", file=sys.stderr)
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
