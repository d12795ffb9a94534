"""A ``furiosa_smi_py``-compatible module (PyPI ``furiosa-smi-py`` ≤ 2026.1.2) over an emulated node.

The binding FuriosaAI renamed to ``furiosa-smi`` (module ``furiosa_smi``, :mod:`emulators.furiosa_smi_emu`)
in SDK 2026.4.0. What it reproduces of ``furiosa-smi-py`` 2026.1.2 (inspected: the wheel's docstrings
and a call without a driver, reference/device-interfaces.md §1.2(a)):

- ``init()`` must come first: before it every call raises ``RuntimeError("Context error")``; with no
  card ``list_devices()`` returns ``[]`` and ``driver_info()`` raises ``RuntimeError("Device not found
  error")`` — the exact behaviour of the real wheel on a host without the driver;
- errors are plain ``RuntimeError``\\ s whose text names the C return code (``"Not supported error"``,
  ``"Device not found error"``, ``"Parse error"``… — the strings of the wheel's library);
- ``Device.device_info()`` → ``DeviceInfo`` (``arch()``: ``Arch.Rngd``/``Arch.Warboy``, ``str()`` =
  ``"rngd"``/``"warboy"``; ``name()``, ``serial()``, ``uuid()``, ``bdf()`` str, ``firmware_version()``
  ``VersionInfo``, ``core_num()``, ``index()``); ``power_consumption()`` float W;
  ``device_temperature()`` °C; ``core_frequency().pe_frequency()`` (``PeFrequency.frequency()`` MHz);
  ``device_performance_counter().pe_performance_counters()`` (``core()``, ``cycle_count()``,
  ``task_execution_cycle()``, ``timestamp()``); ``memory_utilization()`` (``dram()``,
  ``dram_shared()``, ``sram()``, ``instruction()`` → ``memory()`` → ``MemoryBlock``); ``throttle_reason()``
  int bitmask (``THROTTLE_REASON_*``); ``liveness()``; the observer
  (``create_default_observer().get_core_utilization(device)``);
- plus ``Device.core_utilization().pe_utilization()`` (``pe_usage_percentage()``, %), the call of the
  versions before the observer (public callers; reference §1.2(a) "API drift").

Warboy and RNGD are both listed. Faults as in :mod:`emulators.furiosa_smi_emu`: a vanished card is
missing from ``list_devices()`` and its handle raises ``"Device not found error"``; an ``na`` field
raises ``"Not supported error"``; ``tool_exit`` N raises the text of C return code N.
"""

from __future__ import annotations

import datetime
import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from emulators.furiosa_smi_emu import _node
from emulators.furiosa_smi_emu._node import Card, Failure

__all__ = [
    "THROTTLE_REASON_APP_CLOCK_CAP",
    "THROTTLE_REASON_APP_POWER_CAP",
    "THROTTLE_REASON_HW_BUS_LIMIT",
    "THROTTLE_REASON_HW_CLOCK_CAP",
    "THROTTLE_REASON_HW_POWER_CAP",
    "THROTTLE_REASON_IDLE",
    "THROTTLE_REASON_NONE",
    "THROTTLE_REASON_OTHER_REASON",
    "THROTTLE_REASON_THERMAL_SLOWDOWN",
    "Arch",
    "Device",
    "DeviceInfo",
    "create_default_observer",
    "driver_info",
    "init",
    "list_devices",
]

# the wheel's constants (§1.3 bitmask)
THROTTLE_REASON_NONE = 0
THROTTLE_REASON_IDLE = 1 << 0
THROTTLE_REASON_THERMAL_SLOWDOWN = 1 << 1
THROTTLE_REASON_APP_POWER_CAP = 1 << 2
THROTTLE_REASON_APP_CLOCK_CAP = 1 << 3
THROTTLE_REASON_HW_CLOCK_CAP = 1 << 4
THROTTLE_REASON_HW_BUS_LIMIT = 1 << 5
THROTTLE_REASON_HW_POWER_CAP = 1 << 6
THROTTLE_REASON_OTHER_REASON = 1 << 7

#: C return code → the ``RuntimeError`` text of the wheel (``"IO error"``'s capitalisation assumed).
MESSAGES: dict[int, str] = {
    1: "Invalid argument error",
    2: "Null pointer error",
    3: "Max buffer size exceeded error",
    4: "Device not found error",
    5: "Device lost error",
    6: "Device busy error",
    7: "IO error",
    8: "Permission denied error",
    9: "Unknown arch error",
    10: "Incompatible driver error",
    11: "Unexpected value error",
    12: "Parse error",
    13: "Unknown error",
    14: "Internal error",
    15: "Uninitialized error",
    16: "Context error",
    17: "Not supported error",
}
CONTEXT = 16


