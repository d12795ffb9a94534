"""Phase-2 (DRAM-PIM) and phase-3 (NVM analog PIM) driver surfaces — an **ASSUMED** interface.

None of the PIM parts in the catalogue has a public monitoring interface: SK hynix shows the AiMX
card (GDDR6-AiM) at Hot Chips and OCP but publishes no driver or tool; Samsung's HBM-PIM ran inside
AMD MI100 systems of its own; IBM's HERMES PCM chip is a research chip (docs/emulators.md). As for
Sapeon (:mod:`kwatt.emulators.sapeon`), this module invents the least surprising interface and labels it so,
and kwatt reads it only through *generic, configurable* collectors — the ``command`` collector's JSON
mapping and ``hwmon`` — so a real device is added by editing the agent config, not kwatt's code.
Nothing below was seen on hardware.

ASSUMED surface, for every device of a vendor in :data:`PIM_VENDORS`:

1. **``pim-smi``** (``ROOT/bin/pim-smi``, running :mod:`kwatt.emulators.tools.pim_smi`): ``pim-smi --json
   [--vendor V]`` prints one JSON object::

       {"schema": "kwatt-assumed-pim-smi/1", "driver_version": "0.1.0",
        "devices": [{"index": 0, "vendor": "skhynix", "model": "aimx", "name": "SK hynix AiMX",
                     "phase": "phase2_dram_pim", "research": false, "serial": "SKHAIM01234567",
                     "uuid": "…", "pci_bus_id": "0000:61:00.0",
                     "power_mw": 61230, "power_limit_mw": 87500, "energy_mj": 123456,
                     "temperature_mc": 52000, "utilization_pct": 61.5, "clock_mhz": 1000,
                     "memory_used_bytes": 1073741824, "memory_total_bytes": 34359738368,
                     "throttled": false}]}

   integer units written into the keys (mW, mJ since the last counter reset, m°C, MHz, bytes;
   utilization in percent), ``model`` the catalogue key with ``_`` for ``-`` (:func:`model_tag`: the
   device class ``vendor/model`` is the same through hwmon),
   ``phase`` the K-Cloud phase of the catalogue. A field under the fault ``na`` is ``null``, under
   ``nan`` the JSON literal ``NaN``. ``--vendor`` keeps one vendor's devices (the ``command``
   collector tags every sample of an entry with one ``vendor``). Without ``--json``: one line per
   device for people. Tool faults as for every emulated tool (name ``pim-smi``).
2. **hwmon** (Linux ABI): ``ROOT/sys/devices/pci0000:00/<bdf>/hwmon/hwmon<K>/`` linked from
   ``ROOT/sys/class/hwmon/hwmon<K>`` and ``ROOT/sys/bus/pci/devices/<bdf>``, ``device`` → the PCI
   function; ``name`` ``<vendor>_<model>`` (``skhynix_aimx``, ``samsung_mi100_pim``, ``ibm_hermes``),
   ``power1_input`` µW (label ``board``), ``power1_cap`` µW, ``energy1_input`` µJ (64-bit, no wrap),
   ``temp1_input`` m°C (label ``chip``). ``K`` starts at ``FIRST_HWMON_INDEX[vendor]`` (blocks no
   other emulated surface uses).

Stuck sensors repeat the state shown when the device got stuck; a device that disappears leaves the
tool's list and loses its hwmon directory.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kwatt.emulators import catalogue
from kwatt.emulators.boardhwmon import render_board_hwmon, tool_readings
from kwatt.emulators.executables import install_executable
from kwatt.emulators.state import DeviceState, Snapshot, read_snapshot, write_atomic
from kwatt.emulators.surfaces import SurfaceContext, register

__all__ = [
    "DRIVER_VERSION",
    "FIRST_HWMON_INDEX",
    "PIM_VENDORS",
    "SCHEMA",
    "TOOL",
    "ModelInfo",
    "PimSurface",
    "PimView",
    "hwmon_name",
    "install_tool",
    "load_view",
    "model_tag",
    "pim_command_entry",
    "render_json",
    "render_summary",
]

#: Vendors whose devices this surface shows (catalogue ``vendor``).
PIM_VENDORS = ("skhynix", "samsung", "ibm")
#: Name of the emulated executable (assumed) and of its entry in ``Snapshot.tool_faults``.
TOOL = "pim-smi"
#: Marks the JSON as the assumed format, so nobody mistakes it for a vendor's.
SCHEMA = "kwatt-assumed-pim-smi/1"
DRIVER_VERSION = "0.1.0"
#: First hwmon index per vendor (assumed blocks: host 0-1, Furiosa 2+, Sapeon 64+).
FIRST_HWMON_INDEX = {"skhynix": 96, "samsung": 112, "ibm": 128}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the tool prints about a catalogue model (written at setup: the tool never reads YAML)."""

    name: str
    phase: str
    research: bool


