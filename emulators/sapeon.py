"""Sapeon driver surface of an emulated node — an **ASSUMED** interface, not a real one.

docs/device-interfaces.md §3: Sapeon (X220, X330) publishes no monitoring CLI, Python API, sysfs
layout or exporter; every Sapeon telemetry format is UNCONFIRMED. The reference recommends treating
Sapeon as a device without vendor telemetry and labelling any invented interface as synthetic. This
module is that invented interface, kept to the generic Linux conventions so that the generic
collectors (hwmon) cover it as well as :mod:`kwatt.collectors.sapeon`. Nothing below was seen on hardware.

ASSUMED surface, for every ``vendor == "sapeon"`` :class:`~kwatt.emulators.state.DeviceState`:

1. **hwmon** (Linux ABI, §5.2 units): ``ROOT/sys/devices/pci0000:00/<bdf>/hwmon/hwmon<K>/`` (the PCI
   function, linked from ``ROOT/sys/bus/pci/devices/<bdf>`` as on a real host), linked from
   ``ROOT/sys/class/hwmon/hwmon<K>``, with ``device`` → the PCI function directory (as every real
   hwmon directory has; node_exporter names the chip ``pci0000:00_<bdf>`` from it) and

   ==================  ===============================================================
   ``name``            ``sapeon_<model>``: ``sapeon_x220_compact``, ``sapeon_x330`` …
   ``power1_input``    board power, µW           ``power1_label``  ``board``
   ``power1_cap``      power limit, µW
   ``energy1_input``   energy since the last counter reset, µJ (64-bit, no wrap)
   ``temp1_input``     chip temperature, m°C     ``temp1_label``   ``chip``
   ==================  ===============================================================

   ``K`` starts at :data:`FIRST_HWMON_INDEX` (a block no other emulated surface uses) in PCI order.
   A field under the fault ``na`` has no file (the kernel's ``-ENODATA``: absent); under ``nan`` it
   holds ``nan``. A device that disappears loses its hwmon directory.
2. **``sapeon-smi``** (``ROOT/bin/sapeon-smi``, running :mod:`kwatt.emulators.tools.sapeon_smi`):
   ``sapeon-smi --json`` (or ``-j``) prints one JSON object::

       {"schema": "kwatt-assumed-sapeon-smi/1", "driver_version": "1.0.0",
        "devices": [{"index": 0, "model": "X220-compact", "serial": "SPNX22012345",
                     "uuid": "…", "pci_bus_id": "0000:81:00.0",
                     "power_mw": 41230, "power_limit_mw": 60000, "energy_mj": 123456,
                     "temperature_mc": 52000, "utilization_pct": 61.5, "clock_mhz": 1000,
                     "memory_used_bytes": 1073741824, "memory_total_bytes": 8589934592,
                     "throttled": false}]}

   integer units written into the keys (mW, mJ, m°C, MHz, bytes; utilization in percent). A field
   under the fault ``na`` is ``null``; under ``nan`` it is the JSON literal ``NaN`` (what Python's and
   most C JSON writers emit). Without ``--json`` it prints a one-line-per-device summary for people.
   Tool faults as for every emulated tool (name ``sapeon-smi``).

Stuck sensors repeat the state shown when the device got stuck (``ROOT/.kwatt-emulator/sapeon.json``
holds those states for the tool).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kwatt.emulators import catalogue
from kwatt.emulators.boardhwmon import energy_counter_uj, render_board_hwmon, tool_readings
from kwatt.emulators.executables import install_executable
from kwatt.emulators.state import DeviceState, Snapshot, read_snapshot, write_atomic
from kwatt.emulators.surfaces import SurfaceContext, register

__all__ = [
    "DRIVER_VERSION",
    "FIRST_HWMON_INDEX",
    "SCHEMA",
    "TOOL",
    "SapeonSurface",
    "SapeonView",
    "energy_counter_uj",
    "hwmon_name",
    "install_tool",
    "load_view",
    "model_label",
    "render_json",
    "render_summary",
    "surface_config_path",
    "view",
]

VENDOR = "sapeon"
#: Name of the emulated executable (assumed) and of its entry in ``Snapshot.tool_faults``.
TOOL = "sapeon-smi"
#: Marks the JSON as the assumed format, so nobody mistakes it for a vendor's.
SCHEMA = "kwatt-assumed-sapeon-smi/1"
#: Driver version the tool reports (assumed).
DRIVER_VERSION = "1.0.0"
#: First hwmon index of the Sapeon cards (assumed block: host hwmon uses 0-1, Furiosa cards 2 and up).
FIRST_HWMON_INDEX = 64


#: catalogue model → label, memoised; the tool seeds it from the surface's config file so a run
#: does not parse the catalogue.
_LABELS: dict[str, str] = {}


def model_label(dev: DeviceState) -> str:
    """``X220-compact``, ``X330``: the catalogue name without the ``SAPEON`` prefix."""
    if dev.model not in _LABELS:
        _LABELS[dev.model] = catalogue.model(dev.model).name.removeprefix("SAPEON").strip()
    return _LABELS[dev.model]


def hwmon_name(dev: DeviceState) -> str:
    """The hwmon ``name`` (lowercase, no dashes, per the hwmon ABI): ``sapeon_x220_compact``."""
    return "sapeon_" + model_label(dev).lower().replace("-", "_").replace(" ", "_")


# ------------------------------------------------------------------------------- what tools see


@dataclass(frozen=True, slots=True)
class SapeonView:
    """The Sapeon part of one snapshot, as the emulated tool shows it."""

    snapshot: Snapshot
    devices: tuple[
        DeviceState, ...
    ]  # present Sapeon devices, held (stuck) states applied, by index


def view(snap: Snapshot, held: Sequence[DeviceState] = ()) -> SapeonView:
    by_uuid = {d.uuid: d for d in held}
    devs: list[DeviceState] = []
    for dev in snap.devices:
        if dev.vendor != VENDOR or not dev.present:
            continue
        frozen = by_uuid.get(dev.uuid)
        if dev.stuck and frozen is not None:
            devs.append(dataclasses.replace(frozen, index=dev.index, t_s=dev.t_s, stuck=True))
        else:
            devs.append(dev)
    devs.sort(key=lambda d: d.index)
    return SapeonView(snap, tuple(devs))


def _state(doc: dict[str, Any]) -> DeviceState:
    """A DeviceState back from its JSON form (arrays back to tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return DeviceState(**fields)


def surface_config_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "sapeon.json"


def _write_config(root: Path, held: Sequence[DeviceState]) -> None:
    doc = {"labels": _LABELS, "held": [dataclasses.asdict(d) for d in held]}
    write_atomic(surface_config_path(root), json.dumps(doc, separators=(",", ":")))


def load_view(root: Path) -> SapeonView:
    """What the emulated tool under ``root`` shows now; OSError/ValueError when there is no node."""
    held: tuple[DeviceState, ...] = ()
    try:
        doc: dict[str, Any] = json.loads(surface_config_path(root).read_text(encoding="utf-8"))
        _LABELS.update({str(k): str(v) for k, v in doc.get("labels", {}).items()})
        held = tuple(_state(d) for d in doc.get("held", []))
    except FileNotFoundError:
        pass
    return view(read_snapshot(root), held)


def render_json(v: SapeonView) -> str:
    """``sapeon-smi --json`` (assumed format, module docstring)."""

    devices: list[dict[str, Any]] = []
    for d in v.devices:
        devices.append(
            {
                "index": d.index,
                "model": model_label(d),
                "serial": d.serial,
                "uuid": d.uuid,
                "pci_bus_id": d.bus_id,
                **tool_readings(d),
            }
        )
    doc = {"schema": SCHEMA, "driver_version": DRIVER_VERSION, "devices": devices}
    return json.dumps(doc, indent=2) + "\n"


def render_summary(v: SapeonView) -> str:
    """``sapeon-smi`` without options: one line per device, for people (assumed)."""
    lines = [f"sapeon-smi (kwatt assumed surface)  driver {DRIVER_VERSION}"]
    for d in v.devices:
        lines.append(
            f"[{d.index}] {model_label(d):<16} {d.bus_id}  {d.power_w:6.1f} W  "
            f"{d.temp_c:5.1f} C  {d.util_ratio * 100:5.1f} %"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- the surface


def install_tool(root: Path, python: str = sys.executable) -> Path:
    """Write ``ROOT/bin/sapeon-smi``: a script that runs the emulated tool on ``root``."""
    return install_executable(root, TOOL, "kwatt.emulators.tools.sapeon_smi", python=python)


class SapeonSurface:
    """The assumed Sapeon surface of one node (contract: :mod:`kwatt.emulators.surfaces`)."""

    def __init__(self, context: SurfaceContext) -> None:
        self.root = context.root
        self._hwmon_index: dict[str, int] = {}  # uuid → K of hwmon<K>, fixed at setup (PCI order)
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck, by uuid
        self._held: tuple[DeviceState, ...] = ()

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {}

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        install_tool(root)
        mine = sorted((d for d in devices if d.vendor == VENDOR), key=lambda d: d.bus_id)
        for k, dev in enumerate(mine):
            hwmon_name(dev)  # an unknown model fails here, not at the first step
            self._hwmon_index[dev.uuid] = FIRST_HWMON_INDEX + k
            self._last[dev.uuid] = dev
        _write_config(root, ())

    async def start(self) -> None:
        return None

    def _index(self, dev: DeviceState) -> int:
        if dev.uuid not in self._hwmon_index:  # a device the node did not announce at setup
            self._hwmon_index[dev.uuid] = FIRST_HWMON_INDEX + len(self._hwmon_index)
        return self._hwmon_index[dev.uuid]

    def render(self, snap: Snapshot) -> None:
        held: list[DeviceState] = []
        for dev in snap.devices:
            if dev.vendor != VENDOR:
                continue
            showing = dev
            if not dev.stuck:
                self._last[dev.uuid] = dev
            elif dev.uuid in self._last:
                held.append(self._last[dev.uuid])
                showing = dataclasses.replace(
                    self._last[dev.uuid], index=dev.index, present=dev.present
                )
            render_board_hwmon(self.root, showing, self._index(showing), hwmon_name(showing))
        if tuple(held) != self._held:
            self._held = tuple(held)
            _write_config(self.root, self._held)

    async def aclose(self) -> None:
        return None


register(VENDOR, SapeonSurface)
