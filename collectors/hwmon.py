"""Any hwmon chip exposing power, energy or temperature: host meters and accelerators we do not know.

Layout (docs/device-interfaces.md §5.2, Linux ``Documentation/hwmon/sysfs-interface.rst``),
under the configured ``root``: ``sys/class/hwmon/hwmon*/`` (on a real host, links into
``sys/devices/...``) and, for accelerator drivers that do not link there, ``sys/bus/pci/devices/<bdf>/
hwmon/hwmon*/``. Per chip: ``name`` (mandatory), ``power<i>_average`` / ``power<i>_input`` (µW),
``energy<i>_input`` (µJ, cumulative), ``temp<i>_input`` (m°C, signed), ``<sensor>_label``. A sensor
file that is missing or answers ``ENODATA`` (a disabled sensor) is absent, never 0.

A chip is an **accelerator** when its ``name`` matches a configured ``devices`` entry (fnmatch
pattern, e.g. ``rngd*``) or, with ``auto_accel``, when it hangs off a PCI function (its resolved
path is ``…/<bdf>/hwmon/hwmonN`` or its ``device`` link ends in a BDF) *and* it exposes power or
energy — an NVMe or NIC temperature chip does not. An accelerator gives one ``accel`` sample:
``device`` = the PCI BDF (stable across re-enumeration; the chip's directory name if there is no
BDF), ``vendor``/``model`` from the matching entry, else from :func:`known_devices` (RNGD), else
from the chip ``name``: ``<vendor>_<model>``
(``sapeon_x330`` → ``sapeon``/``x330``), or the name for both when it has no ``_``; ``power_w``,
``energy_j`` and ``temp_c`` from the channel labelled as configured (``power_label``, ...), else the
lowest-numbered channel (hwmon's primary sensor). Every other chip is **host**: one ``host`` sample
(``source=hwmon``) per power/energy channel, ``zone`` = ``<name>/<label>`` (``<name>/power1`` with no
label), a power and an energy channel with the same label sharing one sample; its temperatures are
not reported (the ``host`` measurement has no temperature field, DESIGN §4). Chips whose name
matches ``exclude`` are skipped: list there the chips of cards a vendor collector already reports
(e.g. ``rngd*`` next to the ``furiosa`` collector), or ``auto_accel`` reports them a second time under
their BDF.

A chip with a malformed file (a ``name`` that fails validation, a value that is not a number) is
skipped with a warning naming the file, and kept in ``HwmonCollector.chip_errors``; the other chips
are still reported. Only when every chip fails does the poll fail.

A poll whose reads take longer than ``timeout_s`` (a driver that blocks) raises
:class:`CollectorTimeout`; the agent goes on (the blocked read is abandoned in its thread).

The chips (directories, names, labels, which files to read) are listed every :data:`RESCAN_S`
seconds; a poll in between reads only the value files, and a chip that vanishes forces a new
listing at the next poll, so the excluded chips of a node's NPUs cost nothing per poll (see BENCHMARKS.md (Cost per collector poll)).
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kwatt import collectors
from kwatt.collectors.base import (
    CollectorError,
    CollectorUnavailable,
    ParseError,
    not_a_number,
    sysfs_read,
)
from kwatt.collectors.hwmon_files import DeviceMatch, chip_dirs, read_sensor
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample
from kwatt.wire.units import millic_to_c, uj_to_j, uw_to_w

__all__ = [
    "PLUGIN",
    "Channel",
    "Chip",
    "Config",
    "DeviceMatch",
    "HwmonCollector",
    "known_devices",
    "parse_chip",
    "parse_signed",
    "parse_unsigned",
]

#: Seconds between listings of the chips (directories, names, labels); a poll in between reads only
#: the value files. A chip that vanishes (all its reads fail and its directory is gone) forces a new
#: listing at the next poll; a new chip shows up within this time.
RESCAN_S = 10.0
_SENSOR_FILE = re.compile(r"^(power|energy|temp)(\d+)_(input|average|label)$")
_BDF = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_UINT = re.compile(r"^[0-9]{1,20}$")
_INT = re.compile(r"^-?[0-9]{1,20}$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Options of a ``hwmon`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Accelerator chips by name (first match wins).
    devices: tuple[DeviceMatch, ...] = ()
    #: Treat unmatched PCI-attached chips with power or energy sensors as accelerators.
    auto_accel: bool = True
    #: Chip names (fnmatch) never reported.
    exclude: tuple[str, ...] = ()
    #: Give up on a poll whose reads take longer than this, seconds (a blocked driver).
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")


@functools.cache
def known_devices() -> tuple[DeviceMatch, ...]:
    """Chips whose driver is documented, used by ``auto_accel`` before the name rule: what the
    registered collectors declare as their cards' hwmon chips (``hwmon_devices`` of their plugin,
    e.g. FuriosaAI RNGD), in registry order."""
    return tuple(d for plugin in collectors.plugins() for d in plugin.hwmon_devices)


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class Channel:
    """One sensor of a chip, in SI units; ``label`` as the chip names it (or None)."""

    kind: str  # "power", "energy" or "temp"
    index: int
    label: str | None
    value: float | None  # W, J or °C; None = the sensor gave no value


@dataclass(frozen=True, slots=True)
class Chip:
    """A hwmon chip's name and sensors, parsed."""

    name: str
    channels: tuple[Channel, ...]

    def pick(self, kind: str, label: str | None) -> Channel | None:
        """The channel of ``kind`` labelled ``label``, else (no label wanted) the lowest index."""
        of_kind = [c for c in self.channels if c.kind == kind]
        if label is not None:
            return next((c for c in of_kind if c.label == label), None)
        return min(of_kind, key=lambda c: c.index) if of_kind else None


