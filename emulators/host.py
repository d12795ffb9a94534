"""The host-power surface of an emulated node: RAPL powercap, host hwmon, IPMI DCMI tools, Redfish.

Rendered from ``Snapshot.host`` (:class:`~kwatt.emulators.state.HostState`) at every step:

* **RAPL** (docs/device-interfaces.md §5.1): ``sys/devices/virtual/powercap/intel-rapl/
  intel-rapl:N`` per CPU package (``name`` ``package-N``) with a ``intel-rapl:N:0`` subzone ``dram``
  where the host has DRAM energy, linked from ``sys/class/powercap/`` as on a real host (plain
  directories with ``symlinks=False``: ``sys/class/powercap/intel-rapl:N/intel-rapl:N:0``). Each
  zone has ``name``, ``energy_uj``, ``max_energy_range_uj``, ``enabled`` and ``constraint_*`` files,
  and no ``power_uw`` (RAPL has none, §5.5). ``energy_uj`` is the true energy in whole µJ modulo
  ``max_energy_range_uj + 1``: it takes values ``0 … max_energy_range_uj`` and wraps there. With
  ``root_only`` it has mode 0400 (Linux ≥ 5.10, CVE-2020-8694), the other files 0444.
* **hwmon** (§5.2): ``hwmon0`` = ``power_meter`` (the ACPI power meter: ``power1_average`` µW of
  the whole system, ``power1_average_interval`` ms, ``power1_accuracy``, ``power1_is_battery``) and
  ``hwmon1`` = ``amd_energy`` (``energy<k>_input`` µJ with labels ``Esocket<k-1>``, the per-socket
  energy of §5.1's ``amd_energy``/``zenergy``; 64-bit, no wrap), under ``sys/devices/...`` and linked
  from ``sys/class/hwmon/``, each with a ``device`` link to its (non-PCI) parent.
* **IPMI DCMI** (§5.3): ``ROOT/bin/ipmitool`` and ``ROOT/bin/ipmi-dcmi`` scripts running
  :mod:`kwatt.emulators.tools.ipmitool` and :mod:`kwatt.emulators.tools.ipmi_dcmi_freeipmi` on this root; the
  BMC's min/max/average statistics are written to ``ROOT/.kwatt-emulator/bmc.json``
  (:mod:`kwatt.emulators.bmc`).
* **Redfish** (§5.4): an :class:`~kwatt.emulators.redfish.RedfishServer` on a loopback port (endpoint
  ``redfish``), optionally HTTPS and Basic auth.

Every file is replaced atomically (temp file, ``chmod``, rename), so a reader never sees half a value
nor a root-only counter with the wrong mode.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kwatt.emulators.bmc import PowerStats, PowerStatsTracker, write_stats
from kwatt.emulators.executables import install_executable
from kwatt.emulators.redfish import RedfishServer, TlsFiles
from kwatt.emulators.state import DeviceState, HostState, Snapshot
from kwatt.emulators.surfaces import HOST, SurfaceContext, register

__all__ = [
    "DEFAULT_MAX_ENERGY_RANGE_UJ",
    "HostHwmon",
    "HostSurface",
    "RaplTree",
    "RedfishOptions",
    "install_dcmi_tools",
    "rapl_counter_uj",
]

#: The common Intel package counter range, µJ (2^32 energy units of 61.035 µJ; the value of
#: ``max_energy_range_uj`` on most Xeon hosts, and tests/wire/test_units.py's RAPL example).
DEFAULT_MAX_ENERGY_RANGE_UJ = 262_143_328_850
#: Package long-term power limit (PL1) the constraint files show, µW (assumption: a 350 W Xeon).
PACKAGE_POWER_LIMIT_UW = 350_000_000
#: DRAM power limit, µW (assumption).
DRAM_POWER_LIMIT_UW = 60_000_000
#: ACPI power meter accuracy as the driver prints it (assumption).
POWER_METER_ACCURACY = "95.0%"


def rapl_counter_uj(energy_j: float, max_energy_range_uj: int) -> int:
    """The ``energy_uj`` a zone shows for a true energy: whole µJ, wrapping past the range."""
    return math.floor(energy_j * 1e6) % (max_energy_range_uj + 1)


class _Files:
    """Atomic writes with a mode, skipping unchanged content; relative symlinks as sysfs has."""

    def __init__(self) -> None:
        self._last: dict[Path, tuple[str, int]] = {}

    def write(self, path: Path, text: str, mode: int = 0o444) -> None:
        if self._last.get(path) == (text, mode):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(mode)
        tmp.replace(path)
        self._last[path] = (text, mode)

    @staticmethod
    def symlink(link: Path, target: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            return
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


class RaplTree:
    """The powercap RAPL zones of one host under ``root`` (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        root_only: bool = False,
        symlinks: bool = True,
    ) -> None:
        if max_energy_range_uj <= 0:
            raise ValueError(f"max_energy_range_uj must be > 0, got {max_energy_range_uj}")
        self.root = root
        self.max_energy_range_uj = max_energy_range_uj
        self.root_only = root_only
        self.symlinks = symlinks
        self._files = _Files()
        self._zones: set[str] = set()

    def zone_dir(self, package: int, sub: int | None = None) -> Path:
        sys_dir = self.root / "sys"
        if self.symlinks:
            pkg = (
                sys_dir
                / "devices"
                / "virtual"
                / "powercap"
                / "intel-rapl"
                / f"intel-rapl:{package}"
            )
        else:
            pkg = sys_dir / "class" / "powercap" / f"intel-rapl:{package}"
        return pkg if sub is None else pkg / f"intel-rapl:{package}:{sub}"

    def _static(self, zone: Path, name: str, limits: Sequence[tuple[str, int]]) -> None:
        f = self._files
        f.write(zone / "name", f"{name}\n")
        f.write(zone / "max_energy_range_uj", f"{self.max_energy_range_uj}\n")
        f.write(zone / "enabled", "1\n", 0o644)
        for i, (constraint, limit_uw) in enumerate(limits):
            f.write(zone / f"constraint_{i}_name", f"{constraint}\n")
            f.write(zone / f"constraint_{i}_power_limit_uw", f"{limit_uw}\n", 0o644)
            f.write(
                zone / f"constraint_{i}_time_window_us", "999424\n" if i == 0 else "2440\n", 0o644
            )
            f.write(zone / f"constraint_{i}_max_power_uw", f"{limit_uw}\n")

    def _create(self, package: int, sub: int | None, name: str) -> Path:
        zone = self.zone_dir(package, sub)
        key = zone.name
        if key in self._zones:
            return zone
        if sub is None:
            limits = [
                ("long_term", PACKAGE_POWER_LIMIT_UW),
                ("short_term", PACKAGE_POWER_LIMIT_UW * 6 // 5),
            ]
        else:
            limits = [("long_term", DRAM_POWER_LIMIT_UW)]
        self._static(zone, name, limits)
        if self.symlinks:
            powercap = self.root / "sys" / "class" / "powercap"
            _Files.symlink(
                powercap / "intel-rapl", zone.parent if sub is None else zone.parent.parent
            )
            _Files.symlink(powercap / key, zone)
        self._zones.add(key)
        return zone

    def render(self, host: HostState) -> None:
        mode = 0o400 if self.root_only else 0o444
        for package, energy_j in enumerate(host.cpu_energy_j):
            zone = self._create(package, None, f"package-{package}")
            counter = rapl_counter_uj(energy_j, self.max_energy_range_uj)
            self._files.write(zone / "energy_uj", f"{counter}\n", mode)
        for package, energy_j in enumerate(host.dram_energy_j):
            if package >= len(host.cpu_energy_j):
                break  # a DRAM domain belongs to a package
            zone = self._create(package, 0, "dram")
            counter = rapl_counter_uj(energy_j, self.max_energy_range_uj)
            self._files.write(zone / "energy_uj", f"{counter}\n", mode)


class HostHwmon:
    """The host's own hwmon chips: the ACPI power meter and per-socket energy (module docstring)."""

    def __init__(self, root: Path, *, first_index: int = 0) -> None:
        self.root = root
        self.first_index = first_index
        self._files = _Files()
        self._linked: set[Path] = set()

    def _chip(self, parent: Path, index: int) -> Path:
        hwmon = parent / "hwmon" / f"hwmon{index}"
        if hwmon not in self._linked:
            hwmon.mkdir(parents=True, exist_ok=True)
            _Files.symlink(self.root / "sys" / "class" / "hwmon" / hwmon.name, hwmon)
            _Files.symlink(hwmon / "device", parent)
            self._linked.add(hwmon)
        return hwmon

    @property
    def meter_dir(self) -> Path:
        parent = self.root / "sys" / "devices" / "LNXSYSTM:00" / "LNXSYBUS:00" / "ACPI000D:00"
        return self._chip(parent, self.first_index)

    @property
    def energy_dir(self) -> Path:
        parent = self.root / "sys" / "devices" / "platform" / "amd_energy.0"
        return self._chip(parent, self.first_index + 1)

    def render(self, host: HostState) -> None:
        f = self._files
        meter = self.meter_dir
        f.write(meter / "name", "power_meter\n")
        f.write(meter / "power1_average_interval", "1000\n", 0o644)
        f.write(meter / "power1_accuracy", f"{POWER_METER_ACCURACY}\n")
        f.write(meter / "power1_is_battery", "0\n")
        f.write(meter / "power1_average", f"{round(host.system_power_w * 1e6)}\n")
        energy = self.energy_dir
        f.write(energy / "name", "amd_energy\n")
        for k, energy_j in enumerate(host.cpu_energy_j, start=1):
            f.write(energy / f"energy{k}_label", f"Esocket{k - 1}\n")
            f.write(energy / f"energy{k}_input", f"{math.floor(energy_j * 1e6)}\n")


def install_dcmi_tools(root: Path, python: str = sys.executable) -> list[Path]:
    """Write ``ROOT/bin/ipmitool`` and ``ROOT/bin/ipmi-dcmi``: scripts running the emulated tools."""
    return [
        install_executable(root, name, module, python=python)
        for name, module in (
            ("ipmitool", "kwatt.emulators.tools.ipmitool"),
            ("ipmi-dcmi", "kwatt.emulators.tools.ipmi_dcmi_freeipmi"),
        )
    ]


@dataclass(frozen=True, slots=True)
class RedfishOptions:
    """How the node's BMC serves Redfish."""

    chassis: str = "1"
    tls: TlsFiles | None = None
    credentials: tuple[str, str] | None = None
    environment_metrics: bool = True
    energy: bool = True
    power_subsystem: bool = True


class HostSurface:
    """The host-power surface of one node (contract: :mod:`kwatt.emulators.surfaces`)."""

    def __init__(
        self,
        context: SurfaceContext,
        *,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        root_only: bool = False,
        symlinks: bool = True,
        redfish: RedfishOptions | None = None,
    ) -> None:
        self.root = context.root
        self.rapl = RaplTree(
            self.root,
            max_energy_range_uj=max_energy_range_uj,
            root_only=root_only,
            symlinks=symlinks,
        )
        self.hwmon = HostHwmon(self.root)
        options = redfish or RedfishOptions()
        self.redfish = RedfishServer(
            chassis=options.chassis,
            port=context.port,
            tls=options.tls,
            credentials=options.credentials,
            environment_metrics=options.environment_metrics,
            energy=options.energy,
            power_subsystem=options.power_subsystem,
            seed=context.seed,
        )
        self._stats = PowerStatsTracker()
        self.stats: PowerStats | None = None

    @property
    def endpoints(self) -> Mapping[str, str]:
        return self.redfish.endpoints

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        self.rapl.root = root
        self.hwmon.root = root
        install_dcmi_tools(root)

    async def start(self) -> None:
        await self.redfish.start()

    def render(self, snap: Snapshot) -> None:
        host = snap.host
        if host is not None:
            self.rapl.render(host)
            self.hwmon.render(host)
            self.stats = self._stats.update(host)
            write_stats(self.root, self.stats)
        self.redfish.render(snap, self.stats if host is not None else None)

    async def aclose(self) -> None:
        await self.redfish.aclose()


register(HOST, HostSurface)
