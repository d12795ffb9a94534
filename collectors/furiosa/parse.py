"""Pure parsing of the FuriosaAI sysfs files (RNGD and Warboy), the card identity every source
shares, and the utilization arithmetic; no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kwatt.collectors.base import ParseError
from kwatt.wire.units import QuantityError, parse_quantity

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


def device_tag(uuid: str | None, serial: str | None, bdf: str | None) -> str | None:
    """The stable identity of a card: UUID (upper case), else serial number, else PCI address."""
    for value in (uuid.upper() if uuid else None, serial, bdf):
        if value and value.strip() and value.strip().upper() != "N/A":
            return value.strip()
    return None


def optional_str(text: str | None) -> str | None:
    """A text value, stripped; None when empty, ``N/A`` or ``-`` (the tools' and libraries' way of
    saying there is none)."""
    if text is None:
        return None
    value = text.strip()
    return None if value.upper() in ("", "N/A", "-") else value


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
    previous: tuple[int, Mapping[int, PerfRegs]] | None, current: tuple[int, Mapping[int, PerfRegs]]
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
