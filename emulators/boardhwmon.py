"""The board-level hwmon chip of the emulated devices whose interface is ASSUMED (Sapeon, the PIM
classes): one hwmon directory per device under its PCI function, as the Linux hwmon ABI lays it
out (https://docs.kernel.org/hwmon/sysfs-interface.html), rendered from the device state with the
``na``/``nan`` faults applied. Shared by :mod:`kwatt.emulators.sapeon` and :mod:`kwatt.emulators.pim`.

Layout: ``ROOT/sys/devices/pci0000:00/<bdf>/hwmon/hwmon<K>/`` (``ROOT/sys/bus/pci/devices/<bdf>``
links to the PCI function, ``ROOT/sys/class/hwmon/hwmon<K>`` to the hwmon directory, whose
``device`` link points back at the function, as every real one does), with ``name``,
``power1_input`` µW (label ``board``), ``power1_cap`` µW, ``energy1_input`` µJ since the last
counter reset, ``temp1_input`` m°C (label ``chip``). A field under ``na`` has no file (the kernel's
``-ENODATA``), under ``nan`` it holds ``nan``; a device that is not present has no directory.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from kwatt.emulators.state import DeviceState, write_atomic

__all__ = [
    "energy_counter_uj",
    "pci_dirs",
    "render_board_hwmon",
    "shown",
    "symlink",
    "tool_readings",
]


def shown(dev: DeviceState, field: str, value: float) -> float | None:
    """``value`` (derived from ``field``) as a surface shows it under the ``na``/``nan`` faults."""
    if field in dev.na_fields:
        return None
    if field in dev.nan_fields:
        return math.nan
    return value


def energy_counter_uj(dev: DeviceState) -> float:
    """Energy since the device's last counter reset, µJ (``energy_j - energy_at_reset_j``); NaN
    under the ``nan`` fault of ``energy_j`` (shown as ``nan``/``NaN``, never a number)."""
    return (dev.energy_j - dev.energy_at_reset_j) * 1e6


def symlink(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` (relative), replacing it atomically."""
    rel = os.path.relpath(target, link.parent)
    if link.is_symlink() and str(link.readlink()) == rel:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rel)
    tmp.replace(link)


def pci_dirs(root: Path, dev: DeviceState, hwmon_index: int) -> tuple[Path, Path, Path]:
    """(PCI function dir, hwmon dir, its sys/class/hwmon link) of ``dev``; the PCI function lives
    under ``sys/devices/pci0000:00`` and ``sys/bus/pci/devices/<bdf>`` links to it."""
    name = f"hwmon{hwmon_index}"
    pci = root / "sys" / "devices" / "pci0000:00" / dev.bus_id
    bus_link = root / "sys" / "bus" / "pci" / "devices" / dev.bus_id
    if not bus_link.is_symlink():
        if bus_link.is_dir():  # a root written by an older emulator: a plain directory
            shutil.rmtree(bus_link)
        pci.mkdir(parents=True, exist_ok=True)
        symlink(bus_link, pci)
    return pci, pci / "hwmon" / name, root / "sys" / "class" / "hwmon" / name


def render_board_hwmon(root: Path, dev: DeviceState, hwmon_index: int, name: str) -> None:
    """Write (or, for a device that is not present, remove) ``dev``'s hwmon chip ``name``."""
    pci, hwmon, link = pci_dirs(root, dev, hwmon_index)
    if not dev.present:
        link.unlink(missing_ok=True)
        shutil.rmtree(hwmon, ignore_errors=True)
        return
    hwmon.mkdir(parents=True, exist_ok=True)
    symlink(link, hwmon)
    symlink(hwmon / "device", pci)
    files: dict[str, float | str | None] = {
        "name": name,
        "power1_label": "board",
        "temp1_label": "chip",
        "power1_input": shown(dev, "power_w", dev.power_w * 1e6),
        "power1_cap": shown(dev, "power_limit_w", dev.power_limit_w * 1e6),
        "energy1_input": shown(dev, "energy_j", energy_counter_uj(dev)),
        "temp1_input": shown(dev, "temp_c", dev.temp_c * 1e3),
    }
    for key, value in files.items():
        path = hwmon / key
        if value is None:
            path.unlink(missing_ok=True)  # the kernel answers -ENODATA: no value
        elif isinstance(value, str):
            write_atomic(path, value + "\n")
        else:
            write_atomic(path, f"{round(value) if math.isfinite(value) else 'nan'}\n")


def tool_readings(d: DeviceState) -> dict[str, float | int | bool | None]:
    """The readings an assumed tool's JSON prints for a device (``sapeon-smi``, ``pim-smi``), in
    integer units written into the keys, in this order; ``None`` (JSON ``null``) under ``na``, NaN
    under ``nan``."""

    def whole(value: float | None) -> float | int | None:
        return value if value is None or not math.isfinite(value) else round(value)

    util = shown(d, "util_ratio", d.util_ratio * 100.0)
    return {
        "power_mw": whole(shown(d, "power_w", d.power_w * 1e3)),
        "power_limit_mw": whole(shown(d, "power_limit_w", d.power_limit_w * 1e3)),
        "energy_mj": whole(shown(d, "energy_j", energy_counter_uj(d) / 1e3)),
        "temperature_mc": whole(shown(d, "temp_c", d.temp_c * 1e3)),
        "utilization_pct": None if util is None else round(util, 2),
        "clock_mhz": whole(shown(d, "clock_hz", d.clock_hz / 1e6)),
        "memory_used_bytes": whole(shown(d, "mem_used_bytes", d.mem_used_bytes)),
        "memory_total_bytes": whole(shown(d, "mem_total_bytes", d.mem_total_bytes)),
        "throttled": d.throttle_thermal or d.throttle_power,
    }
