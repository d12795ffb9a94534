"""Sapeon NPUs (X220-compact, X220-enterprise, X330) through the ASSUMED surface of the emulator.

docs/device-interfaces.md §3: Sapeon publishes no monitoring interface at all (CLI, API, sysfs,
exporter: all UNCONFIRMED). This collector reads the interface kwatt *assumes* and documents in
:mod:`kwatt.emulators.sapeon` (kept to generic Linux conventions so a real driver that follows them would
work unchanged); on a real Sapeon host without it, rely on host power (§5) and the generic ``hwmon``
collector. Nothing here was checked against hardware.

1. ``sapeon-smi --json`` first (assumed): ``{"schema": "kwatt-assumed-sapeon-smi/1", "driver_version",
   "devices": [{"model", "serial", "uuid", "pci_bus_id", "power_mw", "power_limit_mw", "energy_mj",
   "temperature_mc", "utilization_pct", "clock_mhz", "memory_used_bytes", "memory_total_bytes",
   "throttled"}]}``; ``null`` and ``NaN`` are absent, never 0.
2. When the tool is not installed: hwmon (§5.2 units) under ``root``: every ``sys/class/hwmon/hwmon*``
   whose ``name`` starts with ``sapeon``: ``power1_input`` µW, ``power1_cap`` µW, ``energy1_input`` µJ,
   ``temp1_input`` m°C; the PCI address from its ``device`` link. A tool that is there but fails (hang,
   garbage, exit status) raises its error: the fault shows in ``collect_ok`` instead of being hidden.

The ``device`` tag is the PCI address (BDF), the one identity both paths have, so a series does not
change when the tool comes or goes; it survives re-enumeration (the tool's ``index`` and the hwmon
number may change). The ``model`` tag is the lowercase model, ``x220-compact`` from either path.

Cost per poll: the tool path is one process spawn per poll, the hwmon path a few file reads
(see BENCHMARKS.md (Cost per collector poll); ``bench/bench_rbln_sapeon.py`` compares the two). hwmon is far cheaper, but has no utilization, clock, memory or throttle state; the tool is
preferred for completeness, and a site that only needs power/energy can point ``tool:`` at a name
that does not exist to read hwmon only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kwatt.collectors.base import CollectorUnavailable, ParseError, run_tool
from kwatt.collectors.hwmon_files import chip_dirs, read_files
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface, find_tool
from kwatt.wire.model import DeviceInfo, Measurement, Sample, validate_tag_value
from kwatt.wire.units import (
    mhz_to_hz,
    millic_to_c,
    mj_to_j,
    mw_to_w,
    pct_to_ratio,
    uj_to_j,
    uw_to_w,
)

__all__ = [
    "HWMON_FILES",
    "PLUGIN",
    "SCHEMA_PREFIX",
    "Config",
    "SapeonCollector",
    "SapeonDevice",
    "SapeonReport",
    "parse_hwmon",
    "parse_hwmon_device",
    "parse_json",
    "parse_json_report",
    "to_samples",
]

VENDOR = "sapeon"
#: The assumed JSON's ``schema`` (any version of it).
SCHEMA_PREFIX = "kwatt-assumed-sapeon-smi/"
#: hwmon files read (assumed surface, §5.2 units).
HWMON_FILES = ("name", "power1_input", "power1_cap", "energy1_input", "temp1_input")

_INT = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class Config:
    """Options of a ``sapeon`` collector entry."""

    #: The assumed ``sapeon-smi``: a path, or a name looked up in ``root``/bin, then on PATH.
    tool: str = "sapeon-smi"
    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Seconds one run of the tool may take before it is killed.
    timeout_s: float = 5.0


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class SapeonDevice:
    """One device, values in SI units (None = not shown)."""

    bus_id: str
    model: str
    serial: str | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    temp_c: float | None = None
    util_ratio: float | None = None
    clock_hz: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    throttled: int | None = None


@dataclass(frozen=True, slots=True)
class SapeonReport:
    driver_version: str | None
    devices: tuple[SapeonDevice, ...]


def _num(entry: Mapping[str, object], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{where}: expected a number for {key!r}, got {value!r:.60}")
    if math.isnan(value):
        return None  # the sensor had no valid value
    if not math.isfinite(value):
        raise ParseError(f"{where}: {key!r} is not finite")
    return float(value)


def _bytes(entry: Mapping[str, object], key: str, where: str) -> int | None:
    value = _num(entry, key, where)
    if value is None:
        return None
    if value < 0 or not value.is_integer():
        raise ParseError(f"{where}: expected a whole number of bytes for {key!r}, got {value!r}")
    return int(value)


def _str(entry: Mapping[str, object], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"{where}: expected a string for {key!r}, got {type(value).__name__}")
    return value.strip() or None


def _model_tag(model: str) -> str:
    return model.strip().lower()


def parse_json_report(raw: bytes, source: str = "sapeon-smi --json") -> SapeonReport:
    """The assumed ``sapeon-smi --json`` document (module docstring)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ParseError(f"{source}: expected a JSON document: {e}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("schema"), str)
        or not doc["schema"].startswith(SCHEMA_PREFIX)
        or not isinstance(doc.get("devices"), list)
    ):
        raise ParseError(
            f"{source}: expected a JSON object with schema {SCHEMA_PREFIX}N and a 'devices' list"
        )
    devices: list[SapeonDevice] = []
    for i, entry in enumerate(doc["devices"]):
        where = f"{source}: devices[{i}]"
        if not isinstance(entry, dict):
            raise ParseError(f"{where}: expected an object")
        bus_id = _str(entry, "pci_bus_id", where)
        if bus_id is None:
            raise ParseError(f"{where}: expected 'pci_bus_id' (the device's identity)")
        throttled = entry.get("throttled")
        if throttled is not None and not isinstance(throttled, bool):
            raise ParseError(f"{where}: expected true/false for 'throttled', got {throttled!r:.60}")
        power = _num(entry, "power_mw", where)
        limit = _num(entry, "power_limit_mw", where)
        energy = _num(entry, "energy_mj", where)
        temp = _num(entry, "temperature_mc", where)
        util = _num(entry, "utilization_pct", where)
        clock = _num(entry, "clock_mhz", where)
        devices.append(
            SapeonDevice(
                bus_id=bus_id,
                model=_model_tag(_str(entry, "model", where) or "sapeon"),
                serial=_str(entry, "serial", where),
                power_w=None if power is None else mw_to_w(power),
                power_limit_w=None if limit is None else mw_to_w(limit),
                energy_j=None if energy is None else mj_to_j(energy),
                temp_c=None if temp is None else millic_to_c(temp),
                util_ratio=None if util is None else pct_to_ratio(util),
                clock_hz=None if clock is None else mhz_to_hz(clock),
                mem_used_bytes=_bytes(entry, "memory_used_bytes", where),
                mem_total_bytes=_bytes(entry, "memory_total_bytes", where),
                throttled=None if throttled is None else int(throttled),
            )
        )
    driver = doc.get("driver_version")
    return SapeonReport(driver if isinstance(driver, str) else None, tuple(devices))


