"""A ``furiosa_smi``-compatible module (PyPI ``furiosa-smi`` 2026.4.0) over an emulated node.

Import it where FuriosaAI's binding would be imported (the ``furiosa`` collector's
``bindings_module`` option); :mod:`emulators.furiosa_smi_emu.smi_py` is the older
``furiosa_smi_py`` (``furiosa-smi-py`` ≤ 2026.1.2) flavour. Both read the node's snapshot from the
root named by ``KWATT_EMULATOR_ROOT``, the way :mod:`emulators.pynvml_emu` does, and never import a
collector.

What it reproduces of ``furiosa-smi`` 2026.4.0 (inspected: the wheel's module listing and method
signatures, reference/device-interfaces.md §1.2(b)):

- no ``init()``; module functions ``list_devices()``, ``list_disabled_devices()``, ``driver_info()``
  (``VersionInfo``; ``DeviceNotFoundError`` when there is no card, as the real one raises here);
- ``Device`` methods directly, without a ``DeviceInfo``: ``arch()`` (``Arch.Rngd``, ``str()`` =
  ``"RNGD"``), ``device_name()`` (``npu0``), ``uuid()``, ``serial()``, ``bdf()`` (a ``Bdf``),
  ``firmware_version()`` (``VersionInfo``), ``core_num()``, ``power_consumption()`` (W, float),
  ``device_temperature()`` (``soc_peak()``/``ambient()``, °C), ``core_frequency()`` (MHz, one ``int``
  for the device: **assumed**, the wheel has no docstrings), ``memory_usage()``
  (``MemoryInfo.in_use_bytes()/total_bytes()``: DRAM + shared over the PEs, as sysfs ``alloc_status``
  sums), ``performance_counter()`` (a list of ``PePerformanceCounter`` with ``cycle_count()`` and
  ``task_execution_cycle()``, one per PE), ``throttle_reason()`` (a list of ``ThrottleReason``: assumed
  shape), ``power_limit()`` (mW: assumed from ``set_power_limit(power_limit_mw)``), ``liveness()``,
  ``governor_profile()``;
- the exception classes ``SmiError`` and its subclasses; **RNGD only**: the 2026.4 library knows only
  ``Arch.Rngd`` and reads ``/sys/class/rngd_mgmt``, so a Warboy is not listed.

Faults: a card with ``present=False`` is missing from ``list_devices()`` and every call on a handle to
it raises ``DeviceNotFoundError``; a field in ``na_fields`` makes its call raise ``IoError`` (the
library finds no sensor file); a ``nan`` field is returned as NaN; a stuck card repeats its held
state. ``Snapshot.tool_faults`` entry ``"furiosa_smi"``: ``hang_s`` delays every device call,
``exit_code`` N makes every device call fail with C return code N (furiosa_smi.h, e.g. 4
DEVICE_NOT_FOUND, 7 IO, 16 CONTEXT). ``utilization_since``/``duration_since`` are not emulated
(their units are not published).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

from emulators.furiosa_smi_emu import _node
from emulators.furiosa_smi_emu._node import Card, Failure

__all__ = [
    "Arch",
    "Bdf",
    "Device",
    "DeviceNotAvailableError",
    "DeviceNotFoundError",
    "DeviceTemperature",
    "GovernorProfile",
    "IoError",
    "MemoryInfo",
    "ParseError",
    "PePerformanceCounter",
    "SmiError",
    "ThrottleReason",
    "UnexpectedValueError",
    "UnknownArchError",
    "VersionInfo",
    "driver_info",
    "list_devices",
    "list_disabled_devices",
]


DeviceTemperature = _node.DeviceTemperature


class SmiError(Exception):
    """Root of the library's errors (``furiosa_smi.SmiError``)."""


class DeviceNotFoundError(SmiError):
    pass


class DeviceNotAvailableError(SmiError):
    pass


class IoError(SmiError):
    pass


class ParseError(SmiError):
    pass


class UnexpectedValueError(SmiError):
    pass


class UnknownArchError(SmiError):
    pass


_ERRORS: dict[int, type[SmiError]] = {
    4: DeviceNotFoundError,
    5: DeviceNotFoundError,
    6: DeviceNotAvailableError,
    7: IoError,
    8: IoError,
    9: UnknownArchError,
    11: UnexpectedValueError,
    12: ParseError,
    17: IoError,
}


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except Failure as e:
        raise _ERRORS.get(e.code, SmiError)(e.detail.lower()) from None


class Arch(enum.Enum):
    Rngd = 1

    def __str__(self) -> str:
        return "RNGD"


class GovernorProfile(enum.Enum):
    Performance = 0
    PowerSave = 1


