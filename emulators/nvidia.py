"""NVIDIA driver surface of an emulated node: the ``nvidia-smi`` executable and the NVML module.

Two surfaces render the node's :class:`~emulators.state.DeviceState` of every ``vendor == "nvidia"``
device (reference/device-interfaces.md §4.4):

- ``ROOT/bin/nvidia-smi``: a script that runs :mod:`emulators.tools.nvidia_smi` on ``ROOT``
  (``--query-gpu`` CSV and ``-q -x`` XML, §4.2);
- :mod:`emulators.pynvml_emu`: a module with the API of nvidia-ml-py's ``pynvml`` (§4.1) that reads
  the same snapshot from the root named by ``KWATT_EMULATOR_ROOT``.

Both read the node's snapshot (``ROOT/.kwatt-emulator/state.json``) through :func:`load_view`, which
adds what only the NVIDIA surface knows: the imitated driver version (``SurfaceContext.tool_versions
["nvidia-smi"]``, default :data:`DEFAULT_DRIVER`) and, for a device whose sensor is stuck, the state it
showed when it got stuck. Those live in ``ROOT/.kwatt-emulator/nvidia.json``, written atomically by
:class:`NvidiaSurface` (at ``setup`` and whenever the set of held states changes).

Device faults show the way the real surfaces show them: a device with ``present=False`` is not
enumerated (an NVML handle to it answers ``GPU_IS_LOST``); re-enumeration changes ``index`` but not the
UUID, serial or bus id; ``stuck=True`` repeats the state shown when the sensor got stuck (held in
``nvidia.json`` by :class:`NvidiaSurface`); ``na_fields`` print ``[N/A]`` / raise ``NOT_SUPPORTED``,
``nan_fields`` print ``nan`` / raise ``NO_DATA``; the NVML energy counter restarts at a counter reset
(``energy_at_reset_j``, as after a driver reload). UUIDs are printed with NVIDIA's ``GPU-`` prefix.

Per-model facts the device state does not carry live in :data:`MODELS`. Board power (TDP) comes from
reference §7; product names, PCI device ids, clocks and power-limit ranges are the values the real tools
print for these boards (public captures and datasheets), **assumed** here, not sourced in the reference.
``energy_counter`` follows §4.1: ``nvmlDeviceGetTotalEnergyConsumption`` exists from Volta on, so
every catalogue GPU (Turing T4 included) has it and only the pre-Volta ``p100`` answers
``NVML_ERROR_NOT_SUPPORTED``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulators.executables import install_executable
from emulators.state import DeviceState, Snapshot, read_snapshot, write_atomic
from emulators.surfaces import SurfaceContext, register

__all__ = [
    "AVERAGE_WINDOW_S",
    "BUSY_UTIL",
    "DEFAULT_DRIVER",
    "MEM_UTIL_SHARE",
    "MODELS",
    "TOOL",
    "GpuView",
    "NvidiaModel",
    "NvidiaSurface",
    "cuda_version",
    "driver_major",
    "energy_counter_j",
    "fault_of",
    "gpu_util_pct",
    "gpu_uuid",
    "install_tool",
    "load_view",
    "mem_util_pct",
    "model_of",
    "nvml_bus_id",
    "pstate",
    "reasons_mask",
    "surface_config_path",
]

VENDOR = "nvidia"
#: Name of the emulated executable (and of its entry in ``Snapshot.tool_faults``).
TOOL = "nvidia-smi"
#: Window of the averaged power reading (§4.1: "power averaged over 1 sec interval").
AVERAGE_WINDOW_S = 1.0
#: Driver whose ``nvidia-smi`` is imitated unless the node names another one.
DEFAULT_DRIVER = "575.51.02"

# driver branch -> the CUDA version its nvidia-smi prints (release notes of each branch)
_CUDA_BY_BRANCH: Mapping[int, str] = {
    470: "11.4",
    515: "11.7",
    525: "12.0",
    535: "12.2",
    545: "12.3",
    550: "12.4",
    560: "12.6",
    565: "12.7",
    570: "12.8",
    575: "12.9",
    580: "13.0",
}


@dataclass(frozen=True, slots=True)
class NvidiaModel:
    """What nvidia-smi and NVML show for one board model, beyond the physics' device state."""

    product_name: str
    brand: str
    architecture: str  # as -q prints it
    nvml_arch: int  # NVML_DEVICE_ARCH_* (pynvml)
    pci_device_id: int  # PCI device id << 16 | vendor 0x10DE, as NVML reports it
    energy_counter: bool  # nvmlDeviceGetTotalEnergyConsumption supported (Volta+, §4.1)
    averaged_power: bool  # GetPowerUsage / power.draw is a 1-s average (Ampere except GA100, newer)
    mig_capable: bool
    default_power_limit_w: float  # TDP, reference §7
    min_power_limit_w: float
    max_power_limit_w: float
    max_graphics_mhz: int
    mem_clock_mhz: int
    video_clock_ratio: float  # video clock / graphics clock


