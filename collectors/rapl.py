"""CPU package / DRAM energy from the Linux powercap RAPL tree, as a monotonic ``energy_j``.

Layout (docs/device-interfaces.md §5.1, Linux ``Documentation/ABI/testing/sysfs-class-powercap``),
under the configured ``root``::

    sys/class/powercap/intel-rapl:N/            a package zone (``name`` e.g. ``package-0``, ``psys``)
    sys/class/powercap/intel-rapl:N/intel-rapl:N:M/
    sys/class/powercap/intel-rapl:N:M           a subzone (``core``, ``uncore``, ``dram``), also linked
                                                at the top level on a real host
        name                 zone name
        energy_uj            µJ counter, wraps at max_energy_range_uj; root-only (0400) since 5.10
        max_energy_range_uj  the counter's range, µJ
        power_uw             optional (RAPL has none: "Intel RAPL doesn't provide instantaneous power")

Every zone gives one ``host`` sample, ``source=rapl``, ``zone`` = the zone's name (a subzone is
``<parent name>/<name>``, e.g. ``package-0/dram``), with:

* ``energy_j``: the counter made monotonic. The collector keeps, per zone, the last raw value and
  a running total. ``energy_uj`` takes values ``0 … max_energy_range_uj``, so a counter lower than
  the last one with a known range is a wrap and adds ``max_energy_range_uj + 1`` µJ (the "+1"
  variant of §5.1; the kernel's real period is the range plus one energy unit, ≈ 61 µJ, so on
  hardware the error is below one unit per wrap). Without a readable range, a lower counter is a
  reset (someone wrote 0 to ``energy_uj``): the total goes on from the new raw value. The first
  poll starts the total at the raw counter, so ``energy_j`` counts from the counter's origin and
  never goes backwards while the collector runs. Poll at least once per wrap period (≈ 60 s at
  4 kW for the usual 262 143 J range; hours for a package) or wraps are lost.
* ``power_w`` only where the zone has ``power_uw`` (RAPL zones do not; analytics derives power from
  the energy counter, DESIGN §6).

A root-only ``energy_uj`` (Linux ≥ 5.10, CVE-2020-8694) raises :class:`CollectorUnavailable`
naming the file and the fixes (§5.1: a udev rule or ``sysfs.conf`` mode ``0444``/group read, or
running the agent as root); a missing ``max_energy_range_uj`` makes wraps unknowable (resets only);
garbage raises :class:`ParseError` naming the file.

A poll whose reads take longer than ``timeout_s`` (a driver that blocks) raises
:class:`CollectorTimeout`; the agent goes on (the blocked read is abandoned in its thread).

Zones are listed (names, ranges) every :data:`RESCAN_S` seconds; a poll in between reads
``energy_uj`` and ``power_uw`` of each zone: a few file reads, far cheaper than spawning a tool such
as ``ipmitool`` or a Redfish GET (see BENCHMARKS.md (Cost per collector poll)). Prefer RAPL over a tool for per-second polling.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kwatt.collectors.base import (
    CollectorError,
    CollectorUnavailable,
    ParseError,
    read_small,
    sysfs_read,
)
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample, validate_tag_value
from kwatt.wire.units import uj_to_j, uw_to_w

__all__ = [
    "PERMISSION_FIX",
    "PLUGIN",
    "Config",
    "CounterState",
    "RaplCollector",
    "ZoneReading",
    "parse_counter",
    "parse_zone",
    "parse_zone_name",
    "unwrap",
]

#: The fixes for a root-only ``energy_uj`` (§5.1: powercap/powercap#7, codecarbon#244).
PERMISSION_FIX = (
    "energy_uj is root-only since Linux 5.10 (CVE-2020-8694); let the agent's group read it with a "
    'udev rule such as SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chgrp -R kwatt '
    '/sys%p", RUN+="/bin/chmod -R g+r /sys%p" (or a sysfs.conf \'mode\' line), or run the agent '
    "as root"
)

_ZONE_DIR = re.compile(r"^intel-rapl:([0-9]+)(?::([0-9]+))?$")
_UINT = re.compile(r"^[0-9]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
#: Largest plausible counter value: the kernel's u64 µJ.
_U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Config:
    """Options of a ``rapl`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Only the zones with these tags (``package-0``, ``package-0/dram``); empty = every zone.
    zones: tuple[str, ...] = ()
    #: Give up on a poll whose reads take longer than this, seconds (a blocked driver).
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class ZoneReading:
    """One zone's files, parsed: counter and range in µJ, optional power in µW."""

    name: str
    energy_uj: int
    max_energy_range_uj: int | None
    power_uw: int | None


@dataclass(frozen=True, slots=True)
class CounterState:
    """What the collector remembers of one zone's counter between polls."""

    raw_uj: int  # the last energy_uj read
    total_uj: int  # monotonic energy since the counter's origin (first poll: = raw_uj)
    wraps: int = 0
    resets: int = 0


def parse_counter(text: str, source: str, what: str = "a non-negative integer (µJ)") -> int:
    """A powercap counter file: a decimal non-negative integer (u64)."""
    value = text.strip()
    if not _UINT.match(value) or len(value) > 20:
        raise ParseError(f"{source}: expected {what}, got {value[:80]!r}")
    n = int(value)
    if n > _U64_MAX:
        raise ParseError(f"{source}: expected {what}, got {value[:80]!r} (beyond u64)")
    return n


def parse_zone_name(text: str, source: str) -> str:
    """A zone's ``name`` (``package-0``, ``dram``, ``psys``, ``core``): one word, tag-safe."""
    value = text.strip()
    if not _NAME.match(value) or len(value) > 64:
        raise ParseError(f"{source}: expected a zone name such as 'package-0', got {value[:80]!r}")
    return value


def parse_zone(files: Mapping[str, str | None], source: str) -> ZoneReading:
    """Parse a zone from the texts of its files (``None`` = file absent).

    ``name`` and ``energy_uj`` are required; ``max_energy_range_uj`` and ``power_uw`` are optional.
    A counter beyond its own range is a :class:`ParseError`.
    """
    name_text = files.get("name")
    energy_text = files.get("energy_uj")
    if name_text is None:
        raise ParseError(f"{source}/name: missing (expected a zone name)")
    if energy_text is None:
        raise ParseError(f"{source}/energy_uj: missing (expected a µJ counter)")
    name = parse_zone_name(name_text, f"{source}/name")
    energy = parse_counter(energy_text, f"{source}/energy_uj")
    range_text = files.get("max_energy_range_uj")
    max_range = (
        None if range_text is None else parse_counter(range_text, f"{source}/max_energy_range_uj")
    )
    if max_range == 0:
        raise ParseError(f"{source}/max_energy_range_uj: expected a positive range, got 0")
    if max_range is not None and energy > max_range:
        raise ParseError(f"{source}/energy_uj: {energy} exceeds max_energy_range_uj {max_range}")
    power_text = files.get("power_uw")
    power = None if power_text is None else parse_counter(power_text, f"{source}/power_uw", "µW")
    return ZoneReading(name, energy, max_range, power)


def unwrap(prev: CounterState | None, raw_uj: int, range_uj: int | None) -> CounterState:
    """Advance a zone's monotonic total with a new raw reading (see the module docstring).

    A raw value lower than the last one is a wrap when the range is known (adds ``range + 1``),
    else a reset (the total goes on from the new raw value). The total never decreases.
    """
    if prev is None:
        return CounterState(raw_uj, raw_uj)
    if raw_uj >= prev.raw_uj:
        return CounterState(raw_uj, prev.total_uj + raw_uj - prev.raw_uj, prev.wraps, prev.resets)
    if range_uj is not None and prev.raw_uj <= range_uj:
        gained = raw_uj + range_uj + 1 - prev.raw_uj
        return CounterState(raw_uj, prev.total_uj + gained, prev.wraps + 1, prev.resets)
    return CounterState(raw_uj, prev.total_uj + raw_uj, prev.wraps, prev.resets + 1)


# ------------------------------------------------------------------------------------ I/O

_FILES = ("name", "energy_uj", "max_energy_range_uj", "power_uw")
_STATIC = ("name", "max_energy_range_uj")  # read when the zones are listed
#: Seconds between listings of the zones (directories, names, ranges); a poll in between reads only
#: ``energy_uj`` and ``power_uw``. A zone that vanishes forces a new listing at the next poll.
RESCAN_S = 10.0


@dataclass(frozen=True, slots=True)
class _Zone:
    zone_id: str  # "0" or "0:1"
    path: Path
    parent_id: str | None


def _read_file(path: Path) -> str | None:
    """A zone file's text; None when absent (or gone); root-only ``energy_uj`` explained."""
    try:
        return read_small(path).decode("utf-8")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise CollectorUnavailable(f"{path}: permission denied; {PERMISSION_FIX}") from None
    except UnicodeDecodeError as e:
        raise ParseError(f"{path}: not text ({e.reason})") from None
    except OSError as e:
        if e.errno == 61:  # ENODATA: a disabled sensor
            return None
        raise CollectorError(f"{path}: {e.strerror or e}") from None


class RaplCollector:
    """Reads every RAPL zone under ``root``; one ``host`` sample per zone and poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._base = Path(config.root) / "sys" / "class" / "powercap"
        self._state: dict[str, CounterState] = {}
        self._listing: list[tuple[_Zone, dict[str, str | None]]] | None = None
        self._listed_at = 0.0

    async def inventory(self) -> list[DeviceInfo]:
        return []  # host power zones are not accelerator devices

    async def collect(self) -> list[Sample]:
        return await sysfs_read(self.collect_sync, self.config.timeout_s, self.config.root)

    async def aclose(self) -> None:
        return None

    def counter_state(self, zone: str) -> CounterState | None:
        """The remembered counter of zone tag ``zone`` (wraps and resets seen so far)."""
        return self._state.get(zone)

    def _zones(self) -> list[_Zone]:
        try:
            entries = sorted(self._base.iterdir())
        except FileNotFoundError:
            raise CollectorUnavailable(
                f"{self._base}: no such directory (is intel_rapl_msr loaded? root is "
                f"{self.config.root!r})"
            ) from None
        except OSError as e:
            raise CollectorUnavailable(f"{self._base}: {e.strerror or e}") from None
        zones: dict[str, _Zone] = {}
        for entry in entries:
            m = _ZONE_DIR.match(entry.name)
            if m is None:
                continue
            package, sub = m.group(1), m.group(2)
            zone_id = package if sub is None else f"{package}:{sub}"
            zones.setdefault(zone_id, _Zone(zone_id, entry, None if sub is None else package))
            if sub is None:
                try:
                    children = sorted(entry.iterdir())
                except OSError:
                    continue
                for child in children:
                    cm = _ZONE_DIR.match(child.name)
                    if cm is not None and cm.group(1) == package and cm.group(2) is not None:
                        cid = f"{package}:{cm.group(2)}"
                        zones.setdefault(cid, _Zone(cid, child, package))
        if not zones:
            raise CollectorUnavailable(f"{self._base}: no intel-rapl:N zone")
        return sorted(zones.values(), key=lambda z: [int(p) for p in z.zone_id.split(":")])

    def collect_sync(self) -> list[Sample]:
        """One poll, blocking (the async :meth:`collect` runs it in a thread)."""
        now = time.monotonic()
        if self._listing is None or now - self._listed_at >= RESCAN_S:
            self._listing = [
                (zone, {f: _read_file(zone.path / f) for f in _STATIC}) for zone in self._zones()
            ]
            self._listed_at = now
        readings: dict[str, tuple[_Zone, ZoneReading, int]] = {}
        for zone, static in self._listing:
            files = {**static, "energy_uj": _read_file(zone.path / "energy_uj")}
            files["power_uw"] = _read_file(zone.path / "power_uw")
            ts_ns = time.time_ns()
            if files["energy_uj"] is None and not zone.path.is_dir():
                self._listing = None  # the zone went away: list them again next poll
                continue
            readings[zone.zone_id] = (zone, parse_zone(files, str(zone.path)), ts_ns)
        samples: list[Sample] = []
        seen: set[str] = set()
        for zone, reading, ts_ns in readings.values():
            tag = reading.name
            if zone.parent_id is not None and zone.parent_id in readings:
                tag = f"{readings[zone.parent_id][1].name}/{reading.name}"
            if tag in seen:
                tag = f"{tag}@intel-rapl:{zone.zone_id}"
            seen.add(tag)
            if self.config.zones and tag not in self.config.zones:
                continue
            try:
                validate_tag_value("zone", tag)
            except ValueError as e:
                raise ParseError(f"{zone.path}/name: {e}") from None
            state = unwrap(self._state.get(tag), reading.energy_uj, reading.max_energy_range_uj)
            self._state[tag] = state
            power_w = None if reading.power_uw is None else uw_to_w(reading.power_uw)
            samples.append(
                Sample.host(
                    ts_ns,
                    source="rapl",
                    zone=tag,
                    energy_j=uj_to_j(state.total_uj),
                    power_w=power_w,
                )
            )
        return samples


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when the node has powercap zones."""
    if not surface.has_class("powercap"):
        return []
    return [{"type": "rapl", "name": "rapl", "root": str(surface.root.resolve())}]


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="rapl",
    config=Config,
    factory=RaplCollector,
    detect=_detect,
    demo=True,
    permission_fix=(
        "energy_uj is root-only since Linux 5.10 (CVE-2020-8694): udev rule "
        'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chgrp -R kwatt /sys%p", '
        'RUN+="/bin/chmod -R g+r /sys%p"; or give the agent CAP_DAC_READ_SEARCH; or run it as root'
    ),
)
