"""Collectors: one module (or one folder, for a vendor with several sources) per telemetry source.

``REGISTRY`` maps a collector kind (the ``type:`` of an agent-config entry) to the module that
exports its :class:`~kwatt.collectors.plugin.CollectorPlugin` as ``PLUGIN``; :func:`load` imports it
lazily (a node without an optional vendor library still loads the rest) and returns the typed
plugin. The order is doctor's: the order it detects, probes and lists the collectors of a node.
"""

from __future__ import annotations

import importlib

from kwatt.collectors.plugin import CollectorPlugin, Plugin

__all__ = ["REGISTRY", "load", "plugins"]

REGISTRY: dict[str, str] = {
    "furiosa": "kwatt.collectors.furiosa",
    "rebellions": "kwatt.collectors.rebellions",
    "sapeon": "kwatt.collectors.sapeon",
    "nvml": "kwatt.collectors.nvml",
    "nvidia_smi": "kwatt.collectors.nvidia_smi",
    "rapl": "kwatt.collectors.rapl",
    "hwmon": "kwatt.collectors.hwmon",
    "ipmi_dcmi": "kwatt.collectors.ipmi_dcmi",
    "redfish": "kwatt.collectors.redfish",
    "serving": "kwatt.collectors.serving",
    "command": "kwatt.collectors.command",
}


def load(kind: str) -> Plugin:
    """The plugin of collector kind ``kind``; ``KeyError`` if there is none."""
    plugin: object = importlib.import_module(REGISTRY[kind]).PLUGIN
    if not isinstance(plugin, CollectorPlugin) or plugin.kind != kind:
        raise TypeError(f"{REGISTRY[kind]}.PLUGIN is not the CollectorPlugin of {kind!r}")
    return plugin


def plugins() -> tuple[Plugin, ...]:
    """Every registered plugin, in registry order."""
    return tuple(load(kind) for kind in REGISTRY)