_T4 = NvidiaModel(
    "Tesla T4",
    "NVIDIA",
    "Turing",
    6,
    0x1EB810DE,
    True,
    False,
    False,
    70.0,
    60.0,
    70.0,
    1590,
    5000,
    0.9,
)
_L4 = NvidiaModel(
    "NVIDIA L4",
    "NVIDIA",
    "Ada Lovelace",
    8,
    0x27B810DE,
    True,
    True,
    False,
    72.0,
    40.0,
    72.0,
    2040,
    6251,
    0.8,
)
_A100_80 = NvidiaModel(
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA",
    "Ampere",
    7,
    0x20B210DE,
    True,
    False,
    True,
    400.0,
    100.0,
    400.0,
    1410,
    1593,
    0.88,
)
_A100_40 = NvidiaModel(
    "NVIDIA A100-SXM4-40GB",
    "NVIDIA",
    "Ampere",
    7,
    0x20B010DE,
    True,
    False,
    True,
    400.0,
    100.0,
    400.0,
    1410,
    1215,
    0.88,
)
_H100_SXM = NvidiaModel(
    "NVIDIA H100 80GB HBM3",
    "NVIDIA",
    "Hopper",
    9,
    0x233010DE,
    True,
    True,
    True,
    700.0,
    200.0,
    700.0,
    1980,
    2619,
    0.89,
)
_H100_PCIE = NvidiaModel(
    "NVIDIA H100 PCIe",
    "NVIDIA",
    "Hopper",
    9,
    0x233110DE,
    True,
    True,
    True,
    350.0,
    200.0,
    350.0,
    1755,
    1593,
    0.9,
)
_L40S = NvidiaModel(
    "NVIDIA L40S",
    "NVIDIA",
    "Ada Lovelace",
    8,
    0x26B910DE,
    True,
    True,
    False,
    350.0,
    100.0,
    350.0,
    2520,
    9001,
    0.77,
)
_P100 = NvidiaModel(
    "Tesla P100-PCIE-16GB",
    "Tesla",
    "Pascal",
    4,
    0x15F810DE,
    False,
    False,
    False,
    250.0,
    125.0,
    250.0,
    1328,
    715,
    0.9,
)

#: catalogue key -> board facts (keys of the node's catalogue and a few spellings of them)
MODELS: Mapping[str, NvidiaModel] = {
    "t4": _T4,
    "l4": _L4,
    "a100": _A100_80,
    "a100-80gb": _A100_80,
    "a100-sxm": _A100_80,
    "a100-40gb": _A100_40,
    "h100": _H100_SXM,
    "h100-sxm": _H100_SXM,
    "h100-pcie": _H100_PCIE,
    "l40s": _L40S,
    "p100": _P100,  # pre-Volta: no energy counter (§4.1), for the NOT_SUPPORTED paths
}


def model_of(dev: DeviceState) -> NvidiaModel:
    """The board facts of ``dev``; an unknown key gets a generic Ampere board with its own limit."""
    found = MODELS.get(dev.model.lower())
    if found is not None:
        return found
    limit = dev.power_limit_w
    return NvidiaModel(
        f"NVIDIA {dev.model.upper()}",
        "NVIDIA",
        "Ampere",
        7,
        0x20B510DE,
        True,
        True,
        False,
        limit,
        limit / 2,
        limit,
        1800,
        1600,
        0.85,
    )


def driver_major(driver_version: str) -> int:
    """The branch of a driver version string (``"535.129.03"`` -> 535); 0 when unreadable."""
    head = driver_version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def cuda_version(driver_version: str) -> str:
    """The CUDA version the driver's nvidia-smi prints, ``N/A`` for a branch we do not know."""
    return _CUDA_BY_BRANCH.get(driver_major(driver_version), "N/A")


def gpu_uuid(dev: DeviceState) -> str:
    """The UUID as NVIDIA prints it: ``GPU-`` and the 8-4-4-4-12 hex groups."""
    return dev.uuid if dev.uuid.startswith("GPU-") else f"GPU-{dev.uuid}"


