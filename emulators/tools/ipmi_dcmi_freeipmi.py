"""Emulated FreeIPMI ``ipmi-dcmi --get-system-power-statistics`` from the node's snapshot.

Output as FreeIPMI's ``ipmi-dcmi`` prints it (the lines quoted in docs/device-interfaces.md
§5.3, with their mixed ``Watts``/``watts``): current, minimum, maximum and average power, the
timestamp as ``%m/%d/%Y - %H:%M:%S`` (UTC here), the statistics period in milliseconds, and
``Power Measurement : Active`` (or ``Not Available`` when the node has no host state). Tool faults
are ``Snapshot.faults_for("ipmi-dcmi")``; no snapshot prints FreeIPMI's "could not find inband
device", exit status 1.

Run as ``python -m kwatt.emulators.tools.ipmi_dcmi_freeipmi --root ROOT --get-system-power-statistics``;
the node installs it as ``ROOT/bin/ipmi-dcmi``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from kwatt.emulators.bmc import PowerStats
from kwatt.emulators.tools._dcmi import FREEIPMI_ERROR, run_dcmi

__all__ = ["TOOL", "main", "render"]

TOOL = "ipmi-dcmi"


def render(power_w: float | None, stats: PowerStats | None, wall_ns: int) -> str:
    """The ``--get-system-power-statistics`` text; ``power_w`` None = not available."""
    if power_w is None:
        current = minimum = maximum = average = period_ms = 0
    else:
        s = stats or PowerStats.instant(power_w)
        current, minimum, maximum, average = (
            _u16(power_w),
            _u16(s.minimum_w),
            _u16(s.maximum_w),
            _u16(s.average_w),
        )
        period_ms = min(0xFFFFFFFF, round(s.period_s * 1000))
    stamp = time.strftime("%m/%d/%Y - %H:%M:%S", time.gmtime(wall_ns // 1_000_000_000))
    state = "Not Available" if power_w is None else "Active"
    return (
        f"Current Power                        : {current} Watts\n"
        f"Minimum Power over sampling duration : {minimum} watts\n"
        f"Maximum Power over sampling duration : {maximum} watts\n"
        f"Average Power over sampling duration : {average} watts\n"
        f"Time Stamp                           : {stamp}\n"
        f"Statistics reporting time period     : {period_ms} milliseconds\n"
        f"Power Measurement                    : {state}\n"
    )


def _u16(watts: float) -> int:
    return max(0, min(0xFFFF, round(watts)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_dcmi(
        TOOL,
        list(sys.argv[1:] if argv is None else argv),
        expected=("--get-system-power-statistics",),
        render=render,
        usage="Usage: ipmi-dcmi [OPTION...] --get-system-power-statistics\n",
        no_device=FREEIPMI_ERROR,
    )


if __name__ == "__main__":
    sys.exit(main())
