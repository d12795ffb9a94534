"""Collectors: one module per telemetry source (DESIGN §2).

``REGISTRY`` maps a collector type (the ``type:`` of an agent config entry) to the module that holds
its ``Config`` dataclass and ``create(name, config)`` factory. Modules are imported lazily so a node
without an optional vendor library still loads the rest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTRY: dict[str, str] = {
    "furiosa": "collectors.furiosa",
    "rebellions": "collectors.rebellions",
    "sapeon": "collectors.sapeon",
    "serving": "collectors.serving",
    "rapl": "collectors.rapl",
    "hwmon": "collectors.hwmon",
    "ipmi_dcmi": "collectors.ipmi_dcmi",
    "redfish": "collectors.redfish",
    "nvml": "collectors.nvml",
    "nvidia_smi": "collectors.nvidia_smi",
    "command": "collectors.command",
}


def load(kind: str) -> ModuleType:
    """Import the module for collector type ``kind``; ``KeyError`` if there is none."""
    return importlib.import_module(REGISTRY[kind])