def nvml_bus_id(bus_id: str) -> str:
    """A Linux BDF ``0000:6d:00.0`` as NVML and nvidia-smi print it: ``00000000:6D:00.0``."""
    parts = bus_id.split(":")
    if len(parts) == 3:
        domain, bus, devfn = parts
        return f"{int(domain, 16):08X}:{bus.upper()}:{devfn.upper()}"
    return bus_id.upper()


# -------------------------------------------------------------------- values both surfaces derive

#: Memory-controller busy share per unit of GPU utilization (assumed; the physics has no such value).
MEM_UTIL_SHARE = 0.45
#: Utilization above which a GPU is busy (P0, not GpuIdle); assumed.
BUSY_UTIL = 0.01
# clock event reason bits (pynvml nvmlClocksEventReason*, §4.1)
REASON_GPU_IDLE, REASON_SW_POWER_CAP, REASON_SW_THERMAL = 0x1, 0x4, 0x20


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def gpu_util_pct(dev: DeviceState) -> int:
    """``utilization.gpu`` / ``nvmlUtilization_t.gpu``: whole percent."""
    return round(_clip01(dev.util_ratio) * 100)


def mem_util_pct(dev: DeviceState) -> int:
    """``utilization.memory`` / ``nvmlUtilization_t.memory``: derived (:data:`MEM_UTIL_SHARE`)."""
    return round(_clip01(dev.util_ratio) * 100 * MEM_UTIL_SHARE)


def pstate(dev: DeviceState) -> int:
    """Performance state: 0 when busy, 8 when idle."""
    return 0 if dev.util_ratio > BUSY_UTIL else 8


def fault_of(dev: DeviceState, field: str) -> str | None:
    """``"na"`` or ``"nan"`` when a fault makes ``field`` (a DeviceState field) unavailable or NaN."""
    if field in dev.na_fields:
        return "na"
    if field in dev.nan_fields:
        return "nan"
    return None


def energy_counter_j(dev: DeviceState) -> float:
    """The driver's energy counter: true energy since the last counter reset (driver reload)."""
    return max(0.0, dev.energy_j - dev.energy_at_reset_j)


def reasons_mask(dev: DeviceState) -> int:
    """The clock event reasons bitmask the device state implies (power cap, thermal, idle)."""
    mask = 0
    if dev.throttle_power:
        mask |= REASON_SW_POWER_CAP
    if dev.throttle_thermal:
        mask |= REASON_SW_THERMAL
    if mask == 0 and dev.util_ratio <= BUSY_UTIL:
        mask |= REASON_GPU_IDLE
    return mask


# ------------------------------------------------------------------------------- what tools see


@dataclass(frozen=True, slots=True)
class GpuView:
    """The NVIDIA part of one snapshot, as the emulated tools show it."""

    snapshot: Snapshot
    gpus: tuple[DeviceState, ...]  # present NVIDIA devices, held states applied, by index
    driver_version: str
    avg_power: tuple[tuple[str, float], ...] = ()  # (uuid, mean power over the last second)

    @property
    def cuda_version(self) -> str:
        return cuda_version(self.driver_version)

    def average_power_w(self, dev: DeviceState) -> float:
        """Mean board power over the last second (the state's power before there is history)."""
        for uuid, watts in self.avg_power:
            if uuid == dev.uuid:
                return watts
        return dev.power_w

    def draw_power_w(self, dev: DeviceState) -> float:
        """What ``nvmlDeviceGetPowerUsage`` and ``power.draw`` report (§4.1): the 1-s average on
        Ampere (except GA100) and newer, the instantaneous power on GA100 and older."""
        return self.average_power_w(dev) if model_of(dev).averaged_power else dev.power_w


def surface_config_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "nvidia.json"


@dataclass(frozen=True, slots=True)
class _SurfaceConfig:
    driver_version: str = DEFAULT_DRIVER
    held: tuple[DeviceState, ...] = ()  # what stuck devices keep showing, by uuid
    avg_power: tuple[tuple[str, float], ...] = ()  # (uuid, mean power over the last second)


def _write_config(root: Path, config: _SurfaceConfig) -> None:
    doc = {
        "driver_version": config.driver_version,
        "held": [dataclasses.asdict(d) for d in config.held],
        "avg_power": [list(p) for p in config.avg_power],
    }
    write_atomic(surface_config_path(root), json.dumps(doc, separators=(",", ":")))


