"""``kwatt doctor``: probe every collector this node could run and suggest an agent config.

For a root ``R`` (``/`` on a real host, an emulated node's directory otherwise) :func:`candidates`
asks every registered collector plugin (:mod:`kwatt.collectors`, in registry order) for the entries
worth probing on ``R`` (its ``detect``: sysfs classes, vendor tools in ``R/bin`` and on ``PATH``
when ``R`` is ``/``, NVML: the real ``pynvml``, or on an emulated node the node's emulated
``libnvidia-ml.so.1`` loaded into this process). Serving and Redfish endpoints cannot be discovered
safely, so they are probed only when given. :func:`probe` validates each entry as the agent would,
runs one ``inventory()`` and one ``collect()`` under a timeout, and records what it saw;
:func:`suggest` keeps exactly the collectors that worked (hwmon excluding the chips a working vendor
collector's plugin declares in ``hwmon_chips``, and no collector whose ``fallback_of`` works) and
validates the result with :func:`kwatt.agent.config.agent_config_from`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from rich.console import Console
from rich.table import Table

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.collectors.base import CollectorUnavailable
from kwatt.collectors.plugin import Surface
from kwatt.wire.model import DeviceInfo
from kwatt.wire.settings import ConfigError

__all__ = [
    "Probe",
    "candidates",
    "configure_parser",
    "permission_fix",
    "probe",
    "probe_all",
    "render_table",
    "run",
    "suggest",
]

Status = Literal["ok", "unavailable", "error"]


@dataclass
class Probe:
    """What probing one candidate collector found."""

    type: str
    name: str
    entry: dict[str, object]
    status: Status = "error"
    devices: list[DeviceInfo] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    samples: int = 0
    cost_ms: float | None = None
    message: str | None = None
    fix: str | None = None
    #: Whether the suggested config keeps it (ok, and not a duplicate of another that is kept).
    kept: bool = False

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["devices"] = [asdict(d) for d in self.devices]
        return doc


# ------------------------------------------------------------------------------- discovery


def candidates(
    root: Path,
    *,
    serving: Sequence[str] = (),
    redfish: Sequence[str] = (),
    interval: str = "1s",
) -> list[dict[str, object]]:
    """One agent-config collector entry per surface that exists under ``root`` (not yet probed).

    ``serving`` items are ``URL[=SERVICE[:RUNTIME]]``; ``redfish`` items are BMC base URLs.
    """
    surface = Surface(root, serving=tuple(serving), redfish=tuple(redfish))
    out = [
        entry
        for plugin in collectors.plugins()
        if plugin.detect is not None
        for entry in plugin.detect(surface)
    ]
    names: set[str] = set()
    for e in out:
        base = name = str(e["name"])
        n = 1
        while name in names:
            n += 1
            name = f"{base}{n}"
        names.add(name)
        e["name"] = name
        e["interval_s"] = interval
    return out


# ------------------------------------------------------------------------------- probing


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not x for x in out):  # identity: some errors' __eq__ raise
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def permission_fix(kind: str, error: BaseException) -> str | None:
    """The fix for a read the OS refused (a ``PermissionError`` anywhere in ``error``'s chain, or
    a message saying so); None for other failures."""
    refused = any(isinstance(x, PermissionError) for x in _chain(error)) or any(
        s in str(error).lower() for s in ("permission denied", "insufficient permission")
    )
    if not refused:
        return None
    fix = collectors.load(kind).permission_fix if kind in collectors.REGISTRY else None
    return fix or "run the agent as a user that may read this surface"


async def probe(entry: Mapping[str, object], timeout_s: float = 10.0) -> Probe:
    """Validate ``entry`` as the agent would, then run one inventory() and one collect()."""
    kind, name = str(entry["type"]), str(entry.get("name", entry["type"]))
    p = Probe(kind, name, dict(entry))
    try:
        cfg = agent_config_from(
            {"site": "doctor", "node": "doctor", "collectors": [dict(entry)]}, where="doctor"
        )
    except (ConfigError, ValueError, TypeError) as e:
        p.message = f"not a valid entry for this agent: {e}"
        return p
    (ce,) = cfg.collectors
    # The probe asks whether the surface works, not whether it answers within one poll's timeout
    # on a machine that is busy right now (doctor probes every surface at once, each with its
    # imports, library loads and first calls): a collector's own I/O timeout, which the config
    # derives from the poll interval (1 s), would fail a healthy but slow first call and make
    # doctor prefer a fallback (nvidia-smi for NVML). The probe's budget bounds it instead; the
    # cost of a poll is measured and reported separately (cost_ms).
    plugin = collectors.load(kind)
    options = plugin.with_timeout(ce.options, timeout_s)
    collector = None
    try:
        async with asyncio.timeout(timeout_s):
            collector = plugin.create(ce.name, options)
            p.devices = list(await collector.inventory())
            t0 = time.perf_counter()
            samples = await collector.collect()
            p.cost_ms = (time.perf_counter() - t0) * 1e3
    except CollectorUnavailable as e:
        p.status, p.message = "unavailable", str(e) or type(e).__name__
        p.fix = permission_fix(kind, e)
        return p
    except TimeoutError:
        p.message = f"no answer within {timeout_s:g} s"
        return p
    except Exception as e:  # any failure of a collector is a finding, never a crash of doctor
        p.message = f"{type(e).__name__}: {e}"
        p.fix = permission_fix(kind, e)
        return p
    finally:
        if collector is not None:
            try:
                await collector.aclose()
            except Exception as e:  # closing is best effort
                p.message = p.message or f"aclose failed: {e}"
    p.samples = len(samples)
    p.fields = sorted({k for s in samples for k, _ in s.fields})
    if not samples:
        p.status = "unavailable"
        p.message = "surface present but nothing to report (no devices or sensors)"
    else:
        p.status = "ok"
    return p


async def probe_all(found: Sequence[Mapping[str, object]], timeout_s: float = 10.0) -> list[Probe]:
    """Probe every candidate; hwmon last, excluding the chips a working vendor collector reports."""
    first = [e for e in found if e["type"] != "hwmon"]
    out = list(await asyncio.gather(*(probe(e, timeout_s) for e in first)))
    ok = {p.type for p in out if p.status == "ok"}
    owned = [
        pat for plugin in collectors.plugins() if plugin.kind in ok for pat in plugin.hwmon_chips
    ]
    for e in found:
        if e["type"] == "hwmon":
            entry = {**e, "exclude": owned} if owned else dict(e)
            out.append(await probe(entry, timeout_s))
    order = {str(e["name"]): i for i, e in enumerate(found)}
    out.sort(key=lambda p: order.get(p.name, len(order)))
    for p in out:
        p.kept = p.status == "ok"
        backed_up = collectors.load(p.type).fallback_of if p.type in collectors.REGISTRY else None
        if backed_up is not None and backed_up in ok and p.kept:
            # it reads the same devices as the one it backs up: keeping both counts them twice
            p.kept = False
            p.message = f"same devices as {backed_up}, which works: left out (fallback)"
    return out


def suggest(
    probes: Sequence[Probe], *, site: str, node: str, broker: str
) -> dict[str, object] | None:
    """The agent config of exactly the collectors that worked, validated; None if none did."""
    kept = [p.entry for p in probes if p.kept]
    if not kept:
        return None
    doc: dict[str, object] = {"site": site, "node": node, "mqtt": {"url": broker}}
    doc["collectors"] = kept
    agent_config_from(doc, where="kwatt doctor's suggested config")  # raises if it would not load
    return doc


# ------------------------------------------------------------------------------- output


def _versions(devices: Sequence[DeviceInfo]) -> str:
    seen: list[str] = []
    for d in devices:
        for label, v in (("drv", d.driver_version), ("fw", d.firmware_version)):
            if v and f"{label} {v}" not in seen:
                seen.append(f"{label} {v}")
    return "\n".join(seen)


def render_table(probes: Sequence[Probe], root: Path, width: int | None = None) -> str:
    """The findings as a rich table (plain text, no colour codes when not on a terminal)."""

    table = Table(title=f"kwatt doctor: {root}", show_lines=True)
    for col in ("collector", "status", "devices", "versions", "fields", "ms", "notes"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "unavailable": "yellow", "error": "red"}
    for p in probes:
        devices = "\n".join(f"{d.vendor}/{d.model}/{d.id}" for d in p.devices)
        notes = p.message or ""
        if p.fix:
            notes += f"\nfix: {p.fix}"
        table.add_row(
            f"{p.name} ({p.type})",
            f"[{style[p.status]}]{p.status}[/]"
            + ("\n(left out)" if p.status == "ok" and not p.kept else ""),
            devices,
            _versions(p.devices),
            ", ".join(p.fields),
            "" if p.cost_ms is None else f"{p.cost_ms:.1f}",
            notes,
        )
    console = Console(width=width or 160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    text = console.export_text(styles=sys.stdout.isatty())
    console.file.close()
    return text


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/", help="prefix of /sys and bin (default /)")
    p.add_argument(
        "--serving",
        action="append",
        default=[],
        metavar="URL[=SERVICE[:RUNTIME]]",
        help="also probe this serving runtime's /metrics (repeatable; not discoverable)",
    )
    p.add_argument(
        "--redfish", action="append", default=[], metavar="URL", help="also probe this BMC"
    )
    p.add_argument("--site", default="default", help="site of the suggested config")
    p.add_argument("--node", default=None, help="node of the suggested config (default hostname)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="MQTT URL of the config")
    p.add_argument("--interval", default="1s", help="poll interval of every collector (1s)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per probe (default 10)")
    p.add_argument("--print-config", metavar="FILE", help="write the suggested config here")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """``kwatt doctor``: 0 when at least one collector works, 1 when none does."""

    root = Path(args.root)
    found = candidates(root, serving=args.serving, redfish=args.redfish, interval=args.interval)
    probes = asyncio.run(probe_all(found, args.timeout))
    node = args.node or socket.gethostname().split(".")[0]
    doc = suggest(probes, site=args.site, node=node, broker=args.broker)
    text: str | None = None
    if doc is not None:
        kept = ", ".join(p.name for p in probes if p.kept)
        text = f"# kwatt agent config suggested by kwatt doctor for {root} ({kept})\n"
        text += "".join(
            f"# left out {p.name}: {p.status}: {p.message}\n" for p in probes if not p.kept
        )
        lib_dir = root / ".kwatt-emulator" / "nvml"
        if root.resolve() != Path("/") and any(p.kept and p.type == "nvml" for p in probes):
            text += f"# nvml: start the agent with LD_LIBRARY_PATH={lib_dir.resolve()}\n"
        text += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        if args.print_config:
            Path(args.print_config).write_text(text, encoding="utf-8")
    if args.json:
        out = {"root": str(root), "probes": [p.to_json() for p in probes], "config": doc}
        print(json.dumps(out, indent=1, default=str))
    else:
        print(render_table(probes, root) if probes else f"kwatt doctor: {root}: no surface found")
        if text is None:
            print("nothing found that a collector could read: no agent config to suggest")
        elif args.print_config:
            print(f"suggested agent config written to {args.print_config}")
        else:
            print(text, end="")
    return 0 if doc is not None else 1