def parse_unsigned(text: str, source: str, what: str) -> int:
    value = text.strip()
    if not _UINT.match(value):
        raise ParseError(f"{source}: expected {what} (a non-negative integer), got {value[:80]!r}")
    return int(value)


def parse_signed(text: str, source: str, what: str) -> int:
    value = text.strip()
    if not _INT.match(value):
        raise ParseError(f"{source}: expected {what} (an integer), got {value[:80]!r}")
    return int(value)


def parse_chip(files: Mapping[str, str | None], source: str) -> Chip:
    """Parse a chip from its files' texts (``None`` = absent or ENODATA).

    Keys are file names (``name``, ``power1_average``, ``temp2_label``, ...); other keys are ignored.
    ``power<i>_average`` is preferred over ``power<i>_input`` (the RMS a meter reports).
    """
    name_text = files.get("name")
    if name_text is None:
        raise ParseError(f"{source}/name: missing (the hwmon ABI makes it mandatory)")
    name = name_text.strip()
    if not name or not name.isprintable() or len(name) > 64 or re.search(r"[\s,=\"\\]", name):
        raise ParseError(
            f"{source}/name: expected a chip name such as 'acpi_power_meter', got {name[:80]!r}"
        )
    sensors: dict[tuple[str, int], dict[str, str | None]] = {}
    for key, text in files.items():
        m = _SENSOR_FILE.match(key)
        if m is not None:
            sensors.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = text
    channels: list[Channel] = []
    for (kind, index), items in sorted(sensors.items()):
        label_text = items.get("label")
        label = None
        if label_text is not None:
            label = label_text.strip()
            if not label.isprintable() or len(label) > 64:
                raise ParseError(
                    f"{source}/{kind}{index}_label: expected a short label, got {label[:80]!r}"
                )
            label = label or None
        value: float | None = None
        if kind == "power":
            for item in ("average", "input"):
                text = items.get(item)
                if text is not None:
                    if not not_a_number(text):
                        value = uw_to_w(parse_unsigned(text, f"{source}/power{index}_{item}", "µW"))
                    break
        elif kind == "energy":
            text = items.get("input")
            if text is not None and not not_a_number(text):
                value = uj_to_j(parse_unsigned(text, f"{source}/energy{index}_input", "µJ"))
        else:
            text = items.get("input")
            if text is not None and not not_a_number(text):
                value = millic_to_c(parse_signed(text, f"{source}/temp{index}_input", "m°C"))
        if value is not None or label is not None:
            channels.append(Channel(kind, index, label, value))
    return Chip(name, tuple(channels))


# ------------------------------------------------------------------------------------ I/O


@dataclass(frozen=True, slots=True)
class _ChipDir:
    path: Path
    bdf: str | None


@dataclass(frozen=True, slots=True)
class _ChipLayout:
    """What a scan learnt of one chip: its static files (name, labels) and the value files."""

    dir: _ChipDir
    name: str
    static: Mapping[str, str | None]
    values: tuple[str, ...]
    match: DeviceMatch | None
    excluded: bool = False


def _bdf_of(path: Path) -> str | None:
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if resolved.parent.name == "hwmon" and _BDF.match(resolved.parent.parent.name):
        return resolved.parent.parent.name
    try:
        device = (path / "device").resolve(strict=True)
    except OSError:
        return None
    return device.name if _BDF.match(device.name) else None