def _read_config(root: Path) -> _SurfaceConfig:
    try:
        text = surface_config_path(root).read_text(encoding="utf-8")
    except FileNotFoundError:
        return _SurfaceConfig()
    doc: dict[str, Any] = json.loads(text)
    return _SurfaceConfig(
        driver_version=str(doc.get("driver_version", DEFAULT_DRIVER)),
        held=tuple(_device_state(d) for d in doc.get("held", [])),
        avg_power=tuple((str(u), float(w)) for u, w in doc.get("avg_power", [])),
    )


def _device_state(doc: dict[str, Any]) -> DeviceState:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return DeviceState(**fields)


def gpu_view(
    snap: Snapshot,
    driver_version: str,
    held: Sequence[DeviceState] = (),
    avg_power: tuple[tuple[str, float], ...] = (),
) -> GpuView:
    """Select the present NVIDIA devices of ``snap`` and apply the held (stuck) states."""
    by_uuid = {d.uuid: d for d in held}
    gpus: list[DeviceState] = []
    for dev in snap.devices:
        if dev.vendor != VENDOR or not dev.present:
            continue
        frozen = by_uuid.get(dev.uuid)
        if dev.stuck and frozen is not None:
            gpus.append(dataclasses.replace(frozen, index=dev.index, t_s=dev.t_s, stuck=True))
        else:
            gpus.append(dev)
    gpus.sort(key=lambda d: d.index)
    return GpuView(snap, tuple(gpus), driver_version, avg_power)


def load_view(root: Path) -> GpuView:
    """What the emulated tools under ``root`` show now; OSError/ValueError when there is no node."""
    config = _read_config(root)
    return gpu_view(read_snapshot(root), config.driver_version, config.held, config.avg_power)


# ------------------------------------------------------------------------------- the surface


def install_tool(root: Path, python: str = sys.executable) -> Path:
    """Write ``ROOT/bin/nvidia-smi``: a script that runs the emulated tool on ``root``."""
    return install_executable(root, TOOL, "emulators.tools.nvidia_smi", python=python)


class NvidiaSurface:
    """The NVIDIA surface of one node (contract: :mod:`emulators.surfaces`)."""

    def __init__(self, context: SurfaceContext) -> None:
        versions = context.tool_versions or {}
        self.driver_version = versions.get(TOOL, DEFAULT_DRIVER)
        self.root = context.root
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck, by uuid
        # (t_s, true energy) per uuid over a little more than the averaging window
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._avg: dict[str, float] = {}

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {}

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        install_tool(root)
        for dev in devices:
            if dev.vendor == VENDOR:
                self._last[dev.uuid] = dev
        _write_config(root, _SurfaceConfig(self.driver_version, ()))

    async def start(self) -> None:
        return None

    def render(self, snap: Snapshot) -> None:
        """Track what each device showed (stuck sensors) and its power over the last second.

        The executable and the module render the snapshot themselves when they are called; what
        they cannot know from one snapshot (held states, the 1-s average) is written here.
        """
        held: list[DeviceState] = []
        for dev in snap.devices:
            if dev.vendor != VENDOR:
                continue
            if dev.stuck:
                if dev.uuid in self._last:
                    held.append(self._last[dev.uuid])
                continue  # a stuck sensor's average does not move either
            self._last[dev.uuid] = dev
            self._avg[dev.uuid] = self._average(dev)
        avg = tuple(sorted(self._avg.items()))
        _write_config(self.root, _SurfaceConfig(self.driver_version, tuple(held), avg))

    def _average(self, dev: DeviceState) -> float:
        """Mean power over the last :data:`AVERAGE_WINDOW_S` from the true energy (dE/dt)."""
        if not math.isfinite(dev.energy_j):
            # the energy is shown as NaN (the ``nan`` fault of ``energy_j``): it says nothing about
            # the power, which the tools and NVML keep reporting (a NaN here made them crash)
            return dev.power_w
        hist = self._history.setdefault(dev.uuid, deque())
        if hist and dev.t_s <= hist[-1][0]:
            hist.clear()  # time went backwards (a new run): start over
        hist.append((dev.t_s, dev.energy_j))
        while len(hist) > 2 and hist[1][0] <= dev.t_s - AVERAGE_WINDOW_S:
            hist.popleft()
        t0, e0 = hist[0]
        if dev.t_s - t0 <= 0:
            return dev.power_w
        return (dev.energy_j - e0) / (dev.t_s - t0)

    async def aclose(self) -> None:
        return None


register(VENDOR, NvidiaSurface)
