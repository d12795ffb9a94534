"""Rebellions NPUs (ATOM RBLN-CA12/CA22, ATOM-Max RBLN-CA25, REBEL), read through ``rbln-smi``.

Sources, docs/device-interfaces.md §2:

- ``rbln-smi -j`` (§2.1 JSON) first: ``KMD_version`` + ``devices[]`` with ``npu`` (an int from SDK
  2.0, a string in SDK 1.x), ``name``, ``sid``, ``uuid``, ``device``, ``fw_ver``, ``pci.bus_id``,
  ``temperature`` (``"38C"``), ``card_power`` (``"43.9W"``), ``pstate``, ``memory.used/total`` (decimal
  byte strings, or sizes with a unit: §2.1 CONFLICT) and ``util`` (percent, bare or ``%``). Numbers
  given as JSON numbers instead of strings are accepted (°C, W, percent, bytes).
- the text table (§2.1) when ``-j`` fails (a tool without it, or output that does not parse): every
  documented column set (with or without ``Perf``, ``-`` or ``=`` rules, ``Infomation`` typo).
  ``rbln-stat``, the deprecated name, prints the same.
- ``/sys/class/rebellions/rbln{N}/status`` and ``kernel_version`` (§2.0) for the inventory only: the
  driver exposes no power or temperature there (§2.0: power/temp come from the driver via rbln-smi).

Fields: ``power_w``, ``temp_c``, ``util_ratio``, ``mem_used_bytes``, ``mem_total_bytes`` and
``throttled`` (1 in P-states P10 "Thermal Throttling" and P12 "System Abort", §2.1); ``N/A``, ``-``,
a NaN (``nan``, ``nanW``: a sensor without a valid value) and missing keys are absent, never 0.
Conversions go through :mod:`kwatt.wire.units`.

Device identity (the ``device`` tag), stable across re-enumeration (``rblnN``/``npu`` may change, §2.0):

- an ATOM-Max die (``RBLN-CA25``, four visible devices per card, §2.0): ``<sid>-<k>``, the card serial
  and the die's position on the card, ``k`` = rank of its PCI address among the dies with that ``sid``
  when the collector first sees it (then remembered, so a die that vanishes does not shift the others);
- any other device: its ``uuid``, else its ``sid``, else its PCI address;
- the text table has no ``sid``/``uuid``: the id learnt from an earlier JSON poll for that PCI address,
  else the PCI address.

Cost per poll (see BENCHMARKS.md (Cost per collector poll); ``bench/bench_rbln_sapeon.py`` compares the JSON, text-table and sysfs
paths): nearly all of a tool poll is process start-up (the emulated tool is a Python script; a
native rbln-smi starts faster but still forks and execs every poll). sysfs is far cheaper but carries no power, temperature or utilization (§2.0), so the tool is
the only source: poll it at ≥ 1 s intervals, not faster. A hung tool costs ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kwatt.collectors.base import (
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
    read_text,
    run_tool,
)
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface, find_tool
from kwatt.wire.model import DeviceInfo, Measurement, Sample
from kwatt.wire.units import (
    NOT_AVAILABLE,
    QuantityError,
    c_to_c,
    parse_percent,
    parse_quantity,
    parse_rbln_memory,
    pct_to_ratio,
)

__all__ = [
    "JSON_RETRY_POLLS",
    "PLUGIN",
    "STATUS_NAMES",
    "Config",
    "RblnDevice",
    "RblnReport",
    "RebellionsCollector",
    "SysfsDevice",
    "assign_ids",
    "parse_json",
    "parse_json_report",
    "parse_status",
    "parse_text",
    "parse_text_report",
    "read_sysfs",
    "throttled_from_pstate",
    "to_samples",
]

log = logging.getLogger(__name__)

VENDOR = "rebellions"
#: The product whose card shows as four devices (§2.0).
ATOM_MAX = "RBLN-CA25"
#: P-states in which the device runs slowed down (§2.1): P10 thermal throttling, P12 system abort.
THROTTLED_PSTATES = frozenset({"P10", "P12"})
#: Where the vendor's tools look for the executable (§2.1: all-smi, then rblnlib-go), under ``root``.
TOOL_PATHS = (
    "usr/local/bin/rbln-stat",
    "usr/bin/rbln-stat",
    "usr/local/bin/rbln-smi",
    "usr/bin/rbln-smi",
    "run/rbln/driver/usr/bin/rbln-smi",
    "host/usr/bin/rbln-smi",
    "host/driver/usr/bin/rbln-smi",
)
#: After a tool refused ``-j``, polls on the text table before ``-j`` is tried again.
JSON_RETRY_POLLS = 100
#: sysfs ``status`` values (§2.0); ``STATUS_NAMES_PROBING`` is the future KMD layout.
STATUS_NAMES = ("READY", "BUSY", "INIT", "FAULT", "FINISH")
STATUS_NAMES_PROBING = ("READY", "BUSY", "PROBING", "INIT", "FAULT", "FINISH")

_PSTATE = re.compile(r"^P\d{1,2}$")
_RULE = re.compile(r"^\+[-=+]*\+$")
_KMD = re.compile(r"KMD ver:\s*(\S+)")
_NAN = re.compile(r"^\s*[-+]?nan\b|^\s*[-+]?nan[^\d]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Config:
    """Options of a ``rebellions`` collector entry."""

    #: ``rbln-smi`` (or ``rbln-stat``): a path, or a name looked up in ``root``/bin, on PATH and in
    #: the vendor's paths under ``root``.
    tool: str = "rbln-smi"
    #: Prefix of ``/sys`` and of the vendor's tool paths: ``/`` on a real host, an emulated root.
    root: str = "/"
    #: Seconds one run of the tool may take before it is killed.
    timeout_s: float = 5.0


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class RblnDevice:
    """One device as ``rbln-smi`` shows it, values already in SI units (None = not shown)."""

    npu: int | None
    name: str | None
    sid: str | None
    uuid: str | None
    bus_id: str | None
    fw_ver: str | None
    temp_c: float | None
    power_w: float | None
    pstate: str | None
    util_ratio: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None


@dataclass(frozen=True, slots=True)
class RblnReport:
    """One run of the tool: the KMD version (None for ``N/A``) and the devices, in printed order."""

    kmd_version: str | None
    devices: tuple[RblnDevice, ...]


def _optional_str(value: object, source: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"{source}: expected a string for {key!r}, got {type(value).__name__}")
    value = value.strip()
    return None if value.lower() in NOT_AVAILABLE else value


def _number(value: object, source: str, key: str) -> float | None:
    """A JSON number given where the tool usually prints a string; NaN is absent, ±inf an error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{source}: expected a string or number for {key!r}, got {value!r:.80}")
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        raise ParseError(f"{source}: {key!r} is not finite")
    return float(value)


