"""The emulated ``rbln-smi`` / ``rbln-stat`` executable (docs/device-interfaces.md §2.1).

``python -m kwatt.emulators.tools.rbln_smi --root ROOT [--prog rbln-stat] [-j] [-g]`` prints what the real
tool prints for the node under ``ROOT``: the text tables without options, the JSON document with
``-j``/``--json`` (``-g``/``--group`` adds ``group_id``). The SDK version imitated is the surface's
(``ROOT/.kwatt-emulator/rebellions.json``) unless ``KWATT_RBLN_SDK`` names another one (see
:mod:`kwatt.emulators.rebellions`).

Tool faults (``Snapshot.tool_faults`` under the invoked name; ``rbln-stat`` falls back to the entry of
``rbln-smi``): ``hang_s`` sleeps before answering, ``garbage`` prints random bytes instead,
``truncate`` prints the first half of the output, ``exit_code`` exits with that status after printing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kwatt.emulators.executables import faulty_output
from kwatt.emulators.rebellions import TOOL, TOOL_LEGACY, load_view, render_json, render_text
from kwatt.emulators.state import Snapshot, ToolFaults

__all__ = ["main"]


def _faults(snap: Snapshot, prog: str) -> ToolFaults:
    names = [name for name, _ in snap.tool_faults]
    if prog in names or prog != TOOL_LEGACY:
        return snap.faults_for(prog)
    return snap.faults_for(TOOL)


def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--root", type=Path, required=True)
    pre.add_argument("--prog", default=TOOL, choices=(TOOL, TOOL_LEGACY))
    ns, rest = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog=ns.prog, description="RBLN device status (emulated)")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("-g", "--group", action="store_true", help="include group information")
    args = parser.parse_args(rest)
    try:
        v = load_view(ns.root)
    except (OSError, ValueError) as e:
        print(f"{ns.prog}: failed to get device information: {e}", file=sys.stderr)
        return 1
    faults = _faults(v.snapshot, ns.prog)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    out = (render_json(v, groups=args.group) if args.json else render_text(v)).encode()
    sys.stdout.buffer.write(faulty_output(out, faults, v.snapshot.wall_ns))
    sys.stdout.buffer.flush()
    return faults.exit_code


if __name__ == "__main__":
    sys.exit(main())
