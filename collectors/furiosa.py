"""FuriosaAI RNGD cards, read from the kernel driver's sysfs and hwmon files.

Layout (reference/device-interfaces.md §1.3, RNGD), under the configured ``root``::

    sys/class/rngd_mgmt/rngd!npu{N}mgmt/   platform_type (FuriosaAI), device_type (RNGD),
                                           busname, device_uuid, device_sn, fw_version,
                                           version ("X.Y.Z, hash"), throttle_reason (hex
                                           bitmask), power_limit_mw, npu_clocks
    sys/class/rngd_mgmt/rngd!npu{N}pe{M}/  metrics ("CycleCount: n", "TaskCycleCount: n"),
                                           alloc_status (dram_capacity, dram_usage, shared_* ...)
    sys/bus/pci/devices/<busname>/hwmon/hwmon*/
                                           power{i}_average µW labelled RMS_TOTAL,
                                           temp{i}_input m°C labelled PEAK / NPU_PE0..7 / AMBIENT

Utilization is ΔTaskCycleCount / ΔCycleCount over all PEs between two polls (§1.4 "Utilization
derivations"): absent on the first poll and on the poll after a counter went backwards (device
reset). The device tag is the card's UUID (else its serial, else its PCI address): ``npuN`` names
re-enumerate across reboots, the UUID and SN do not (§1.1 field notes). Any file that is missing
gives an absent field; content that does not parse raises :class:`ParseError` naming the file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.model import DeviceInfo, Sample
from agent.units import QuantityError, millic_to_c, mw_to_w, parse_quantity, uw_to_w
from collectors.base import CollectorUnavailable, ParseError, read_text

__all__ = [
    "THROTTLE_IDLE",
    "Config",
    "FuriosaCollector",
    "create",
    "is_throttled",
    "parse_alloc_status",
    "parse_int",
    "parse_npu_clocks",
    "parse_pe_metrics",
    "parse_throttle_reason",
    "utilization",
]

log = logging.getLogger(__name__)

VENDOR = "furiosa"
MODEL = "rngd"

#: throttle_reason bit meaning "nothing to run", which is not a slowdown (§1.3 bitmask).
THROTTLE_IDLE = 1 << 0

_MGMT_DIR = re.compile(r"^rngd!npu(\d+)mgmt$")
# single PEs only: a fused partition (rngd!npu0pe0-3) would count its PEs a second time
_PE_DIR = re.compile(r"^rngd!npu(\d+)pe(\d+)$")
_HWMON_DIR = re.compile(r"^hwmon\d+$")
_INT = re.compile(r"^(?:0[xX][0-9a-fA-F]+|\d+)$")
# an npu_clocks line as device-api parses it (§1.3, ne_clk_freq_info regex): "pe0 (MHz): 2000"
_CLOCK_LINE = re.compile(r"^(?P<name>[\w ]+)\((?P<unit>[^)]*)\):\s*(?P<value>\d+)$")
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(?P<value>\S+)$")


@dataclass(frozen=True)
class Config:
    """Options of a ``furiosa`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Re-list cards and hwmon sensors at least this often (also at once when a card's identity
    #: file changes or a read fails). Listing costs about as much as reading the values.
    rediscover_s: float = 30.0


def create(name: str, config: Config) -> FuriosaCollector:
    return FuriosaCollector(name, config)


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
    pe_dirs: tuple[tuple[int, Path], ...]  # (PE index, rngd!npu{N}pe{M} directory)
    id_file: str = ""  # the mgmt file the identity came from ("" for the PCI address)


class FuriosaCollector:
    """Reads every RNGD card under ``root``; one ``accel`` sample per card and poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._sys = Path(config.root) / "sys"
        self._class_dir = self._sys / "class" / "rngd_mgmt"
        self._counters: dict[str, dict[int, tuple[int, int]]] = {}
        self._discovered: list[_Card] | None = None
        self._discovered_at = 0.0
        self._sensors: dict[str, tuple[Path, str | None, str | None]] = {}

    async def inventory(self) -> list[DeviceInfo]:
        return await asyncio.to_thread(self._inventory)

    async def collect(self) -> list[Sample]:
        return await asyncio.to_thread(self._collect)

    async def aclose(self) -> None:
        return None

    # -- discovery

    def _cards(self) -> list[_Card]:
        try:
            names = sorted(p.name for p in self._class_dir.iterdir())
        except FileNotFoundError:
            raise CollectorUnavailable(
                f"{self._class_dir}: no such directory (is the rngd driver loaded? "
                f"root is {self.config.root!r})"
            ) from None
        except OSError as e:
            raise CollectorUnavailable(f"{self._class_dir}: {e.strerror or e}") from None
        pe_dirs: dict[int, list[tuple[int, Path]]] = {}
        for name in names:
            m = _PE_DIR.match(name)
            if m is not None:
                pe_dirs.setdefault(int(m.group(1)), []).append(
                    (int(m.group(2)), self._class_dir / name)
                )
        cards: list[_Card] = []
        for name in names:
            m = _MGMT_DIR.match(name)
            if m is None:
                continue
            index = int(m.group(1))
            card = self._card(self._class_dir / name, index, tuple(sorted(pe_dirs.get(index, []))))
            if card is not None:
                cards.append(card)
        if not cards:
            raise CollectorUnavailable(
                f"{self._class_dir}: no RNGD card (no rngd!npuNmgmt directory)"
            )
        return sorted(cards, key=lambda c: c.index)

    def _card(self, mgmt: Path, index: int, pe_dirs: tuple[tuple[int, Path], ...]) -> _Card | None:
        platform = _read_optional(mgmt / "platform_type")
        device_type = _read_optional(mgmt / "device_type")
        if platform is None and device_type is None:
            return None  # the card went away between the listing and this read
        if platform not in (None, "FuriosaAI") or (device_type or "rngd").lower() != "rngd":
            log.debug("%s: not an RNGD card (%s, %s), skipped", mgmt, platform, device_type)
            return None
        busname = _read_optional(mgmt / "busname") or None
        for key in ("device_uuid", "device_sn"):
            value = _read_optional(mgmt / key)
            if value:
                return _Card(mgmt, index, value, busname, pe_dirs, key)
        if busname:
            return _Card(mgmt, index, busname, busname, pe_dirs)
        raise ParseError(f"{mgmt}: no device_uuid, device_sn or busname to identify the card by")

    def _inventory(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                vendor=VENDOR,
                model=MODEL,
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
                if card.id_file and _read_optional(ident) != card.device_id:
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
                        model=MODEL,
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
        clocks_path = card.mgmt / "npu_clocks"
        clocks = _read_optional(clocks_path)
        clocks_hz = [] if clocks is None else parse_npu_clocks(clocks, str(clocks_path))
        clock_hz = sum(clocks_hz) / len(clocks_hz) if clocks_hz else None  # mean over the PEs
        return power_limit_w, throttled, clock_hz

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
            if name is not None and name.startswith("rngd"):
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
        found = (hwmon, labels.get("RMS_TOTAL"), labels.get("PEAK"))
        self._sensors[card.device_id] = found
        return found

    def _read_hwmon(self, card: _Card) -> tuple[float | None, float | None]:
        """``(power_w, temp_c)``: the sensors labelled ``RMS_TOTAL`` and ``PEAK`` (§1.3)."""
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


def _parse_signed(text: str, source: str) -> int:
    """hwmon temperatures are signed millidegrees (Documentation/hwmon/sysfs-interface.rst)."""
    value = text.strip()
    if value.startswith("-"):
        return -parse_int(value[1:], source, "millidegrees Celsius")
    return parse_int(value, source, "millidegrees Celsius")