DeviceTemperature = _node.DeviceTemperature
VersionInfo = _node.VersionInfo


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.initialised = False


_state = _State()


@contextmanager
def _errors() -> Iterator[None]:
    if not _state.initialised:
        raise RuntimeError(MESSAGES[CONTEXT])
    try:
        yield
    except Failure as e:
        raise RuntimeError(MESSAGES.get(e.code, MESSAGES[13])) from None


class Arch(enum.Enum):
    Warboy = 0
    Rngd = 1
    RngdMax = 2
    RngdS = 3
    RngdPlus = 4

    def __str__(self) -> str:
        return {0: "warboy", 1: "rngd", 2: "rngd_max", 3: "rngd_s", 4: "rngd+"}[self.value]


class GovernorProfile(enum.Enum):
    Performance = 0
    PowerSave = 1


class CoreStatus(enum.Enum):
    Available = 0
    Occupied = 1


class DeviceInfo:
    def __init__(self, card: Card) -> None:
        self._card = card

    def arch(self) -> Arch:
        return Arch.Warboy if self._card.arch == "warboy" else Arch.Rngd

    def core_num(self) -> int:
        return self._card.cores

    def index(self) -> int:
        return self._card.state.index

    def name(self) -> str:
        return self._card.name

    def serial(self) -> str:
        return self._card.state.serial

    def uuid(self) -> str:
        return self._card.uuid

    def bdf(self) -> str:
        return self._card.state.bus_id

    def numa_node(self) -> int:
        return 0

    def major(self) -> int:
        return 235

    def minor(self) -> int:
        return self._card.state.index

    def firmware_version(self) -> VersionInfo:
        return VersionInfo(self._card.firmware)


class PeFrequency:
    def __init__(self, core: int, mhz: float | int) -> None:
        self._core, self._mhz = core, mhz

    def core(self) -> int:
        return self._core

    def frequency(self) -> float | int:
        return self._mhz


class CoreFrequency:
    def __init__(self, pes: list[PeFrequency]) -> None:
        self._pes = pes

    def pe_frequency(self) -> list[PeFrequency]:
        return self._pes


class MemoryFrequency:
    def __init__(self, mhz: int) -> None:
        self._mhz = mhz

    def frequency(self) -> int:
        return self._mhz


class PePerformanceCounter:
    def __init__(self, core: int, cycles: int, task: int, at: datetime.datetime) -> None:
        self._core, self._cycles, self._task, self._at = core, cycles, task, at

    def core(self) -> int:
        return self._core

    def cycle_count(self) -> int:
        return self._cycles

    def task_execution_cycle(self) -> int:
        return self._task

    def timestamp(self) -> datetime.datetime:
        return self._at


class DevicePerformanceCounter:
    def __init__(self, pes: list[PePerformanceCounter]) -> None:
        self._pes = pes

    def pe_performance_counters(self) -> list[PePerformanceCounter]:
        return self._pes


class PeUtilization:
    """An entry of the pre-observer ``core_utilization().pe_utilization()``."""

    def __init__(self, core: int, percent: float) -> None:
        self._core, self._percent = core, percent

    def core(self) -> int:
        return self._core

    def pe_usage_percentage(self) -> float:
        return self._percent


class CoreUtilization(PeUtilization):
    """An observer entry: a PE's usage over the observer's window."""

    def time_window_mil(self) -> int:
        return 500  # the library's default observer interval (furiosa-smi-go performance.go)


class _CoreUtilizations:
    def __init__(self, pes: list[PeUtilization]) -> None:
        self._pes = pes

    def pe_utilization(self) -> list[PeUtilization]:
        return self._pes


class MemoryBlock:
    def __init__(self, core: int, total: int, in_use: int) -> None:
        self._core, self._total, self._in_use = core, total, in_use

    def core(self) -> list[int]:
        return [self._core]

    def total_bytes(self) -> int:
        return self._total

    def in_use_bytes(self) -> int:
        return self._in_use


class Memory:
    def __init__(self, blocks: list[MemoryBlock]) -> None:
        self._blocks = blocks

    def memory(self) -> list[MemoryBlock]:
        return self._blocks


