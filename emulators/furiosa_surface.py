"""FuriosaAI driver surface of an emulated node: Warboy and RNGD sysfs/hwmon trees and ``furiosa-smi``.

Renders every ``vendor == "furiosa"`` :class:`~kwatt.emulators.state.DeviceState` (contract:
:mod:`kwatt.emulators.surfaces`):

- RNGD: ``rngd_mgmt`` tree, per-PE ``metrics``/``alloc_status``, hwmon (``kwatt.emulators.rngd``, §1.3);
- Warboy: ``npu_mgmt`` tree, ``perf_regs`` with 32-bit wrapping counters, hwmon (``kwatt.emulators.warboy``);
- ``ROOT/bin/furiosa-smi``: a script running :mod:`kwatt.emulators.tools.furiosa_smi` on the node's snapshot.

Faults: a device with ``present=False`` loses its whole tree (class links, mgmt, PE and PCI
directories); when it comes back with another index its tree is written under the new names while its
serial, UUID and bus id stay. A ``stuck`` device keeps showing the values it had when it got stuck (the
surface holds them, and writes them to ``ROOT/.kwatt-emulator/furiosa.json`` for the tool); counters
restart from 0 when ``reset_count`` changes; sensors named in ``na_fields`` are removed; NaN values are
written as ``nan``.

The surface integrates the per-PE task cycles itself, from ``cycles`` and ``core_util`` of consecutive
states, so they are monotonic between resets and never exceed the cycle count.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kwatt.emulators import rngd, warboy
from kwatt.emulators.executables import install_executable
from kwatt.emulators.rngd import SysfsWriter
from kwatt.emulators.state import DeviceState, Snapshot, write_atomic
from kwatt.emulators.surfaces import SurfaceContext, register

__all__ = [
    "DEFAULT_TOOL_VERSION",
    "TOOL",
    "VENDOR",
    "FuriosaSurface",
    "SurfaceConfig",
    "firmware_for",
    "install_tool",
    "read_config",
    "surface_config_path",
]

VENDOR = "furiosa"
TOOL = "furiosa-smi"
DEFAULT_TOOL_VERSION = "2026.3.0"

#: Firmware (and PERT) strings each furiosa-smi docs version shows (docs/device-interfaces.md §1.1
#: column table).
_FIRMWARE = {
    "2024": ("0.0.15+af1daaa", None),
    "2025a": ("0.0.21+d6cada3", None),
    "2025b": ("2025.1.0+696efad", "2025.1.0+1694e18"),
    "2026": ("1.7.0, 4dfed1852e7b", None),
}


def era(version: str) -> str:
    """The output dialect of a furiosa-smi version (docs/device-interfaces.md §1.1, 'Column
    evolution')."""
    parts = version.split(".")
    try:
        year, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ValueError(f"furiosa-smi version {version!r}: expected YYYY.M.P") from None
    if year <= 2024:
        return "2024"
    if year == 2025:
        return "2025a" if minor < 2 else "2025b"
    return "2026"


def firmware_for(version: str, arch: str) -> tuple[str, str | None]:
    """(firmware, PERT or None) strings for a device of ``arch`` under tool ``version``."""
    if arch == "warboy":
        return warboy.FIRMWARE_VERSION, None
    return _FIRMWARE[era(version)]


def surface_config_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "furiosa.json"


@dataclass(frozen=True, slots=True)
class SurfaceConfig:
    """What the tool needs besides the snapshot."""

    tool_version: str = DEFAULT_TOOL_VERSION
    held: tuple[DeviceState, ...] = ()  # stuck devices: the state they keep showing


def write_config(root: Path, config: SurfaceConfig) -> None:
    doc = {
        "tool_version": config.tool_version,
        "held": [dataclasses.asdict(d) for d in config.held],
    }
    write_atomic(surface_config_path(root), json.dumps(doc, separators=(",", ":")))


def read_config(root: Path) -> SurfaceConfig:
    try:
        doc: dict[str, Any] = json.loads(surface_config_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SurfaceConfig()
    held = tuple(_device(d) for d in doc.get("held", []))
    return SurfaceConfig(str(doc.get("tool_version", DEFAULT_TOOL_VERSION)), held)


def _device(doc: dict[str, Any]) -> DeviceState:
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return DeviceState(**kw)


def install_tool(root: Path, python: str = sys.executable) -> Path:
    """Write ``ROOT/bin/furiosa-smi``: runs ``kwatt.emulators.tools.furiosa_smi --root ROOT``."""
    return install_executable(root, TOOL, "kwatt.emulators.tools.furiosa_smi", python=python)


@dataclass(slots=True)
class _Counters:
    """Per-PE counters of one device since its last reset."""

    reset_count: int
    last_cycles: float
    busy: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Shown:
    index: int
    owned: tuple[Path, ...]
    links: tuple[Path, ...]


class FuriosaSurface:
    """The FuriosaAI surface of one node."""

    def __init__(self, context: SurfaceContext) -> None:
        self.root = context.root
        self.tool_version = (context.tool_versions or {}).get(TOOL, DEFAULT_TOOL_VERSION)
        era(self.tool_version)  # validate
        self._w = SysfsWriter(self.root)
        self._counters: dict[str, _Counters] = {}
        self._shown: dict[str, _Shown] = {}  # uuid → where its tree is
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck
        self._held: tuple[DeviceState, ...] = ()

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {}

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        self._w = SysfsWriter(root)
        install_tool(root)
        write_config(root, SurfaceConfig(self.tool_version))
        ours = [d for d in devices if d.vendor == VENDOR]
        for d in ours:
            self._render_device(d)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def render(self, snap: Snapshot) -> None:
        ours = [d for d in snap.devices if d.vendor == VENDOR]
        # vanish first (and move re-enumerated devices away) so no two trees fight for one name
        for d in ours:
            shown = self._shown.get(d.uuid)
            if shown is not None and (not d.present or shown.index != d.index):
                self._remove(d.uuid)
        held: list[DeviceState] = []
        for dev in ours:
            if not dev.present:
                continue
            view = dev
            if dev.stuck and dev.uuid in self._last:
                frozen = self._last[dev.uuid]
                held.append(frozen)
                view = dataclasses.replace(frozen, index=dev.index, t_s=dev.t_s, stuck=True)
            else:
                self._last[dev.uuid] = dev
            self._render_device(view)
        if tuple(held) != self._held:
            self._held = tuple(held)
            write_config(self.root, SurfaceConfig(self.tool_version, self._held))

    # ---------------------------------------------------------------------------- internals
    def _remove(self, uuid: str) -> None:
        shown = self._shown.pop(uuid)
        for link in shown.links:
            self._w.remove_tree(link)
        for d in shown.owned:
            self._w.remove_tree(d)

    def _integrate(self, d: DeviceState, cores: int) -> _Counters:
        c = self._counters.get(d.uuid)
        if c is None or c.reset_count != d.reset_count or d.cycles < c.last_cycles:
            c = _Counters(d.reset_count, 0.0, [0.0] * cores)
            self._counters[d.uuid] = c
        dc = d.cycles - c.last_cycles
        utils = list(d.core_util) or [d.util_ratio] * cores
        for m in range(cores):
            c.busy[m] = min(c.busy[m] + dc * utils[m % len(utils)], d.cycles)
        c.last_cycles = d.cycles
        return c

    def _render_device(self, d: DeviceState) -> None:
        if d.model == "warboy":
            wlay = warboy.warboy_layout(self.root, d.index, d.bus_id)
            layout_links, owned = wlay.links, wlay.owned
            first = d.uuid not in self._shown
            if first:
                self._w.write_many(warboy.warboy_static_files(wlay, d))
            counters = self._integrate(d, warboy.PE_COUNT)
            files, removed = warboy.warboy_dynamic_files(wlay, d, d.cycles, counters.busy)
        else:
            rlay = rngd.rngd_layout(self.root, d.index, d.bus_id)
            layout_links, owned = rlay.links, rlay.owned
            first = d.uuid not in self._shown
            if first:
                firmware, _ = firmware_for(self.tool_version, "rngd")
                self._w.write_many(rngd.rngd_static_files(rlay, d, firmware))
            counters = self._integrate(d, rngd.PE_COUNT)
            files, removed = rngd.rngd_dynamic_files(rlay, d, d.cycles, counters.busy)
        if first:
            for link, target in layout_links:
                target.mkdir(parents=True, exist_ok=True)
                self._w.symlink(link, target)
            self._shown[d.uuid] = _Shown(d.index, owned, tuple(link for link, _ in layout_links))
        self._w.write_many(files)
        for path in removed:
            self._w.remove(path)


register(VENDOR, FuriosaSurface)
