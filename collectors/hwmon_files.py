"""Reading hwmon chips the way every collector that reads them does (``hwmon``, ``furiosa``,
``sapeon``): Linux ``Documentation/hwmon/sysfs-interface.rst`` (docs/device-interfaces.md §5.2).

A chip is a ``hwmonN`` directory (under ``sys/class/hwmon`` or a PCI function's ``hwmon``); its
``name`` file names the driver's chip, ``<sensor>_label`` names a channel, and a value file that is
missing, unreadable or answers ``ENODATA`` (a disabled sensor) is absent, never 0.
:class:`DeviceMatch` names an accelerator's chips (the ``hwmon`` collector's ``devices`` option,
and the ``hwmon_devices`` a vendor's plugin declares).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kwatt.collectors.base import CollectorError, ParseError, read_small
from kwatt.wire.model import validate_tag_value

__all__ = [
    "HWMON_DIR",
    "DeviceMatch",
    "chip_dirs",
    "read_files",
    "read_sensor",
    "sensor_labels",
]

#: The name of a chip's directory.
HWMON_DIR = re.compile(r"^hwmon\d+$")


@dataclass(frozen=True)
class DeviceMatch:
    """Chips whose ``name`` matches ``name`` (fnmatch) are accelerators of this vendor and model."""

    name: str
    vendor: str
    model: str
    #: Label of the channel holding board power / energy / the device temperature (else channel 1).
    power_label: str | None = None
    energy_label: str | None = None
    temp_label: str | None = None

    def __post_init__(self) -> None:
        validate_tag_value("vendor", self.vendor)
        validate_tag_value("model", self.model)


def chip_dirs(base: Path) -> list[Path]:
    """The ``hwmonN`` directories in ``base``, sorted; none when ``base`` cannot be listed."""
    try:
        return sorted(p for p in base.iterdir() if HWMON_DIR.match(p.name))
    except OSError:
        return []


def read_sensor(path: Path | str) -> str | None:
    """A chip file's text (not stripped), or None when it is absent: missing, unreadable (the ABI
    makes sensors world-readable; an unreadable one is absent) or ``ENODATA``. Text that is not
    UTF-8 is a :class:`ParseError`; any other error of the read a :class:`CollectorError`."""
    try:
        return read_small(path).decode("utf-8")
    except (FileNotFoundError, PermissionError):
        return None
    except UnicodeDecodeError as e:
        raise ParseError(f"{path}: not text ({e.reason})") from None
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None  # a disabled sensor
        raise CollectorError(f"{path}: {e.strerror or e}") from None


def read_files(chip: Path, names: Iterable[str]) -> dict[str, str]:
    """The stripped text of each of ``names`` in ``chip`` that is present (absent ones left out)."""
    out: dict[str, str] = {}
    for name in names:
        text = read_sensor(chip / name)
        if text is not None:
            out[name] = text.strip()
    return out


def sensor_labels(chip: Path) -> dict[str, str]:
    """Each channel label of ``chip`` → its sensor prefix (``"PEAK"`` → ``"temp1"``); the lowest
    file name wins when two channels share a label."""
    labels: dict[str, str] = {}
    for label_file in sorted(chip.glob("*_label")):
        label = read_sensor(label_file)
        if label is not None and label.strip():
            labels.setdefault(label.strip(), label_file.name.removesuffix("_label"))
    return labels
