"""The emulated BMC's power statistics, shared by its IPMI DCMI executables and its Redfish service.

A BMC answers DCMI Get Power Reading (docs/device-interfaces.md §5.3) and Redfish
``PowerMetrics`` (§5.4) with the current reading plus minimum, maximum and average over a statistics
period. The node's host surface keeps those over the period since the node started (the average is
the exact mean: true system energy / elapsed time) and writes them to
``ROOT/.kwatt-emulator/bmc.json`` at every step; the executables are separate processes and read it
next to the snapshot. A missing or unreadable file means "no statistics yet": the tools then show the
current reading for all four over a 1 s period, as the ipmitool example of §5.3 (``00000001 Seconds``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from kwatt.emulators.state import HostState, write_atomic

__all__ = ["PowerStats", "PowerStatsTracker", "read_stats", "stats_path", "write_stats"]


@dataclass(frozen=True, slots=True)
class PowerStats:
    """System power statistics over ``period_s`` (W)."""

    period_s: float
    minimum_w: float
    maximum_w: float
    average_w: float

    @classmethod
    def instant(cls, power_w: float) -> PowerStats:
        return cls(1.0, power_w, power_w, power_w)


class PowerStatsTracker:
    """Running min/max of system power since the first step; average from the true energy."""

    def __init__(self) -> None:
        self._min = math.inf
        self._max = -math.inf
        self._first: HostState | None = None

    def update(self, host: HostState) -> PowerStats:
        if self._first is None:
            self._first = host
        self._min = min(self._min, host.system_power_w)
        self._max = max(self._max, host.system_power_w)
        elapsed = host.t_s - self._first.t_s
        if elapsed <= 0:
            return PowerStats.instant(host.system_power_w)
        average = (host.system_energy_j - self._first.system_energy_j) / elapsed
        return PowerStats(elapsed, self._min, self._max, average)


def stats_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "bmc.json"


def write_stats(root: Path, stats: PowerStats) -> None:
    write_atomic(stats_path(root), json.dumps(asdict(stats), separators=(",", ":")))


def read_stats(root: Path) -> PowerStats | None:
    """The latest statistics, or None when there are none (yet)."""
    try:
        doc = json.loads(stats_path(root).read_text(encoding="utf-8"))
        return PowerStats(
            period_s=float(doc["period_s"]),
            minimum_w=float(doc["minimum_w"]),
            maximum_w=float(doc["maximum_w"]),
            average_w=float(doc["average_w"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
