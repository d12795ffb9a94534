"""Collectors: one module per telemetry source (DESIGN §2).

``REGISTRY`` maps a collector type (the ``type:`` of an agent config entry) to the module that holds
its ``Config`` dataclass and ``create(name, config)`` factory. Modules are imported lazily so a node
without an optional vendor library still loads the rest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY: dict[str, str] = {
    "furiosa": "kwatt.collectors.furiosa",
    "rebellions": "kwatt.collectors.rebellions",
    "sapeon": "kwatt.collectors.sapeon",
    "serving": "kwatt.collectors.serving",
    "rapl": "kwatt.collectors.rapl",
    "hwmon": "kwatt.collectors.hwmon",
    "ipmi_dcmi": "kwatt.collectors.ipmi_dcmi",
    "redfish": "kwatt.collectors.redfish",
    "nvml": "kwatt.collectors.nvml",
    "nvidia_smi": "kwatt.collectors.nvidia_smi",
    "command": "kwatt.collectors.command",
}


def load(kind: str) -> ModuleType:
    """Import the module for collector type ``kind``; ``KeyError`` if there is none."""
    return importlib.import_module(REGISTRY[kind])
