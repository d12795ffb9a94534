"""What both emulated FuriosaAI bindings share: the node's cards, its faults and the C return codes.

The cards are the snapshot's present ``vendor == "furiosa"`` devices as the emulated ``furiosa-smi``
shows them (:func:`emulators.tools.furiosa_smi.views`: by index, a stuck card showing the state it
held), so a binding, the tool and the sysfs tree agree on every poll. The snapshot is re-read when
``state.json`` or ``furiosa.json`` changes.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from emulators import rngd, warboy
from emulators.furiosa_surface import read_config, surface_config_path
from emulators.state import DeviceState, read_snapshot, snapshot_path
from emulators.tools.furiosa_smi import NpuView, views

__all__ = [
    "CODES",
    "FAULTS_TOOL",
    "ROOT_ENV",
    "Card",
    "DeviceTemperature",
    "Failure",
    "Node",
    "VersionInfo",
    "counters",
    "driver_version",
    "memory",
    "mhz",
    "node",
    "parse_version",
    "throttle_bits",
    "value",
]

#: Environment variable naming the emulated node's root directory (shared with pynvml_emu).
ROOT_ENV = "KWATT_EMULATOR_ROOT"
#: Name of the bindings' entry in ``Snapshot.tool_faults`` (``--tool furiosa_smi``).
FAULTS_TOOL = "furiosa_smi"

#: ``FuriosaSmiReturnCode`` values of furiosa_smi.h (reference/device-interfaces.md §1.4,
#: [furiosa-smi-go@cc9b490:pkg/smi/furiosa_smi.h]) → their names; a ``tool_exit`` fault with value N
#: makes every device call fail with code N.
CODES: dict[int, str] = {
    1: "INVALID_ARGUMENT",
    2: "NULL_POINTER",
    3: "MAX_BUFFER_SIZE_EXCEED",
    4: "DEVICE_NOT_FOUND",
    5: "DEVICE_LOST",
    6: "DEVICE_BUSY",
    7: "IO",
    8: "PERMISSION_DENIED",
    9: "UNKNOWN_ARCH",
    10: "INCOMPATIBLE_DRIVER",
    11: "UNEXPECTED_VALUE",
    12: "PARSE",
    13: "UNKNOWN",
    14: "INTERNAL",
    15: "UNINITIALIZED",
    16: "CONTEXT",
    17: "NOT_SUPPORTED",
}
NOT_FOUND, DEVICE_LOST, IO, NOT_SUPPORTED = 4, 5, 7, 17


class Failure(Exception):
    """A library failure with its C return code; each binding raises it in its own exception type."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or CODES.get(code, "UNKNOWN"))
        self.code = code
        self.detail = detail or CODES.get(code, "UNKNOWN")


@dataclass(frozen=True, slots=True)
class Card:
    """One present card: its (possibly held) state and how the tool names it."""

    view: NpuView

    @property
    def state(self) -> DeviceState:
        return self.view.state

    @property
    def arch(self) -> str:
        return self.view.arch

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def uuid(self) -> str:
        return self.view.state.uuid.upper()

    @property
    def cores(self) -> int:
        return self.view.cores

    @property
    def firmware(self) -> str:
        return self.view.firmware


def parse_version(text: str) -> tuple[int, int, int, str, str]:
    """``"X.Y.Z, hash"`` (sysfs ``fw_version``/``version``, §1.3) → (major, minor, patch, prerelease,
    metadata), as the 2026.4 library's regex reads it (``X.Y.Z[~pre][, metadata]``)."""
    head, _, metadata = text.partition(",")
    head, _, prerelease = head.strip().partition("~")
    parts = [int(p) if p.isdigit() else 0 for p in head.split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2], prerelease, metadata.strip()


def driver_version(card: Card) -> str:
    """What the card's sysfs ``version`` file holds (the driver)."""
    return warboy.DRIVER_VERSION if card.arch == "warboy" else rngd.DRIVER_VERSION


