"""What the ``nvml`` and ``nvidia_smi`` collectors share: one GPU's reading in SI units.

Both collectors turn their raw surface (NVML calls, ``nvidia-smi`` CSV or XML) into :class:`GpuRecord`
values and then into ``accel`` samples with :func:`to_sample`, so the two paths tag and name a GPU the
same way: the device tag is the UUID (``GPU-…``, stable across re-enumeration and reboots), else the
board serial, else the PCI bus id; the model tag is :func:`model_slug` of the product name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from kwatt.collectors.base import ParseError
from kwatt.wire.model import DeviceInfo, Sample

__all__ = [
    "THROTTLE_MASK",
    "VENDOR",
    "GpuRecord",
    "device_info",
    "is_throttled",
    "linux_bus_id",
    "model_slug",
    "to_sample",
]

VENDOR = "nvidia"

#: Clock event reasons that are a slowdown (pynvml nvmlClocksEventReason*;
#: docs/device-interfaces.md §4.1):
#: SwPowerCap 0x4, HwSlowdown 0x8, SwThermalSlowdown 0x20, HwThermalSlowdown 0x40,
#: HwPowerBrakeSlowdown 0x80. GpuIdle, application/display clock settings and sync boost are not.
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80

_NAME_PREFIXES = frozenset({"nvidia", "tesla"})
_FAMILY_WORDS = frozenset({"geforce", "quadro", "rtx", "titan", "grid"})
_BUS_ID = re.compile(r"^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


def is_throttled(reasons: int) -> bool:
    """True when a power or thermal slowdown bit of the clock event reasons is set."""
    return reasons & THROTTLE_MASK != 0


def model_slug(product_name: str) -> str:
    """A tag-safe model name: ``"NVIDIA H100 80GB HBM3"`` → ``h100``, ``"Tesla T4"`` → ``t4``,
    ``"NVIDIA A100-SXM4-80GB"`` → ``a100``; consumer boards keep their whole name
    (``geforce-rtx-4090``)."""
    words = [w for w in re.split(r"\s+", product_name.strip().lower()) if w]
    while words and words[0] in _NAME_PREFIXES:
        words = words[1:]
    if not words:
        return "unknown"
    slug = "-".join(words) if words[0] in _FAMILY_WORDS else words[0].split("-")[0]
    slug = re.sub(r"[^a-z0-9.]+", "-", slug).strip("-")
    return slug or "unknown"


def linux_bus_id(nvml_bus_id: str) -> str | None:
    """NVML's ``00000000:1B:00.0`` as the kernel writes it (``0000:1b:00.0``); None if malformed."""
    m = _BUS_ID.match(nvml_bus_id.strip())
    if m is None:
        return None
    domain, bus, dev, fn = m.groups()
    return f"{int(domain, 16):04x}:{bus.lower()}:{dev.lower()}.{fn}"


@dataclass(frozen=True, slots=True)
class GpuRecord:
    """One GPU at one read, SI units; ``None`` = not reported (never 0)."""

    uuid: str | None
    serial: str | None
    bus_id: str | None  # as the tool prints it (00000000:1B:00.0)
    name: str | None
    driver_version: str | None = None
    power_w: float | None = None
    energy_j: float | None = None
    util_ratio: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_limit_w: float | None = None
    throttled: int | None = None

    @property
    def device_id(self) -> str | None:
        """UUID, else serial, else PCI bus id (the first one the surface gave)."""
        for value in (self.uuid, self.serial, self.bus_id):
            if value:
                return value
        return None

    @property
    def model(self) -> str:
        return model_slug(self.name) if self.name else "unknown"


def _check(value: float | None, what: str, lo: float, hi: float, source: str) -> None:
    if value is None:
        return
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ParseError(f"{source}: {what} {value!r} outside [{lo:g}, {hi:g}]")


def to_sample(record: GpuRecord, ts_ns: int, source: str) -> Sample | None:
    """The ``accel`` sample of one GPU, None when it reported no value at all.

    :class:`ParseError` for an implausible reading or a GPU without identity.
    """
    device = record.device_id
    if device is None:
        raise ParseError(f"{source}: a GPU without UUID, serial or PCI bus id")
    _check(record.power_w, "power_w", 0.0, 1e5, source)
    _check(record.energy_j, "energy_j", 0.0, 2.0**64, source)
    _check(record.util_ratio, "util_ratio", 0.0, 1.0, source)
    _check(record.temp_c, "temp_c", -273.15, 1000.0, source)
    _check(record.clock_hz, "clock_hz", 0.0, 1e11, source)
    _check(record.power_limit_w, "power_limit_w", 0.0, 1e5, source)
    for what, size in (("mem_used_bytes", record.mem_used_bytes),
                       ("mem_total_bytes", record.mem_total_bytes)):  # fmt: skip
        if size is not None and not 0 <= size < 2**63:
            raise ParseError(f"{source}: {what} {size!r} out of range")
    values = (
        record.power_w,
        record.energy_j,
        record.util_ratio,
        record.temp_c,
        record.clock_hz,
        record.mem_used_bytes,
        record.mem_total_bytes,
        record.power_limit_w,
        record.throttled,
    )
    if all(v is None for v in values):
        return None
    try:
        return Sample.accel(
            ts_ns,
            vendor=VENDOR,
            model=record.model,
            device=device,
            power_w=record.power_w,
            energy_j=record.energy_j,
            util_ratio=record.util_ratio,
            temp_c=record.temp_c,
            clock_hz=record.clock_hz,
            mem_used_bytes=record.mem_used_bytes,
            mem_total_bytes=record.mem_total_bytes,
            power_limit_w=record.power_limit_w,
            throttled=record.throttled,
        )
    except ValueError as e:
        raise ParseError(f"{source}: {e}") from None


def device_info(record: GpuRecord, collector: str) -> DeviceInfo | None:
    """The inventory entry of one GPU (None when it has no identity)."""
    device = record.device_id
    if device is None:
        return None
    bus = None if record.bus_id is None else linux_bus_id(record.bus_id)
    return DeviceInfo(
        vendor=VENDOR,
        model=record.model,
        id=device,
        collector=collector,
        driver_version=record.driver_version,
        bus_id=bus,
    )