def _hwmon_int(files: Mapping[str, str], key: str, source: str) -> int | None:
    text = files.get(key)
    if text is None:
        return None
    value = text.strip()
    if value.lower() in ("nan", "-nan"):
        return None
    if not _INT.match(value):
        raise ParseError(f"{source}/{key}: expected an integer, got {value[:40]!r}")
    return int(value)


def parse_hwmon_device(
    files: Mapping[str, str], *, bus_id: str, source: str = "hwmon"
) -> SapeonDevice | None:
    """One hwmon directory (file name → content); None when its ``name`` is not a Sapeon chip."""
    name = files.get("name", "").strip()
    if not name.startswith("sapeon"):
        return None
    model = name.removeprefix("sapeon").lstrip("_").replace("_", "-") or "sapeon"
    power = _hwmon_int(files, "power1_input", source)
    cap = _hwmon_int(files, "power1_cap", source)
    energy = _hwmon_int(files, "energy1_input", source)
    temp = _hwmon_int(files, "temp1_input", source)
    if energy is not None and energy < 0:
        raise ParseError(f"{source}/energy1_input: a counter cannot be negative, got {energy}")
    return SapeonDevice(
        bus_id=bus_id,
        model=model,
        power_w=None if power is None else uw_to_w(power),
        power_limit_w=None if cap is None else uw_to_w(cap),
        energy_j=None if energy is None else uj_to_j(energy),
        temp_c=None if temp is None else millic_to_c(temp),
    )


