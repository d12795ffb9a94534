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

Cost per poll (3 cards: 1 Warboy + 2 RNGD, emulated node, 2 shared cores, 30 polls; run of
2026-12-02 with the library's formats, other engineers' tests sharing the cores)::

    .venv/bin/python bench/bench_furiosa_poll.py 30
    sysfs: 0.97 ms wall, 0.92 ms agent CPU, 0.00 ms tool CPU per poll (3 cards)
    smi: 324.37 ms wall, 3.74 ms agent CPU, 245.54 ms tool CPU per poll (3 cards)

so sysfs is read whenever it is there; the tool (two spawns per poll, ``info`` + ``status``; the
emulated tool is a Python script, dearer to start than the real binary) is only the fallback.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal, TypeVar

from kwatt.collectors.base import (
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
    not_a_number,
    read_text,
    run_tool,
)
from kwatt.wire.model import DeviceInfo, Sample
from kwatt.wire.units import (
    QuantityError,
    c_to_c,
    mhz_to_hz,
    millic_to_c,
    mw_to_w,
    parse_quantity,
    uw_to_w,
)

__all__ = [
    "BINDING_ERRORS",
    "BINDING_MODULES",
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
    "binding_outcome",
    "binding_sample",
    "card_utilization",
    "create",
    "device_tag",
    "is_throttled",
    "merge_smi",
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

VENDOR = "furiosa"
MODEL = "rngd"
WARBOY = "warboy"

#: Capacity furiosa-smi 2026.4 reports for an RNGD PE no process holds (it reads no
#: ``alloc_status`` then): 6 375 342 080 B, 1/8 of the 47.50 GiB = 51 002 736 640 B the docs'
#: ``furiosa-smi status`` shows per card (measured: docs/emulators.md, FuriosaAI section).
RNGD_PE_MEMORY_BYTES = 6_375_342_080
#: throttle_reason bit meaning "nothing to run", which is not a slowdown (§1.3 bitmask).
THROTTLE_IDLE = 1 << 0
U32 = 2**32
#: device-api discards perf_regs deltas whose cycles advanced slower than this (§1.3 Warboy).
WARBOY_MIN_CYCLES_PER_NS = 0.45

_MGMT_DIR = re.compile(r"^rngd!npu(\d+)mgmt$")
# single PEs only: a fused partition (rngd!npu0pe0-3) would count its PEs a second time
_PE_DIR = re.compile(r"^rngd!npu(\d+)pe(\d+)$")
_WARBOY_MGMT_DIR = re.compile(r"^npu(\d+)_mgmt$")
_WARBOY_PE_DIR = re.compile(r"^npu(\d+)pe(\d+)$")  # not the fused npu{N}pe0-1
_HWMON_DIR = re.compile(r"^hwmon\d+$")
_INT = re.compile(r"^(?:0[xX][0-9a-fA-F]+|\d+)$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# an npu_clocks line as device-api parses it (§1.3, ne_clk_freq_info regex): "pe0 (MHz): 2000"
_CLOCK_LINE = re.compile(r"^(?P<name>[\w ]+)\((?P<unit>[^)]*)\):\s*(?P<value>\d+)$")
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(?P<value>\S+)$")
# the same, for a whole text at once (blank lines allowed, as _key_values allows them)
_KEY_VALUES = re.compile(
    r"(?:[ \t\r]*(?:[A-Za-z_][A-Za-z0-9_]*[ \t]*[:=][ \t]*\S+[ \t\r]*)?\n)*"
    r"[ \t\r]*(?:[A-Za-z_][A-Za-z0-9_]*[ \t]*[:=][ \t]*\S+[ \t\r]*)?"
)
_KEY_VALUE_M = re.compile(r"^[ \t\r]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*[:=][ \t]*(\S+)", re.MULTILINE)
_CORE_UTIL = re.compile(r"^Core\s+(?P<core>\d+):\s*(?P<value>\S+?)\s*,?$")
_MEMORY = re.compile(r"^(?P<used>[\d.]+)\s*/\s*(?P<total>[\d.]+)\s*(?P<unit>[A-Za-z]+)$")

Source = Literal["auto", "sysfs", "smi", "bindings"]
#: The binding modules tried, in order, when ``bindings_module`` is not set: the 2026.4 name first.
BINDING_MODULES = ("furiosa_smi", "furiosa_smi_py")


@dataclass(frozen=True)
class Config:
    """Options of a ``furiosa`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Re-list cards and hwmon sensors at least this often (also at once when a card's identity
    #: file changes or a read fails). Listing costs about as much as reading the values.
    rediscover_s: float = 30.0
    #: ``sysfs`` only, ``bindings`` (the ``furiosa_smi`` Python module) only, ``smi`` (the tool)
    #: only, or ``auto``: sysfs, then the bindings when importable, then the tool.
    source: Source = "auto"
    #: The binding module to import: ``furiosa_smi`` or ``furiosa_smi_py``. Unset: ``furiosa_smi``,
    #: then ``furiosa_smi_py``. The libraries read the host's ``/sys`` and ``/dev``, never ``root``:
    #: the bindings are used only with ``root: /``.
    bindings_module: str | None = None
    #: The ``furiosa-smi`` executable: a path, or a name looked up in ``ROOT/bin`` (when ``root``
    #: is not ``/``) and then on ``PATH``.
    tool: str = "furiosa-smi"
    #: Seconds one tool run (each poll runs it twice), or one poll's binding calls, may take.
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.bindings_module is not None and self.bindings_module not in BINDING_MODULES:
            raise ValueError(
                f"bindings_module: expected one of {', '.join(BINDING_MODULES)}, "
                f"got {self.bindings_module!r}"
            )
        if self.source == "bindings" and Path(self.root) != Path("/"):
            raise ValueError(
                f"source: bindings reads the host's /sys, so root must be '/', got {self.root!r} "
                "(run the agent in a mount namespace with the tree over /sys instead)"
            )


def create(name: str, config: Config) -> FuriosaCollector:
    return FuriosaCollector(name, config)


def device_tag(uuid: str | None, serial: str | None, bdf: str | None) -> str | None:
    """The stable identity of a card: UUID (upper case), else serial number, else PCI address."""
    for value in (uuid.upper() if uuid else None, serial, bdf):
        if value and value.strip() and value.strip().upper() != "N/A":
            return value.strip()
    return None


# ------------------------------------------------------------------------------------ pure parsing


def parse_int(text: str, source: str, what: str = "an integer") -> int:
    """A decimal or ``0x`` hexadecimal non-negative integer: every numeric sysfs file."""
    value = text.strip()
    if not _INT.match(value):
        raise ParseError(f"{source}: expected {what}, got {value[:80]!r}")
    return int(value, 0) if value[:2].lower() == "0x" else int(value)


def _key_values(text: str, source: str, expected: str) -> dict[str, str]:
    if _KEY_VALUES.fullmatch(text):  # the common case: every line well-formed, one match
        return dict(_KEY_VALUE_M.findall(text))
    return _key_values_slow(text, source, expected)


def _key_values_slow(text: str, source: str, expected: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _KEY_VALUE.match(line.strip())
        if m is None:
            raise ParseError(f"{source}: expected {expected} lines, got {line.strip()[:80]!r}")
        out[m.group("key")] = m.group("value")
    return out


def parse_hex(text: str, source: str, what: str = "a hexadecimal integer") -> int:
    """A hexadecimal non-negative integer with or without ``0x``, as FuriosaAI's library reads the
    values of ``metrics`` (furiosa-smi 2026.4.0 reads ``CycleCount: 100`` as 0x100 = 256)."""
    value = text.strip()
    digits = value[2:] if value[:2].lower() == "0x" else value
    if not _HEX.match(digits):
        raise ParseError(f"{source}: expected {what}, got {value[:80]!r}")
    return int(digits, 16)


def parse_pe_metrics(text: str, source: str = "metrics") -> tuple[int, int]:
    """``(CycleCount, TaskCycleCount)`` from a PE's ``metrics`` file: ``Key: 0x<hex>`` lines, read
    as hexadecimal with or without the ``0x`` (as furiosa-smi 2026.4 reads them)."""
    values = _key_values(text, source, "'Key: 0x<hex>'")
    counts: list[int] = []
    for key in ("CycleCount", "TaskCycleCount"):
        if key not in values:
            raise ParseError(f"{source}: expected a '{key}: 0x<hex>' line")
        counts.append(parse_hex(values[key], f"{source}: {key}"))
    return counts[0], counts[1]


def parse_pe_occupancy(text: str, source: str = "pe_occupancy") -> list[bool]:
    """Whether each PE is held by a process: one ``0`` (available) or ``1`` (occupied) per line, PE
    0 first (furiosa-smi 2026.4 rejects any other value: "invalid pe_occupancy status")."""
    out: list[bool] = []
    for pe, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if line not in ("0", "1"):
            raise ParseError(f"{source}: PE {pe}: expected 0 or 1, got {line[:40]!r}")
        out.append(line == "1")
    return out


def parse_alloc_status(text: str, source: str = "alloc_status") -> dict[str, int]:
    """Every ``key: value`` of a PE's ``alloc_status``, bytes (values ``0x…`` or decimal, §1.3)."""
    values = _key_values(text, source, "'key: <int>'")
    return {k: parse_int(v, f"{source}: {k}") for k, v in values.items()}


def parse_alloc_bytes(text: str, source: str = "alloc_status") -> tuple[int, int]:
    """``(used, capacity)`` bytes of a PE's ``alloc_status``: dram + shared, as backend.ai sums
    them (§1.3); only the four keys it needs are converted (a poll reads one file per PE)."""
    values = _key_values(text, source, "'key: <int>'")
    try:
        used, shared_used, total, shared_total = (
            parse_int(values[k], f"{source}: {k}")
            for k in ("dram_usage", "shared_usage", "dram_capacity", "shared_capacity")
        )
    except KeyError as e:
        raise ParseError(f"{source}: expected a '{e.args[0]}: <int>' line") from None
    return used + shared_used, total + shared_total


def parse_throttle_reason(text: str, source: str = "throttle_reason") -> int:
    """The throttle-reason bitmask (§1.3: hex ``0x…``; a decimal number is accepted as well)."""
    return parse_int(text, source, "a bitmask such as 0x4")


def is_throttled(reason: int) -> bool:
    """True when any bit other than IDLE is set (thermal slowdown, power or clock caps, other)."""
    return reason & ~THROTTLE_IDLE != 0


def parse_npu_clocks(text: str, source: str = "npu_clocks") -> list[float]:
    """The PE clocks of ``npu_clocks`` in Hz: one integer per line, PE 0 first (the format
    furiosa-smi 2026.4 parses; it rejects ``pe0 (MHz): 2000`` lines as "invalid frequency")."""
    clocks_hz: list[float] = []
    for pe, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line.isdigit():
            raise ParseError(f"{source}: PE {pe}: expected an integer in Hz, got {line[:80]!r}")
        clocks_hz.append(float(int(line)))
    return clocks_hz


def parse_ne_clk_freq_info(text: str, source: str = "ne_clk_freq_info") -> list[float]:
    """Warboy's clocks in Hz, one per ``name (unit): value`` line (``ne tensor (MHz): 2000``, the
    regex of furiosa-ai/device-api's sysfs reader, §1.3). Bare numbers have no unit and are skipped,
    as device-api skips them; anything else is a :class:`ParseError`."""
    clocks_hz: list[float] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.isdigit():
            continue
        m = _CLOCK_LINE.match(line)
        if m is None:
            raise ParseError(f"{source}: expected 'name (MHz): <int>' lines, got {line[:80]!r}")
        try:
            hz = parse_quantity(f"{m.group('value')} {m.group('unit')}", "Hz")
        except QuantityError as e:
            raise ParseError(f"{source}: {e}") from None
        if hz is not None:
            clocks_hz.append(hz)
    return clocks_hz


def card_utilization(
    previous: Mapping[int, tuple[int, int]] | None,
    current: Mapping[int, tuple[int, int]],
    pe_count: int,
) -> float | None:
    """The busy share of a card of ``pe_count`` PEs whose occupied PEs' counters are ``current``
    (``{PE: (CycleCount, TaskCycleCount)}``): ΔTaskCycleCount / ΔCycleCount over the occupied PEs
    × occupied / ``pe_count`` (every PE runs at the same clock; a PE no process holds runs no task).
    None on the first read (no baseline) and when it cannot be known (see :func:`utilization`);
    0 when no PE is occupied."""
    if previous is None:
        return None
    if not current:
        return 0.0
    util = utilization(previous, current)
    return None if util is None else util * len(current) / pe_count


def utilization(
    previous: Mapping[int, tuple[int, int]] | None, current: Mapping[int, tuple[int, int]]
) -> float | None:
    """ΔTaskCycleCount / ΔCycleCount summed over the PEs, or None when it cannot be known.

    ``previous``/``current`` map a PE index to ``(CycleCount, TaskCycleCount)``. None when there is
    no previous poll, the PE set changed, a counter went backwards (device reset), no cycle elapsed,
    or the ratio leaves [0, 1] (inconsistent counters).
    """
    if previous is None or previous.keys() != current.keys():
        return None
    d_cycles = d_busy = 0
    for pe, (cycles, busy) in current.items():
        prev_cycles, prev_busy = previous[pe]
        if cycles < prev_cycles or busy < prev_busy:
            return None
        d_cycles += cycles - prev_cycles
        d_busy += busy - prev_busy
    if d_cycles == 0:
        return None
    ratio = d_busy / d_cycles
    return ratio if 0.0 <= ratio <= 1.0 else None


@dataclass(frozen=True, slots=True)
class PerfRegs:
    """The counters of one Warboy ``perf_regs`` file used for utilization."""

    cycles: int  # 64-bit: (CycleCountHigh << 32) | CycleCount
    task: int  # TaskExecutionTime, u32 (wraps)
    tensor: int  # TensorExecutionTime, u32 (wraps)


def parse_perf_regs(text: str, source: str = "perf_regs") -> PerfRegs:
    """A Warboy ``perf_regs`` file (``Key: 0xHEX`` lines, §1.3 device-api perf_regs.rs rules)."""
    values = _key_values(text, source, "'Key: 0xHEX'")
    regs: dict[str, int] = {}
    for key in ("TaskExecutionTime", "TensorExecutionTime", "CycleCount", "CycleCountHigh"):
        if key not in values:
            raise ParseError(f"{source}: expected a '{key}: 0xHEX' line")
        regs[key] = parse_int(values[key], f"{source}: {key}")
        if regs[key] >= U32:
            raise ParseError(f"{source}: {key}: {values[key][:20]} does not fit 32 bits")
    return PerfRegs(
        (regs["CycleCountHigh"] << 32) | regs["CycleCount"],
        regs["TaskExecutionTime"],
        regs["TensorExecutionTime"],
    )


def warboy_utilization(
    previous: tuple[int, Mapping[int, PerfRegs]] | None,
    current: tuple[int, Mapping[int, PerfRegs]],
) -> float | None:
    """Δtask / Δcycles summed over the PEs between two ``(monotonic ns, {PE: PerfRegs})`` reads.

    The u32 task times are subtracted modulo 2³². None on the first read, when the PE set changed,
    cycles went backwards (NPU restarted), a PE's cycles advanced under
    :data:`WARBOY_MIN_CYCLES_PER_NS` of the elapsed time or by 2³² or more (the task time may have
    wrapped more than once), or the ratio leaves [0, 1].
    """
    if previous is None:
        return None
    prev_ns, prev = previous
    now_ns, cur = current
    elapsed_ns = now_ns - prev_ns
    if prev.keys() != cur.keys() or elapsed_ns <= 0 or not cur:
        return None
    d_cycles = d_task = 0
    for pe, regs in cur.items():
        gap = regs.cycles - prev[pe].cycles
        if gap <= 0 or gap >= U32 or gap / elapsed_ns < WARBOY_MIN_CYCLES_PER_NS:
            return None
        d_cycles += gap
        d_task += (regs.task - prev[pe].task) % U32
    ratio = d_task / d_cycles
    return ratio if 0.0 <= ratio <= 1.0 else None


# ------------------------------------------------------------------------- furiosa-smi parsing


@dataclass(frozen=True, slots=True)
class SmiDevice:
    """One card as ``furiosa-smi`` shows it, in SI units; None = not shown (absent)."""

    arch: str
    name: str
    uuid: str | None = None
    serial: str | None = None
    bdf: str | None = None
    firmware: str | None = None
    power_w: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    util_ratio: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None

    @property
    def tag(self) -> str | None:
        return device_tag(self.uuid, self.serial, self.bdf)


@dataclass(frozen=True, slots=True)
class SmiStatus:
    """``util_ratio`` (mean of the cores in use) and DRAM bytes of one ``status`` entry."""

    util_ratio: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None


def _quantity(text: str, unit: str, source: str) -> float | None:
    try:
        return parse_quantity(text, unit)
    except QuantityError as e:
        raise ParseError(f"{source}: {e}") from None


def _arch(text: str, source: str) -> str:
    arch = text.strip().lower()
    if arch not in (MODEL, WARBOY):
        raise ParseError(f"{source}: unknown arch {text.strip()[:40]!r} (expected rngd or warboy)")
    return arch


def _optional_str(text: str | None) -> str | None:
    if text is None:
        return None
    value = text.strip()
    return None if value.upper() in ("", "N/A", "-") else value


def _json_array(text: str | bytes, source: str) -> list[dict[str, object]]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ParseError(f"{source}: not JSON: {str(e)[:120]}") from None
    if not isinstance(doc, list) or not all(isinstance(d, dict) for d in doc):
        raise ParseError(f"{source}: expected a JSON array of objects")
    return doc


def _json_str(doc: Mapping[str, object], key: str, source: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"{source}: {key}: expected a string, got {type(value).__name__}")
    return value


def parse_smi_info_json(text: str | bytes, source: str = "furiosa-smi info") -> list[SmiDevice]:
    """``furiosa-smi info --format json``: an array of objects whose values are all strings."""
    out: list[SmiDevice] = []
    for doc in _json_array(text, source):
        arch, name = _json_str(doc, "arch", source), _json_str(doc, "dev_name", source)
        if arch is None or name is None:
            raise ParseError(f"{source}: an entry without arch or dev_name")
        out.append(
            SmiDevice(
                arch=_arch(arch, source),
                name=name.strip(),
                uuid=_optional_str(_json_str(doc, "device_uuid", source)),
                serial=_optional_str(_json_str(doc, "device_sn", source)),
                bdf=_optional_str(_json_str(doc, "pci_bdf", source)),
                firmware=_optional_str(_json_str(doc, "firmware", source)),
                power_w=_quantity(_json_str(doc, "power", source) or "-", "W", f"{source}: power"),
                temp_c=_quantity(
                    _json_str(doc, "temperature", source) or "-", "degC", f"{source}: temperature"
                ),
                clock_hz=_quantity(
                    _json_str(doc, "core_clock", source) or "-", "Hz", f"{source}: core_clock"
                ),
            )
        )
    return out


def _number(value: object, what: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParseError(f"{source}: {what}: expected a number, got {str(value)[:40]!r}")
    return float(value)


def _bytes(value: object, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"{source}: {what}: expected bytes, got {str(value)[:40]!r}")
    return value


def _mean_percent(values: Sequence[float], source: str) -> float | None:
    if not values:
        return None
    mean = sum(values) / len(values)
    if not 0.0 <= mean <= 100.0:
        raise ParseError(f"{source}: core utilization {mean:g}% is not a percentage")
    return mean / 100.0


def parse_smi_status_json(
    text: str | bytes, source: str = "furiosa-smi status"
) -> dict[str, SmiStatus]:
    """``furiosa-smi status --format json`` → ``{device name: SmiStatus}``.

    ``pe_utilization`` (RNGD) / ``utilization`` (Warboy) are read as percent, as the table prints
    them and all-smi reads them (the scale is UNCONFIRMED in §1.1); ``memory.DRAM`` sizes are bytes.
    """
    out: dict[str, SmiStatus] = {}
    for doc in _json_array(text, source):
        name = _json_str(doc, "device", source)
        if name is None:
            raise ParseError(f"{source}: an entry without device")
        pes = doc.get("pe_utilizations", [])
        if not isinstance(pes, list):
            raise ParseError(f"{source}: pe_utilizations: expected an array")
        percents: list[float] = []
        for pe in pes:
            if not isinstance(pe, dict):
                raise ParseError(f"{source}: pe_utilizations: expected objects")
            value = pe.get("pe_utilization", pe.get("utilization"))
            if value is not None:
                percents.append(_number(value, "pe_utilization", source))
        used = total = None
        memory = doc.get("memory")
        if memory is not None:
            dram = memory.get("DRAM") if isinstance(memory, dict) else None
            if not isinstance(dram, dict):
                raise ParseError(f"{source}: memory: expected {{'DRAM': {{...}}}}")
            used = _bytes(dram.get("used_size"), "memory.DRAM.used_size", source)
            total = _bytes(dram.get("total_size"), "memory.DRAM.total_size", source)
        out[name.strip()] = SmiStatus(_mean_percent(percents, source), used, total)
    return out


def parse_table(text: str, source: str = "furiosa-smi") -> list[dict[str, list[str]]]:
    """An ASCII table as furiosa-smi prints it → one ``{header: [cell lines]}`` per row.

    Rows are separated by ``+---+`` rules; a row may span several lines (status tables), each cell
    keeps its non-empty lines in order. Tables printed without rules (the docs' trimmed
    ``--format full`` example) have one row per line.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParseError(f"{source}: empty output, expected a table")
    blocks: list[list[str]] = [[]]
    ruled = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("+") and set(stripped) <= {"+", "-", "="}:
            ruled = True
            if blocks[-1]:
                blocks.append([])
            continue
        if not (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1):
            raise ParseError(f"{source}: expected a table line '| … |', got {stripped[:80]!r}")
        if ruled:
            blocks[-1].append(stripped)
        else:
            blocks[-1].append(stripped)
            blocks.append([])
    blocks = [b for b in blocks if b]
    if not blocks or len(blocks[0]) != 1:
        raise ParseError(f"{source}: expected one header line")
    headers = [h.strip() for h in blocks[0][0][1:-1].split("|")]
    if not all(headers) or len(set(headers)) != len(headers):
        raise ParseError(f"{source}: bad table header {blocks[0][0][:80]!r}")
    rows: list[dict[str, list[str]]] = []
    for block in blocks[1:]:
        cells: list[list[str]] = [[] for _ in headers]
        for line in block:
            parts = line[1:-1].split("|")
            if len(parts) != len(headers):
                raise ParseError(
                    f"{source}: {len(parts)} cells where the header has {len(headers)}: "
                    f"{line[:80]!r}"
                )
            for i, part in enumerate(parts):
                if part.strip():
                    cells[i].append(part.strip())
        rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def _cell(row: Mapping[str, list[str]], *names: str) -> str | None:
    for name in names:
        if name in row:
            return " ".join(row[name]) if row[name] else ""
    return None


def parse_smi_info_table(text: str, source: str = "furiosa-smi info") -> list[SmiDevice]:
    """``furiosa-smi info`` / ``info --format full`` tables of every documented version (§1.1)."""
    out: list[SmiDevice] = []
    for row in parse_table(text, source):
        arch, name = _cell(row, "Arch"), _cell(row, "Device")
        if not arch or not name:
            raise ParseError(f"{source}: a row without Arch or Device")
        out.append(
            SmiDevice(
                arch=_arch(arch, source),
                name=name,
                uuid=_optional_str(_cell(row, "UUID")),
                serial=_optional_str(_cell(row, "S/N")),
                bdf=_optional_str(_cell(row, "PCI-BDF")),
                firmware=_optional_str(_cell(row, "Firmware")),
                power_w=_quantity(_cell(row, "Power") or "-", "W", f"{source}: Power"),
                temp_c=_quantity(_cell(row, "Temp.") or "-", "degC", f"{source}: Temp."),
                clock_hz=_quantity(
                    _cell(row, "Core Clock", "Clock") or "-", "Hz", f"{source}: Core Clock"
                ),
            )
        )
    return out


def parse_smi_status_table(text: str, source: str = "furiosa-smi status") -> dict[str, SmiStatus]:
    """``furiosa-smi status`` tables: ``Core N: x.xx%`` lines (``-`` = not in use: absent) and,
    from 2025.2, ``Memory`` ``used/total GiB`` (2-decimal GiB, so about ±5 MiB)."""
    out: dict[str, SmiStatus] = {}
    for row in parse_table(text, source):
        name = _cell(row, "Device")
        if not name:
            raise ParseError(f"{source}: a row without Device")
        percents: list[float] = []
        for line in row.get("Core Utilization", []):
            m = _CORE_UTIL.match(line)
            if m is None:
                raise ParseError(f"{source}: expected 'Core N: x.xx%', got {line[:80]!r}")
            value = _quantity(m.group("value"), "1", f"{source}: Core Utilization")
            if value is not None:
                percents.append(value * 100.0)
        used = total = None
        memory = row.get("Memory", [])
        if memory:
            m = _MEMORY.match(memory[0])
            if m is None:
                raise ParseError(f"{source}: Memory: expected 'used/total GiB', got {memory[0]!r}")
            try:
                u = parse_quantity(f"{m.group('used')} {m.group('unit')}", "B")
                t = parse_quantity(f"{m.group('total')} {m.group('unit')}", "B")
            except QuantityError as e:
                raise ParseError(f"{source}: Memory: {e}") from None
            used = None if u is None else round(u)
            total = None if t is None else round(t)
        out[name] = SmiStatus(_mean_percent(percents, source), used, total)
    return out


def merge_smi(devices: Sequence[SmiDevice], status: Mapping[str, SmiStatus]) -> list[SmiDevice]:
    """``info`` devices with the ``status`` entry of the same ``npuN`` name (same tool run pair)."""
    out: list[SmiDevice] = []
    for d in devices:
        s = status.get(d.name)
        if s is None:
            out.append(d)
            continue
        out.append(
            SmiDevice(
                d.arch,
                d.name,
                d.uuid,
                d.serial,
                d.bdf,
                d.firmware,
                d.power_w,
                d.temp_c,
                d.clock_hz,
                s.util_ratio,
                s.mem_used_bytes,
                s.mem_total_bytes,
            )
        )
    return out


# ------------------------------------------------------------------- furiosa_smi bindings parsing
#
# What FuriosaAI's Python bindings return, per call, measured by running the wheels over an emulated
# RNGD tree (tests/test_furiosa_conformance.py; docs/emulators.md, "FuriosaAI: what the vendor's
# libraries read"). Both read /sys and /dev/rngd themselves, and know RNGD only:
#
#   furiosa-smi-py 2026.1.2, module furiosa_smi_py      furiosa-smi 2026.4.0, module furiosa_smi
#   init() first                                         no init()
#   device.device_info().arch/name/uuid/serial/bdf()     device.arch/device_name/uuid/serial/bdf()
#   .firmware_version() → VersionInfo                    firmware_version() → VersionInfo; Bdf
#   power_consumption() → float W                        the same
#   device_temperature().soc_peak() → float °C           the same
#   core_frequency().pe_frequency()[i].core/frequency()  core_frequency() → {core: MHz}
#     MHz (npu_clocks Hz // 10**6)
#   core_status().pe_status()[i].core/status()           core_status() → {core: CoreStatus}
#   device_performance_counter().pe_performance_         performance_counter() → {core:
#     counters()[i].core/cycle_count/task_execution_       PePerformanceCounter(cycle_count,
#     cycle(); 0 for a PE not occupied                     task_execution_cycle)}; 0 when free
#   memory_utilization(): in_use_bytes() 0 on every PE   memory_usage() → {DeviceCoreRange:
#     whatever alloc_status says: not used                 MemoryInfo(total_bytes, in_use_bytes)}
#   (no power_limit())                                   power_limit() → int mW (hwmon power1_max)
#   throttle_reason() → int bitmask                      throttle_reason() → [ThrottleReason]
#   errors: RuntimeError("Io error")…                    errors: SmiError subclasses


class Outcome(enum.Enum):
    """What a binding error means for the poll."""

    ABSENT = "the value is not there: the field is absent"
    DEVICE_GONE = "the card went away: left out of this poll"
    REINIT = "the library lost its context: init() again at the next poll"
    UNAVAILABLE = "the library cannot work on this host"
    FAILED = "any other failure"


#: Binding error → outcome, by the exception's class name (``furiosa_smi`` 2026.4) or, for the
#: ``RuntimeError``\ s of ``furiosa_smi_py``, by their text (the C return code's name + " error").
#: Anything not listed is FAILED.
BINDING_ERRORS: Mapping[str, Outcome] = {
    # furiosa_smi 2026.4.0 exception classes
    "DeviceNotFoundError": Outcome.DEVICE_GONE,
    "DeviceNotAvailableError": Outcome.DEVICE_GONE,
    "UnknownArchError": Outcome.DEVICE_GONE,  # a card this library cannot read: left out
    "IoError": Outcome.ABSENT,  # a missing sensor file ("no hwmon directory found")
    "ParseError": Outcome.ABSENT,
    "UnexpectedValueError": Outcome.ABSENT,
    "NotSupportedError": Outcome.ABSENT,
    # furiosa_smi_py RuntimeError texts (strings of its bundled libfuriosa_smi)
    "Not supported error": Outcome.ABSENT,
    "Permission denied error": Outcome.ABSENT,
    "IO error": Outcome.ABSENT,
    "Io error": Outcome.ABSENT,
    "Parse error": Outcome.ABSENT,
    "Unexpected value error": Outcome.ABSENT,
    # furiosa-smi-py 2026.1.2 answers device_temperature() with it when a temperature file is
    # missing (its log: "couldn't parse temperature values"; tests/test_collector_furiosa_bindings.py)
    "Unknown error": Outcome.ABSENT,
    "Device busy error": Outcome.ABSENT,
    "Device not found error": Outcome.DEVICE_GONE,
    "Device lost error": Outcome.DEVICE_GONE,
    "Unknown arch error": Outcome.DEVICE_GONE,
    "Context error": Outcome.REINIT,
    "Uninitialized error": Outcome.REINIT,
    "Incompatible driver error": Outcome.UNAVAILABLE,
}


def binding_outcome(error: BaseException) -> Outcome:
    """The outcome of one exception raised by a binding call."""
    by_class = BINDING_ERRORS.get(type(error).__name__)
    if by_class is not None:
        return by_class
    return BINDING_ERRORS.get(str(error).strip(), Outcome.FAILED)


@dataclass(frozen=True, slots=True)
class BindingReading:
    """What the binding returned for one card, in its own types and units; None = not available.

    The I/O layer fills it from whichever module is loaded; :func:`parse_binding` validates it.
    """

    arch: object = None  # str() of the Arch enum: "RNGD" (furiosa_smi), "rngd" (furiosa_smi_py)
    name: object = None  # "npu0"
    uuid: object = None
    serial: object = None
    bdf: object = None  # "0000:6d:00.0"
    firmware: object = None  # "1.7.0, 4dfed1852e7b" (VersionInfo rendered as sysfs fw_version)
    power_w: object = None  # float, W
    temp_c: object = None  # soc_peak(), °C
    pe_clock_mhz: tuple[object, ...] | None = None  # per PE, MHz
    occupied: tuple[tuple[object, object], ...] | None = None  # (core, str(CoreStatus))
    counters: tuple[tuple[object, object, object], ...] | None = None  # (core, cycles, task cycles)
    memory: tuple[tuple[object, object], ...] | None = None  # (in use, total) bytes per PE range
    power_limit_mw: object = None  # int, mW
    throttle: object = None  # int bitmask, or a tuple of ThrottleReason names


@dataclass(frozen=True, slots=True)
class BindingDevice:
    """One card read through the bindings, in SI units; None = absent."""

    model: str
    tag: str
    name: str | None = None
    bdf: str | None = None
    firmware: str | None = None
    power_w: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    util_ratio: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_limit_w: float | None = None
    throttled: int | None = None
    #: ``{PE: (CycleCount, TaskCycleCount)}`` of the occupied PEs in this read, the baseline of
    #: the next one
    counters: Mapping[int, tuple[int, int]] | None = None


#: ``str(Arch.…)`` of both bindings → the model tag (``rngd+`` is written ``rngd_plus``: a tag
#: keeps to word characters). Neither binding knows Warboy.
_BINDING_ARCH = {
    "rngd": MODEL,
    "rngd_max": "rngd_max",
    "rngd_s": "rngd_s",
    "rngd+": "rngd_plus",
    "arch.rngd": MODEL,
    "arch.rngdmax": "rngd_max",
    "arch.rngds": "rngd_s",
    "arch.rngdplus": "rngd_plus",
}
#: ThrottleReason enum names that are not a slowdown (as the IDLE bit, §1.3).
_NOT_THROTTLING = frozenset({"Idle", "None"})


def _b_text(value: object, what: str, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{source}: {what} is not UTF-8: {value[:40]!r}") from None
    if not isinstance(value, str):
        raise ParseError(f"{source}: {what}: expected a string, got {type(value).__name__}")
    return _optional_str(value.rstrip("\x00"))


def _b_number(value: object, what: str, source: str) -> float | None:
    """A finite number; NaN / ±inf (a sensor read that failed) is absent, not 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{source}: {what}: expected a number, got {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


def _b_count(value: object, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"{source}: {what}: expected a non-negative integer, got {value!r:.40}")
    return value


def _b_throttled(value: object, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ParseError(f"{source}: throttle_reason: negative bitmask {value}")
        return int(is_throttled(value))
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return int(any(v not in _NOT_THROTTLING for v in value))
    raise ParseError(
        f"{source}: throttle_reason: expected a bitmask or reason names, got {value!r:.60}"
    )


def _b_occupied(rows: Sequence[tuple[object, object]], source: str) -> set[int]:
    """The cores whose ``CoreStatus`` is occupied (``Occupied`` / ``occupied``)."""
    out: set[int] = set()
    for core, status in rows:
        c = _b_count(core, "core_status core", source)
        text = _b_text(status, "core status", source)
        if text is None or text.lower() not in ("occupied", "available"):
            raise ParseError(f"{source}: core {c}: expected Occupied or Available, got {text!r}")
        if text.lower() == "occupied":
            out.add(c)
    return out


def parse_binding(
    r: BindingReading,
    previous: Mapping[str, Mapping[int, tuple[int, int]]] | None = None,
    source: str = "furiosa_smi",
) -> BindingDevice:
    """One card's binding values → SI (pure). ``previous`` maps a device tag to the counters of
    the last read of that card (``BindingDevice.counters``): utilization is
    :func:`card_utilization` of the occupied PEs' counters, as from sysfs.
    :class:`ParseError` for a value of the wrong type or out of range; NaN is absent."""
    arch = _b_text(r.arch, "arch", source)
    model = _BINDING_ARCH.get((arch or "").lower())
    if model is None:
        raise ParseError(f"{source}: unknown arch {arch!r:.40} (expected an RNGD)")
    uuid = _b_text(r.uuid, "uuid", source)
    serial = _b_text(r.serial, "serial", source)
    bdf = _b_text(r.bdf, "bdf", source)
    name = _b_text(r.name, "name", source)
    tag = device_tag(uuid, serial, bdf)
    if tag is None:
        raise ParseError(f"{source}: {name or 'a card'} has no UUID, serial or PCI address")
    where = f"{source}: {name or tag}"
    power_w = _b_number(r.power_w, "power_consumption (W)", where)
    if power_w is not None and power_w < 0:
        raise ParseError(f"{where}: power_consumption: negative ({power_w:g} W)")
    temp_c = _b_number(r.temp_c, "soc_peak temperature (°C)", where)
    clock_hz: float | None = None
    if r.pe_clock_mhz is not None:
        mhz = [_b_number(v, "core frequency (MHz)", where) for v in r.pe_clock_mhz]
        known = [v for v in mhz if v is not None]
        if any(v < 0 for v in known):
            raise ParseError(f"{where}: core frequency: negative MHz")
        clock_hz = mhz_to_hz(sum(known) / len(known)) if known else None  # mean over the PEs
    counters: dict[int, tuple[int, int]] | None = None
    util_ratio: float | None = None
    if r.counters is not None and r.occupied is not None:
        busy = _b_occupied(r.occupied, where)
        counters = {}
        for row in r.counters:
            core = _b_count(row[0], "performance counter core", where)
            cycles = _b_count(row[1], "cycle_count", where)
            task = _b_count(row[2], "task_execution_cycle", where)
            if core in counters:
                raise ParseError(f"{where}: performance counter of core {core} twice")
            if core in busy:  # a free PE's counters are not read (the library gives 0)
                counters[core] = (cycles, task)
        before = None if previous is None else previous.get(tag)
        util_ratio = card_utilization(before, counters, len(r.occupied))
    used = total = None
    if r.memory is not None:
        blocks = [
            (_b_count(u, "in_use_bytes", where), _b_count(t, "total_bytes", where))
            for u, t in r.memory
        ]
        if blocks:
            used, total = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
    limit_mw = _b_number(r.power_limit_mw, "power_limit (mW)", where)
    return BindingDevice(
        model=model,
        tag=tag,
        name=name,
        bdf=bdf,
        firmware=_b_text(r.firmware, "firmware_version", where),
        power_w=power_w,
        temp_c=None if temp_c is None else c_to_c(temp_c),
        clock_hz=clock_hz,
        util_ratio=util_ratio,
        mem_used_bytes=used,
        mem_total_bytes=total,
        power_limit_w=None if limit_mw is None else mw_to_w(limit_mw),
        throttled=_b_throttled(r.throttle, where),
        counters=counters,
    )


def binding_sample(d: BindingDevice, ts_ns: int, source: str = "furiosa_smi") -> Sample | None:
    """The ``accel`` sample of one card, or None when the binding gave no value at all."""
    if all(
        v is None
        for v in (
            d.power_w,
            d.temp_c,
            d.util_ratio,
            d.clock_hz,
            d.mem_used_bytes,
            d.mem_total_bytes,
            d.power_limit_w,
            d.throttled,
        )
    ):
        return None
    try:
        return Sample.accel(
            ts_ns,
            vendor=VENDOR,
            model=d.model,
            device=d.tag,
            power_w=d.power_w,
            temp_c=d.temp_c,
            util_ratio=d.util_ratio,
            clock_hz=d.clock_hz,
            mem_used_bytes=d.mem_used_bytes,
            mem_total_bytes=d.mem_total_bytes,
            power_limit_w=d.power_limit_w,
            throttled=d.throttled,
        )
    except ValueError as e:
        raise ParseError(f"{source}: {d.name or d.tag}: {e}") from None


# ------------------------------------------------------------------------------------ I/O


def _read_optional(path: Path | str) -> str | None:
    """The file's text, or None when it is not there (or not readable): absent, never 0."""
    try:
        return read_text(path)
    except CollectorUnavailable:
        return None


@dataclass(frozen=True, slots=True)
class _Card:
    mgmt: Path
    index: int
    device_id: str
    busname: str | None
    pe_dirs: tuple[tuple[int, Path], ...]  # (PE index, per-PE directory)
    id_file: str = ""  # the mgmt file the identity came from ("" for the PCI address)
    model: str = MODEL


@dataclass(frozen=True, slots=True)
class _Family:
    """Where one generation's cards live in sysfs and how its hwmon chip is recognised."""

    model: str
    class_name: str
    mgmt: re.Pattern[str]
    pe: re.Pattern[str]
    device_type: str
    chip_prefix: str
    power_label: str


_FAMILIES = (
    _Family(MODEL, "rngd_mgmt", _MGMT_DIR, _PE_DIR, "rngd", "rngd", "RMS_TOTAL"),
    _Family(
        WARBOY,
        "npu_mgmt",
        _WARBOY_MGMT_DIR,
        _WARBOY_PE_DIR,
        "warboy",
        "furiosa_warboy",
        "NPU_TOTAL",
    ),
)
_FAMILY = {f.model: f for f in _FAMILIES}


@dataclass(slots=True)
class _SmiState:
    json_ok: bool | None = None  # None until the tool answered once; False: it has no JSON
    tool: list[str] = field(default_factory=list)


class _DeviceGone(CollectorError):
    """A binding call said the card went away: the card is left out of this poll."""


class _Reinit(CollectorError):
    """The binding lost its context: ``init()`` again at the next poll."""


class _Binding:
    """The loaded binding module; every error of a call is turned into an :class:`Outcome`."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.name = module.__name__
        if not callable(getattr(module, "list_devices", None)):
            raise CollectorUnavailable(f"{self.name}: not a furiosa_smi module (no list_devices())")
        errors: list[type[BaseException]] = [RuntimeError]  # furiosa_smi_py raises RuntimeError
        smi_error = getattr(module, "SmiError", None)  # furiosa_smi 2026.4
        if isinstance(smi_error, type) and issubclass(smi_error, Exception):
            errors.append(smi_error)
        self.errors = tuple(errors)
        self.initialised = not callable(getattr(module, "init", None))  # 2026.4 has no init()

    def init(self) -> None:
        if not self.initialised:
            self.call(self.module, "init")
            self.initialised = True

    def call(self, obj: object, method: str, *args: object) -> object:
        """``obj.method(*args)``; every failure becomes a collector error (or _DeviceGone)."""
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise CollectorUnavailable(f"{self.name}: no {method}() (binding too old?)")
        return self._invoke(fn, method, args, absent_ok=False)

    def optional(self, obj: object, method: str, *args: object) -> object:
        """``obj.method(*args)``, or None when the method is missing (another binding version) or
        the library says the value is not available (an ABSENT outcome)."""
        if obj is None:
            return None
        fn = getattr(obj, method, None)
        if not callable(fn):
            return None
        return self._invoke(fn, method, args, absent_ok=True)

    def value(self, obj: object, method: str) -> object:
        """A measurement: as :meth:`optional`, and DEVICE_GONE is an absent value too.

        furiosa-smi-py 2026.1.2 answers ``power_consumption()`` with "Device not found error" when
        only the card's hwmon power file is missing (its log: "Device not found: /dev/rngd/npu0";
        tests/test_collector_furiosa_bindings.py); a card that really went away fails its identity
        calls (left out of the poll) or has no value left (no sample)."""
        if obj is None:
            return None
        fn = getattr(obj, method, None)
        if not callable(fn):
            return None
        return self._invoke(fn, method, (), absent_ok=True, gone_is_absent=True)

    def _invoke(
        self,
        fn: Callable[..., object],
        method: str,
        args: tuple[object, ...],
        absent_ok: bool,
        gone_is_absent: bool = False,
    ) -> object:
        try:
            return fn(*args)
        except self.errors as e:
            kind = binding_outcome(e)
            if absent_ok and (
                kind is Outcome.ABSENT or (gone_is_absent and kind is Outcome.DEVICE_GONE)
            ):
                return None
            msg = f"{self.name} {method}(): {type(e).__name__}: {str(e)[:200]} ({kind.value})"
            if kind is Outcome.DEVICE_GONE:
                raise _DeviceGone(msg) from None
            if kind is Outcome.REINIT:
                self.initialised = not callable(getattr(self.module, "init", None))
                raise _Reinit(msg) from None
            if kind is Outcome.UNAVAILABLE:
                raise CollectorUnavailable(msg) from None
            raise CollectorError(msg) from None
        except Exception as e:  # a binding that breaks its own contract: typed, never a crash
            raise CollectorError(
                f"{self.name} {method}(): unexpected {type(e).__name__}: {str(e)[:200]}"
            ) from None

    def items(self, value: object, what: str) -> list[object]:
        """A list the binding returned (a list, a tuple, or any iterable)."""
        if value is None:
            return []
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise ParseError(f"{self.name}: {what}: expected a list, got {type(value).__name__}")
        try:
            return list(value)
        except Exception as e:
            raise CollectorError(f"{self.name}: {what}: {type(e).__name__}: {e}") from None


def _version_text(b: _Binding, v: object) -> object:
    """A ``VersionInfo`` as sysfs writes a version (``X.Y.Z, metadata``); strings pass through."""
    if v is None or isinstance(v, str):
        return v
    major = b.optional(v, "major")
    if major is None:
        return str(v)
    text = f"{major}.{b.optional(v, 'minor')}.{b.optional(v, 'patch')}"
    pre = b.optional(v, "prerelease")
    meta = b.optional(v, "metadata")
    text += f"~{pre}" if pre else ""
    return f"{text}, {meta}" if meta else text


def _bdf_text(b: _Binding, v: object) -> object:
    """A 2026.4 ``Bdf`` (domain, bus, device, function) as ``0000:6d:00.0``; strings pass through."""
    if v is None or isinstance(v, str):
        return v
    parts = [b.optional(v, k) for k in ("domain", "bus", "device", "function")]
    ints = [p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p >= 0]
    if len(ints) == 4:
        return f"{ints[0]:04x}:{ints[1]:02x}:{ints[2]:02x}.{ints[3]:x}"
    return v  # parse_binding names the wrong type


def _per_core(b: _Binding, value: object, what: str, *methods: str) -> list[tuple[object, ...]]:
    """``(core, value, …)`` rows of a per-PE result: a ``{core: value}`` dict (furiosa_smi 2026.4),
    whose values are read with ``methods`` when given, or a list of objects with ``core()`` and
    ``methods`` (furiosa_smi_py)."""
    if isinstance(value, dict):
        return [
            (core, *(b.optional(v, m) for m in methods)) if methods else (core, v)
            for core, v in value.items()
        ]
    return [
        (b.optional(row, "core"), *(b.optional(row, m) for m in methods))
        for row in b.items(value, what)
    ]


def _read_binding_card(b: _Binding, dev: object) -> BindingReading:
    """One card's values through whichever binding version is loaded (calls only; no conversion)."""
    info = b.optional(dev, "device_info")  # furiosa_smi_py: identity lives on DeviceInfo
    ident = dev if info is None else info
    arch = b.call(ident, "arch")
    name = b.optional(ident, "name") if info is not None else b.optional(dev, "device_name")
    temperature = b.value(dev, "device_temperature")
    freq = b.value(dev, "core_frequency")
    if freq is not None and not isinstance(freq, dict):
        freq = b.optional(freq, "pe_frequency")  # furiosa_smi_py: CoreFrequency
    clocks = (
        None
        if freq is None
        else tuple(
            r[1]
            for r in _per_core(
                b, freq, "pe_frequency()", *(() if isinstance(freq, dict) else ("frequency",))
            )
        )
    )
    status = b.value(dev, "core_status")
    if status is not None and not isinstance(status, dict):
        status = b.optional(status, "pe_status")  # furiosa_smi_py: CoreStatuses
    occupied = (
        None
        if status is None
        else tuple(
            (r[0], None if r[1] is None else str(r[1]))
            for r in _per_core(
                b, status, "pe_status()", *(() if isinstance(status, dict) else ("status",))
            )
        )
    )
    pc = b.value(dev, "performance_counter")  # furiosa_smi 2026.4: {core: counter}
    if pc is None:
        pc = b.optional(b.value(dev, "device_performance_counter"), "pe_performance_counters")
    counters = (
        None
        if pc is None
        else tuple(
            (r[0], r[1], r[2])
            for r in _per_core(b, pc, "performance counters", "cycle_count", "task_execution_cycle")
        )
    )
    # memory: memory_usage() of furiosa_smi 2026.4 only; furiosa_smi_py 2026.1.2's
    # memory_utilization() reports 0 bytes in use on every PE whatever alloc_status says
    usage = b.value(dev, "memory_usage")
    memory = (
        None
        if not isinstance(usage, dict)
        else tuple(
            (r[1], r[2])
            for r in _per_core(b, usage, "memory_usage()", "in_use_bytes", "total_bytes")
        )
    )
    throttle = b.value(dev, "throttle_reason")
    if throttle is not None and not isinstance(throttle, int):  # ThrottleReason member(s)
        members = (
            b.items(throttle, "throttle_reason()") if hasattr(throttle, "__iter__") else [throttle]
        )
        throttle = tuple(str(m) for m in members)
    return BindingReading(
        arch=None if arch is None else str(arch),
        name=name,
        uuid=b.optional(ident, "uuid"),
        serial=b.optional(ident, "serial"),
        bdf=_bdf_text(b, b.optional(ident, "bdf")),
        firmware=_version_text(b, b.optional(ident, "firmware_version")),
        power_w=b.value(dev, "power_consumption"),
        temp_c=b.value(temperature, "soc_peak"),
        pe_clock_mhz=clocks,
        occupied=occupied,
        counters=counters,
        memory=memory,
        power_limit_mw=b.value(dev, "power_limit"),
        throttle=throttle,
    )


def _consume(task: asyncio.Future[tuple[str | None, list[tuple[int, BindingReading]]]]) -> None:
    """Retrieve the result of a poll that outlived its timeout (so asyncio does not log it)."""
    if not task.cancelled():
        task.exception()


class FuriosaCollector:
    """Reads every Warboy and RNGD card under ``root``; one ``accel`` sample per card and poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._sys = Path(config.root) / "sys"
        self._class_dir = self._sys / "class" / "rngd_mgmt"
        self._counters: dict[str, dict[int, tuple[int, int]]] = {}
        self._warboy_counters: dict[str, tuple[int, dict[int, PerfRegs]]] = {}
        self._discovered: list[_Card] | None = None
        self._discovered_at = 0.0
        self._sensors: dict[str, tuple[Path, str | None, str | None]] = {}
        self._smi = _SmiState()
        self._binding: _Binding | None = None
        self._binding_missing: str | None = None  # why no binding module could be imported
        self._binding_counters: dict[str, Mapping[int, tuple[int, int]]] = {}
        self._binding_busy = (
            threading.Lock()
        )  # held by the worker thread while it calls the binding
        #: which source answered the last poll ("sysfs", "bindings" or "smi"), for doctor and tests
        self.last_source: str | None = None

    async def inventory(self) -> list[DeviceInfo]:
        if self.config.source == "smi":
            return self._smi_inventory(await self._smi_devices())
        if self.config.source == "bindings":
            return self._bindings_inventory(await self._bindings_read())
        try:
            return await asyncio.to_thread(self._inventory)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            return await self._fallback(
                e,
                self._bindings_read_inventory,
                self._smi_read_inventory,
            )

    async def collect(self) -> list[Sample]:
        if self.config.source == "smi":
            return await self._smi_collect()
        if self.config.source == "bindings":
            return await self._bindings_collect()
        try:
            samples = await asyncio.to_thread(self._collect)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            log.debug(
                "%s: sysfs unavailable (%s), trying the bindings, then the tool", self.name, e
            )
            return await self._fallback(e, self._bindings_collect, self._smi_collect)
        self.last_source = "sysfs"
        return samples

    async def aclose(self) -> None:
        return None

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

    async def _smi_read_inventory(self) -> list[DeviceInfo]:
        return self._smi_inventory(await self._smi_devices())

    async def _bindings_read_inventory(self) -> list[DeviceInfo]:
        return self._bindings_inventory(await self._bindings_read())

    # -- discovery

    def _family_cards(self, fam: _Family) -> list[_Card] | None:
        """The cards of one generation, or None when its class directory is not there."""
        class_dir = self._sys / "class" / fam.class_name
        try:
            names = sorted(p.name for p in class_dir.iterdir())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CollectorUnavailable(f"{class_dir}: {e.strerror or e}") from None
        pe_dirs: dict[int, list[tuple[int, Path]]] = {}
        for name in names:
            m = fam.pe.match(name)
            if m is not None:
                pe_dirs.setdefault(int(m.group(1)), []).append((int(m.group(2)), class_dir / name))
        cards: list[_Card] = []
        for name in names:
            m = fam.mgmt.match(name)
            if m is None:
                continue
            index = int(m.group(1))
            pes = tuple(sorted(pe_dirs.get(index, [])))
            card = self._card(fam, class_dir / name, index, pes)
            if card is not None:
                cards.append(card)
        return cards

    def _cards(self) -> list[_Card]:
        found = [self._family_cards(fam) for fam in _FAMILIES]
        if all(f is None for f in found):
            raise CollectorUnavailable(
                f"{self._class_dir}: no such directory, nor {self._sys / 'class' / 'npu_mgmt'} "
                f"(is the rngd or npu driver loaded? root is {self.config.root!r})"
            )
        cards = [c for f in found if f for c in f]
        if not cards:
            raise CollectorUnavailable(
                f"{self._class_dir}: no RNGD card (no rngd!npuNmgmt directory) and no Warboy "
                "card (no npu_mgmt/npuN_mgmt directory)"
            )
        return sorted(cards, key=lambda c: (c.model != MODEL, c.index))

    def _card(
        self, fam: _Family, mgmt: Path, index: int, pe_dirs: tuple[tuple[int, Path], ...]
    ) -> _Card | None:
        platform = _read_optional(mgmt / "platform_type")
        device_type = _read_optional(mgmt / "device_type")
        if platform is None and device_type is None:
            return None  # the card went away between the listing and this read
        if platform not in (None, "FuriosaAI") or (
            (device_type or fam.device_type).lower() != fam.device_type
        ):
            log.debug("%s: not a %s card (%s, %s), skipped", mgmt, fam.model, platform, device_type)
            return None
        busname = _read_optional(mgmt / "busname") or None
        for key in ("device_uuid", "device_sn"):
            value = _read_optional(mgmt / key)
            if value:
                tag = value.upper() if key == "device_uuid" else value
                return _Card(mgmt, index, tag, busname, pe_dirs, key, fam.model)
        if busname:
            return _Card(mgmt, index, busname, busname, pe_dirs, "", fam.model)
        raise ParseError(f"{mgmt}: no device_uuid, device_sn or busname to identify the card by")

    def _inventory(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                vendor=VENDOR,
                model=card.model,
                id=card.device_id,
                collector=self.name,
                driver_version=_read_optional(card.mgmt / "version") or None,
                firmware_version=_read_optional(card.mgmt / "fw_version") or None,
                bus_id=card.busname,
            )
            for card in self._cards()
        ]

    # -- one poll

    def _current_cards(self) -> list[_Card]:
        """Cards from the last discovery while it is fresh and every card is still itself."""
        now = time.monotonic()
        cards = self._discovered
        if cards is not None and now - self._discovered_at < self.config.rediscover_s:
            for card in cards:
                ident = f"{card.mgmt}/{card.id_file}"
                if card.id_file:
                    text = _read_optional(ident)
                    if card.id_file == "device_uuid" and text is not None:
                        text = text.upper()
                    if text != card.device_id:
                        break  # re-enumerated or gone: list again
            else:
                return cards
        cards = self._cards()
        self._discovered, self._discovered_at = cards, now
        self._sensors.clear()
        return cards

    def _collect(self) -> list[Sample]:
        samples: list[Sample] = []
        for card in self._current_cards():
            ts_ns = time.time_ns()
            if card.model == WARBOY:
                power_limit_w, throttled = None, None
                clock_hz = self._read_clock(card, "ne_clk_freq_info")
                util_ratio, mem_used_bytes, mem_total_bytes = self._read_perf_regs(card), None, None
            else:
                throttled, clock_hz = self._read_mgmt(card)
                util_ratio, mem_used_bytes, mem_total_bytes = self._read_pes(card)
            power_w, temp_c, limit_w = self._read_hwmon(card)
            if card.model != WARBOY:
                power_limit_w = limit_w
            values = (
                power_limit_w,
                throttled,
                clock_hz,
                util_ratio,
                mem_used_bytes,
                power_w,
                temp_c,
            )
            if all(v is None for v in values):
                continue  # nothing readable on this card in this poll
            try:
                samples.append(
                    Sample.accel(
                        ts_ns,
                        vendor=VENDOR,
                        model=card.model,
                        device=card.device_id,
                        power_w=power_w,
                        temp_c=temp_c,
                        util_ratio=util_ratio,
                        clock_hz=clock_hz,
                        mem_used_bytes=mem_used_bytes,
                        mem_total_bytes=mem_total_bytes,
                        power_limit_w=power_limit_w,
                        throttled=throttled,
                    )
                )
            except ValueError as e:
                raise ParseError(f"{card.mgmt}: {e}") from None
        return samples

    def _read_clock(self, card: _Card, file: str) -> float | None:
        clocks_path = f"{card.mgmt}/{file}"
        clocks = _read_optional(clocks_path)
        parse = parse_ne_clk_freq_info if card.model == WARBOY else parse_npu_clocks
        clocks_hz = [] if clocks is None else parse(clocks, str(clocks_path))
        return sum(clocks_hz) / len(clocks_hz) if clocks_hz else None  # mean over the PEs

    def _read_mgmt(self, card: _Card) -> tuple[int | None, float | None]:
        """``(throttled, clock_hz)`` from the card's management directory."""
        reason_path = f"{card.mgmt}/throttle_reason"
        reason = _read_optional(reason_path)
        throttled = (
            None
            if reason is None
            else int(is_throttled(parse_throttle_reason(reason, str(reason_path))))
        )
        return throttled, self._read_clock(card, "npu_clocks")

    def _read_perf_regs(self, card: _Card) -> float | None:
        """Warboy utilization from the single PEs' ``perf_regs`` (EACCES = not in use: absent)."""
        regs: dict[int, PerfRegs] = {}
        for pe, pe_dir in card.pe_dirs:
            path = f"{pe_dir}/perf_regs"
            text = _read_optional(path)
            if text is None:
                self._warboy_counters.pop(card.device_id, None)
                return None
            regs[pe] = parse_perf_regs(text, str(path))
        if not regs:
            return None
        current = (time.monotonic_ns(), regs)
        util = warboy_utilization(self._warboy_counters.get(card.device_id), current)
        self._warboy_counters[card.device_id] = current
        return util

    def _read_pes(self, card: _Card) -> tuple[float | None, int | None, int | None]:
        """``(util_ratio, mem_used_bytes, mem_total_bytes)`` from ``pe_occupancy`` and the occupied
        PEs' directories, as furiosa-smi 2026.4 reads them: it opens ``metrics`` and
        ``alloc_status`` of the occupied PEs only; a free PE holds no memory and counts
        :data:`RNGD_PE_MEMORY_BYTES` of capacity."""
        occ_path = f"{card.mgmt}/pe_occupancy"
        occ_text = _read_optional(occ_path)
        if occ_text is None or not card.pe_dirs:
            self._counters.pop(card.device_id, None)
            return None, None, None
        busy = parse_pe_occupancy(occ_text, occ_path)
        counters: dict[int, tuple[int, int]] = {}
        mem_used = mem_total = 0
        mem_complete = counters_complete = True
        for pe, pe_dir in card.pe_dirs:
            if pe >= len(busy):
                raise ParseError(f"{occ_path}: no line for PE {pe} ({len(busy)} lines)")
            if not busy[pe]:
                mem_total += RNGD_PE_MEMORY_BYTES
                continue
            metrics_path = f"{pe_dir}/metrics"
            text = _read_optional(metrics_path)
            if text is None:
                counters_complete = False
            else:
                counters[pe] = parse_pe_metrics(text, metrics_path)
            alloc_path = f"{pe_dir}/alloc_status"
            alloc_text = _read_optional(alloc_path)
            if alloc_text is None:
                mem_complete = False
                continue
            used, total = parse_alloc_bytes(alloc_text, alloc_path)
            mem_used += used
            mem_total += total
        util: float | None = None
        if counters_complete:
            util = card_utilization(self._counters.get(card.device_id), counters, len(card.pe_dirs))
            self._counters[card.device_id] = counters
        else:  # a PE without counters: no baseline to compare the next poll with
            self._counters.pop(card.device_id, None)
        if not mem_complete:
            return util, None, None
        return util, mem_used, mem_total

    def _hwmon_dir(self, card: _Card) -> Path | None:
        """The card's hwmon directory; the library assumes exactly one per card (§1.3)."""
        if card.busname is None:
            return None
        base = self._sys / "bus" / "pci" / "devices" / card.busname / "hwmon"
        try:
            dirs = sorted(p for p in base.iterdir() if _HWMON_DIR.match(p.name))
        except OSError:
            return None
        for d in dirs:
            name = _read_optional(d / "name")
            if name is not None and name.startswith(_FAMILY[card.model].chip_prefix):
                return d
        return dirs[0] if len(dirs) == 1 else None

    def _hwmon_sensors(self, card: _Card) -> tuple[Path, str | None, str | None] | None:
        """``(hwmon dir, power sensor prefix, temperature sensor prefix)``, cached per discovery."""
        cached = self._sensors.get(card.device_id)
        if cached is not None:
            return cached
        hwmon = self._hwmon_dir(card)
        if hwmon is None:
            return None
        labels: dict[str, str] = {}  # label -> sensor prefix, e.g. "PEAK" -> "temp1"
        for label_file in hwmon.glob("*_label"):
            label = _read_optional(label_file)
            if label:
                labels.setdefault(label, label_file.name.removesuffix("_label"))
        found = (hwmon, labels.get(_FAMILY[card.model].power_label), labels.get("PEAK"))
        self._sensors[card.device_id] = found
        return found

    def _read_hwmon(self, card: _Card) -> tuple[float | None, float | None, float | None]:
        """``(power_w, temp_c, power_limit_w)``: the sensors labelled ``RMS_TOTAL`` (Warboy
        ``NPU_TOTAL``) and ``PEAK`` (§1.3), and the power sensor's ``_max`` (µW), the power limit
        furiosa-smi 2026.4 reports."""
        sensors = self._hwmon_sensors(card)
        if sensors is None:
            return None, None, None
        hwmon, power, peak = sensors
        power_w: float | None = None
        limit_w: float | None = None
        if power is not None:
            for item in ("average", "input"):
                path = f"{hwmon}/{power}_{item}"
                text = _read_optional(path)
                if text is not None:
                    if not not_a_number(text):
                        power_w = uw_to_w(parse_int(text, path, "microwatts"))
                    break
            path = f"{hwmon}/{power}_max"
            text = _read_optional(path)
            if text is not None and not not_a_number(text):
                limit_w = uw_to_w(parse_int(text, path, "microwatts"))
        temp_c: float | None = None
        if peak is not None:
            path = f"{hwmon}/{peak}_input"
            text = _read_optional(path)
            if text is not None and not not_a_number(text):
                temp_c = millic_to_c(_parse_signed(text, path))
        if power_w is None and temp_c is None:
            self._sensors.pop(card.device_id, None)  # sensors moved? look again next poll
        return power_w, temp_c, limit_w

    # -- furiosa-smi

    def _tool_argv(self) -> list[str]:
        tool = self.config.tool
        if os.sep not in tool and Path(self.config.root) != Path("/"):
            candidate = Path(self.config.root) / "bin" / tool
            if candidate.exists():
                return [str(candidate)]
        return [tool]

    async def _run(self, *args: str) -> str:
        out = await run_tool([*self._tool_argv(), *args], self.config.timeout_s)
        return out.decode("utf-8", "replace")

    async def _smi_devices(self) -> list[SmiDevice]:
        """``info`` + ``status``: JSON while the tool prints JSON, the text tables otherwise."""
        tool = self.config.tool
        if self._smi.json_ok is not False:
            try:
                info = await self._run("info", "--format", "json")
            except (CollectorUnavailable, CollectorTimeout):
                raise  # no tool, or a hung one: no reason to think it lacks JSON
            except CollectorError as e:  # a non-zero exit: an old tool rejecting --format json
                if self._smi.json_ok:
                    raise
                log.info("%s: %s has no JSON output (%s), reading its tables", self.name, tool, e)
                self._smi.json_ok = False
            else:
                if info.lstrip().startswith("[") or self._smi.json_ok:
                    devices = parse_smi_info_json(info, f"{tool} info --format json")
                    status_text = await self._run("status", "--format", "json")
                    status = parse_smi_status_json(status_text, f"{tool} status --format json")
                    self._smi.json_ok = True
                    return merge_smi(devices, status)
                # no JSON array: a tool that ignores the option (or garbage); try the tables
        devices = parse_smi_info_table(
            await self._run("info", "--format", "full"), f"{tool} info --format full"
        )
        status = parse_smi_status_table(await self._run("status"), f"{tool} status")
        return merge_smi(devices, status)

    async def _smi_collect(self) -> list[Sample]:
        devices = await self._smi_devices()
        ts_ns = time.time_ns()
        samples: list[Sample] = []
        for d in devices:
            tag = d.tag
            if tag is None:
                raise ParseError(f"{self.config.tool}: {d.name} has no UUID, S/N or PCI-BDF")
            try:
                samples.append(
                    Sample.accel(
                        ts_ns,
                        vendor=VENDOR,
                        model=d.arch,
                        device=tag,
                        power_w=d.power_w,
                        temp_c=d.temp_c,
                        util_ratio=d.util_ratio,
                        clock_hz=d.clock_hz,
                        mem_used_bytes=d.mem_used_bytes,
                        mem_total_bytes=d.mem_total_bytes,
                    )
                )
            except ValueError as e:
                raise ParseError(f"{self.config.tool}: {d.name}: {e}") from None
        self.last_source = "smi"
        return samples

    def _smi_inventory(self, devices: Sequence[SmiDevice]) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                vendor=VENDOR,
                model=d.arch,
                id=d.tag or d.name,
                collector=self.name,
                firmware_version=d.firmware,
                bus_id=d.bdf,
            )
            for d in devices
        ]

    # -- furiosa_smi bindings

    def _load_binding(self) -> _Binding:
        """Import the binding once; an import that failed is not retried (restart the agent after
        installing it)."""
        if self._binding is not None:
            return self._binding
        if self._binding_missing is not None:
            raise CollectorUnavailable(self._binding_missing)
        names = (self.config.bindings_module,) if self.config.bindings_module else BINDING_MODULES
        errors: list[str] = []
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception as e:  # ImportError, or a native library that does not load
                errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
                continue
            self._binding = _Binding(module)
            return self._binding
        self._binding_missing = (
            f"no furiosa_smi binding ({'; '.join(errors)}); pip install 'kwatt[furiosa]'"
        )
        raise CollectorUnavailable(self._binding_missing)

    async def _bindings_read(self) -> tuple[str | None, list[tuple[int, BindingReading]]]:
        """One poll's binding calls in a worker thread, at most ``timeout_s``; while a blocked call
        still runs, no second one is started."""
        if not self._binding_busy.acquire(blocking=False):
            raise CollectorTimeout(f"{self.name}: the previous furiosa_smi call is still blocked")
        task = asyncio.ensure_future(asyncio.to_thread(self._bindings_poll_holding_lock))
        task.add_done_callback(_consume)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await asyncio.shield(task)
        except TimeoutError:
            raise CollectorTimeout(
                f"{self.name}: the furiosa_smi binding did not answer within "
                f"{self.config.timeout_s:g} s"
            ) from None

    def _bindings_poll_holding_lock(self) -> tuple[str | None, list[tuple[int, BindingReading]]]:
        try:
            return self._bindings_poll()
        finally:
            self._binding_busy.release()

    def _bindings_poll(self) -> tuple[str | None, list[tuple[int, BindingReading]]]:
        b = self._load_binding()
        b.init()
        try:
            devices = b.items(b.call(b.module, "list_devices"), "list_devices()")
        except _DeviceGone as e:
            raise CollectorUnavailable(str(e)) from None
        if not devices:
            raise CollectorUnavailable(
                f"{b.name}: list_devices() found no card (is the rngd or npu driver loaded?)"
            )
        try:
            driver = _version_text(b, b.optional(b.module, "driver_info"))
        except _DeviceGone:
            driver = None
        out: list[tuple[int, BindingReading]] = []
        for i, dev in enumerate(devices):
            ts_ns = time.time_ns()
            try:
                out.append((ts_ns, _read_binding_card(b, dev)))
            except _DeviceGone as e:
                log.warning("%s: card %d: %s", self.name, i, e)
        if not out:
            raise CollectorError(f"{self.name}: all {len(devices)} cards went away during the poll")
        return (driver if isinstance(driver, str) else None), out

    async def _bindings_collect(self) -> list[Sample]:
        _, readings = await self._bindings_read()
        source = self._binding.name if self._binding is not None else "furiosa_smi"
        counters: dict[str, Mapping[int, tuple[int, int]]] = {}
        samples: list[Sample] = []
        for ts_ns, reading in readings:
            d = parse_binding(reading, self._binding_counters, source)
            if d.counters is not None:
                counters[d.tag] = d.counters
            sample = binding_sample(d, ts_ns, source)
            if sample is not None:
                samples.append(sample)
        self._binding_counters = counters
        self.last_source = "bindings"
        return samples

    def _bindings_inventory(
        self, read: tuple[str | None, list[tuple[int, BindingReading]]]
    ) -> list[DeviceInfo]:
        driver, readings = read
        source = self._binding.name if self._binding is not None else "furiosa_smi"
        out: list[DeviceInfo] = []
        for _, reading in readings:
            d = parse_binding(reading, None, source)
            out.append(
                DeviceInfo(
                    vendor=VENDOR,
                    model=d.model,
                    id=d.tag,
                    collector=self.name,
                    driver_version=driver,
                    firmware_version=d.firmware,
                    bus_id=d.bdf,
                )
            )
        return out


def _parse_signed(text: str, source: str) -> int:
    """hwmon temperatures are signed millidegrees (Documentation/hwmon/sysfs-interface.rst)."""
    value = text.strip()
    if value.startswith("-"):
        return -parse_int(value[1:], source, "millidegrees Celsius")
    return parse_int(value, source, "millidegrees Celsius")