class Node:
    """The emulated node under the root named by :data:`ROOT_ENV`, re-read when its files change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._root: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._cards: tuple[Card, ...] = ()
        self._faults_exit = 0
        self._faults_hang_s = 0.0

    def cards(self) -> tuple[Card, ...]:
        """The present cards, by index; none without a root or a node (no driver loaded)."""
        value = os.environ.get(ROOT_ENV)
        if not value:
            return ()
        root = Path(value)
        with self.lock:
            try:
                stamp = (snapshot_path(root).stat().st_mtime_ns, _mtime(surface_config_path(root)))
            except OSError:
                return ()
            if root != self._root or stamp != self._stamp:
                try:
                    snap = read_snapshot(root)
                    config = read_config(root)
                except (OSError, ValueError, TypeError, KeyError):
                    raise Failure(13, "cannot read the emulated node") from None
                self._cards = tuple(Card(v) for v in views(snap, config.tool_version, config.held))
                faults = snap.faults_for(FAULTS_TOOL)
                self._faults_exit, self._faults_hang_s = faults.exit_code, faults.hang_s
                self._root, self._stamp = root, stamp
            return self._cards

    def card(self, uuid: str) -> Card:
        """The card with ``uuid`` now, after the injected tool faults (a hang, a return code)."""
        cards = self.cards()
        if self._faults_hang_s > 0:
            time.sleep(self._faults_hang_s)
        if self._faults_exit != 0:
            raise Failure(self._faults_exit)
        for c in cards:
            if c.uuid == uuid:
                return c
        raise Failure(NOT_FOUND, f"device {uuid} not found")


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def value(card: Card, field: str) -> DeviceState:
    """The card's state after the ``na`` fault of ``field``: not available = NOT_SUPPORTED (the
    library found no sensor file). A ``nan`` field keeps its NaN (the snapshot holds it)."""
    if field in card.state.na_fields:
        raise Failure(NOT_SUPPORTED, f"{field} is not available")
    return card.state


def mhz(hz: float) -> float | int:
    """A clock in whole MHz, as the library's ``u32`` frequency; NaN stays NaN."""
    return hz / 1e6 if math.isnan(hz) else round(hz / 1e6)


def counters(card: Card) -> list[tuple[int, int, int]]:
    """Per PE ``(core, cycle_count, task_execution_cycle)`` since the last counter reset: every PE
    counts the device's cycles and busy cycles (the snapshot keeps no per-PE history)."""
    s = value(card, "util_ratio")
    if math.isnan(s.cycles) or math.isnan(s.busy_cycles):
        raise Failure(12, "performance counter has unexpected format")
    cycles = math.floor(s.cycles)
    busy = min(math.floor(s.busy_cycles), cycles)
    return [(m, cycles, busy) for m in range(card.cores)]


def memory(card: Card) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """RNGD ``alloc_status`` per PE as ``(core, total, in use)``: (dram, shared), the split the
    sysfs surface writes (emulators.rngd.rngd_dynamic_files), so sums match the sysfs reader's."""
    if card.arch == "warboy":
        raise Failure(NOT_SUPPORTED, "Warboy has no alloc_status")
    s = value(card, "mem_used_bytes")
    n = rngd.PE_COUNT
    per_pe = s.mem_used_bytes // n
    shared_used = min(per_pe, rngd.SHARED_PER_PE_BYTES) // 2
    dram_capacity = s.mem_total_bytes // n - rngd.SHARED_PER_PE_BYTES
    dram = [(m, dram_capacity, per_pe - shared_used) for m in range(n)]
    shared = [(m, rngd.SHARED_PER_PE_BYTES, shared_used) for m in range(n)]
    return dram, shared


def throttle_bits(card: Card) -> int:
    """The RNGD ``throttle_reason`` bitmask the sysfs surface writes (§1.3 bit values)."""
    if card.arch == "warboy":
        raise Failure(NOT_SUPPORTED, "Warboy has no throttle_reason")
    s = card.state
    reason = rngd.THROTTLE_IDLE if s.util_ratio < 0.01 else 0
    reason |= rngd.THROTTLE_THERMAL_SLOWDOWN if s.throttle_thermal else 0
    reason |= rngd.THROTTLE_APP_POWER_CAP if s.throttle_power else 0
    return reason


_node = Node()


def node() -> Node:
    return _node


# Value classes both binding generations share, with the same methods.


class VersionInfo:
    def __init__(self, text: str) -> None:
        self._v = parse_version(text)

    def major(self) -> int:
        return self._v[0]

    def minor(self) -> int:
        return self._v[1]

    def patch(self) -> int:
        return self._v[2]

    def prerelease(self) -> str:
        return self._v[3]

    def metadata(self) -> str:
        return self._v[4]


class DeviceTemperature:
    def __init__(self, soc_peak: float, ambient: float) -> None:
        self._soc_peak, self._ambient = soc_peak, ambient

    def soc_peak(self) -> float:
        return self._soc_peak

    def ambient(self) -> float:
        return self._ambient
