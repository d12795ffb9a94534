"""The ``sysfs`` source of the ``furiosa`` collector: the kernel driver's management and PE
directories of RNGD and Warboy cards and each card's hwmon chip, under the configured ``root``
(layout in the package docstring). Blocking file reads: the collector runs them in a worker thread."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kwatt.collectors.base import CollectorUnavailable, ParseError, not_a_number, read_text
from kwatt.collectors.furiosa.config import Config
from kwatt.collectors.furiosa.parse import (
    MODEL,
    RNGD_PE_MEMORY_BYTES,
    VENDOR,
    WARBOY,
    PerfRegs,
    card_utilization,
    is_throttled,
    parse_alloc_bytes,
    parse_int,
    parse_ne_clk_freq_info,
    parse_npu_clocks,
    parse_pe_metrics,
    parse_pe_occupancy,
    parse_perf_regs,
    parse_throttle_reason,
    warboy_utilization,
)
from kwatt.collectors.hwmon_files import chip_dirs, read_sensor, sensor_labels
from kwatt.wire.model import DeviceInfo, Sample
from kwatt.wire.units import millic_to_c, uw_to_w

log = logging.getLogger(__name__)

_MGMT_DIR = re.compile(r"^rngd!npu(\d+)mgmt$")
# single PEs only: a fused partition (rngd!npu0pe0-3) would count its PEs a second time
_PE_DIR = re.compile(r"^rngd!npu(\d+)pe(\d+)$")
_WARBOY_MGMT_DIR = re.compile(r"^npu(\d+)_mgmt$")
_WARBOY_PE_DIR = re.compile(r"^npu(\d+)pe(\d+)$")  # not the fused npu{N}pe0-1


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


class SysfsSource:
    """Reads every Warboy and RNGD card under ``root``; owns the discovery (cards, hwmon sensors,
    re-listed every ``rediscover_s``) and the utilization counters of the previous poll."""

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

    def inventory(self) -> list[DeviceInfo]:
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

    def collect(self) -> list[Sample]:
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
        dirs = chip_dirs(self._sys / "bus" / "pci" / "devices" / card.busname / "hwmon")
        for d in dirs:
            name = read_sensor(d / "name")
            if name is not None and name.strip().startswith(_FAMILY[card.model].chip_prefix):
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
        labels = sensor_labels(hwmon)  # label -> sensor prefix, e.g. "PEAK" -> "temp1"
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
                text = read_sensor(path)
                if text is not None:
                    if not not_a_number(text):
                        power_w = uw_to_w(parse_int(text, path, "microwatts"))
                    break
            path = f"{hwmon}/{power}_max"
            text = read_sensor(path)
            if text is not None and not not_a_number(text):
                limit_w = uw_to_w(parse_int(text, path, "microwatts"))
        temp_c: float | None = None
        if peak is not None:
            path = f"{hwmon}/{peak}_input"
            text = read_sensor(path)
            if text is not None and not not_a_number(text):
                temp_c = millic_to_c(_parse_signed(text, path))
        if power_w is None and temp_c is None:
            self._sensors.pop(card.device_id, None)  # sensors moved? look again next poll
        return power_w, temp_c, limit_w


def _parse_signed(text: str, source: str) -> int:
    """hwmon temperatures are signed millidegrees (Documentation/hwmon/sysfs-interface.rst)."""
    value = text.strip()
    if value.startswith("-"):
        return -parse_int(value[1:], source, "millidegrees Celsius")
    return parse_int(value, source, "millidegrees Celsius")
