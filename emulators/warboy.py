"""FuriosaAI Warboy as its kernel driver exposes it: ``npu_mgmt`` sysfs, ``perf_regs`` and hwmon.

Layout and formats of docs/device-interfaces.md §1.3 (Warboy, from furiosa-ai/device-api's sysfs
reader and its test_data fixtures):

- ``/sys/class/npu_mgmt/npu{N}_mgmt/`` → symlink to ``/sys/devices/virtual/npu_mgmt/npu{N}_mgmt``
  with ``platform_type``, ``device_type`` (``Warboy``), ``busname``, ``dev``, ``device_sn``,
  ``device_uuid``, ``fw_version``/``version`` (``X.Y.Z, hash``), ``alive`` (0/1), ``heartbeat`` (u32),
  ``atr_error`` (9 ``Name: 0`` lines), ``performance_mode``, ``performance_level``, ``ne_dtm_policy``,
  ``ne_clk_freq_info`` (``ne tensor (MHz): 2000``), ``device_led``, ``soc_rev``, ``soc_uid``;
- ``/sys/class/npu_mgmt/npu{N}pe{0,1,0-1}/perf_regs``: ``Key: 0xHEX`` lines. ``CycleCount`` is the low
  32 bits of a 64-bit cycle counter whose high half is ``CycleCountHigh``; ``TaskExecutionTime`` and
  ``TensorExecutionTime`` are **u32 and wrap** (device-api subtracts them modulo 2³²); cycles advance at
  the core clock (device-api discards deltas below 0.45 cycles/ns);
- hwmon under ``/sys/bus/pci/devices/<bdf>/hwmon/hwmon*/`` (with the ``device`` link to the PCI
  function that real hwmon directories have): raw hwmon integers (µW, m°C, mV, mA;
  device-api's ``Fetcher`` and the legacy exporter's units, §1.2(c), §1.5). The chip name and channel
  labels of a Warboy are not in the reference: ``name`` ``furiosa_warboy`` (the ``<vendor>_<model>``
  convention the generic hwmon collector understands), ``power1`` ``NPU_TOTAL``, ``temp1`` ``PEAK``,
  ``temp2`` ``AMBIENT`` are **assumed**.

``performance_mode`` shows ``4 (FULL 1)`` under the Performance governor (the fixture's value) and
``0 (LOW 0)`` under PowerSave (**assumed** wording; the fixture only documents the numbers 0–4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kwatt.emulators.rngd import pe_temperatures
from kwatt.emulators.state import DeviceState

__all__ = [
    "ATR_ERRORS",
    "COMPUTE_SHARE",
    "DEVFILES",
    "DRIVER_VERSION",
    "FIRMWARE_VERSION",
    "PE_COUNT",
    "U32",
    "WarboyLayout",
    "perf_regs_text",
    "warboy_dynamic_files",
    "warboy_layout",
    "warboy_static_files",
]

PE_COUNT = 2
#: Device files with performance registers: each PE and the fused pair (§1.0 device nodes).
DEVFILES = ("pe0", "pe1", "pe0-1")
FIRMWARE_VERSION = "1.6.0, c1bebfd"  # §1.3 fixture
DRIVER_VERSION = "1.0.0, 0000000"  # §1.3 fixture
DEV_MAJOR = 235
FIRST_HWMON_INDEX = 2
U32 = 2**32
#: Share of task time spent in tensor units (computation_ratio = ΔTensor/ΔTask; assumed; the furiosactl
#: top example shows Comp(%) 93.05 and I/O(%) 6.95, §1.6).
COMPUTE_SHARE = 0.93
#: ``atr_error`` keys (device-api parses them to snake_case; the fixture has nine ``… Error: 0`` lines).
ATR_ERRORS = (
    "AXI Post Error",
    "AXI Fetch Error",
    "AXI Discard Error",
    "AXI Doorbell done",
    "PCIe Post Error",
    "PCIe Fetch Error",
    "PCIe Discard Error",
    "PCIe Doorbell done",
    "Device Error",
)


@dataclass(frozen=True, slots=True)
class WarboyLayout:
    mgmt_dir: Path
    devfile_dirs: tuple[Path, ...]  # in DEVFILES order
    hwmon_dir: Path
    links: tuple[tuple[Path, Path], ...]
    owned: tuple[Path, ...]


def warboy_layout(root: Path, index: int, bdf: str) -> WarboyLayout:
    sysfs = root / "sys"
    virtual = sysfs / "devices" / "virtual" / "npu_mgmt"
    class_dir = sysfs / "class" / "npu_mgmt"
    mgmt_name = f"npu{index}_mgmt"
    names = [f"npu{index}{d}" for d in DEVFILES]
    pci_dir = sysfs / "devices" / "pci0000:00" / bdf
    hwmon_name = f"hwmon{FIRST_HWMON_INDEX + index}"
    mgmt = virtual / mgmt_name
    devs = tuple(virtual / n for n in names)
    hwmon = pci_dir / "hwmon" / hwmon_name
    links = [(class_dir / mgmt_name, mgmt), (sysfs / "bus" / "pci" / "devices" / bdf, pci_dir)]
    links += [(class_dir / n, d) for n, d in zip(names, devs, strict=True)]
    links.append((sysfs / "class" / "hwmon" / hwmon_name, hwmon))
    # hwmonN/device -> the PCI function, as every real hwmon directory has (Linux registers hwmonN
    # as a child of the sensor's device, drivers/hwmon/hwmon.c, and the driver core links the
    # parent as ``device``, drivers/base/core.c device_add_class_symlinks); node_exporter names
    # the chip from it (prometheus/node_exporter collector/hwmon_linux.go, hwmonName)
    links.append((hwmon / "device", pci_dir))
    return WarboyLayout(mgmt, devs, hwmon, tuple(links), (mgmt, *devs, pci_dir))


def warboy_static_files(lay: WarboyLayout, state: DeviceState) -> list[tuple[Path, str]]:
    mgmt, hwmon = lay.mgmt_dir, lay.hwmon_dir
    return [
        (mgmt / "platform_type", "FuriosaAI\n"),
        (mgmt / "device_type", "Warboy\n"),
        (mgmt / "busname", f"{state.bus_id}\n"),
        (mgmt / "dev", f"{DEV_MAJOR}:{state.index}\n"),
        (mgmt / "device_sn", f"{state.serial}\n"),
        (mgmt / "device_uuid", f"{state.uuid.upper()}\n"),
        (mgmt / "fw_version", f"{FIRMWARE_VERSION}\n"),
        (mgmt / "version", f"{DRIVER_VERSION}\n"),
        (mgmt / "atr_error", "".join(f"{name}: 0\n" for name in ATR_ERRORS)),
        (mgmt / "performance_level", "15\n"),
        (mgmt / "ne_dtm_policy", "1\n"),
        (mgmt / "device_led", "0\n"),
        (mgmt / "soc_rev", "B0\n"),
        (mgmt / "soc_uid", "\n"),
        (hwmon / "name", "furiosa_warboy\n"),
        (hwmon / "power1_label", "NPU_TOTAL\n"),
        (hwmon / "temp1_label", "PEAK\n"),
        (hwmon / "temp2_label", "AMBIENT\n"),
    ]


def perf_regs_text(cycles: int, task: int, tensor: int, instructions: int) -> str:
    """One ``perf_regs`` file: 64-bit cycles split low/high, u32 task and tensor times (wrapped)."""
    regs = [
        ("ProgramCounter", 0x4000 + instructions % 0x10000),
        ("InstructionCount", instructions % U32),
        ("TaskExecutionTime", task % U32),
        ("TensorExecutionTime", tensor % U32),
        ("TensorExecutionCount", (tensor // 4096) % U32),
        ("BranchCount", (instructions // 7) % U32),
        ("DramToSramCount", (task // 1024) % U32),
        ("SramToDramCount", (task // 2048) % U32),
        ("CycleCount", cycles % U32),
        ("CycleCountHigh", (cycles >> 32) % U32),
    ]
    return "".join(f"{name}: 0x{value:x}\n" for name, value in regs)


def warboy_dynamic_files(
    lay: WarboyLayout, state: DeviceState, cycles: float, busy: Sequence[float]
) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Files to write and files to remove (sensors made unavailable by a fault).

    ``cycles`` (per PE) and ``busy`` (per PE, task cycles) are integrated by the caller since the last
    counter reset; the fused ``pe0-1`` file shows the pair: the same cycles, the mean task time.
    """
    mgmt, hwmon = lay.mgmt_dir, lay.hwmon_dir
    clock_mhz = state.clock_hz / 1e6
    mode = "4 (FULL 1)" if state.governor == "performance" else "0 (LOW 0)"
    files = [
        (mgmt / "alive", "1\n"),
        (mgmt / "heartbeat", f"{int(state.t_s) % U32}\n"),
        (mgmt / "performance_mode", f"{mode}\n"),
        (
            mgmt / "ne_clk_freq_info",
            f"ne tensor (MHz): {'nan' if math.isnan(clock_mhz) else round(clock_mhz)}\n",
        ),
    ]
    c = math.floor(cycles)
    tasks = [min(math.floor(b), c) for b in busy]
    tasks.append(sum(tasks) // len(tasks))
    for d, task in zip(lay.devfile_dirs, tasks, strict=True):
        tensor = math.floor(task * COMPUTE_SHARE)
        files.append((d / "perf_regs", perf_regs_text(c, task, tensor, task // 3)))
    removed: list[Path] = []
    for path, value, name in (
        (hwmon / "power1_average", state.power_w * 1e6, "power_w"),
        (hwmon / "temp1_input", pe_temperatures(state, 1)[0] * 1000, "temp_c"),
        (hwmon / "temp2_input", state.ambient_c * 1000, "ambient_c"),
    ):
        if name in state.na_fields:
            removed.append(path)
        else:
            files.append((path, f"{'nan' if math.isnan(value) else round(value)}\n"))
    return files, removed