class ThrottleReason(enum.Enum):
    Idle = 0
    ThermalSlowdown = 1
    AppPowerCap = 2
    AppClockCap = 3
    HwClockCap = 4
    HwBusLimit = 5
    HwPowerCap = 6
    OtherReason = 7
    GovClockCap = 8
    Unknown = 9


_REASON_BITS = (
    (1 << 0, ThrottleReason.Idle),
    (1 << 1, ThrottleReason.ThermalSlowdown),
    (1 << 2, ThrottleReason.AppPowerCap),
)


class VersionInfo(_node.VersionInfo):
    def __str__(self) -> str:
        major, minor, patch, pre, meta = self._v
        text = f"{major}.{minor}.{patch}" + (f"~{pre}" if pre else "")
        return f"{text}, {meta}" if meta else text


class Bdf:
    def __init__(self, text: str) -> None:
        domain, bus, rest = text.split(":")
        dev, fn = rest.split(".")
        self._parts = (int(domain, 16), int(bus, 16), int(dev, 16), int(fn, 16))

    def domain(self) -> int:
        return self._parts[0]

    def bus(self) -> int:
        return self._parts[1]

    def device(self) -> int:
        return self._parts[2]

    def function(self) -> int:
        return self._parts[3]

    def __str__(self) -> str:
        d, b, dev, fn = self._parts
        return f"{d:04x}:{b:02x}:{dev:02x}.{fn:x}"


class MemoryInfo:
    def __init__(self, in_use: int, total: int) -> None:
        self._in_use, self._total = in_use, total

    def in_use_bytes(self) -> int:
        return self._in_use

    def total_bytes(self) -> int:
        return self._total


class PePerformanceCounter:
    def __init__(self, cycles: int, task: int) -> None:
        self._cycles, self._task = cycles, task

    def cycle_count(self) -> int:
        return self._cycles

    def task_execution_cycle(self) -> int:
        return self._task


class Device:
    """A handle on one card; it names the card by UUID, so it survives re-enumeration."""

    def __init__(self, uuid: str) -> None:
        self._uuid = uuid

    def _card(self) -> Card:
        with _errors():
            return _node.node().card(self._uuid)

    def arch(self) -> Arch:
        self._card()
        return Arch.Rngd

    def device_name(self) -> str:
        return self._card().name

    def dev_node_index(self) -> int:
        return self._card().state.index

    def uuid(self) -> str:
        return self._card().uuid

    def serial(self) -> str:
        return self._card().state.serial

    def bdf(self) -> Bdf:
        return Bdf(self._card().state.bus_id)

    def core_num(self) -> int:
        return self._card().cores

    def numa_node(self) -> int:
        self._card()
        return 0

    def product_name(self) -> str:
        self._card()
        return "RNGD"

    def firmware_version(self) -> VersionInfo:
        return VersionInfo(self._card().firmware)

    def liveness(self) -> bool:
        self._card()
        return True

    def power_consumption(self) -> float:
        with _errors():
            return float(_node.value(self._card(), "power_w").power_w)

    def power_limit(self) -> int:
        with _errors():
            return round(_node.value(self._card(), "power_limit_w").power_limit_w * 1000)

    def device_temperature(self) -> DeviceTemperature:
        with _errors():
            s = _node.value(self._card(), "temp_c")
            return DeviceTemperature(float(s.temp_c), float(s.ambient_c))

    def core_frequency(self) -> float | int:
        with _errors():
            return _node.mhz(_node.value(self._card(), "clock_hz").clock_hz)

    def memory_usage(self) -> MemoryInfo:
        with _errors():
            dram, shared = _node.memory(self._card())
        blocks = dram + shared
        return MemoryInfo(sum(b[2] for b in blocks), sum(b[1] for b in blocks))

    def performance_counter(self) -> list[PePerformanceCounter]:
        with _errors():
            return [PePerformanceCounter(c, t) for _, c, t in _node.counters(self._card())]

    def throttle_reason(self) -> list[ThrottleReason]:
        with _errors():
            bits = _node.throttle_bits(self._card())
        return [reason for bit, reason in _REASON_BITS if bits & bit]

    def governor_profile(self) -> GovernorProfile:
        gov = self._card().state.governor
        return GovernorProfile.PowerSave if gov == "powersave" else GovernorProfile.Performance


def list_devices() -> list[Device]:
    """The RNGD cards present now (the 2026.4 library reads only ``rngd_mgmt``)."""
    with _errors():
        cards = _node.node().cards()
    return [Device(c.uuid) for c in cards if c.arch == "rngd"]


def list_disabled_devices() -> list[str]:
    return []


def driver_info() -> VersionInfo:
    with _errors():
        cards = [c for c in _node.node().cards() if c.arch == "rngd"]
    if not cards:
        raise DeviceNotFoundError("device not found: no available device to read driver version")
    return VersionInfo(_node.driver_version(cards[0]))
