"""FuriosaAI Warboy and RNGD cards: kernel sysfs + hwmon first, ``furiosa-smi`` as the fallback.

Sources (reference/device-interfaces.md §1.1, §1.3), chosen by ``Config.source``:

``sysfs`` — under the configured ``root``::

    sys/class/rngd_mgmt/rngd!npu{N}mgmt/   RNGD: platform_type (FuriosaAI), device_type (RNGD),
                                           busname, device_uuid, device_sn, fw_version,
                                           version ("X.Y.Z, hash"), throttle_reason (hex
                                           bitmask), power_limit_mw, npu_clocks
    sys/class/rngd_mgmt/rngd!npu{N}pe{M}/  metrics ("CycleCount: n", "TaskCycleCount: n"),
                                           alloc_status (dram_capacity, dram_usage, shared_* ...)
    sys/class/npu_mgmt/npu{N}_mgmt/        Warboy: platform_type, device_type (Warboy), busname,
                                           device_uuid, device_sn, fw_version, version,
                                           ne_clk_freq_info ("ne tensor (MHz): 2000")
    sys/class/npu_mgmt/npu{N}pe{M}/        perf_regs ("Key: 0xHEX": TaskExecutionTime and
                                           TensorExecutionTime u32 wrapping, CycleCount low 32
                                           bits + CycleCountHigh)
    sys/bus/pci/devices/<busname>/hwmon/hwmon*/
                                           RNGD (chip rngd*): power{i}_average µW labelled
                                           RMS_TOTAL, temp{i}_input m°C labelled PEAK;
                                           Warboy (chip furiosa_warboy, as the emulator exposes
                                           it; the labels are not in the reference): NPU_TOTAL,
                                           PEAK

``smi`` — ``furiosa-smi info --format json`` + ``status --format json`` (§1.1 "JSON output");
when the tool prints no JSON array (or rejects ``--format json``), the text tables
``info --format full`` + ``status`` of every documented version: 2024.1 / 2025.1 (``Clock``
``N/A``), 2025.2–2025.3 (``PERT`` column), 2026.x (``Core Clock``, ``Governor``); status with
``Cores`` (2024.1, 2025.1) or ``Memory`` (2025.2+) and ``Core N: x.xx%`` lines, ``-`` = not in use
(absent). Values such as ``"38.40 W"``, ``"41.33°C"``, ``"2000 MHz"``, ``N/A`` → absent. A hung tool
is killed after ``timeout_s`` (:class:`CollectorTimeout`). ``source: auto`` reads sysfs and falls
back to the tool on the polls where sysfs has no card directory or cannot be listed.

The device tag is the card's UUID (else its serial, else its PCI address), the same whichever
source read it: ``npuN`` names re-enumerate across reboots, the UUID and SN do not (§1.1 field
notes). The model tag is ``rngd`` or ``warboy``.

Utilization is ΔTaskCycleCount / ΔCycleCount over all PEs between two polls (RNGD) or
ΔTaskExecutionTime / Δcycles with the u32 task time subtracted modulo 2³² (Warboy, device-api
perf_regs rules: a Δcycles under 0.45 cycles/ns of wall time is discarded, and so is a Δcycles of
2³² or more, as the u32 task time may have wrapped more than once). Absent on the first poll, after
a counter went backwards (device reset) and when the PE set changed. ``furiosa-smi`` reports the
tool's per-core percentages (the mean over the cores in use).

Any file that is missing gives an absent field; content that does not parse raises
:class:`ParseError` naming the file (or the tool command).

Cost per poll (3 cards: 1 Warboy + 2 RNGD, emulated node, 2 shared cores, 30 polls)::

    .venv/bin/python bench/bench_furiosa_poll.py 30
    sysfs: 1.24 ms wall, 1.24 ms agent CPU, 0.00 ms tool CPU per poll (3 cards)
    smi: 160.46 ms wall, 2.50 ms agent CPU, 158.44 ms tool CPU per poll (3 cards)

so sysfs is read whenever it is there; the tool (two spawns per poll, ``info`` + ``status``; the
emulated tool is a Python script, dearer to start than the real binary) is only the fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from agent.model import DeviceInfo, Sample
from agent.units import QuantityError, millic_to_c, mw_to_w, parse_quantity, uw_to_w
from collectors.base import (
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
    read_text,
    run_tool,
)

__all__ = [
    "THROTTLE_IDLE",
    "U32",
    "WARBOY_MIN_CYCLES_PER_NS",
    "Config",
    "FuriosaCollector",
    "PerfRegs",
    "SmiDevice",
    "create",
    "device_tag",
    "is_throttled",
    "merge_smi",
    "parse_alloc_status",
    "parse_int",
    "parse_npu_clocks",
    "parse_pe_metrics",
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
# an npu_clocks line as device-api parses it (§1.3, ne_clk_freq_info regex): "pe0 (MHz): 2000"
_CLOCK_LINE = re.compile(r"^(?P<name>[\w ]+)\((?P<unit>[^)]*)\):\s*(?P<value>\d+)$")
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(?P<value>\S+)$")
_CORE_UTIL = re.compile(r"^Core\s+(?P<core>\d+):\s*(?P<value>\S+?)\s*,?$")
_MEMORY = re.compile(r"^(?P<used>[\d.]+)\s*/\s*(?P<total>[\d.]+)\s*(?P<unit>[A-Za-z]+)$")

Source = Literal["auto", "sysfs", "smi"]


@dataclass(frozen=True)
class Config:
    """Options of a ``furiosa`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Re-list cards and hwmon sensors at least this often (also at once when a card's identity
    #: file changes or a read fails). Listing costs about as much as reading the values.
    rediscover_s: float = 30.0
    #: ``sysfs`` only, ``smi`` (the tool) only, or ``auto``: sysfs, the tool when sysfs has no card.
    source: Source = "auto"
    #: The ``furiosa-smi`` executable: a path, or a name looked up in ``ROOT/bin`` (when ``root``
    #: is not ``/``) and then on ``PATH``.
    tool: str = "furiosa-smi"
    #: Seconds one tool run may take before it is killed (each poll runs it twice).
    timeout_s: float = 5.0


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
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _KEY_VALUE.match(line.strip())
        if m is None:
            raise ParseError(f"{source}: expected {expected} lines, got {line.strip()[:80]!r}")
        out[m.group("key")] = m.group("value")
    return out


def parse_pe_metrics(text: str, source: str = "metrics") -> tuple[int, int]:
    """``(CycleCount, TaskCycleCount)`` from a PE's ``metrics`` file (§1.3, 2026 library keys)."""
    values = _key_values(text, source, "'Key: <int>'")
    counts: list[int] = []
    for key in ("CycleCount", "TaskCycleCount"):
        if key not in values:
            raise ParseError(f"{source}: expected a '{key}: <int>' line")
        counts.append(parse_int(values[key], f"{source}: {key}"))
    return counts[0], counts[1]


def parse_alloc_status(text: str, source: str = "alloc_status") -> dict[str, int]:
    """Every ``key: value`` of a PE's ``alloc_status``, bytes (values ``0x…`` or decimal, §1.3)."""
    values = _key_values(text, source, "'key: <int>'")
    return {k: parse_int(v, f"{source}: {k}") for k, v in values.items()}


def parse_throttle_reason(text: str, source: str = "throttle_reason") -> int:
    """The throttle-reason bitmask (§1.3: hex ``0x…``; a decimal number is accepted as well)."""
    return parse_int(text, source, "a bitmask such as 0x4")


def is_throttled(reason: int) -> bool:
    """True when any bit other than IDLE is set (thermal slowdown, power or clock caps, other)."""
    return reason & ~THROTTLE_IDLE != 0


def parse_npu_clocks(text: str, source: str = "npu_clocks") -> list[float]:
    """The clocks of ``npu_clocks`` in Hz, one per ``name (unit): value`` line.

    Bare numbers (the device-api fixture holds eight ``0`` lines) have no unit and are skipped, as
    device-api skips them; anything else is a :class:`ParseError`.
    """
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


# ------------------------------------------------------------------------------------ I/O


def _read_optional(path: Path) -> str | None:
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
        #: which source answered the last poll ("sysfs" or "smi"), for doctor and tests
        self.last_source: str | None = None

    async def inventory(self) -> list[DeviceInfo]:
        if self.config.source == "smi":
            return self._smi_inventory(await self._smi_devices())
        try:
            return await asyncio.to_thread(self._inventory)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            return self._smi_inventory(await self._fallback(e, self._smi_devices()))

    async def collect(self) -> list[Sample]:
        if self.config.source == "smi":
            return await self._smi_collect()
        try:
            samples = await asyncio.to_thread(self._collect)
        except CollectorUnavailable as e:
            if self.config.source == "sysfs":
                raise
            log.debug("%s: sysfs unavailable (%s), asking %s", self.name, e, self.config.tool)
            return await self._fallback(e, self._smi_collect())
        self.last_source = "sysfs"
        return samples

    async def aclose(self) -> None:
        return None

    async def _fallback(self, sysfs_error: CollectorUnavailable, read: Awaitable[T]) -> T:
        """``read`` (the tool) after sysfs failed; when neither is there, say why for both."""
        try:
            return await read
        except CollectorUnavailable as e:
            raise CollectorUnavailable(f"{sysfs_error}; and {e}") from e

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
                ident = card.mgmt / card.id_file
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
                power_limit_w, throttled, clock_hz = self._read_mgmt(card)
                util_ratio, mem_used_bytes, mem_total_bytes = self._read_pes(card)
            power_w, temp_c = self._read_hwmon(card)
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
        clocks_path = card.mgmt / file
        clocks = _read_optional(clocks_path)
        clocks_hz = [] if clocks is None else parse_npu_clocks(clocks, str(clocks_path))
        return sum(clocks_hz) / len(clocks_hz) if clocks_hz else None  # mean over the PEs

    def _read_mgmt(self, card: _Card) -> tuple[float | None, int | None, float | None]:
        """``(power_limit_w, throttled, clock_hz)`` from the card's management directory."""
        limit_path = card.mgmt / "power_limit_mw"
        limit = _read_optional(limit_path)
        power_limit_w = None if limit is None else mw_to_w(parse_int(limit, str(limit_path)))
        reason_path = card.mgmt / "throttle_reason"
        reason = _read_optional(reason_path)
        throttled = (
            None
            if reason is None
            else int(is_throttled(parse_throttle_reason(reason, str(reason_path))))
        )
        return power_limit_w, throttled, self._read_clock(card, "npu_clocks")

    def _read_perf_regs(self, card: _Card) -> float | None:
        """Warboy utilization from the single PEs' ``perf_regs`` (EACCES = not in use: absent)."""
        regs: dict[int, PerfRegs] = {}
        for pe, pe_dir in card.pe_dirs:
            path = pe_dir / "perf_regs"
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
        """``(util_ratio, mem_used_bytes, mem_total_bytes)`` from the card's PE directories."""
        counters: dict[int, tuple[int, int]] = {}
        mem_used = mem_total = 0
        mem_complete = bool(card.pe_dirs)
        for pe, pe_dir in card.pe_dirs:
            text = _read_optional(pe_dir / "metrics")
            if text is not None:
                counters[pe] = parse_pe_metrics(text, str(pe_dir / "metrics"))
            alloc_path = pe_dir / "alloc_status"
            alloc_text = _read_optional(alloc_path)
            if alloc_text is None:
                mem_complete = False
                continue
            alloc = parse_alloc_status(alloc_text, str(alloc_path))
            try:  # backend.ai sums dram + shared (§1.3)
                mem_used += alloc["dram_usage"] + alloc["shared_usage"]
                mem_total += alloc["dram_capacity"] + alloc["shared_capacity"]
            except KeyError as e:
                raise ParseError(f"{alloc_path}: expected a '{e.args[0]}: <int>' line") from None
        util: float | None = None
        if counters and len(counters) == len(card.pe_dirs):
            util = utilization(self._counters.get(card.device_id), counters)
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

    def _read_hwmon(self, card: _Card) -> tuple[float | None, float | None]:
        """``(power_w, temp_c)``: the sensors labelled ``RMS_TOTAL`` (Warboy ``NPU_TOTAL``) and
        ``PEAK`` (§1.3)."""
        sensors = self._hwmon_sensors(card)
        if sensors is None:
            return None, None
        hwmon, power, peak = sensors
        power_w: float | None = None
        if power is not None:
            for item in ("average", "input"):
                path = hwmon / f"{power}_{item}"
                text = _read_optional(path)
                if text is not None:
                    power_w = uw_to_w(parse_int(text, str(path), "microwatts"))
                    break
        temp_c: float | None = None
        if peak is not None:
            path = hwmon / f"{peak}_input"
            text = _read_optional(path)
            if text is not None:
                temp_c = millic_to_c(_parse_signed(text, str(path)))
        if power_w is None and temp_c is None:
            self._sensors.pop(card.device_id, None)  # sensors moved? look again next poll
        return power_w, temp_c

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


def _parse_signed(text: str, source: str) -> int:
    """hwmon temperatures are signed millidegrees (Documentation/hwmon/sysfs-interface.rst)."""
    value = text.strip()
    if value.startswith("-"):
        return -parse_int(value[1:], source, "millidegrees Celsius")
    return parse_int(value, source, "millidegrees Celsius")
