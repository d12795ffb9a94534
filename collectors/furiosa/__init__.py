"""FuriosaAI Warboy and RNGD cards: kernel sysfs + hwmon first, then the ``furiosa_smi`` Python
binding, then the ``furiosa-smi`` tool.

Sources (docs/device-interfaces.md §1.1, §1.3), chosen by ``Config.source``:

``sysfs`` — under the configured ``root``, in the formats FuriosaAI's own library reads (furiosa-smi
2026.4.0 and furiosa-smi-py 2026.1.2 run over an emulated tree: docs/emulators.md, "FuriosaAI: what
the vendor's libraries read")::

    sys/class/rngd_mgmt/rngd!npu{N}mgmt/   RNGD: platform_type (FuriosaAI), device_type (RNGD),
                                           busname, device_uuid, device_sn, fw_version,
                                           version ("X.Y.Z, hash"), throttle_reason (hex
                                           bitmask), npu_clocks (one integer per PE, Hz),
                                           pe_occupancy (one 0/1 per PE)
    sys/class/rngd_mgmt/rngd!npu{N}pe{M}/  of the occupied PEs only, as the library: metrics
                                           ("CycleCount: 0x…", "TaskCycleCount: 0x…", hex),
                                           alloc_status (dram_capacity, dram_usage, shared_* ...)
    sys/class/npu_mgmt/npu{N}_mgmt/        Warboy: platform_type, device_type (Warboy), busname,
                                           device_uuid, device_sn, fw_version, version,
                                           ne_clk_freq_info ("ne tensor (MHz): 2000")
    sys/class/npu_mgmt/npu{N}pe{M}/        perf_regs ("Key: 0xHEX": TaskExecutionTime and
                                           TensorExecutionTime u32 wrapping, CycleCount low 32
                                           bits + CycleCountHigh)
    sys/bus/pci/devices/<busname>/hwmon/hwmon*/
                                           RNGD (chip rngd*): power{i}_average µW labelled
                                           RMS_TOTAL and its power{i}_max µW (the power limit),
                                           temp{i}_input m°C labelled PEAK;
                                           Warboy (chip furiosa_warboy, as the emulator exposes
                                           it; the labels are not in the reference): NPU_TOTAL,
                                           PEAK

``bindings`` — FuriosaAI's Python binding (``pip install 'kwatt[furiosa]'``): module ``furiosa_smi``
(PyPI ``furiosa-smi`` 2026.4, no ``init()``), else ``furiosa_smi_py`` (PyPI ``furiosa-smi-py``
2026.1, ``init()`` first), or the one named by ``bindings_module``. Both know RNGD only (Warboy:
``sysfs`` or ``smi``) and read the host's ``/sys`` and ``/dev/rngd`` themselves, so this source
needs ``root: /``. Per card: identity (uuid, serial, bdf, firmware), ``power_consumption()`` W,
``device_temperature().soc_peak()`` °C, core frequency MHz (mean over the PEs), the occupied PEs'
``cycle_count``/``task_execution_cycle`` counters (utilization as from sysfs), memory (``memory_usage()``
of ``furiosa_smi``; ``furiosa_smi_py``'s reports 0 bytes in use whatever the card holds and is not
read), ``power_limit()`` mW (``furiosa_smi``) and the throttle reason. A method missing from the
installed version, or one the library answers NOT_SUPPORTED / IO / parse errors to, gives an absent
field; a card whose identity calls say it went away (DEVICE_NOT_FOUND, DEVICE_LOST) is left out of
the poll, while a measurement answered so is only absent (furiosa-smi-py says "Device not found"
when the hwmon power file is missing, and "Unknown error" for a missing temperature); ``Context
error`` makes the next poll call ``init()`` again; anything else is a :class:`CollectorError`. Calls
run in a worker thread under ``timeout_s`` (table: :data:`BINDING_ERRORS`). With a ``root`` other
than ``/``, ``auto`` never falls back to the bindings.

``smi`` — ``furiosa-smi info --format json`` + ``status --format json`` (§1.1 "JSON output");
when the tool prints no JSON array (or rejects ``--format json``), the text tables
``info --format full`` + ``status`` of every documented version: 2024.1 / 2025.1 (``Clock``
``N/A``), 2025.2–2025.3 (``PERT`` column), 2026.x (``Core Clock``, ``Governor``); status with
``Cores`` (2024.1, 2025.1) or ``Memory`` (2025.2+) and ``Core N: x.xx%`` lines, ``-`` = not in use
(absent). Values such as ``"38.40 W"``, ``"41.33°C"``, ``"2000 MHz"``, ``N/A`` → absent. A hung tool
is killed after ``timeout_s`` (:class:`CollectorTimeout`).

``source: auto`` reads sysfs, and on the polls where sysfs has no card directory or cannot be listed
falls back to the bindings (when importable), then to the tool: sysfs is the cheapest (plain file
reads), the bindings avoid the tool's two process spawns per poll, and the tool is there when neither
is. An import that failed is not retried until the agent restarts.

The device tag is the card's UUID (else its serial, else its PCI address), the same whichever
source read it: ``npuN`` names re-enumerate across reboots, the UUID and SN do not (§1.1 field
notes). The model tag is ``rngd`` or ``warboy``.

Utilization is ΔTaskCycleCount / ΔCycleCount over the occupied PEs × occupied / all PEs between
two polls (RNGD: a free PE runs nothing; 0 when none is occupied) or
ΔTaskExecutionTime / Δcycles with the u32 task time subtracted modulo 2³² (Warboy, device-api
perf_regs rules: a Δcycles under 0.45 cycles/ns of wall time is discarded, and so is a Δcycles of
2³² or more, as the u32 task time may have wrapped more than once). Absent on the first poll, after
a counter went backwards (device reset) and when the PE set changed. ``furiosa-smi`` reports the
tool's per-core percentages (the mean over the cores in use).

Any file that is missing gives an absent field; content that does not parse raises
:class:`ParseError` naming the file (or the tool command).

Cost per poll: a few file reads per card for sysfs, against process spawns for the tool (see
BENCHMARKS.md (Cost per collector poll): ``furiosa`` and ``furiosa-via-smi``;
``bench/bench_furiosa_poll.py`` compares the two), so sysfs is read whenever it is there; the tool (two spawns per poll, ``info`` + ``status``; the
emulated tool is a Python script, dearer to start than the real binary) is only the fallback.

The package, one module per source and one per parser: :mod:`.config` (the options),
:mod:`.sysfs` (:class:`~.sysfs.SysfsSource`), :mod:`.bindings` (:class:`~.bindings.BindingsSource`),
:mod:`.smi` (:class:`~.smi.SmiSource`), each a class that owns its state (discovery and counters,
the loaded binding, the tool's JSON support), and the pure parsers :mod:`.parse` (sysfs files, the
card identity, utilization), :mod:`.bindings_parse` and :mod:`.smi_parse`. This module chooses the
source of each poll (``Config.source``) and falls back between them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from kwatt.collectors.base import CollectorUnavailable
from kwatt.collectors.driverlib import Outcome
from kwatt.collectors.furiosa.bindings import BindingsSource
from kwatt.collectors.furiosa.bindings_parse import (
    BINDING_ERRORS,
    BindingDevice,
    BindingReading,
    binding_outcome,
    binding_sample,
    parse_binding,
)
from kwatt.collectors.furiosa.config import BINDING_MODULES, Config, Source
from kwatt.collectors.furiosa.parse import (
    RNGD_PE_MEMORY_BYTES,
    THROTTLE_IDLE,
    U32,
    WARBOY_MIN_CYCLES_PER_NS,
    PerfRegs,
    card_utilization,
    device_tag,
    is_throttled,
    parse_alloc_bytes,
    parse_alloc_status,
    parse_hex,
    parse_int,
    parse_ne_clk_freq_info,
    parse_npu_clocks,
    parse_pe_metrics,
    parse_pe_occupancy,
    parse_perf_regs,
    parse_throttle_reason,
    utilization,
    warboy_utilization,
)
from kwatt.collectors.furiosa.smi import SmiSource
from kwatt.collectors.furiosa.smi_parse import (
    SmiDevice,
    merge_smi,
    parse_smi_info_json,
    parse_smi_info_table,
    parse_smi_status_json,
    parse_smi_status_table,
    parse_table,
)
from kwatt.collectors.furiosa.sysfs import SysfsSource
from kwatt.collectors.hwmon_files import DeviceMatch
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample

__all__ = [
    "BINDING_ERRORS",
    "BINDING_MODULES",
    "PLUGIN",
    "RNGD_PE_MEMORY_BYTES",
    "THROTTLE_IDLE",
    "U32",
    "WARBOY_MIN_CYCLES_PER_NS",
    "BindingDevice",
    "BindingReading",
    "Config",
    "FuriosaCollector",
    "Outcome",
    "PerfRegs",
    "SmiDevice",
    "Source",
    "binding_outcome",
    "binding_sample",
    "card_utilization",
    "device_tag",
    "is_throttled",
    "merge_smi",
    "parse_alloc_bytes",
    "parse_alloc_status",
    "parse_binding",
    "parse_hex",
    "parse_int",
    "parse_ne_clk_freq_info",
    "parse_npu_clocks",
    "parse_pe_metrics",
    "parse_pe_occupancy",
    "parse_perf_regs",
    "parse_smi_info_json",
    "parse_smi_info_table",
    "parse_smi_status_json",
    "parse_smi_status_table",
    "parse_table",
    "parse_throttle_reason",
    "utilization",
    "warboy_utilization",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class FuriosaCollector:
    """Reads every Warboy and RNGD card under ``root``; one ``accel`` sample per card and poll,
    from the source ``Config.source`` chooses (module docstring)."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._sysfs = SysfsSource(name, config)
        self._bindings = BindingsSource(name, config)
        self._smi = SmiSource(name, config)
        #: which source answered the last poll ("sysfs", "bindings" or "smi"), for doctor and tests
        self.last_source: str | None = None

    async def inventory(self) -> list[DeviceInfo]:
        if self.config.source == "smi":
            return await self._smi.inventory()
        if self.config.source == "bindings":
            return await self._bindings.inventory()
        try:
            return await asyncio.to_thread(self._sysfs.inventory)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            return await self._fallback(e, self._bindings.inventory, self._smi.inventory)

    async def collect(self) -> list[Sample]:
        if self.config.source == "smi":
            return await self._collect_smi()
        if self.config.source == "bindings":
            return await self._collect_bindings()
        try:
            samples = await asyncio.to_thread(self._sysfs.collect)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            log.debug(
                "%s: sysfs unavailable (%s), trying the bindings, then the tool", self.name, e
            )
            return await self._fallback(e, self._collect_bindings, self._collect_smi)
        self.last_source = "sysfs"
        return samples

    async def aclose(self) -> None:
        return None

    async def _collect_bindings(self) -> list[Sample]:
        samples = await self._bindings.collect()
        self.last_source = "bindings"
        return samples

    async def _collect_smi(self) -> list[Sample]:
        samples = await self._smi.collect()
        self.last_source = "smi"
        return samples

    async def _fallback(
        self,
        sysfs_error: CollectorUnavailable,
        bindings: Callable[[], Awaitable[T]],
        tool: Callable[[], Awaitable[T]],
    ) -> T:
        """The bindings (when allowed and importable), then the tool, after sysfs failed; when none
        is there, say why for each."""
        reasons = [str(sysfs_error)]
        if Path(self.config.root) == Path("/"):  # the libraries read the host's /sys
            try:
                return await bindings()
            except CollectorUnavailable as e:
                reasons.append(str(e))
        try:
            return await tool()
        except CollectorUnavailable as e:
            raise CollectorUnavailable("; and ".join([*reasons, str(e)])) from e


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has the RNGD or Warboy management class, or ``furiosa-smi``."""
    if (
        surface.has_class("rngd_mgmt")
        or surface.has_class("npu_mgmt")
        or surface.tool("furiosa-smi")
    ):
        return [{"type": "furiosa", "name": "furiosa", "root": str(surface.root.resolve())}]
    return []


#: This package's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="furiosa",
    config=Config,
    factory=FuriosaCollector,
    detect=_detect,
    hwmon_chips=("rngd*", "furiosa_warboy"),
    # RNGD (docs/device-interfaces.md §1.3): name rngd<N>, board power RMS_TOTAL, hottest PEAK
    hwmon_devices=(
        DeviceMatch("rngd*", "furiosa", "rngd", power_label="RMS_TOTAL", temp_label="PEAK"),
    ),
    demo=True,
    permission_fix=(
        "add the agent user to the group owning the NPU device nodes and management files: "
        "RNGD /dev/rngd* and /sys/class/rngd_mgmt, Warboy /dev/npu* and /sys/class/npu_mgmt (udev: "
        'KERNEL=="rngd*|npu*", GROUP="kwatt", MODE="0660"; a Warboy perf_regs file answers EACCES '
        "while another process holds the PE: that is absent utilization, not a permission problem)"
    ),
)
