"""The agent config an emulated node prints: which collectors read its surfaces, and with what options.

:func:`collector_candidates` lists one collector entry (a plain mapping, as the agent's YAML has it)
per surface of a :class:`~kwatt.emulators.node.Node`: the vendor collectors of its devices, the
generic command collector for the PIM devices' ``pim-smi``, RAPL, hwmon, IPMI DCMI, Redfish and one
``serving`` entry per serving runtime. :func:`agent_config` keeps those a caller-supplied
:data:`ConfigCheck` accepts (``kwatt emulate`` checks them against the agent's collector registry
and config validator), excludes from hwmon the chips a kept vendor collector already reports, and
renders the YAML with a comment header. Collectors are named by their kind strings only: the
emulators never import a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import yaml

from kwatt.emulators.node import Node
from kwatt.emulators.pim import PIM_VENDORS, pim_command_entry

__all__ = ["ConfigCheck", "agent_config", "collector_candidates"]

#: Checks one collector entry of the printed agent config; returns why it is left out, or None.
#: ``kwatt emulate`` passes one built from ``collectors.REGISTRY`` and the agent's config validator
#: (emulators never import collectors, so the check comes from the caller).
ConfigCheck = Callable[[Mapping[str, object]], "str | None"]


def collector_candidates(node: Node) -> list[dict[str, object]]:
    """Collector entries that read this node's surfaces (before the availability check)."""
    root = str(node.root.resolve())
    vendors = set(node.vendors)
    eps = node.endpoints
    out: list[dict[str, object]] = []
    if "furiosa" in vendors:
        out.append({"type": "furiosa", "name": "furiosa", "root": root})
    if "rebellions" in vendors:
        out.append(
            {
                "type": "rebellions",
                "name": "rebellions",
                "tool": f"{root}/bin/rbln-smi",
                "root": root,
            }
        )
    if "sapeon" in vendors:
        out.append(
            {"type": "sapeon", "name": "sapeon", "tool": f"{root}/bin/sapeon-smi", "root": root}
        )
    if "nvidia" in vendors:
        if "nvml_lib" in eps:  # the emulated libnvidia-ml.so.1: the agent needs LD_LIBRARY_PATH
            out.append({"type": "nvml", "name": "nvml"})
        out.append({"type": "nvidia_smi", "name": "nvidia-smi", "tool": f"{root}/bin/nvidia-smi"})
    for vendor in PIM_VENDORS:  # assumed surface: the generic command collector reads pim-smi
        if vendor in vendors:
            out.append(pim_command_entry(root, vendor))
    out.append({"type": "rapl", "name": "rapl", "root": root})
    out.append({"type": "hwmon", "name": "hwmon", "root": root})  # exclude: see agent_config
    out.append({"type": "ipmi_dcmi", "name": "ipmi", "tool": f"{root}/bin/ipmitool"})
    if "redfish" in eps:
        out.append({"type": "redfish", "name": "redfish", "url": eps["redfish"]})
    for ep in node.serving_endpoints:
        out.append(
            {
                "type": "serving",
                "name": f"{ep.service}-{ep.runtime}",
                "url": f"{ep.url}/metrics",
                "service": ep.service,
                "runtime": ep.runtime,
            }
        )
    for entry in out:
        entry["interval_s"] = "1s"
    return out


def agent_config(
    node: Node,
    *,
    site: str = "emulated",
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    check: ConfigCheck | None = None,
) -> str:
    """The agent YAML for ``node``: every collector whose entry passes ``check`` (all without one)."""
    kept: list[dict[str, object]] = []
    left_out: list[str] = []
    for candidate in collector_candidates(node):
        entry = candidate
        if entry["type"] == "hwmon":
            # chips a kept vendor collector reports already would be counted twice (hwmon's
            # auto_accel takes every PCI chip with power): RNGD and Warboy by `furiosa`, Sapeon
            # by `sapeon`
            kinds = {e["type"] for e in kept}
            owned = (("furiosa", "rngd*"), ("furiosa", "furiosa_warboy"), ("sapeon", "sapeon_*"))
            exclude = [p for k, p in owned if k in kinds]
            # PIM chips when their pim-smi command entry is kept
            names = {e.get("name") for e in kept if e["type"] == "command"}
            exclude += [f"{v}_*" for v in PIM_VENDORS if f"pim-{v}" in names]
            if exclude:
                entry = {**entry, "exclude": exclude}
        why = None if check is None else check(entry)
        if why is None:
            kept.append(entry)
        else:
            left_out.append(f"# left out {entry['type']}: {why}")
    doc = {"site": site, "node": node.options.name, "mqtt": {"url": mqtt_url}, "collectors": kept}
    head = [
        f"# kwatt agent config for the emulated node {node.options.name} at {node.root.resolve()}",
        f"# devices: {', '.join(f'{d.model}:{d.cards}' for d in node.options.devices)}; "
        f"services: {', '.join(node.workloads)}; seed {node.options.seed}",
    ]
    if "nvml_lib" in node.endpoints:
        head.append(
            f"# nvml: start the agent with LD_LIBRARY_PATH={node.endpoints['nvml_lib']} "
            "(the emulated libnvidia-ml.so.1; ready line key nvml_lib)"
        )
    nvidia = node.surfaces.get("nvidia")
    why_no_nvml = getattr(nvidia, "library_error", None)
    if why_no_nvml:
        head.append(f"# left out nvml: {why_no_nvml}")
    if check is None:
        head.append("# (not checked against this agent's collectors: run kwatt emulate node)")
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return "\n".join([*head, *left_out, body])
