"""NVIDIA GPUs through the ``nvidia-smi`` executable: CSV query or XML report (fallback to ``nvml``).

Use it where nvidia-ml-py is not installed. Two modes (docs/device-interfaces.md §4.2):

- ``csv`` (default) runs ``nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv`` and reads the header
  to find each column, whatever its order, with or without units: ``power.draw [W]`` and ``120.45 W``,
  ``utilization.gpu [%]`` and ``42 %``, ``memory.used [MiB]`` and ``1000 MiB``; a bare number
  (``nounits``, or ``temperature.gpu`` which never has a unit) is in the field's documented unit.
  ``[N/A]``, ``[Not Supported]`` and ``N/A`` make the field absent (never 0), and so does a sensor
  that reads ``nan`` (one bad sensor must not fail the whole poll). The fields queried
  exist in every driver branch (``clocks_throttle_reasons.active`` rather than the 535+
  ``clocks_event_reasons.active``; ``power.draw`` rather than the 535+ ``.instant``/``.average``).
- ``xml`` runs ``nvidia-smi -q -x`` and reads each ``<gpu>``: ``uuid``, ``serial``, ``pci/pci_bus_id``,
  ``product_name``; power from ``gpu_power_readings/instant_power_draw`` (550+), else
  ``average_power_draw``, else ``power_draw`` (535/545), else ``power_readings/power_draw`` (before
  535, DTD v11); the limit from ``current_power_limit`` or ``enforced_power_limit``;
  ``temperature/gpu_temp`` (``"41 C"``), ``utilization/gpu_util``, ``clocks/sm_clock``,
  ``fb_memory_usage/{used,total}``; ``throttled`` from ``clocks_event_reasons`` (535+) or
  ``clocks_throttle_reasons``: any power or thermal reason ``Active``. A document that declares
  entities is refused (no expansion attacks through a replaced binary).

nvidia-smi has no energy counter (§8): energy comes from integrating ``power_w`` downstream, which is
why ``nvml`` (mJ counter) is preferred. Parsing is pure (:func:`parse_csv`, :func:`parse_xml`: bytes →
:class:`~kwatt.collectors.nvidia_common.GpuRecord` or :class:`ParseError`); the tool runs under
``timeout_s`` and is killed when it hangs (:func:`kwatt.collectors.base.run_tool`).

Cost per poll: one process spawn, almost all of it the tool's start-up, against a fraction of that
for ``nvml`` (see BENCHMARKS.md (Cost per collector poll); ``bench/bench_nvidia_poll.py`` compares the two over emulated GPUs). Poll it
every 10 s or more, or use ``nvml``.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from kwatt.collectors.base import ParseError, run_tool
from kwatt.collectors.nvidia_common import GpuRecord, device_info, is_throttled, to_sample
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample
from kwatt.wire.units import NOT_AVAILABLE, QuantityError, parse_quantity

__all__ = [
    "PLUGIN",
    "QUERY_FIELDS",
    "Config",
    "NvidiaSmiCollector",
    "argv",
    "parse_csv",
    "parse_xml",
]

#: The ``--query-gpu`` fields the csv mode asks for (all known to every driver branch).
QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "serial",
    "pci.bus_id",
    "name",
    "driver_version",
    "power.draw",
    "enforced.power.limit",
    "temperature.gpu",
    "utilization.gpu",
    "clocks.sm",
    "memory.used",
    "memory.total",
    "clocks_throttle_reasons.active",
)


@dataclass(frozen=True)
class Config:
    """Options of an ``nvidia_smi`` collector entry."""

    #: The executable: ``nvidia-smi`` on PATH, or an emulated node's ``ROOT/bin/nvidia-smi``.
    tool: str = "nvidia-smi"
    mode: Literal["csv", "xml"] = "csv"
    #: The tool is killed after this long (a hung driver makes nvidia-smi hang).
    timeout_s: float = 5.0


def argv(config: Config) -> list[str]:
    """The command line of one poll."""
    if config.mode == "xml":
        return [config.tool, "-q", "-x"]
    return [config.tool, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv"]


# ----------------------------------------------------------------------------------- pure parsing


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"{source}: not UTF-8 at byte {e.start}") from None


# a sensor that reads NaN (``nan W``): dropped like N/A, so one bad sensor does not fail the poll
_NAN = re.compile(r"[-+]?(?:nan|inf)(?:\s+\S+)?", re.IGNORECASE)


def _quantity(text: str, expect: str, default_unit: str, source: str) -> float | None:
    """A value with its unit, or a bare number in ``default_unit``; None for N/A spellings."""
    value = text.strip()
    if value.lower() in NOT_AVAILABLE or _NAN.fullmatch(value):
        return None
    if re.fullmatch(r"[-+]?\d+(?:\.\d*)?", value) and default_unit:
        value = f"{value} {default_unit}"
    try:
        return parse_quantity(value, expect)
    except QuantityError as e:
        raise ParseError(f"{source}: {e}") from None


def _ident(text: str | None) -> str | None:
    if text is None:
        return None
    value = text.strip()
    return None if value.lower() in NOT_AVAILABLE else value


def _int_bytes(value: float | None, source: str) -> int | None:
    if value is None:
        return None
    if not 0 <= value < 2**63:
        raise ParseError(f"{source}: {value!r} bytes out of range")
    return round(value)


def _reasons(text: str, source: str) -> int | None:
    value = text.strip()
    if value.lower() in NOT_AVAILABLE:
        return None
    if not re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}", value):
        raise ParseError(f"{source}: expected a bitmask such as 0x0000000000000004, got {value!r}")
    return int(value, 16)


# column → how to read it: (SI unit, unit of a bare number)
_CSV_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "power.draw": ("W", "W"),
    "power.draw.instant": ("W", "W"),
    "power.draw.average": ("W", "W"),
    "enforced.power.limit": ("W", "W"),
    "power.limit": ("W", "W"),
    "temperature.gpu": ("degC", "C"),
    "utilization.gpu": ("1", "%"),
    "clocks.sm": ("Hz", "MHz"),
    "clocks.current.sm": ("Hz", "MHz"),
    "memory.used": ("B", "MiB"),
    "memory.total": ("B", "MiB"),
}
_HEADER = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)(?:\s*\[(?P<unit>[^\]]*)\])?$")


def _csv_header(line: str, source: str) -> list[str]:
    names: list[str] = []
    for cell in line.split(","):
        m = _HEADER.match(cell.strip())
        if m is None:
            raise ParseError(f"{source}: header cell {cell.strip()[:60]!r} is not 'field [unit]'")
        names.append(m.group("name"))
    if not {"uuid", "serial", "pci.bus_id"} & set(names):
        raise ParseError(f"{source}: header names no uuid, serial or pci.bus_id column")
    return names


def parse_csv(raw: bytes, source: str = "nvidia-smi --query-gpu") -> list[GpuRecord]:
    """``--format=csv`` output (header required; ``nounits`` accepted) → one record per GPU."""
    text = _decode(raw, source)
    if not text.endswith("\n"):
        raise ParseError(f"{source}: output does not end with a newline (cut short?)")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParseError(f"{source}: empty output")
    names = _csv_header(lines[0], source)
    records: list[GpuRecord] = []
    for n, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(names):
            raise ParseError(f"{source}: line {n} has {len(cells)} cells, the header {len(names)}")
        row = dict(zip(names, cells, strict=True))
        where = f"{source}: line {n}"

        def q(*cols: str, _row: dict[str, str] = row, _where: str = where) -> float | None:
            for col in cols:
                if col in _row:
                    expect, unit = _CSV_QUANTITIES[col]
                    return _quantity(_row[col], expect, unit, f"{_where}: {col}")
            return None

        reasons_text = row.get(
            "clocks_throttle_reasons.active", row.get("clocks_event_reasons.active")
        )
        reasons = None if reasons_text is None else _reasons(reasons_text, f"{where}: reasons")
        records.append(
            GpuRecord(
                uuid=_ident(row.get("uuid")),
                serial=_ident(row.get("serial")),
                bus_id=_ident(row.get("pci.bus_id")),
                name=_ident(row.get("name")),
                driver_version=_ident(row.get("driver_version")),
                power_w=q("power.draw", "power.draw.instant", "power.draw.average"),
                util_ratio=q("utilization.gpu"),
                temp_c=q("temperature.gpu"),
                clock_hz=q("clocks.sm", "clocks.current.sm"),
                mem_used_bytes=_int_bytes(q("memory.used"), where),
                mem_total_bytes=_int_bytes(q("memory.total"), where),
                power_limit_w=q("enforced.power.limit", "power.limit"),
                throttled=None if reasons is None else int(is_throttled(reasons)),
            )
        )
    return records


_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
# XML reason element suffix → clock event reason bit (§4.1 bitmask)
_XML_REASON_BITS: Mapping[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clocks_setting": 0x100,
}


def _xml_reasons(gpu: ET.Element) -> int | None:
    for kind in ("event", "throttle"):
        block = gpu.find(f"clocks_{kind}_reasons")
        if block is None:
            continue
        mask = 0
        for child in block:
            name = child.tag.removeprefix(f"clocks_{kind}_reason_")
            if (child.text or "").strip() == "Active":
                mask |= _XML_REASON_BITS.get(name, 0)
        return mask
    return None


def parse_xml(raw: bytes, source: str = "nvidia-smi -q -x") -> list[GpuRecord]:
    """``-q -x`` output (DTD v11 or v12) → one record per ``<gpu>``."""
    if _ENTITY.search(raw):
        raise ParseError(f"{source}: the document declares entities; refused")
    try:
        root = ET.fromstring(raw)  # noqa: S314 - no entities (checked above), no external DTD fetch
    except ET.ParseError as e:
        raise ParseError(f"{source}: not XML: {e}") from None
    if root.tag != "nvidia_smi_log":
        raise ParseError(f"{source}: root element is <{root.tag}>, expected <nvidia_smi_log>")
    driver = _ident(root.findtext("driver_version"))
    records: list[GpuRecord] = []
    for n, gpu in enumerate(root.findall("gpu")):
        where = f"{source}: gpu {n}"

        def q(
            paths: tuple[str, ...],
            expect: str,
            unit: str,
            _gpu: ET.Element = gpu,
            _where: str = where,
        ) -> float | None:
            for path in paths:
                text = _gpu.findtext(path)
                if text is not None:
                    value = _quantity(text, expect, unit, f"{_where}: {path}")
                    if value is not None:
                        return value
            return None

        bus_id = _ident(gpu.findtext("pci/pci_bus_id")) or _ident(gpu.get("id"))
        records.append(
            GpuRecord(
                uuid=_ident(gpu.findtext("uuid")),
                serial=_ident(gpu.findtext("serial")),
                bus_id=bus_id,
                name=_ident(gpu.findtext("product_name")),
                driver_version=driver,
                power_w=q(
                    (
                        "gpu_power_readings/instant_power_draw",
                        "gpu_power_readings/average_power_draw",
                        "gpu_power_readings/power_draw",
                        "power_readings/instant_power_draw",
                        "power_readings/average_power_draw",
                        "power_readings/power_draw",
                    ),
                    "W",
                    "W",
                ),
                util_ratio=q(("utilization/gpu_util",), "1", "%"),
                temp_c=q(("temperature/gpu_temp",), "degC", "C"),
                clock_hz=q(("clocks/sm_clock",), "Hz", "MHz"),
                mem_used_bytes=_int_bytes(q(("fb_memory_usage/used",), "B", "MiB"), where),
                mem_total_bytes=_int_bytes(q(("fb_memory_usage/total",), "B", "MiB"), where),
                power_limit_w=q(
                    (
                        "gpu_power_readings/current_power_limit",
                        "power_readings/enforced_power_limit",
                        "power_readings/power_limit",
                    ),
                    "W",
                    "W",
                ),
                throttled=_throttled(_xml_reasons(gpu)),
            )
        )
    return records


def _throttled(mask: int | None) -> int | None:
    return None if mask is None else int(is_throttled(mask))


def samples(records: list[GpuRecord], ts_ns: int, source: str) -> list[Sample]:
    """The ``accel`` samples of parsed records (GPUs that reported nothing are left out)."""
    out: list[Sample] = []
    for r in records:
        s = to_sample(r, ts_ns, source)
        if s is not None:
            out.append(s)
    return out


# ----------------------------------------------------------------------------------- I/O


class NvidiaSmiCollector:
    """Runs ``nvidia-smi`` once per poll; one ``accel`` sample per GPU."""

    def __init__(self, name: str, config: Config) -> None:
        if config.mode not in ("csv", "xml"):
            raise ValueError(f"mode: expected 'csv' or 'xml', got {config.mode!r}")
        self.name = name
        self.config = config
        self._parse: Callable[[bytes, str], list[GpuRecord]] = (
            parse_xml if config.mode == "xml" else parse_csv
        )

    async def _read(self) -> tuple[int, list[GpuRecord]]:
        raw = await run_tool(argv(self.config), self.config.timeout_s)
        ts_ns = time.time_ns()
        return ts_ns, self._parse(raw, f"{self.config.tool} ({self.config.mode})")

    async def inventory(self) -> list[DeviceInfo]:
        _, records = await self._read()
        infos = [device_info(r, self.name) for r in records]
        return [i for i in infos if i is not None]

    async def collect(self) -> list[Sample]:
        ts_ns, records = await self._read()
        return samples(records, ts_ns, f"{self.config.tool} ({self.config.mode})")

    async def aclose(self) -> None:
        return None


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has ``nvidia-smi``."""
    tool = surface.tool("nvidia-smi")
    return [{"type": "nvidia_smi", "name": "nvidia-smi", "tool": tool}] if tool else []


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="nvidia_smi",
    config=Config,
    factory=NvidiaSmiCollector,
    detect=_detect,
    fallback_of="nvml",
    permission_fix="add the agent user to the group owning /dev/nvidia* (usually 'video')",
)
