"""Snapshots of emulated hardware, the boundary between device physics and the driver surfaces.

The physics (workloads, power, thermal, clocks, throttling) produces one :class:`DeviceState` per device
and one :class:`HostState` per node at every step; each surface writer (a sysfs tree, a vendor tool's
output, an NVML-compatible module, an HTTP endpoint) renders these snapshots in its own native format and
units. Values here are the *true* values in SI units; the surfaces add the vendor's units, rounding,
counter widths and quirks. Faults are part of the state (``present``, ``stuck``) so every surface shows
them the way the real one would.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeviceState", "HostState"]


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
