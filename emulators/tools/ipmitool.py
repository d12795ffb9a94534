"""Emulated ``ipmitool``: ``ipmitool dcmi power reading`` from the node's snapshot.

Output as ipmitool's ``ipmi_dcmi.c`` prints it (the lines quoted in docs/device-interfaces.md
§5.3): a blank line, four ``%8d Watts`` readings, the IPMI timestamp as ``ctime()`` prints it (UTC
here), ``%08u Seconds.``, the reading state (``activated``/``deactivated``), a blank line. A node
without host state (``Snapshot.host`` is None) answers like a BMC with DCMI advertised but not
populated: 0 W, ``deactivated`` (§5.3). Tool faults (``Snapshot.faults_for("ipmitool")``): hang,
garbage, half output, exit status. No snapshot: the message ipmitool prints without an IPMI device,
exit status 1.

Layouts of real BMCs (``KWATT_IPMITOOL_LAYOUT``, default ``classic``; tests/fixtures/real/ipmi-dcmi):

- ``classic``: the layout above.
- ``one-line``: iLO 4 (firmware 2.82) and AMI print the timestamp as ``MM/DD/YYYY hh:mm:ss AM/PM TZ``
  without its line end, so ``Sampling period`` follows on the same line.
- ``openbmc``: OpenBMC answers valid watts with the state ``deactivated``, the epoch as timestamp
  and a 0 s period, minimum/maximum/average equal to the instantaneous reading.

Run as ``python -m kwatt.emulators.tools.ipmitool --root ROOT dcmi power reading``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from kwatt.emulators.bmc import PowerStats
from kwatt.emulators.tools._dcmi import TOOL_ERROR, run_dcmi

__all__ = ["LAYOUTS", "LAYOUT_ENV", "TOOL", "main", "render"]

TOOL = "ipmitool"
#: The output layouts of real BMCs (module docstring).
LAYOUTS = ("classic", "one-line", "openbmc")
#: Environment variable choosing the layout for one run.
LAYOUT_ENV = "KWATT_IPMITOOL_LAYOUT"


def render(
    power_w: float | None, stats: PowerStats | None, wall_ns: int, layout: str = "classic"
) -> str:
    """The ``dcmi power reading`` text; ``power_w`` None = reading not available (deactivated)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown ipmitool layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if power_w is None:
        current = minimum = maximum = average = 0
        period_s = 0
    elif layout == "openbmc":
        current = minimum = maximum = average = _u16(power_w)
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
    when = time.gmtime(0 if layout == "openbmc" else wall_ns // 1_000_000_000)
    stamp = time.asctime(when)
    end, tail = "\n", ""
    if layout == "one-line":  # and one more blank line at the end, as both captures have
        stamp, end, tail = time.strftime("%m/%d/%Y %I:%M:%S %p UTC", when), "", "\n"
    active = power_w is not None and layout != "openbmc"
    return (
        "\n"
        f"    Instantaneous power reading:              {current:8d} Watts\n"
        f"    Minimum during sampling period:           {minimum:8d} Watts\n"
        f"    Maximum during sampling period:           {maximum:8d} Watts\n"
        f"    Average power reading over sample period: {average:8d} Watts\n"
        f"    IPMI timestamp:                           {stamp}{end}"
        f"    Sampling period:                          {period_s:08d} Seconds.\n"
        f"    Power reading state is:                   "
        f"{'activated' if active else 'deactivated'}\n"
        "\n"
        f"{tail}"
    )


def _u16(watts: float) -> int:
    return max(0, min(0xFFFF, round(watts)))


def main(argv: Sequence[str] | None = None) -> int:
    layout = os.environ.get(LAYOUT_ENV, "classic")
    return run_dcmi(
        TOOL,
        list(sys.argv[1:] if argv is None else argv),
        expected=("dcmi", "power", "reading"),
        render=lambda power_w, stats, wall_ns: render(power_w, stats, wall_ns, layout),
        usage="usage: ipmitool [options...] dcmi power reading\n",
        no_device=TOOL_ERROR,
    )


if __name__ == "__main__":
    sys.exit(main())