def _is_nan(text: str) -> bool:
    """A NaN as C's printf spells it (``nan``, ``-nan``, ``nanW``): the sensor had no valid value."""
    return _NAN.match(text) is not None


def _quantity(value: object, source: str, key: str, unit: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if _is_nan(value):
            return None
        try:
            return parse_quantity(value, unit)
        except QuantityError as e:
            raise ParseError(f"{source}: {key}: {e}") from None
    return _number(value, source, key)


def _percent(value: object, source: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if _is_nan(value):
            return None
        try:
            return parse_percent(value)
        except QuantityError as e:
            raise ParseError(f"{source}: {key}: {e}") from None
    number = _number(value, source, key)
    return None if number is None else pct_to_ratio(number)


def _memory(value: object, source: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if _is_nan(value):
            return None
        try:
            return parse_rbln_memory(value)
        except QuantityError as e:
            raise ParseError(f"{source}: {key}: {e}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"{source}: expected a byte count for {key!r}, got {value!r:.80}")
    return value


def _pstate(value: str | None, source: str) -> str | None:
    if value is None:
        return None
    if not _PSTATE.match(value):
        raise ParseError(f"{source}: expected a P-state such as 'P2', got {value[:80]!r}")
    return value


def _npu(value: object, source: str) -> int | None:
    """``npu``: an int (SDK 2.0.x) or a decimal string (SDK 1.x), §2.1."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    raise ParseError(f"{source}: expected 'npu' as an int or a decimal string, got {value!r:.80}")


def parse_json_report(raw: bytes, source: str = "rbln-smi -j") -> RblnReport:
    """The JSON document of ``rbln-smi -j`` (§2.1), every documented SDK variant."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
        raise ParseError(f"{source}: expected a JSON document: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise ParseError(f"{source}: expected a JSON object with a 'devices' list")
    kmd = _optional_str(doc.get("KMD_version"), source, "KMD_version")
    devices: list[RblnDevice] = []
    for i, entry in enumerate(doc["devices"]):
        where = f"{source}: devices[{i}]"
        if not isinstance(entry, dict):
            raise ParseError(f"{where}: expected an object")
        pci = entry.get("pci")
        if pci is not None and not isinstance(pci, dict):
            raise ParseError(f"{where}: expected 'pci' to be an object")
        memory = entry.get("memory")
        if memory is not None and not isinstance(memory, dict):
            raise ParseError(f"{where}: expected 'memory' to be an object")
        temp = _quantity(entry.get("temperature"), where, "temperature", "degC")
        devices.append(
            RblnDevice(
                npu=_npu(entry.get("npu"), where),
                name=_optional_str(entry.get("name"), where, "name"),
                sid=_optional_str(entry.get("sid"), where, "sid"),
                uuid=_optional_str(entry.get("uuid"), where, "uuid"),
                bus_id=_optional_str((pci or {}).get("bus_id"), where, "pci.bus_id"),
                fw_ver=_optional_str(entry.get("fw_ver"), where, "fw_ver"),
                temp_c=None if temp is None else c_to_c(temp),
                power_w=_quantity(entry.get("card_power"), where, "card_power", "W"),
                pstate=_pstate(_optional_str(entry.get("pstate"), where, "pstate"), where),
                util_ratio=_percent(entry.get("util"), where, "util"),
                mem_used_bytes=_memory((memory or {}).get("used"), where, "memory.used"),
                mem_total_bytes=_memory((memory or {}).get("total"), where, "memory.total"),
            )
        )
    return RblnReport(kmd, tuple(devices))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split("|")]


def _text_value(cell: str) -> str | None:
    return None if cell.strip().lower() in NOT_AVAILABLE else cell.strip()


def parse_text_report(raw: bytes, source: str = "rbln-smi") -> RblnReport:
    """The Device Information table of ``rbln-smi``/``rbln-stat`` without options (§2.1)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(
            f"{source}: expected the text table, got bytes that are not UTF-8"
        ) from None
    lines = [line.rstrip() for line in text.splitlines()]
    kmd: str | None = None
    header_at = -1
    for i, line in enumerate(lines):
        m = _KMD.search(line)
        if m is not None and kmd is None:
            kmd = _text_value(m.group(1))
        if line.startswith("|") and line.endswith("|"):
            cells = _cells(line)
            if "NPU" in cells and "Name" in cells:
                header_at = i
                break
    if header_at < 0:
        first = next((ln for ln in lines if ln.strip()), "")
        raise ParseError(
            f"{source}: expected the Device Information table (a '| NPU | Name | ...' header), "
            f"got {first[:80]!r}"
        )
    columns = [c.split("(")[0].strip() for c in _cells(lines[header_at])]
    index = {c: i for i, c in enumerate(columns)}
    for needed in ("NPU", "PCI BUS ID"):
        if needed not in index:
            raise ParseError(f"{source}: the table header has no {needed!r} column")
    devices: list[RblnDevice] = []
    body = lines[header_at + 1 :]
    if not body or not _RULE.match(body[0]):
        raise ParseError(f"{source}: expected a rule under the table header (truncated?)")
    card_name: str | None = None  # the Name of the current card's first row
    closed = False
    rows = body[1:]
    for i, line in enumerate(rows):
        if _RULE.match(line):
            # A rule closes a card (ATOM-Max: one rule after each card's four dies) or the table:
            # the table goes on only if a device row follows.
            card_name = None
            following = rows[i + 1] if i + 1 < len(rows) else ""
            if not _is_device_row(following):
                closed = True
                break
            continue
        if not (line.startswith("|") and line.endswith("|")):
            raise ParseError(f"{source}: expected a table row, got {line[:80]!r}")
        cells = _cells(line)
        if len(cells) != len(columns):
            raise ParseError(
                f"{source}: expected {len(columns)} cells per row, got {len(cells)} in {line[:80]!r}"
            )
        device = _text_row(dict(zip(columns, cells, strict=True)), f"{source}: {line[:40]!r}")
        if device.name is None and "Name" in index:
            # An ATOM-Max card prints its product name on its first die's row only.
            device = dataclasses.replace(device, name=card_name)
        card_name = device.name
        devices.append(device)
    if not closed:
        raise ParseError(f"{source}: the output ends inside the device table (truncated?)")
    return RblnReport(kmd, tuple(devices))


def _is_device_row(line: str) -> bool:
    """A table row whose first cell is an NPU index (not a title such as Context Information)."""
    if not (line.startswith("|") and line.endswith("|")):
        return False
    return _cells(line)[0].isdecimal()


def _text_row(row: Mapping[str, str], where: str) -> RblnDevice:
    npu_text = row["NPU"]
    if not npu_text.isdecimal():
        raise ParseError(f"{where}: expected an NPU index, got {npu_text[:20]!r}")
    used = total = None
    memory = _text_value(row.get("Memory", ""))
    if memory is not None:
        halves = re.split(r"\s+/\s+", memory)  # "2.4GB / 15.7GiB", "N/A / 15.7GiB"
        if len(halves) != 2:
            halves = memory.split("/")
        if len(halves) != 2:
            raise ParseError(f"{where}: expected 'used / total' memory, got {memory[:40]!r}")
        used = _memory(halves[0].strip(), where, "Memory used")
        total = _memory(halves[1].strip(), where, "Memory total")
    temp = _quantity(_text_value(row.get("Temp", "")), where, "Temp", "degC")
    return RblnDevice(
        npu=int(npu_text),
        name=_text_value(row.get("Name", "")),
        sid=None,
        uuid=None,
        bus_id=_text_value(row["PCI BUS ID"]),
        fw_ver=None,
        temp_c=None if temp is None else c_to_c(temp),
        power_w=_quantity(_text_value(row.get("Power", "")), where, "Power", "W"),
        pstate=_pstate(_text_value(row.get("Perf", "")), where),
        util_ratio=_percent(_text_value(row.get("Util", "")), where, "Util"),
        mem_used_bytes=used,
        mem_total_bytes=total,
    )


def throttled_from_pstate(pstate: str | None) -> int | None:
    """1 in P10/P12, 0 in any other P-state, None when the tool shows none (§2.1 P-state table)."""
    if pstate is None:
        return None
    return int(pstate in THROTTLED_PSTATES)


def assign_ids(
    devices: Sequence[RblnDevice],
    subs: MutableMapping[tuple[str, str], int],
    known: Mapping[str, str] | None = None,
) -> list[str]:
    """The stable ``device`` tag of each device (rules in the module docstring).

    ``subs`` remembers ``(sid, bus_id) → position`` of ATOM-Max dies across polls (pass ``{}`` for a
    one-off parse); ``known`` maps a PCI address to the id learnt from JSON, for the text table.
    """
    cards: dict[str, list[RblnDevice]] = {}
    for d in devices:
        if d.name == ATOM_MAX and d.sid is not None and d.bus_id is not None:
            cards.setdefault(d.sid, []).append(d)
    for sid, dies in cards.items():
        taken = {k for (s, _), k in subs.items() if s == sid}
        new = sorted((d.bus_id for d in dies if (sid, d.bus_id) not in subs), key=str)
        free = (k for k in range(len(taken) + len(new) + 1) if k not in taken)
        for bus_id, k in zip(new, free, strict=False):
            if bus_id is not None:
                subs[(sid, bus_id)] = k
    ids: list[str] = []
    for d in devices:
        if d.name == ATOM_MAX and d.sid is not None and d.bus_id is not None:
            ids.append(f"{d.sid}-{subs[(d.sid, d.bus_id)]}")
        elif d.uuid or d.sid:
            ids.append(d.uuid or d.sid or "")
        elif d.bus_id is not None:
            ids.append((known or {}).get(d.bus_id, d.bus_id))
        else:
            raise ParseError(f"rbln-smi: device npu {d.npu}: no uuid, sid or PCI address")
    return ids


def to_samples(
    report: RblnReport, *, ts_ns: int, ids: Sequence[str], source: str = "rbln-smi"
) -> list[Sample]:
    """One ``accel`` sample per device that shows at least one value."""
    samples: list[Sample] = []
    for d, device_id in zip(report.devices, ids, strict=True):
        values: dict[str, float | int | None] = {
            "power_w": d.power_w,
            "temp_c": d.temp_c,
            "util_ratio": d.util_ratio,
            "mem_used_bytes": d.mem_used_bytes,
            "mem_total_bytes": d.mem_total_bytes,
            "throttled": throttled_from_pstate(d.pstate),
        }
        if all(v is None for v in values.values()):
            continue
        try:
            samples.append(
                Sample.build(
                    Measurement.ACCEL,
                    ts_ns,
                    {"vendor": VENDOR, "model": d.name or "rbln", "device": device_id},
                    values,
                )
            )
        except ValueError as e:
            raise ParseError(f"{source}: device {device_id!r}: {e}") from None
    return samples


def parse_json(raw: bytes, *, ts_ns: int) -> list[Sample]:
    """``rbln-smi -j`` output → samples (pure; ATOM-Max positions ranked within this output)."""
    report = parse_json_report(raw)
    return to_samples(report, ts_ns=ts_ns, ids=assign_ids(report.devices, {}))


def parse_text(raw: bytes, *, ts_ns: int) -> list[Sample]:
    """``rbln-smi`` text output → samples (pure; devices identified by PCI address)."""
    report = parse_text_report(raw)
    return to_samples(report, ts_ns=ts_ns, ids=assign_ids(report.devices, {}))


# ------------------------------------------------------------------------------------ sysfs


@dataclass(frozen=True, slots=True)
class SysfsDevice:
    """``/sys/class/rebellions/rbln{N}`` (§2.0)."""

    name: str  # rbln0
    status: str | None  # READY, BUSY, ... (None when the file is missing)
    kernel_version: str | None
    bus_id: str | None  # from the ``device`` link


def parse_status(text: str, source: str = "status", *, probing_layout: bool = False) -> str:
    """The status enum (§2.0: 0 READY … 4 FINISH; the future layout has PROBING at 2)."""
    value = text.strip()
    names = STATUS_NAMES_PROBING if probing_layout else STATUS_NAMES
    if not value.isdecimal() or int(value) >= len(names):
        raise ParseError(f"{source}: expected a status 0-{len(names) - 1}, got {value[:40]!r}")
    return names[int(value)]


def _optional_text(path: Path) -> str | None:
    try:
        return read_text(path)
    except CollectorUnavailable:
        return None


def read_sysfs(root: Path) -> list[SysfsDevice]:
    """Every ``rbln{N}`` of the sysfs class under ``root`` (empty when the driver is not loaded)."""
    class_dir = root / "sys" / "class" / "rebellions"
    try:
        entries = sorted(p for p in class_dir.iterdir() if p.name.startswith("rbln"))
    except OSError:
        return []
    out: list[SysfsDevice] = []
    for entry in entries:
        status = _optional_text(entry / "status")
        try:
            bus_id: str | None = (entry / "device").readlink().name
        except OSError:
            bus_id = None
        out.append(
            SysfsDevice(
                name=entry.name,
                status=None if status is None else parse_status(status, str(entry / "status")),
                kernel_version=_optional_text(entry / "kernel_version"),
                bus_id=bus_id,
            )
        )
    return out


# ------------------------------------------------------------------------------------ I/O


class RebellionsCollector:
    """Runs ``rbln-smi -j`` (text table as fallback); one ``accel`` sample per visible device."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._subs: dict[tuple[str, str], int] = {}  # ATOM-Max die positions, (sid, bdf) → k
        self._known: dict[str, str] = {}  # PCI address → id learnt from JSON
        self._text_only = False  # the tool refused -j while its text table worked
        self._text_polls = 0  # polls since then; -j is tried again every JSON_RETRY_POLLS

    def _tool(self) -> str:
        tool = self.config.tool
        found = find_tool(self.config.root, tool)
        if found is not None:
            return found
        root = Path(self.config.root)
        for rel in TOOL_PATHS if tool in ("rbln-smi", "rbln-stat") else ():
            candidate = root / rel
            if os.access(candidate, os.X_OK):
                return str(candidate)
        raise CollectorUnavailable(
            f"{tool}: not found in {root}/bin, on PATH nor in the RBLN driver's paths under "
            f"{root} (install the RBLN driver package, or set 'tool:' to the rbln-smi path)"
        )

    async def _report(self) -> tuple[RblnReport, str]:
        tool = self._tool()
        json_error: CollectorError | None = None
        if self._text_only:
            self._text_polls += 1
            if self._text_polls >= JSON_RETRY_POLLS:  # a tool upgrade, or a transient failure
                self._text_only, self._text_polls = False, 0
        if not self._text_only:
            try:
                raw = await run_tool([tool, "-j"], self.config.timeout_s)
                return parse_json_report(raw, f"{tool} -j"), "json"
            except (CollectorTimeout, CollectorUnavailable):
                raise
            except CollectorError as e:
                json_error = e
        try:
            raw = await run_tool([tool], self.config.timeout_s)
            report = parse_text_report(raw, tool)
        except CollectorError as e:
            if json_error is None:
                raise
            raise type(e)(f"{e} (and with -j: {json_error})") from e
        if json_error is not None and not isinstance(json_error, ParseError):
            log.info("%s: -j failed (%s); using the text table from now on", tool, json_error)
            self._text_only = True
        return report, "text"

    def _ids(self, report: RblnReport, kind: str) -> list[str]:
        ids = assign_ids(report.devices, self._subs, self._known)
        if kind == "json":
            for d, device_id in zip(report.devices, ids, strict=True):
                if d.bus_id is not None:
                    self._known[d.bus_id] = device_id
        return ids

    async def collect(self) -> list[Sample]:
        report, kind = await self._report()
        ts_ns = time.time_ns()
        return to_samples(report, ts_ns=ts_ns, ids=self._ids(report, kind), source=self.config.tool)

    async def inventory(self) -> list[DeviceInfo]:
        report, kind = await self._report()
        ids = self._ids(report, kind)
        sysfs = {d.bus_id: d for d in await asyncio.to_thread(read_sysfs, Path(self.config.root))}
        out: list[DeviceInfo] = []
        for d, device_id in zip(report.devices, ids, strict=True):
            node = sysfs.get(d.bus_id)
            if node is not None and node.status == "FAULT":
                log.warning("%s (%s): sysfs status FAULT", node.name, device_id)
            out.append(
                DeviceInfo(
                    vendor=VENDOR,
                    model=d.name or "rbln",
                    id=device_id,
                    collector=self.name,
                    driver_version=report.kmd_version or (node.kernel_version if node else None),
                    firmware_version=d.fw_ver,
                    bus_id=d.bus_id,
                )
            )
        return out

    async def aclose(self) -> None:
        return None


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has ``rbln-smi`` or the driver's sysfs class."""
    tool = surface.tool("rbln-smi")
    if not tool and not surface.has_class("rebellions"):
        return []
    root = str(surface.root.resolve())
    return [{"type": "rebellions", "name": "rebellions", "tool": tool or "rbln-smi", "root": root}]


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="rebellions",
    config=Config,
    factory=RebellionsCollector,
    detect=_detect,
    demo=True,
    permission_fix=(
        'add the agent user to the group owning /dev/rbln* (udev: KERNEL=="rbln*", '
        'GROUP="kwatt", MODE="0660")'
    ),
)