def to_samples(
    devices: tuple[SapeonDevice, ...], *, ts_ns: int, source: str = "sapeon"
) -> list[Sample]:
    samples: list[Sample] = []
    for d in devices:
        values: dict[str, float | int | None] = {
            "power_w": d.power_w,
            "power_limit_w": d.power_limit_w,
            "energy_j": d.energy_j,
            "temp_c": d.temp_c,
            "util_ratio": d.util_ratio,
            "clock_hz": d.clock_hz,
            "mem_used_bytes": d.mem_used_bytes,
            "mem_total_bytes": d.mem_total_bytes,
            "throttled": d.throttled,
        }
        if all(v is None for v in values.values()):
            continue
        tags = {"vendor": VENDOR, "model": d.model, "device": d.bus_id}
        try:
            samples.append(Sample.build(Measurement.ACCEL, ts_ns, tags, values))
        except ValueError as e:
            raise ParseError(f"{source}: device {d.bus_id!r}: {e}") from None
    return samples


def parse_json(raw: bytes, *, ts_ns: int) -> list[Sample]:
    """``sapeon-smi --json`` output → samples (pure)."""
    return to_samples(parse_json_report(raw).devices, ts_ns=ts_ns, source="sapeon-smi --json")


def parse_hwmon(files: Mapping[str, str], *, bus_id: str, ts_ns: int) -> list[Sample]:
    """One hwmon directory → its sample (none for a chip that is not a Sapeon card); pure."""
    device = parse_hwmon_device(files, bus_id=bus_id)
    return [] if device is None else to_samples((device,), ts_ns=ts_ns, source="hwmon")


# ------------------------------------------------------------------------------------ I/O


def _read_hwmon(root: Path) -> list[SapeonDevice]:
    devices: list[SapeonDevice] = []
    for entry in chip_dirs(root / "sys" / "class" / "hwmon"):
        files = read_files(entry, HWMON_FILES)  # a missing (or ENODATA) file: that value is absent
        if not files.get("name", "").startswith("sapeon"):
            continue
        bus_id = (entry / "device").resolve().name
        try:
            validate_tag_value("device", bus_id)
        except ValueError:
            raise ParseError(
                f"{entry}/device: no PCI device link to identify the card by"
            ) from None
        device = parse_hwmon_device(files, bus_id=bus_id, source=str(entry))
        if device is not None:
            devices.append(device)
    return devices


class SapeonCollector:
    """``sapeon-smi --json`` (assumed), hwmon when the tool is not installed."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config

    def _tool(self) -> str | None:
        """The tool to run (:func:`~kwatt.collectors.plugin.find_tool`), if it is executable."""
        found = find_tool(self.config.root, self.config.tool)
        return found if found is not None and os.access(found, os.X_OK) else None

    async def _report(self) -> SapeonReport:
        tool = self._tool()
        if tool is not None:
            try:
                raw = await run_tool([tool, "--json"], self.config.timeout_s)
                return parse_json_report(raw, f"{tool} --json")
            except CollectorUnavailable:
                pass  # vanished between the lookup and the run: hwmon below
        devices = await asyncio.to_thread(_read_hwmon, Path(self.config.root))
        if not devices:
            raise CollectorUnavailable(
                f"no {self.config.tool} and no Sapeon hwmon chip under "
                f"{Path(self.config.root) / 'sys/class/hwmon'} (Sapeon publishes no monitoring "
                "interface: use host power and the hwmon collector)"
            )
        return SapeonReport(None, tuple(devices))

    async def collect(self) -> list[Sample]:
        report = await self._report()
        return to_samples(report.devices, ts_ns=time.time_ns(), source=self.config.tool)

    async def inventory(self) -> list[DeviceInfo]:
        report = await self._report()
        return [
            DeviceInfo(
                vendor=VENDOR,
                model=d.model,
                id=d.bus_id,
                collector=self.name,
                driver_version=report.driver_version,
                bus_id=d.bus_id,
            )
            for d in report.devices
        ]

    async def aclose(self) -> None:
        return None


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has ``sapeon-smi``."""
    tool = surface.tool("sapeon-smi")
    if not tool:
        return []
    return [{"type": "sapeon", "name": "sapeon", "tool": tool, "root": str(surface.root.resolve())}]


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="sapeon",
    config=Config,
    factory=SapeonCollector,
    detect=_detect,
    demo=True,
    hwmon_chips=("sapeon_*",),
    permission_fix=(
        'add the agent user to the group owning /dev/sapeon* (udev: KERNEL=="sapeon*", '
        'GROUP="kwatt", MODE="0660")'
    ),
)
