"""Snapshots of emulated hardware, the boundary between device physics and the driver surfaces.

The physics (workloads, power, thermal, clocks, throttling) produces one :class:`DeviceState` per device
and one :class:`HostState` per node at every step; each surface writer (a sysfs tree, a vendor tool's
output, an NVML-compatible module, an HTTP endpoint) renders these snapshots in its own native format and
units. Values here are the *true* values in SI units; the surfaces add the vendor's units, rounding,
counter widths and quirks. Faults are part of the state (``present``, ``stuck``) so every surface shows
them the way the real one would.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DeviceState",
    "HostState",
    "Snapshot",
    "ToolFaults",
    "read_snapshot",
    "snapshot_path",
    "write_atomic",
    "write_snapshot",
]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One accelerator at emulator time ``t_s`` (seconds since the node started)."""

    index: int  # enumeration index (npu0, rbln1, GPU 2); may change on re-enumeration
    model: str  # catalogue key, e.g. "rngd", "atom-max", "h100-sxm"
    vendor: str  # "furiosa", "rebellions", "sapeon", "nvidia"
    serial: str  # stable identity
    uuid: str  # stable identity
    bus_id: str  # PCI BDF "0000:6d:00.0", stable
    t_s: float
    util_ratio: float  # 0-1, busy share over the last step
    power_w: float  # instantaneous board power
    energy_j: float  # true energy since the node started (surfaces apply width/wrap/units)
    temp_c: float
    clock_hz: float
    mem_used_bytes: int
    mem_total_bytes: int
    power_limit_w: float
    throttle_thermal: bool = False
    throttle_power: bool = False
    present: bool = True  # False while the device has "disappeared" (fault)
    stuck: bool = False  # True while a sensor is stuck (surfaces repeat the last value)
    # --- added by the physics engineer (defaults keep older writers and readers working) ---
    governor: str = "performance"  # clock governor: "performance" | "powersave"
    ambient_c: float = 25.0  # inlet/board ambient temperature
    core_util: tuple[float, ...] = ()  # per core (PE, engine, SM group), 0-1, over the last step
    cycles: float = 0.0  # core-clock cycles since the last counter reset (true, not wrapped)
    busy_cycles: float = 0.0  # cycles spent executing tasks since the last reset (<= cycles)
    reset_count: int = 0  # counter resets so far (fault or device reset): counters restart from 0
    energy_at_reset_j: float = 0.0  # true energy at the last reset: counter = energy_j - this
    na_fields: tuple[str, ...] = ()  # fields the surface must show as not available (N/A) (fault)
    nan_fields: tuple[str, ...] = ()  # fields the surface must show as NaN (fault)
    card: int = 0  # physical card of the device (an ATOM-Max card shows as 4 devices)
    service: str = ""  # the service this device serves (ground truth, not rendered)


@dataclass(frozen=True, slots=True)
class HostState:
    """The node's host power at emulator time ``t_s``: CPU packages, DRAM, and the whole system."""

    t_s: float
    cpu_power_w: tuple[float, ...]  # per package
    cpu_energy_j: tuple[float, ...]  # true, per package (RAPL renders µJ and wraps)
    dram_power_w: tuple[float, ...]
    dram_energy_j: tuple[float, ...]
    system_power_w: float  # what the BMC reports (IPMI DCMI / Redfish): host + accelerators + fans
    system_energy_j: float


# ------------------------------------------------------------------------ snapshot file
#
# Emulated vendor *executables* (ROOT/bin/nvidia-smi, rbln-smi, furiosa-smi, ipmitool, ...) are separate
# processes: the node writes its latest states to ROOT/.kwatt-emulator/state.json (atomically) at every
# step and each tool renders that snapshot in its own format. Tool faults live in the snapshot too.


@dataclass(frozen=True, slots=True)
class ToolFaults:
    """Faults of one emulated executable, injected at run time."""

    hang_s: float = 0.0  # sleep this long before answering (a hung tool)
    garbage: bool = False  # print random bytes instead of the real format
    truncate: bool = False  # print only the first half of the real output
    exit_code: int = 0  # exit with this status (after printing, unless hanging)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the emulated tools of one node see."""

    t_s: float
    wall_ns: int
    devices: tuple[DeviceState, ...]
    host: HostState | None
    tool_faults: tuple[tuple[str, ToolFaults], ...] = ()  # (tool name, faults)

    def faults_for(self, tool: str) -> ToolFaults:
        for name, f in self.tool_faults:
            if name == tool:
                return f
        return ToolFaults()


def snapshot_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "state.json"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` atomically (temp file + rename): a reader never sees half a value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_snapshot(root: Path, snap: Snapshot) -> None:
    doc = dataclasses.asdict(snap)
    write_atomic(snapshot_path(root), json.dumps(doc, separators=(",", ":")))


def read_snapshot(root: Path) -> Snapshot:
    """Read the node's latest snapshot; raises OSError/ValueError when missing or malformed."""
    doc = json.loads(snapshot_path(root).read_text(encoding="utf-8"))
    host: dict[str, Any] | None = doc.get("host")
    return Snapshot(
        t_s=float(doc["t_s"]),
        wall_ns=int(doc["wall_ns"]),
        devices=tuple(DeviceState(**_tuples(d)) for d in doc["devices"]),
        host=None if host is None else _host(host),
        tool_faults=tuple((name, ToolFaults(**f)) for name, f in doc.get("tool_faults", [])),
    )


def _tuples(doc: dict[str, Any]) -> dict[str, Any]:
    """JSON arrays back to the tuples of the frozen dataclasses."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}


def _host(doc: dict[str, Any]) -> HostState:
    return HostState(
        t_s=float(doc["t_s"]),
        cpu_power_w=tuple(doc["cpu_power_w"]),
        cpu_energy_j=tuple(doc["cpu_energy_j"]),
        dram_power_w=tuple(doc["dram_power_w"]),
        dram_energy_j=tuple(doc["dram_energy_j"]),
        system_power_w=float(doc["system_power_w"]),
        system_energy_j=float(doc["system_energy_j"]),
    )