def _config_path(root: Path, vendor: str) -> Path:
    return root / ".kwatt-emulator" / f"pim-{vendor}.json"


def model_tag(model: str) -> str:
    """The model as both surfaces name it: the catalogue key ``model`` in the hwmon ``name`` alphabet
    (``mi100-pim`` → ``mi100_pim``), so ``pim-smi``'s ``model`` and the hwmon collector's
    ``<vendor>_<model>`` reading of the chip name give one device class (``samsung/mi100_pim``)."""
    return model.lower().replace("-", "_").replace(" ", "_")


def hwmon_name(dev: DeviceState) -> str:
    """``skhynix_aimx``: lowercase, no dashes (the hwmon ABI's ``name`` rule)."""
    return f"{dev.vendor}_{model_tag(dev.model)}"


# ------------------------------------------------------------------------------- what tools see


@dataclass(frozen=True, slots=True)
class PimView:
    """The PIM devices of one snapshot as the tool shows them (held states of stuck devices)."""

    snapshot: Snapshot
    devices: tuple[DeviceState, ...]
    models: Mapping[str, ModelInfo]


def _state(doc: dict[str, Any]) -> DeviceState:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return DeviceState(**fields)


def load_view(root: Path, vendor: str | None = None) -> PimView:
    """What ``pim-smi`` under ``root`` shows now (one vendor or all); OSError/ValueError: no node."""
    models: dict[str, ModelInfo] = {}
    held: dict[str, DeviceState] = {}
    for v in PIM_VENDORS:
        try:
            doc = json.loads(_config_path(root, v).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        models.update({k: ModelInfo(**m) for k, m in doc["models"].items()})
        held.update({d["uuid"]: _state(d) for d in doc["held"]})
    snap = read_snapshot(root)
    devs: list[DeviceState] = []
    for dev in snap.devices:
        if dev.vendor not in PIM_VENDORS or not dev.present:
            continue
        if vendor is not None and dev.vendor != vendor:
            continue
        frozen = held.get(dev.uuid)
        if dev.stuck and frozen is not None:
            devs.append(dataclasses.replace(frozen, index=dev.index, t_s=dev.t_s, stuck=True))
        else:
            devs.append(dev)
    devs.sort(key=lambda d: (d.vendor, d.index))
    return PimView(snap, tuple(devs), models)


def render_json(v: PimView) -> str:
    """``pim-smi --json`` (assumed format, module docstring)."""

    out: list[dict[str, Any]] = []
    for d in v.devices:
        info = v.models.get(d.model)
        out.append(
            {
                "index": d.index,
                "vendor": d.vendor,
                "model": model_tag(d.model),
                "name": None if info is None else info.name,
                "phase": None if info is None else info.phase,
                "research": None if info is None else info.research,
                "serial": d.serial,
                "uuid": d.uuid,
                "pci_bus_id": d.bus_id,
                **tool_readings(d),
            }
        )
    doc = {"schema": SCHEMA, "driver_version": DRIVER_VERSION, "devices": out}
    return json.dumps(doc, indent=2) + "\n"


def render_summary(v: PimView) -> str:
    """``pim-smi`` without options: one line per device, for people (assumed)."""
    lines = [f"pim-smi (kwatt assumed surface)  driver {DRIVER_VERSION}"]
    for d in v.devices:
        info = v.models.get(d.model)
        phase = "?" if info is None else info.phase
        lines.append(
            f"[{d.vendor}:{d.index}] {d.model:<10} {phase:<22} {d.bus_id}  {d.power_w:7.2f} W  "
            f"{d.temp_c:5.1f} C  {d.util_ratio * 100:5.1f} %"
        )
    return "\n".join(lines) + "\n"


def pim_command_entry(root: str, vendor: str) -> dict[str, object]:
    """The agent's ``command`` collector entry that reads ``vendor``'s devices from ``pim-smi``
    (what a real device's entry would look like: only ``argv`` and the paths would change)."""
    return {
        "type": "command",
        "name": f"pim-{vendor}",
        "argv": [f"{root}/bin/{TOOL}", "--json", "--vendor", vendor],
        "devices": "devices",
        "vendor": vendor,
        "model_field": "model",
        "device_field": "pci_bus_id",
        "fields": [
            {"path": "power_mw", "field": "power_w", "unit": "mW"},
            {"path": "energy_mj", "field": "energy_j", "unit": "mJ"},
            {"path": "temperature_mc", "field": "temp_c", "unit": "mC"},
            {"path": "utilization_pct", "field": "util_ratio", "unit": "%"},
            {"path": "clock_mhz", "field": "clock_hz", "unit": "MHz"},
            {"path": "memory_used_bytes", "field": "mem_used_bytes"},
            {"path": "memory_total_bytes", "field": "mem_total_bytes"},
            {"path": "power_limit_mw", "field": "power_limit_w", "unit": "mW"},
            {"path": "throttled", "field": "throttled"},
        ],
    }


# ------------------------------------------------------------------------------- the surface


def install_tool(root: Path, python: str = sys.executable) -> Path:
    """Write ``ROOT/bin/pim-smi``: a script that runs the emulated tool on ``root``."""
    return install_executable(root, TOOL, "kwatt.emulators.tools.pim_smi", python=python)


class PimSurface:
    """The assumed surface of one PIM vendor on one node (contract: :mod:`kwatt.emulators.surfaces`)."""

    def __init__(self, context: SurfaceContext, vendor: str) -> None:
        self.root = context.root
        self.vendor = vendor
        self._hwmon_index: dict[str, int] = {}  # uuid → K of hwmon<K>, fixed at setup (PCI order)
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck, by uuid
        self._held: tuple[DeviceState, ...] = ()
        self._models: dict[str, ModelInfo] = {}

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {}

    def _write_config(self) -> None:
        doc = {
            "models": {k: dataclasses.asdict(m) for k, m in self._models.items()},
            "held": [dataclasses.asdict(d) for d in self._held],
        }
        write_atomic(_config_path(self.root, self.vendor), json.dumps(doc, separators=(",", ":")))

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        install_tool(root)
        mine = sorted((d for d in devices if d.vendor == self.vendor), key=lambda d: d.bus_id)
        for k, dev in enumerate(mine):
            spec = catalogue.model(dev.model)  # an unknown model fails here, not at a step
            self._models[dev.model] = ModelInfo(spec.name, spec.phase, spec.research)
            self._hwmon_index[dev.uuid] = FIRST_HWMON_INDEX[self.vendor] + k
            self._last[dev.uuid] = dev
        self._write_config()

    async def start(self) -> None:
        return None

    def _index(self, dev: DeviceState) -> int:
        if dev.uuid not in self._hwmon_index:  # a device the node did not announce at setup
            self._hwmon_index[dev.uuid] = FIRST_HWMON_INDEX[self.vendor] + len(self._hwmon_index)
        return self._hwmon_index[dev.uuid]

    def render(self, snap: Snapshot) -> None:
        held: list[DeviceState] = []
        for dev in snap.devices:
            if dev.vendor != self.vendor:
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
            self._write_config()

    async def aclose(self) -> None:
        return None


def _factory(vendor: str) -> Callable[[SurfaceContext], PimSurface]:
    def make(context: SurfaceContext) -> PimSurface:
        return PimSurface(context, vendor)

    return make


for _vendor in PIM_VENDORS:
    register(_vendor, _factory(_vendor))
