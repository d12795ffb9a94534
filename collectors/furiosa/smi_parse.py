"""Pure parsing of the ``furiosa-smi`` tool's output: ``info`` and ``status`` as JSON
(``--format json``) and as the text tables of every documented version; no I/O."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kwatt.collectors.base import ParseError
from kwatt.collectors.furiosa.parse import MODEL, WARBOY, device_tag, optional_str
from kwatt.wire.units import QuantityError, parse_quantity

_CORE_UTIL = re.compile(r"^Core\s+(?P<core>\d+):\s*(?P<value>\S+?)\s*,?$")
_MEMORY = re.compile(r"^(?P<used>[\d.]+)\s*/\s*(?P<total>[\d.]+)\s*(?P<unit>[A-Za-z]+)$")


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
                uuid=optional_str(_json_str(doc, "device_uuid", source)),
                serial=optional_str(_json_str(doc, "device_sn", source)),
                bdf=optional_str(_json_str(doc, "pci_bdf", source)),
                firmware=optional_str(_json_str(doc, "firmware", source)),
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
                uuid=optional_str(_cell(row, "UUID")),
                serial=optional_str(_cell(row, "S/N")),
                bdf=optional_str(_cell(row, "PCI-BDF")),
                firmware=optional_str(_cell(row, "Firmware")),
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