class HwmonCollector:
    """Reads every hwmon chip under ``root``: ``host`` samples for meters, ``accel`` for devices."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._sys = Path(config.root) / "sys"
        self._scan: list[_ChipLayout] | None = None
        self._scanned_at = 0.0
        #: The chips skipped at the last listing or poll, by directory: what was wrong with each.
        self.chip_errors: dict[str, str] = {}
        self._listing_errors: dict[str, str] = {}

    async def inventory(self) -> list[DeviceInfo]:
        return await asyncio.to_thread(self._inventory)

    async def collect(self) -> list[Sample]:
        return await sysfs_read(self.collect_sync, self.config.timeout_s, self.config.root)

    async def aclose(self) -> None:
        return None

    def _chip_dirs(self) -> list[_ChipDir]:
        candidates: list[Path] = []
        class_dir = self._sys / "class" / "hwmon"
        pci_dir = self._sys / "bus" / "pci" / "devices"
        candidates += chip_dirs(class_dir)
        try:
            functions = sorted(pci_dir.iterdir())
        except OSError:
            functions = []
        for function in functions:
            candidates += chip_dirs(function / "hwmon")
        seen: set[Path] = set()
        out: list[_ChipDir] = []
        for path in candidates:
            try:
                key = path.resolve()
            except OSError:
                continue
            if key in seen:
                continue
            seen.add(key)
            out.append(_ChipDir(path, _bdf_of(path)))
        if not out:
            raise CollectorUnavailable(
                f"{class_dir}: no hwmon chip (and none under {pci_dir}/*/hwmon); root is "
                f"{self.config.root!r}"
            )
        return out

    def _scan_chip(self, chip_dir: _ChipDir) -> _ChipLayout | None:
        """List a chip once: its name, labels and which value files a poll must read."""
        try:
            names = sorted(p.name for p in chip_dir.path.iterdir())
        except OSError:
            return None  # the chip went away
        name_text = read_sensor(chip_dir.path / "name") if "name" in names else None
        if name_text is None:
            return None
        name = name_text.strip()
        if any(fnmatch.fnmatchcase(name, p) for p in self.config.exclude):
            return _ChipLayout(chip_dir, name, {}, (), None, excluded=True)
        static: dict[str, str | None] = {"name": name_text}
        present = set(names)
        for n in names:
            if n.endswith("_label") and _SENSOR_FILE.match(n):
                static[n] = read_sensor(chip_dir.path / n)
        probe = parse_chip(
            {
                **static,
                **{
                    n: read_sensor(chip_dir.path / n)
                    for n in names
                    if _SENSOR_FILE.match(n) and n not in static
                },
            },
            str(chip_dir.path),
        )
        match = self._match(probe, chip_dir)
        values: list[str] = []
        for n in names:
            m = _SENSOR_FILE.match(n)
            if m is None or m.group(3) == "label":
                continue
            kind, index, item = m.group(1), m.group(2), m.group(3)
            if kind == "temp" and match is None:
                continue  # host chips report power and energy only (DESIGN §4)
            if kind == "power" and item == "input" and f"power{index}_average" in present:
                continue  # the average is preferred (parse_chip)
            values.append(n)
        return _ChipLayout(chip_dir, name, static, tuple(values), match)

    def _layout(self) -> list[_ChipLayout]:
        now = time.monotonic()
        if self._scan is None or now - self._scanned_at >= RESCAN_S:
            scan: list[_ChipLayout] = []
            errors: dict[str, str] = {}
            for d in self._chip_dirs():
                try:
                    layout = self._scan_chip(d)
                except CollectorError as e:  # a malformed chip costs that chip only
                    errors[str(d.path)] = str(e)
                    continue
                if layout is not None:
                    scan.append(layout)
            self._note_errors(errors, listing=True)
            if not scan and errors:
                raise ParseError(f"every hwmon chip failed: {'; '.join(errors.values())}")
            self._scan = scan
            self._scanned_at = now
        return self._scan

    def _note_errors(self, errors: Mapping[str, str], *, listing: bool) -> None:
        """Log each chip's error once (again only when it changes); ``chip_errors`` holds the
        errors of the last listing and of the last poll."""
        if listing:
            self._listing_errors = dict(errors)
            current = dict(errors)
        else:
            current = {**self._listing_errors, **errors}
        for path, message in current.items():
            if self.chip_errors.get(path) != message:
                log.warning("%s: chip skipped: %s", self.name, message)
        self.chip_errors = current

    def _read_chip(self, layout: _ChipLayout) -> Chip | None:
        files = dict(layout.static)
        missing = 0
        for n in layout.values:
            text = read_sensor(layout.dir.path / n)
            files[n] = text
            missing += text is None
        if layout.values and missing == len(layout.values) and not layout.dir.path.is_dir():
            self._scan = None  # the chip went away: list the chips again next poll
            return None
        return parse_chip(files, str(layout.dir.path))

    def _match(self, chip: Chip, chip_dir: _ChipDir) -> DeviceMatch | None:
        for entry in self.config.devices:
            if fnmatch.fnmatchcase(chip.name, entry.name):
                return entry
        if (
            self.config.auto_accel
            and chip_dir.bdf is not None
            and any(c.kind in ("power", "energy") for c in chip.channels)
        ):
            for entry in known_devices():
                if fnmatch.fnmatchcase(chip.name, entry.name):
                    return entry
            vendor, _, model = chip.name.partition("_")
            return DeviceMatch(chip.name, vendor, model or chip.name)
        return None

    def _chips(self) -> list[tuple[_ChipDir, Chip, DeviceMatch | None]]:
        out = []
        errors: dict[str, str] = {}
        layouts = [layout for layout in self._layout() if not layout.excluded]
        for layout in layouts:
            try:
                chip = self._read_chip(layout)
            except CollectorError as e:  # one chip's bad file costs that chip only
                errors[str(layout.dir.path)] = str(e)
                continue
            if chip is not None:
                out.append((layout.dir, chip, layout.match))
        self._note_errors(errors, listing=False)
        if layouts and len(errors) == len(layouts):
            raise ParseError(f"every hwmon chip failed: {'; '.join(errors.values())}")
        return out

    def _inventory(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                vendor=match.vendor,
                model=match.model,
                id=chip_dir.bdf or chip_dir.path.name,
                collector=self.name,
                bus_id=chip_dir.bdf,
            )
            for chip_dir, _, match in self._chips()
            if match is not None
        ]

    def collect_sync(self) -> list[Sample]:
        """One poll, blocking (the async :meth:`collect` runs it in a thread)."""
        chips = self._chips()
        host_names = [c.name for _, c, m in chips if m is None]
        samples: list[Sample] = []
        for chip_dir, chip, match in chips:
            ts_ns = time.time_ns()
            try:
                if match is not None:
                    sample = self._accel(ts_ns, chip_dir, chip, match)
                    if sample is not None:
                        samples.append(sample)
                else:
                    prefix = chip.name
                    if host_names.count(chip.name) > 1:
                        prefix = f"{chip.name}@{chip_dir.path.name}"
                    samples += _host_samples(ts_ns, prefix, chip)
            except ValueError as e:
                raise ParseError(f"{chip_dir.path}: {e}") from None
        return samples

    @staticmethod
    def _accel(ts_ns: int, chip_dir: _ChipDir, chip: Chip, match: DeviceMatch) -> Sample | None:
        def value(kind: str, label: str | None) -> float | None:
            channel = chip.pick(kind, label)
            return None if channel is None else channel.value

        power_w = value("power", match.power_label)
        energy_j = value("energy", match.energy_label)
        temp_c = value("temp", match.temp_label)
        if power_w is None and energy_j is None and temp_c is None:
            return None
        return Sample.accel(
            ts_ns,
            vendor=match.vendor,
            model=match.model,
            device=chip_dir.bdf or chip_dir.path.name,
            power_w=power_w,
            energy_j=energy_j,
            temp_c=temp_c,
        )


def _host_samples(ts_ns: int, prefix: str, chip: Chip) -> list[Sample]:
    zones: dict[str, dict[str, float]] = {}
    for c in chip.channels:
        if c.kind == "temp" or c.value is None:
            continue
        key = c.label if c.label is not None else f"{c.kind}{c.index}"
        fields = zones.setdefault(f"{prefix}/{key}", {})
        field = "power_w" if c.kind == "power" else "energy_j"
        fields.setdefault(field, c.value)
    out: list[Sample] = []
    for zone, fields in zones.items():
        zone_tag = re.sub(r"[\s,=\"\\]", "_", zone)
        out.append(Sample.host(ts_ns, source="hwmon", zone=zone_tag, **fields))
    return out


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has hwmon chips."""
    if not surface.has_class("hwmon"):
        return []
    return [{"type": "hwmon", "name": "hwmon", "root": str(surface.root.resolve())}]


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="hwmon",
    config=Config,
    factory=HwmonCollector,
    detect=_detect,
    demo=True,
    permission_fix=(
        'make the hwmon files readable by the agent\'s group (udev rule on SUBSYSTEM=="hwmon")'
    ),
)
