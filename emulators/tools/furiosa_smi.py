"""Emulated ``furiosa-smi``: ``info``, ``status``, ``ps`` tables per tool version, and ``--format json``.

Formats (docs/device-interfaces.md §1.1, from the furiosa-ai docs sources per version, and the
JSON field names lablup/all-smi deserializes):

- ``info``: ``Arch | Device | Firmware | Temp. | Power | PCI-BDF``; 2025.2–2025.3 add ``PERT`` after
  Firmware; ``--format full`` adds UUID, S/N, ``Clock`` (``N/A``, ≤ 2025.3) or ``Core Clock`` +
  ``Governor`` (2026.x), PCI-DEV. Temperatures ``40.98°C``, power ``38.40 W``; firmware ``X.Y.Z+hash``
  before 2025.2, ``2025.1.0+hash`` in 2025.2–2025.3, ``X.Y.Z, hash`` in 2026.x.
- ``status``: 2026 ``Arch | Device | Liveness | Memory | Core Utilization`` with one line per core
  (``Core 0: 0.00%``, ``-`` when the NPU is not in use), memory ``used/total GiB`` over ``(x.xx%)``,
  single-line cells centred vertically; 2024.2–2025.3 ``Arch | Device | Liveness | Cores | Core
  Utilization`` with ``0 (available),`` (the docs of 2025.2.0 and 2025.3.x print this table byte for
  byte as 2025.1.0's: tests/fixtures/real/furiosa-smi/SOURCES.md); 2024.1 without Liveness and
  ``0 (occupied),`` cells.
- ``governor -p performance|powersave [-i 0,1]``: prints ``npu0's governor profile is set to
  PowerSave`` per device and asks the node (``control.d``) to switch the governor at its next step.
- ``ps``: 2025.1+ ``PID | NPU core | CMD`` with ``npu0:[0, 7], npu1:[0, 7]``; 2024.1 ``NPU | PID | CMD``
  with ``npu0pe0-7``, one row per device.
- ``--format json``: arrays, every ``info`` value a string (``"41.33°C"``, ``"38.00 W"`` — power
  quantised to 1 W from 2026.1, per the field notes — ``"2000 MHz"``), ``status`` with ``DRAM`` bytes and
  ``pe_utilization`` in percent (the reference notes the scale as UNCONFIRMED; the table prints
  percent), ``ps`` with ``dev_name``/``pid``/``cmdline``. Warboy objects carry ``index``; Warboy
  status has ``cores`` and per-PE ``utilization``. ``--output json`` is accepted only by 2024.x (all-smi
  falls back to it for Warboy-era tools); newer versions reject it as clap does.

Processes (``ps``) are derived from the devices' services: one serving process per service holds its
devices (so their cores show ``0.00%`` rather than ``-`` when it is idle, as in the docs' example),
with a PID fixed by the node's devices (**assumed** command lines). Tool faults from the snapshot are honoured:
``hang_s`` sleeps first, ``garbage`` prints random bytes, ``truncate`` prints the first half,
``exit_code`` exits with that status after printing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kwatt.emulators.executables import faulty_output, split_root
from kwatt.emulators.faults import Fault, send
from kwatt.emulators.furiosa_surface import TOOL, VENDOR, era, firmware_for, read_config
from kwatt.emulators.state import DeviceState, Snapshot, read_snapshot

__all__ = ["NpuView", "Process", "main", "render", "render_table", "views"]

GIB = 2**30
#: Commands of the emulated serving processes (assumed: the K-Cloud services' binaries are not public).
SERVICE_COMMANDS = {
    "chatbot": "furiosa-llm serve furiosa-ai/Llama-3.1-8B-Instruct --devices {devices}",
    "traffic": "python3 -m kcloud.traffic.detector --streams 64 --devices {devices}",
    "food": "python3 -m kcloud.food.classifier --devices {devices}",
    "construction": "python3 -m kcloud.construction.hazard --devices {devices}",
}
DEFAULT_COMMAND = "furiosa-bench --devices {devices}"


class UsageError(Exception):
    """Bad arguments: clap prints the message to stderr and exits 2."""


@dataclass(frozen=True, slots=True)
class NpuView:
    """One device as furiosa-smi shows it."""

    state: DeviceState
    arch: str  # "rngd" | "warboy"
    name: str  # npuN
    cores: int
    firmware: str
    pert: str | None
    pci_dev: str

    @property
    def in_use(self) -> bool:
        """A serving process holds the device (the ``idle`` profile runs none)."""
        return self.state.service not in ("", "idle")


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    devices: tuple[NpuView, ...]
    cmd: str


def views(snap: Snapshot, version: str, held: Sequence[DeviceState] = ()) -> list[NpuView]:
    """Present Furiosa devices of ``snap`` by index, stuck ones showing their held state."""
    by_uuid = {d.uuid: d for d in held}
    out: list[NpuView] = []
    for dev in snap.devices:
        if dev.vendor != VENDOR or not dev.present:
            continue
        d = dev
        if dev.stuck and dev.uuid in by_uuid:
            d = dataclasses.replace(by_uuid[dev.uuid], index=dev.index, t_s=dev.t_s, stuck=True)
        arch = "warboy" if d.model == "warboy" else "rngd"
        firmware, pert = firmware_for(version, arch)
        cores = 2 if arch == "warboy" else 8
        # PCI-DEV: the docs example shows 236:40 for npu0 (assumed: 8 minors per device from 40)
        out.append(
            NpuView(d, arch, f"npu{d.index}", cores, firmware, pert, f"236:{40 + 8 * d.index}")
        )
    out.sort(key=lambda v: v.state.index)
    return out


def processes(npus: Sequence[NpuView]) -> list[Process]:
    by_service: dict[str, list[NpuView]] = {}
    for v in npus:
        if v.in_use:
            by_service.setdefault(v.state.service, []).append(v)
    out: list[Process] = []
    for service, devs in sorted(by_service.items()):
        key = ",".join(sorted(d.state.uuid for d in devs))
        pid = 1000 + int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 60000
        spec = ",".join(f"npu:{d.state.index}" for d in devs)
        cmd = SERVICE_COMMANDS.get(service, DEFAULT_COMMAND).format(devices=spec)
        out.append(Process(pid, tuple(devs), cmd))
    return out


# --------------------------------------------------------------------------------- value strings
def _na(state: DeviceState, name: str) -> bool:
    return name in state.na_fields


def _fixed(value: float, digits: int = 2) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{digits}f}"


def temp_text(v: NpuView) -> str:
    return "N/A" if _na(v.state, "temp_c") else f"{_fixed(v.state.temp_c)}°C"


def power_text(v: NpuView, *, json_mode: bool = False, version: str = "") -> str:
    if _na(v.state, "power_w"):
        return "N/A"
    p = v.state.power_w
    if json_mode and era(version) == "2026" and not math.isnan(p):
        p = float(round(p))  # JSON power quantised to 1 W (field notes, furiosa-smi 2026.1.1)
    return f"{_fixed(p)} W"


def clock_text(v: NpuView) -> str:
    if _na(v.state, "clock_hz"):
        return "N/A"
    mhz = v.state.clock_hz / 1e6
    return "NaN MHz" if math.isnan(mhz) else f"{round(mhz)} MHz"


def governor_text(v: NpuView) -> str:
    return "Performance" if v.state.governor == "performance" else "PowerSave"


def core_lines(v: NpuView, *, trailing_comma: bool = False) -> list[str]:
    utils = list(v.state.core_util) or [v.state.util_ratio] * v.cores
    lines = []
    for m in range(v.cores):
        value = f"{_fixed(utils[m % len(utils)] * 100)}%" if v.in_use else "-"
        comma = "," if trailing_comma and m < v.cores - 1 else ""
        lines.append(f"Core {m}: {value}{comma}")
    return lines


# ---------------------------------------------------------------------------------- the tables
def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Sequence[str]]], align: str = ""
) -> str:
    """An ASCII table as furiosa-smi prints it: ``+---+`` rules around every row, one space of
    padding; a multi-line row centres its shorter cells vertically. ``align`` holds one letter per
    column: ``l`` (default), ``r``, ``c`` (extra space on the left, as the docs' ``(0.00%)`` shows).
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell)) if cell else widths[i]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(text: str, i: int, how: str) -> str:
        pad = widths[i] - len(text)
        if how == "r":
            return " " * pad + text
        if how == "c":
            return " " * (pad - pad // 2) + text + " " * (pad // 2)
        return text + " " * pad

    out = [rule, "| " + " | ".join(fmt(h, i, "l") for i, h in enumerate(headers)) + " |", rule]
    for row in rows:
        height = max(len(cell) for cell in row)
        lines = []
        for k in range(height):
            cells = []
            for i, cell in enumerate(row):
                top = (height - len(cell)) // 2
                text = cell[k - top] if top <= k < top + len(cell) else ""
                how = align[i] if i < len(align) else "l"
                cells.append(fmt(text, i, how))
            lines.append("| " + " | ".join(cells) + " |")
        out += lines
        out.append(rule)
    return "\n".join(out) + "\n"


def info_table(npus: Sequence[NpuView], version: str, full: bool) -> str:
    e = era(version)
    pert = e == "2025b"
    headers = ["Arch", "Device"]
    if full:
        headers += ["UUID", "S/N"]
    headers += ["Firmware"] + (["PERT"] if pert else []) + ["Temp.", "Power"]
    if full:
        headers += ["Core Clock", "Governor"] if e == "2026" else ["Clock"]
    headers += ["PCI-BDF"] + (["PCI-DEV"] if full else [])
    rows: list[list[list[str]]] = []
    align = ""
    for v in npus:
        row = [v.arch, v.name]
        if full:
            row += [v.state.uuid.upper(), v.state.serial]
        row += [v.firmware] + ([v.pert or "N/A"] if pert else []) + [temp_text(v), power_text(v)]
        if full:
            row += [clock_text(v), governor_text(v)] if e == "2026" else ["N/A"]
        row += [v.state.bus_id] + ([v.pci_dev] if full else [])
        rows.append([[c] for c in row])
    if full and e == "2026":
        align = "l" * headers.index("Core Clock") + "r"
    return render_table(headers, rows, align)


def status_table(npus: Sequence[NpuView], version: str) -> str:
    e = era(version)
    rows: list[list[list[str]]] = []
    if e == "2026":
        headers = ["Arch", "Device", "Liveness", "Memory", "Core Utilization"]
        for v in npus:
            s = v.state
            used, total = s.mem_used_bytes / GIB, s.mem_total_bytes / GIB
            if _na(s, "mem_used_bytes"):
                memory = ["N/A"]
            else:
                ratio = 100 * s.mem_used_bytes / s.mem_total_bytes if s.mem_total_bytes else 0.0
                memory = [f"{used:.2f}/{total:.2f} GiB", f"({ratio:.2f}%)"]
            rows.append([[v.arch], [v.name], ["alive"], memory, core_lines(v)])
        return render_table(headers, rows, "lllc")
    for v in npus:
        state = "occupied" if v.in_use else "available"
        cores = [f"{m} ({state})," if m < v.cores - 1 else f"{m} ({state})" for m in range(v.cores)]
        util = core_lines(v, trailing_comma=True)
        if e == "2024":
            rows.append([[v.arch], [v.name], cores, util])
        else:
            rows.append([[v.arch], [v.name], ["alive"], cores, util])
    if e == "2024":
        return render_table(["Arch", "Device", "Cores", "Core Utilization"], rows)
    return render_table(["Arch", "Device", "Liveness", "Cores", "Core Utilization"], rows)


def ps_table(npus: Sequence[NpuView], version: str) -> str:
    procs = processes(npus)
    if era(version) == "2024":
        rows = [
            [[f"{d.name}pe0-{d.cores - 1}"], [str(p.pid)], [p.cmd]]
            for p in procs
            for d in p.devices
        ]
        return render_table(["NPU", "PID", "CMD"], rows)
    rows = [
        [[str(p.pid)], [", ".join(f"{d.name}:[0, {d.cores - 1}]" for d in p.devices)], [p.cmd]]
        for p in procs
    ]
    return render_table(["PID", "NPU core", "CMD"], rows)


# ------------------------------------------------------------------------------------ JSON
def info_json(npus: Sequence[NpuView], version: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for v in npus:
        doc: dict[str, object] = {}
        if v.arch == "warboy":
            doc["index"] = str(v.state.index)
        doc.update(
            arch=v.arch,
            dev_name=v.name,
            device_uuid=v.state.uuid.upper(),
            device_sn=v.state.serial,
            firmware=v.firmware,
        )
        if v.pert is not None:
            doc["pert"] = v.pert
        doc.update(
            temperature=temp_text(v),
            power=power_text(v, json_mode=True, version=version),
            core_clock=clock_text(v),
            governor=governor_text(v),
            pci_bdf=v.state.bus_id,
            pci_dev=v.pci_dev,
        )
        out.append(doc)
    return out


def status_json(npus: Sequence[NpuView]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for v in npus:
        s = v.state
        utils = list(s.core_util) or [s.util_ratio] * v.cores
        pct = [0.0 if not v.in_use else utils[m % len(utils)] * 100 for m in range(v.cores)]
        doc: dict[str, object] = {}
        if v.arch == "warboy":
            doc["index"] = str(s.index)
            state = "occupied" if v.in_use else "available"
            doc.update(arch=v.arch, device=v.name, liveness="alive")
            doc["cores"] = [{"idx": m, "status": state} for m in range(v.cores)]
            doc["pe_utilizations"] = [{"pe_core": m, "utilization": pct[m]} for m in range(v.cores)]
        else:
            ratio = s.mem_used_bytes / s.mem_total_bytes if s.mem_total_bytes else 0.0
            doc.update(arch=v.arch, device=v.name, liveness="alive")
            doc["memory"] = {
                "DRAM": {
                    "used_size": s.mem_used_bytes,
                    "total_size": s.mem_total_bytes,
                    "used_ratio": ratio,
                }
            }
            doc["pe_utilizations"] = [
                {"pe_core": m, "pe_occupancy": v.in_use, "pe_utilization": pct[m]}
                for m in range(v.cores)
            ]
        out.append(doc)
    return out


def ps_json(npus: Sequence[NpuView]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for p in processes(npus):
        if all(d.arch == "warboy" for d in p.devices):
            for d in p.devices:
                out.append({"npu": f"{d.name}pe0-1", "pid": p.pid, "cmd": p.cmd, "memory": 0})
            continue
        names = ", ".join(f"{d.name}:[0, {d.cores - 1}]" for d in p.devices)
        out.append({"dev_name": names, "pid": p.pid, "cmdline": p.cmd})
    return out


def _dump(doc: object) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


# ------------------------------------------------------------------------------------ the CLI
def render(argv: Sequence[str], npus: Sequence[NpuView], version: str) -> str:
    """The output of ``furiosa-smi ARGV`` (raises UsageError as clap would exit 2)."""
    args = list(argv)
    fmt: str | None = None
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a in ("--format", "-f") or a.startswith("--format="):
            fmt = a.split("=", 1)[1] if "=" in a else next(it, None)
        elif a == "--output" or a.startswith("--output="):
            if era(version) != "2024":
                raise UsageError("error: unexpected argument '--output' found")
            fmt = a.split("=", 1)[1] if "=" in a else next(it, None)
        else:
            rest.append(a)
    if not rest:
        raise UsageError("error: a subcommand is required: info, status, ps, topo, governor, drain")
    cmd = rest[0]
    if fmt not in (None, "json", "full"):
        raise UsageError(f"error: invalid value '{fmt}' for '--format <FORMAT>'")
    if cmd == "version":
        return f"furiosa-smi {version}\n"
    if cmd == "info":
        if fmt == "json":
            return _dump(info_json(npus, version))
        return info_table(npus, version, full=fmt == "full")
    if cmd == "status":
        return _dump(status_json(npus)) if fmt == "json" else status_table(npus, version)
    if cmd == "ps":
        return _dump(ps_json(npus)) if fmt == "json" else ps_table(npus, version)
    raise UsageError(f"error: unrecognized subcommand '{cmd}'")


def set_governor(root: Path, argv: Sequence[str], npus: Sequence[NpuView]) -> str:
    """``governor -p performance|powersave [-i 0,1,2]`` (§1.1): applied by the node at its next step
    (a ``governor`` command in ``control.d``, emulators/faults.py); one confirmation line per device."""
    profile: str | None = None
    indices: list[int] | None = None
    it = iter(argv)
    for a in it:
        if a in ("-p", "--profile"):
            profile = next(it, None)
        elif a in ("-i", "--device-indices"):
            value = next(it, "")
            try:
                indices = [int(x) for x in value.split(",") if x.strip()]
            except ValueError:
                raise UsageError(
                    f"error: invalid value '{value}' for '-i <DEVICE_INDICES>'"
                ) from None
        else:
            raise UsageError(f"error: unexpected argument '{a}' found")
    names = {"performance": "Performance", "powersave": "PowerSave"}
    if profile is None or profile.lower() not in names:
        raise UsageError("error: '-p <PROFILE>' must be one of: performance, powersave")
    present = {v.state.index for v in npus}
    targets = sorted(present) if indices is None else indices
    missing = [i for i in targets if i not in present]
    if missing:
        raise UsageError(f"error: npu{missing[0]} not found")
    level = 0.0 if profile.lower() == "performance" else 1.0
    for i in targets:
        send(root, Fault("governor", device=f"{VENDOR}:{i}", value=level))
    return "".join(
        f"npu{i}'s governor profile is set to {names[profile.lower()]}\n" for i in targets
    )


def main(argv: Sequence[str] | None = None) -> int:
    root, own = split_root(list(sys.argv[1:] if argv is None else argv))
    if root is None:
        print(
            "usage: python -m kwatt.emulators.tools.furiosa_smi --root ROOT [furiosa-smi arguments]"
        )
        return 2
    try:
        snap = read_snapshot(root)
        config = read_config(root)
    except (OSError, ValueError) as e:
        print(f"Error: failed to initialize the furiosa-smi library: {e}", file=sys.stderr)
        return 1
    faults = snap.faults_for(TOOL)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    try:
        npus = views(snap, config.tool_version, config.held)
        if own and own[0] == "governor":
            text = set_governor(root, own[1:], npus)
        else:
            text = render(own, npus, config.tool_version)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    out = text.encode("utf-8")
    sys.stdout.buffer.write(faulty_output(out, faults, snap.wall_ns))
    sys.stdout.buffer.flush()
    return faults.exit_code


if __name__ == "__main__":
    sys.exit(main())
