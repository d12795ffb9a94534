"""NVIDIA driver surface of an emulated node: the ``nvidia-smi`` executable and ``libnvidia-ml.so.1``.

Two surfaces render the node's :class:`~kwatt.emulators.state.DeviceState` of every ``vendor == "nvidia"``
device (docs/device-interfaces.md §4.4):

- ``ROOT/bin/nvidia-smi``: a script that runs :mod:`kwatt.emulators.tools.nvidia_smi` on ``ROOT``
  (``--query-gpu`` CSV and ``-q -x`` XML, §4.2), reading the snapshot through :func:`load_view`;
- NVML: an emulated ``libnvidia-ml.so.1`` (C, :mod:`kwatt.emulators.libnvml`, compiled against NVIDIA's
  ``nvml.h``) copied into ``ROOT/.kwatt-emulator/nvml/``. At every step :class:`NvidiaSurface`
  writes every value NVML returns to ``ROOT/.kwatt-emulator/nvml/state`` (:func:`render_nvml_state`,
  atomically); the library re-reads it when it changed. Any NVML client, the real nvidia-ml-py
  (``pynvml``), gpustat or nvitop, reads the node when started with
  ``LD_LIBRARY_PATH=ROOT/.kwatt-emulator/nvml`` (:attr:`NvidiaSurface.library_dir`).

``nvidia-smi`` reads the node's snapshot (``ROOT/.kwatt-emulator/state.json``) through
:func:`load_view`, which adds what only the NVIDIA surface knows: the imitated driver version
(``SurfaceContext.tool_versions["nvidia-smi"]``, default :data:`DEFAULT_DRIVER`) and, for a device
whose sensor is stuck, the state it showed when it got stuck. Those live in
``ROOT/.kwatt-emulator/nvidia.json``, written atomically by :class:`NvidiaSurface`.

Device faults show the way the real surfaces show them: a device with ``present=False`` is not
enumerated (an NVML handle to it answers ``GPU_IS_LOST``); re-enumeration changes ``index`` but not the
UUID, serial or bus id; ``stuck=True`` repeats the state shown when the sensor got stuck;
``na_fields`` print ``[N/A]`` / return ``NVML_ERROR_NOT_SUPPORTED``, ``nan_fields`` print ``nan`` /
return ``NVML_ERROR_NO_DATA`` (NVML returns integers: a NaN cannot be represented); the NVML energy
counter restarts at a counter reset (``energy_at_reset_j``, as after a driver reload). UUIDs are
printed with NVIDIA's ``GPU-`` prefix. Tool faults of ``"nvml"`` (:data:`NVML_FAULTS`): ``hang_s``
delays every device call of the library, ``exit_code`` N makes every device call return
``nvmlReturn_t`` N (e.g. 15 GPU_IS_LOST, 999 UNKNOWN).

GPU processes are real: once started, the surface owns one worker process per GPU (a ``cat``
reading a pipe the surface holds, so it ends with the node) and NVML lists it as a compute process
using the GPU's used memory while that is above 0 (gpustat and nvitop drop PIDs that do not exist).

Per-model facts the device state does not carry live in :data:`MODELS`. Board power (TDP) comes from
docs/device-interfaces.md §7; product names, PCI device ids, clocks and power-limit ranges are the
values the real tools print for these boards (public captures and datasheets), **assumed** here, not
sourced in that note.
CUDA compute capabilities are NVIDIA's table (https://developer.nvidia.com/cuda-gpus).
``energy_counter`` follows §4.1: ``nvmlDeviceGetTotalEnergyConsumption`` exists from Volta on, so
every catalogue GPU (Turing T4 included) has it and only the pre-Volta ``p100`` answers
``NVML_ERROR_NOT_SUPPORTED``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kwatt.emulators import libnvml
from kwatt.emulators.executables import install_executable
from kwatt.emulators.state import DeviceState, Snapshot, read_snapshot, write_atomic
from kwatt.emulators.surfaces import SurfaceContext, register

__all__ = [
    "AVERAGE_WINDOW_S",
    "BUSY_UTIL",
    "DEFAULT_DRIVER",
    "MEM_UTIL_SHARE",
    "MODELS",
    "NVML_FAULTS",
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
    "render_nvml_state",
    "surface_config_path",
]

VENDOR = "nvidia"
#: Name of the emulated executable (and of its entry in ``Snapshot.tool_faults``).
TOOL = "nvidia-smi"
#: Entry of ``Snapshot.tool_faults`` that the emulated NVML library obeys (hang, error code).
NVML_FAULTS = "nvml"
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
    default_power_limit_w: float  # TDP, docs/device-interfaces.md §7
    min_power_limit_w: float
    max_power_limit_w: float
    max_graphics_mhz: int
    mem_clock_mhz: int
    video_clock_ratio: float  # video clock / graphics clock
    compute_capability: tuple[int, int] = (8, 0)  # CUDA (https://developer.nvidia.com/cuda-gpus)


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
    (7, 5),
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
    (8, 9),
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
    (8, 0),
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
    (8, 0),
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
    (9, 0),
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
    (9, 0),
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
    (8, 9),
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
    (6, 0),
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


# ------------------------------------------------------------------------------- NVML state

# nvml.h values the state file uses
NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_DATA = 3, 21
_NVML_BRAND = {"NVIDIA": 14, "Tesla": 2}  # nvmlBrandType_t NVML_BRAND_NVIDIA, NVML_BRAND_TESLA
#: Clock event reason bits NVML reports as supported (nvml.h nvmlClocksEventReason*, 0x1..0x100).
SUPPORTED_REASONS = 0x1FF


def _cuda_driver(driver_version: str) -> int:
    """``nvmlSystemGetCudaDriverVersion``: 1000 × major + 10 × minor (12.9 -> 12090); 0 unknown."""
    major, _, minor = cuda_version(driver_version).partition(".")
    return int(major) * 1000 + int(minor) * 10 if major.isdigit() and minor.isdigit() else 0


def render_nvml_state(view: GpuView, processes: Mapping[str, int] | None = None) -> str:
    """The emulated library's state file (format: the comment at the top of ``nvml_emu.c``).

    Every value is what NVML returns, in NVML's units; a value a board lacks is left out (the
    library answers ``NOT_SUPPORTED``), a faulted one is ``!CODE``. ``processes`` maps a GPU's UUID
    to the PID of its worker process.
    """
    faults = view.snapshot.faults_for(NVML_FAULTS)
    lines = [
        "kwatt-nvml-state 1",
        f"driver {view.driver_version}",
        f"nvml_version {view.cuda_version.split('.')[0]}.{view.driver_version}",
        f"cuda_driver {_cuda_driver(view.driver_version)}",
        f"hang_ms {max(0, round(faults.hang_s * 1000))}",
        f"fail {max(0, faults.exit_code)}",
    ]
    for dev in view.gpus:
        board = model_of(dev)
        uuid = gpu_uuid(dev)
        bus_id = nvml_bus_id(dev.bus_id)
        domain, bus, device = _bdf(bus_id)
        draw_w = view.draw_power_w(dev)
        mhz = _nvml_value(dev, "clock_hz", lambda: round(dev.clock_hz / 1e6))  # noqa: B023
        limit = _nvml_value(dev, "power_limit_w", lambda: round(dev.power_limit_w * 1000))  # noqa: B023
        fields: list[tuple[str, int | str]] = [
            ("minor", dev.index),
            ("brand", _NVML_BRAND.get(board.brand, 14)),
            ("arch", board.nvml_arch),
            ("cc_major", board.compute_capability[0]),
            ("cc_minor", board.compute_capability[1]),
            ("pci_device_id", board.pci_device_id),
            ("power_mw", _nvml_value(dev, "power_w", lambda: max(0, round(draw_w * 1000)))),  # noqa: B023
        ]
        if board.energy_counter:  # Volta and later (§4.1); absent: NOT_SUPPORTED
            mj = _nvml_value(dev, "energy_j", lambda: math.floor(energy_counter_j(dev) * 1000))  # noqa: B023
            fields.append(("energy_mj", mj if isinstance(mj, str) else mj % (1 << 64)))
        fields += [
            ("limit_enforced_mw", limit),
            ("limit_mw", limit),
            ("limit_default_mw", round(board.default_power_limit_w * 1000)),
            ("limit_min_mw", round(board.min_power_limit_w * 1000)),
            ("limit_max_mw", round(board.max_power_limit_w * 1000)),
            ("util_gpu", _nvml_value(dev, "util_ratio", lambda: gpu_util_pct(dev))),  # noqa: B023
            ("util_mem", _nvml_value(dev, "util_ratio", lambda: mem_util_pct(dev))),  # noqa: B023
            ("util_enc", 0),  # no video work is emulated
            ("util_dec", 0),
            ("temp_c", _nvml_value(dev, "temp_c", lambda: round(dev.temp_c))),  # noqa: B023
            ("clock_graphics", mhz),
            ("clock_sm", mhz),
            ("clock_mem", board.mem_clock_mhz),
            ("clock_video", mhz if isinstance(mhz, str) else round(mhz * board.video_clock_ratio)),
            ("max_graphics", board.max_graphics_mhz),
            ("max_sm", board.max_graphics_mhz),
            ("max_mem", board.mem_clock_mhz),
            ("max_video", round(board.max_graphics_mhz * board.video_clock_ratio)),
            ("mem_total", _nvml_value(dev, "mem_total_bytes", lambda: dev.mem_total_bytes)),  # noqa: B023
            ("mem_used", _nvml_value(dev, "mem_used_bytes", lambda: _used_bytes(dev))),  # noqa: B023
            ("pstate", pstate(dev)),
            ("reasons", reasons_mask(dev)),
            ("supported_reasons", SUPPORTED_REASONS),
            ("persistence", 1),  # Enabled, as the emulated nvidia-smi -q prints it
            ("compute_mode", 0),  # NVML_COMPUTEMODE_DEFAULT
            ("display_mode", 0),
            ("display_active", 0),
            ("ecc_volatile_uncorrected", 0),
            ("ecc_aggregate_uncorrected", 0),
        ]
        if board.mig_capable:
            fields += [("mig_current", 0), ("mig_pending", 0)]  # MIG disabled
        lines += [
            f"gpu {uuid}",
            f"name {board.product_name}",
            f"serial {dev.serial}",
            f"bus_id {bus_id}",
            f"bus_id_legacy {domain:04X}:{bus:02X}:{device:02X}.0",
        ]
        lines += [f"{k} {v}" for k, v in fields]
        pid = (processes or {}).get(dev.uuid)
        if pid is not None and dev.mem_used_bytes > 0 and fault_of(dev, "mem_used_bytes") is None:
            lines.append(f"proc {pid} {_used_bytes(dev)}")
        lines.append("end")
    return "\n".join(lines) + "\n"


def _nvml_value(dev: DeviceState, field: str, compute: Callable[[], int]) -> int | str:
    """``compute()``, or ``!CODE`` when a fault makes ``field`` not supported (na) or NaN."""
    fault = fault_of(dev, field)
    if fault == "na":
        return f"!{NVML_ERROR_NOT_SUPPORTED}"
    if fault == "nan":
        return f"!{NVML_ERROR_NO_DATA}"
    return compute()


def _used_bytes(dev: DeviceState) -> int:
    return max(0, min(dev.mem_used_bytes, dev.mem_total_bytes))


def _bdf(bus_id: str) -> tuple[int, int, int]:
    parts = bus_id.split(":")
    if len(parts) != 3:
        return 0, 0, 0
    return int(parts[0], 16), int(parts[1], 16), int(parts[2].split(".")[0], 16)


# ------------------------------------------------------------------------------- the surface


def install_tool(root: Path, python: str = sys.executable) -> Path:
    """Write ``ROOT/bin/nvidia-smi``: a script that runs the emulated tool on ``root``."""
    return install_executable(root, TOOL, "kwatt.emulators.tools.nvidia_smi", python=python)


class NvidiaSurface:
    """The NVIDIA surface of one node (contract: :mod:`kwatt.emulators.surfaces`)."""

    def __init__(self, context: SurfaceContext) -> None:
        versions = context.tool_versions or {}
        self.driver_version = versions.get(TOOL, DEFAULT_DRIVER)
        self.root = context.root
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck, by uuid
        # (t_s, true energy) per uuid over a little more than the averaging window
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._avg: dict[str, float] = {}
        self._uuids: list[str] = []  # the node's GPUs, in setup order
        self._workers: dict[str, subprocess.Popen[bytes]] = {}  # uuid -> its GPU process
        #: Where ``libnvidia-ml.so.1`` lies (put it on LD_LIBRARY_PATH), once installed.
        self.library_dir: Path | None = None
        #: Why the library could not be built (no compiler, no nvml.h), or None.
        self.library_error: str | None = None

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {} if self.library_dir is None else {"nvml_lib": str(self.library_dir)}

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        """Install ``nvidia-smi`` and the NVML library (built on first use: see :mod:`kwatt.emulators.libnvml`).

        Without a C compiler or ``nvml.h`` the node runs on without NVML: :attr:`library_error`
        says what is missing (and the node prints it).
        """
        self.root = root
        install_tool(root)
        for dev in devices:
            if dev.vendor == VENDOR:
                self._last[dev.uuid] = dev
                self._uuids.append(dev.uuid)
        _write_config(root, _SurfaceConfig(self.driver_version, ()))
        try:
            self.library_dir = libnvml.install(root)
        except libnvml.LibraryUnavailable as e:
            reason = " ".join(str(e).split())  # one line: it goes into the printed config
            self.library_error = f"emulated NVML (libnvidia-ml.so.1) not available: {reason}"
            print(f"kwatt emulator: {self.library_error}", file=sys.stderr, flush=True)

    async def start(self) -> None:
        """Start one worker process per GPU: the compute process NVML lists on it."""
        self.start_workers()

    def start_workers(self) -> None:
        """Start the GPU processes (:meth:`start` does; synchronous for tests)."""
        cat = shutil.which("cat")
        if cat is None or self._workers:
            return
        for uuid in self._uuids:
            # a ``cat`` on a pipe this surface holds: it exits when the node closes or dies
            self._workers[uuid] = subprocess.Popen(
                ["kwatt-gpu-worker"],
                executable=cat,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    @property
    def worker_pids(self) -> Mapping[str, int]:
        """The PID of each GPU's worker process, by device UUID."""
        return {uuid: p.pid for uuid, p in self._workers.items()}

    def stop_workers(self) -> None:
        for proc in self._workers.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._workers.clear()

    def render(self, snap: Snapshot) -> None:
        """Track what each device showed (stuck sensors) and its power over the last second, and
        write the NVML library's state.

        The executable renders the snapshot itself when it is called; what it cannot know from
        one snapshot (held states, the 1-s average) is written here.
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
        if self.library_dir is not None:
            view = gpu_view(snap, self.driver_version, held, avg)
            write_atomic(libnvml.state_path(self.root), render_nvml_state(view, self.worker_pids))

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
        self.stop_workers()


register(VENDOR, NvidiaSurface)