class MemoryUtilization:
    def __init__(self, dram: Memory, shared: Memory) -> None:
        self._dram, self._shared = dram, shared

    def dram(self) -> Memory:
        return self._dram

    def dram_shared(self) -> Memory:
        return self._shared

    def sram(self) -> Memory:
        return Memory([])

    def instruction(self) -> Memory:
        return Memory([])


class PeStatus:
    def __init__(self, core: int, status: CoreStatus) -> None:
        self._core, self._status = core, status

    def core(self) -> int:
        return self._core

    def status(self) -> CoreStatus:
        return self._status


class CoreStatuses:
    def __init__(self, pes: list[PeStatus]) -> None:
        self._pes = pes

    def pe_status(self) -> list[PeStatus]:
        return self._pes


def _percents(card: Card) -> list[float]:
    s = _node.value(card, "util_ratio")
    utils = list(s.core_util) or [s.util_ratio] * card.cores
    return [utils[m % len(utils)] * 100.0 for m in range(card.cores)]


class Device:
    """Abstraction for a single Furiosa NPU device (a handle naming its card by UUID)."""

    def __init__(self, uuid: str) -> None:
        self._uuid = uuid

    def _card(self) -> Card:
        with _errors():
            return _node.node().card(self._uuid)

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(self._card())

    def liveness(self) -> bool:
        self._card()
        return True

    def power_consumption(self) -> float:
        with _errors():
            return float(_node.value(self._card(), "power_w").power_w)

    def device_temperature(self) -> DeviceTemperature:
        with _errors():
            s = _node.value(self._card(), "temp_c")
            return DeviceTemperature(float(s.temp_c), float(s.ambient_c))

    def core_frequency(self) -> CoreFrequency:
        with _errors():
            card = self._card()
            mhz = _node.mhz(_node.value(card, "clock_hz").clock_hz)
        return CoreFrequency([PeFrequency(m, mhz) for m in range(card.cores)])

    def memory_frequency(self) -> MemoryFrequency:
        self._card()
        return MemoryFrequency(6000)  # furiosa-smi-go mock_rngd.go value (not a measured figure)

    def device_performance_counter(self) -> DevicePerformanceCounter:
        with _errors():
            rows = _node.counters(self._card())
        now = datetime.datetime.now(datetime.UTC)
        return DevicePerformanceCounter([PePerformanceCounter(m, c, t, now) for m, c, t in rows])

    def core_utilization(self) -> _CoreUtilizations:
        with _errors():
            pcts = _percents(self._card())
        return _CoreUtilizations([PeUtilization(m, p) for m, p in enumerate(pcts)])

    def memory_utilization(self) -> MemoryUtilization:
        with _errors():
            dram, shared = _node.memory(self._card())
        return MemoryUtilization(
            Memory([MemoryBlock(*b) for b in dram]), Memory([MemoryBlock(*b) for b in shared])
        )

    def throttle_reason(self) -> int:
        with _errors():
            return _node.throttle_bits(self._card())

    def governor_profile(self) -> GovernorProfile:
        gov = self._card().state.governor
        return GovernorProfile.PowerSave if gov == "powersave" else GovernorProfile.Performance

    def core_status(self) -> CoreStatuses:
        card = self._card()
        status = CoreStatus.Occupied if card.view.in_use else CoreStatus.Available
        return CoreStatuses([PeStatus(m, status) for m in range(card.cores)])


class Observer:
    """``create_default_observer()``: per-PE usage over the last window (the node's last step)."""

    def get_core_utilization(self, device: Device) -> list[CoreUtilization]:
        with _errors():
            pcts = _percents(device._card())
        return [CoreUtilization(m, p) for m, p in enumerate(pcts)]


def init() -> None:
    """Initialize the library (required before any other call, as in the real binding)."""
    with _state.lock:
        _state.initialised = True


def list_devices() -> list[Device]:
    with _errors():
        return [Device(c.uuid) for c in _node.node().cards()]


def list_disabled_devices() -> list[str]:
    with _errors():
        return []


def driver_info() -> VersionInfo:
    with _errors():
        cards = _node.node().cards()
        if not cards:
            raise Failure(4)
        rngds = [c for c in cards if c.arch == "rngd"]
        return VersionInfo(_node.driver_version((rngds or list(cards))[0]))


def create_default_observer() -> Observer:
    with _errors():
        return Observer()
