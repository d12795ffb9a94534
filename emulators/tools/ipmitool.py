"""Emulated ``ipmitool``: ``ipmitool dcmi power reading`` from the node's snapshot.

Output as ipmitool's ``ipmi_dcmi.c`` prints it (the lines quoted in reference/device-interfaces.md
§5.3): a blank line, four ``%8d Watts`` readings, the IPMI timestamp as ``ctime()`` prints it (UTC
here), ``%08u Seconds.``, the reading state (``activated``/``deactivated``), a blank line. A node
without host state (``Snapshot.host`` is None) answers like a BMC with DCMI advertised but not
populated: 0 W, ``deactivated`` (§5.3). Tool faults (``Snapshot.faults_for("ipmitool")``): hang,
garbage, half output, exit status. No snapshot: the message ipmitool prints without an IPMI device,
exit status 1.

Run as ``python -m emulators.tools.ipmitool --root ROOT dcmi power reading``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from emulators.bmc import PowerStats
from emulators.tools._dcmi import TOOL_ERROR, run_dcmi

__all__ = ["TOOL", "main", "render"]

TOOL = "ipmitool"


def render(power_w: float | None, stats: PowerStats | None, wall_ns: int) -> str:
    """The ``dcmi power reading`` text; ``power_w`` None = reading not available (deactivated)."""
    if power_w is None:
        current = minimum = maximum = average = 0
        period_s = 0
    else:
        s = stats or PowerStats.instant(power_w)
        current, minimum, maximum, average = (
            _u16(power_w),
            _u16(s.minimum_w),
            _u16(s.maximum_w),
            _u16(s.average_w),
        )
        period_s = int(s.period_s)
    stamp = time.asctime(time.gmtime(wall_ns // 1_000_000_000))
    return (
        "\n"
        f"    Instantaneous power reading:              {current:8d} Watts\n"
        f"    Minimum during sampling period:           {minimum:8d} Watts\n"
        f"    Maximum during sampling period:           {maximum:8d} Watts\n"
        f"    Average power reading over sample period: {average:8d} Watts\n"
        f"    IPMI timestamp:                           {stamp}\n"
        f"    Sampling period:                          {period_s:08d} Seconds.\n"
        f"    Power reading state is:                   "
        f"{'deactivated' if power_w is None else 'activated'}\n"
        "\n"
    )


def _u16(watts: float) -> int:
    return max(0, min(0xFFFF, round(watts)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_dcmi(
        TOOL,
        list(sys.argv[1:] if argv is None else argv),
        expected=("dcmi", "power", "reading"),
        render=render,
        usage="usage: ipmitool [options...] dcmi power reading\n",
        no_device=TOOL_ERROR,
    )


if __name__ == "__main__":
    sys.exit(main())
