"""Rebellions driver surface of an emulated node: ``rbln-smi``/``rbln-stat`` and the sysfs class.

Renders every ``vendor == "rebellions"`` :class:`~kwatt.emulators.state.DeviceState` the way the RBLN driver
package shows it (docs/device-interfaces.md §2, checklist §2.5 items 1, 2 and 5):

- ``ROOT/bin/rbln-smi`` and ``ROOT/bin/rbln-stat`` (the deprecated name, same tool, §2.1): scripts that
  run :mod:`kwatt.emulators.tools.rbln_smi` on ``ROOT``. Without options they print the text table of §2.1,
  with ``-j``/``--json`` the JSON document of §2.1 (``-g``/``--group`` adds ``group_id``).
- ``ROOT/sys/class/rebellions/rbln{N}/status`` (the 0–4 enum of §2.0, or the future KMD layout with
  PROBING at 2), ``kernel_version``, and ``device`` → ``ROOT/sys/bus/pci/devices/<bdf>`` with PCI
  ``vendor`` ``0x1eff`` and the product's ``device`` id (§2.0).

Tool versions (``SurfaceContext.tool_versions["rbln-smi"]``, written to ``ROOT/.kwatt-emulator/
rebellions.json``; the environment variable ``KWATT_RBLN_SDK`` overrides it for one run), see
:data:`VERSIONS`:

- ``"1.x"``: SDK 1.x / earliest docs: title ``Device Infomation`` (sic), no ``Perf`` column, JSON ``npu``
  as a string (all-smi commit 3c21c4d), no ``pstate``, ``KMD ver: N/A``.
- ``"2.0"``: SDK 2.0.x: the verbatim docs table (``Perf`` column, ``-`` rules), JSON ``npu``
  as an int, ``KMD_version`` ``3.0.0`` (the trimmed real sample of §2.1).
- ``"smi-0.12"``: the rbln-smi v0.12.0 docs: ``KMD ver: 3.5.1`` and ``=`` rules.
- ``"kmd-3.2"`` (default): the layout of real KMD 3.0.0 and 3.2.2 hosts
  (tests/fixtures/real/rbln-smi, judged by ``tests/conformance/test_real_captures.py``): a date line, ``=``
  under the header, a rule after every card, an ATOM-Max card's name and power on its first die's
  row only (the power shown is the first die's own: assumed, the capture does not say what it covers), the
  eight-column Context table.

**Assumed** (UNCONFIRMED in §2.1, chosen to be within what the three cited parsers accept): JSON value
spellings ``"temperature": "38C"``, ``"card_power": "43.9W"``, ``"util": "98.7"``, ``"pstate": "P2"``;
memory as decimal byte strings (rblnlib-go); the values of ``status``, ``fw_ver``, ``board_info``,
``pci.dev/link_speed/link_width/numa_node`` and ``location`` (the die's position on an ATOM-Max card);
the ``=`` rule being the one under the column header; the used-memory spellings other than ``0.0B`` and
``2.4GB`` (binary multiples ``KB``/``MB``/``GB``); the layout of the Context table (``NPU | PID | CTX |
Memalloc``, header only: the emulator has no processes); an ATOM-Max die under a power cap shown as
``P10`` (the docs name P10 only for thermal throttling). A value that is not finite (a NaN fault) is
printed as C prints it (``nan``), a field of the fault ``na`` as ``N/A``. ATOM-Max (RBLN-CA25) is four
visible devices per card (§2.0): the dies of one ``DeviceState.card`` show one ``sid``, the card serial
(:func:`card_identities`), and their own ``uuid`` and ``bus_id``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kwatt.emulators import catalogue
from kwatt.emulators.executables import install_executable
from kwatt.emulators.state import DeviceState, Snapshot, read_snapshot, write_atomic
from kwatt.emulators.surfaces import SurfaceContext, register

__all__ = [
    "ATOM_MAX",
    "DEFAULT_VERSION",
    "PCI_DEVICE_IDS",
    "PCI_VENDOR_ID",
    "SDK_ENV",
    "STATUS_BUSY",
    "STATUS_FAULT",
    "STATUS_READY",
    "TOOL",
    "TOOL_LEGACY",
    "VERSIONS",
    "RblnView",
    "RebellionsSurface",
    "SmiVersion",
    "card_identities",
    "format_memory",
    "install_tools",
    "load_view",
    "product_name",
    "pstate",
    "render_json",
    "render_text",
    "status_value",
    "surface_config_path",
    "view",
]

VENDOR = "rebellions"
#: Name of the emulated executable and of its entry in ``Snapshot.tool_faults``.
TOOL = "rbln-smi"
#: The deprecated name (§2.1); it honours its own tool faults, else those of ``rbln-smi``.
TOOL_LEGACY = "rbln-stat"
#: Environment variable that overrides the imitated SDK for one run of the tool.
SDK_ENV = "KWATT_RBLN_SDK"

#: PCI vendor id of Rebellions (§2.0).
PCI_VENDOR_ID = 0x1EFF
#: PCI device id per product name (§2.0, rbln-npu-feature-discovery device.go). RBLN-CR13 has no id
#: in the sources; the REBEL family id 2030 (CR03) is **assumed** for it.
PCI_DEVICE_IDS: Mapping[str, int] = {
    "RBLN-CA02": 0x1020,
    "RBLN-CA12": 0x1120,
    "RBLN-CA15": 0x1150,
    "RBLN-CA22": 0x1220,
    "RBLN-CA25": 0x1250,
    "RBLN-CR03": 0x2030,
    "RBLN-CR13": 0x2030,
}
#: Marketing names (§2.0 docs mapping) shown as ``board_info`` (assumed use of that field).
_BOARDS: Mapping[str, str] = {
    "RBLN-CA02": "ATOM",
    "RBLN-CA12": "ATOM+",
    "RBLN-CA22": "ATOM+",
    "RBLN-CA25": "ATOM-Max",
    "RBLN-CR13": "REBEL-Quad",
}
#: The product whose card shows as four devices (§2.0).
ATOM_MAX = "RBLN-CA25"
#: Firmware version shown as ``fw_ver`` (assumed; the sources give the field, not a value).
_FW_VERSION = "1.3.73"

# sysfs status enum (§2.0, k8s-device-plugin status.go)
STATUS_READY = 0
STATUS_BUSY = 1
STATUS_INIT = 2
STATUS_FAULT = 3
STATUS_FINISH = 4
#: Utilization below which a device shows as idle (READY, P14).
_IDLE_UTIL = 0.005
#: Thermal-abort temperature, °C (§2.1 driver v1.3.73 release notes): P12, sysfs FAULT.
_ABORT_C = 85.0


@dataclass(frozen=True, slots=True)
class SmiVersion:
    """What differs between the imitated SDK versions of ``rbln-smi`` (§2.1)."""

    key: str
    npu_as_string: bool  # JSON "npu": "0" (SDK 1.x) instead of 0
    perf_column: bool  # text table has the Perf (P-state) column, JSON has "pstate"
    title: str  # "Device Information" or the earliest docs' "Device Infomation"
    header_rule: str  # "-" or "=" for the rule under the column header
    kmd_tool: str  # what the tool prints as the KMD version ("N/A" when it cannot tell)
    kmd_sysfs: str  # /sys/class/rebellions/rbln{N}/kernel_version
    #: The KMD 3.x tool of real hosts (tests/fixtures/real/rbln-smi): a date line above the table,
    #: a rule after each card, an ATOM-Max card's name and power on its first die's row only, and
    #: the eight-column Context table with an ``N/A`` row when no process runs.
    real_kmd3: bool = False


VERSIONS: Mapping[str, SmiVersion] = {
    "1.x": SmiVersion("1.x", True, False, "Device Infomation", "-", "N/A", "1.3.73"),
    "2.0": SmiVersion("2.0", False, True, "Device Information", "-", "3.0.0", "3.0.0"),
    "smi-0.12": SmiVersion("smi-0.12", False, True, "Device Information", "=", "3.5.1", "3.5.1"),
    "kmd-3.2": SmiVersion(
        "kmd-3.2", False, True, "Device Information", "=", "3.2.2", "3.2.2", real_kmd3=True
    ),
}
#: The layout real KMD 3.x hosts print (tests/fixtures/real/rbln-smi): the vendor is the judge.
DEFAULT_VERSION = "kmd-3.2"


#: catalogue model → product name, memoised; the tool seeds it from the surface's config file so a
#: run does not parse the catalogue (that halves the tool's start-up time).
_NAMES: dict[str, str] = {}


def product_name(dev: DeviceState) -> str:
    """``RBLN-CA12``, ``RBLN-CA25``, … from the device's catalogue model."""
    if dev.model not in _NAMES:
        _NAMES[dev.model] = catalogue.model(dev.model).name
    return _NAMES[dev.model]


def pstate(dev: DeviceState) -> str:
    """The ``Perf`` column (§2.1 P-states): P14 idle, P2 busy, P10 throttled, P12 thermal abort."""
    if dev.temp_c >= _ABORT_C:
        return "P12"
    if dev.throttle_thermal or dev.throttle_power:
        return "P10"
    if dev.util_ratio < _IDLE_UTIL:
        return "P14"
    return "P2"


def status_value(dev: DeviceState, *, probing_layout: bool = False) -> int:
    """The sysfs ``status`` integer (§2.0); the future layout shifts INIT/FAULT/FINISH up by one."""
    if dev.temp_c >= _ABORT_C:
        value = STATUS_FAULT
    elif dev.util_ratio >= _IDLE_UTIL:
        value = STATUS_BUSY
    else:
        value = STATUS_READY
    return value + 1 if probing_layout and value >= STATUS_INIT else value


def _status_word(dev: DeviceState) -> str:
    return {STATUS_READY: "READY", STATUS_BUSY: "BUSY", STATUS_FAULT: "FAULT"}[status_value(dev)]


def format_memory(n_bytes: float) -> str:
    """Used memory as the text table prints it: ``0.0B``, ``2.4GB`` (binary multiples, §2.1)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f}{unit}"
    return f"{n_bytes:.1f}B"


def _shown(dev: DeviceState, field: str) -> float | None:
    """The value the tool prints for a DeviceState field: None for ``N/A`` (fault ``na``), NaN for
    the fault ``nan`` (printed as C's printf prints it, ``nan``)."""
    if field in dev.na_fields:
        return None
    if field in dev.nan_fields:
        return math.nan
    return float(getattr(dev, field))


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "N/A" if value is None else f"{value:{spec}}{suffix}"


def _temp(dev: DeviceState) -> str:
    return _fmt(_shown(dev, "temp_c"), ".0f", "C")


def _power(dev: DeviceState) -> str:
    return _fmt(_shown(dev, "power_w"), ".1f", "W")


def _util(dev: DeviceState) -> str:
    util = _shown(dev, "util_ratio")
    return _fmt(None if util is None else util * 100.0, ".1f")


def _memory_json(dev: DeviceState, field: str) -> str:
    value = _shown(dev, field)
    if value is None:
        return "N/A"
    return str(int(value)) if math.isfinite(value) else "nan"


def _memory_text(dev: DeviceState) -> str:
    used, total = _shown(dev, "mem_used_bytes"), _shown(dev, "mem_total_bytes")
    used_text = "N/A" if used is None else format_memory(used)
    total_text = "N/A" if total is None else f"{total / (1 << 30):.1f}GiB"
    return f"{used_text} / {total_text}"


def _numa_node(bus_id: str) -> str:
    """NUMA node from the bus number (assumed: a two-socket host, buses ≥ 0x80 on socket 1)."""
    try:
        return "1" if int(bus_id.split(":")[1], 16) >= 0x80 else "0"
    except (IndexError, ValueError):
        return "0"


def card_identities(devs: Sequence[DeviceState]) -> dict[str, tuple[str, int]]:
    """``uuid → (sid, location)``: what ``rbln-smi`` shows as the serial and the board position.

    The dies of one ATOM-Max card (same ``model`` and ``card``, §2.0) share the card's serial, taken
    to be the serial of the die with the lowest PCI address (assumed), and are numbered by PCI
    address; any other device shows its own serial at location 0. Pass every device of the
    snapshot, present or not, so a vanished die does not change its card's serial.
    """
    cards: dict[tuple[str, int], list[DeviceState]] = {}
    out: dict[str, tuple[str, int]] = {}
    for d in devs:
        if d.vendor != VENDOR:
            continue
        if product_name(d) == ATOM_MAX:
            cards.setdefault((d.model, d.card), []).append(d)
        else:
            out[d.uuid] = (d.serial, 0)
    for dies in cards.values():
        ordered = sorted(dies, key=lambda d: d.bus_id)
        for i, d in enumerate(ordered):
            out[d.uuid] = (ordered[0].serial, i)
    return out


# ------------------------------------------------------------------------------- what tools see


@dataclass(frozen=True, slots=True)
class RblnView:
    """The Rebellions part of one snapshot, as the emulated tool shows it."""

    snapshot: Snapshot
    devices: tuple[DeviceState, ...]  # present RBLN devices, held (stuck) states applied, by index
    version: SmiVersion


def view(snap: Snapshot, version: SmiVersion, held: Sequence[DeviceState] = ()) -> RblnView:
    by_uuid = {d.uuid: d for d in held}
    devs: list[DeviceState] = []
    for dev in snap.devices:
        if dev.vendor != VENDOR or not dev.present:
            continue
        frozen = by_uuid.get(dev.uuid)
        if dev.stuck and frozen is not None:
            devs.append(dataclasses.replace(frozen, index=dev.index, t_s=dev.t_s, stuck=True))
        else:
            devs.append(dev)
    devs.sort(key=lambda d: d.index)
    return RblnView(snap, tuple(devs), version)


def _state(doc: dict[str, Any]) -> DeviceState:
    """A DeviceState back from its JSON form (arrays back to tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return DeviceState(**fields)


def surface_config_path(root: Path) -> Path:
    return root / ".kwatt-emulator" / "rebellions.json"


def _write_config(root: Path, version: str, held: Sequence[DeviceState]) -> None:
    doc = {
        "version": version,
        "names": _NAMES,
        "held": [dataclasses.asdict(d) for d in held],
    }
    write_atomic(surface_config_path(root), json.dumps(doc, separators=(",", ":")))


def load_view(root: Path, env: Mapping[str, str] | None = None) -> RblnView:
    """What the emulated tool under ``root`` shows now; OSError/ValueError when there is no node.

    The SDK version is ``env[KWATT_RBLN_SDK]`` if set, else the surface's choice, else the default.
    """
    env = os.environ if env is None else env
    version = DEFAULT_VERSION
    held: tuple[DeviceState, ...] = ()
    try:
        doc: dict[str, Any] = json.loads(surface_config_path(root).read_text(encoding="utf-8"))
        version = str(doc.get("version", DEFAULT_VERSION))
        _NAMES.update({str(k): str(v) for k, v in doc.get("names", {}).items()})
        held = tuple(_state(d) for d in doc.get("held", []))
    except FileNotFoundError:
        pass
    version = env.get(SDK_ENV) or version
    if version not in VERSIONS:
        raise ValueError(f"unknown rbln-smi version {version!r}; known: {', '.join(VERSIONS)}")
    return view(read_snapshot(root), VERSIONS[version], held)


# ------------------------------------------------------------------------------- JSON (-j)


def render_json(v: RblnView, *, groups: bool = False) -> str:
    """``rbln-smi -j`` (``-g`` adds ``group_id``): the document of §2.1, every number a string."""
    cards = card_identities(v.snapshot.devices)
    devices: list[dict[str, Any]] = []
    for d in v.devices:
        name = product_name(d)
        entry: dict[str, Any] = {
            "npu": str(d.index) if v.version.npu_as_string else d.index,
            "name": name,
            "sid": cards[d.uuid][0],
            "uuid": d.uuid,
            "device": f"rbln{d.index}",
            "status": _status_word(d),
            "fw_ver": _FW_VERSION,
        }
        if groups:
            entry["group_id"] = "0"  # the default group (§2.1)
        entry["pci"] = {
            "dev": f"{PCI_DEVICE_IDS.get(name, 0):04x}",
            "bus_id": d.bus_id,
            "numa_node": _numa_node(d.bus_id),
            "link_speed": "32.0GT/s",
            "link_width": "16",
        }
        entry["temperature"] = _temp(d)
        entry["card_power"] = _power(d)
        if v.version.perf_column:
            entry["pstate"] = pstate(d)
        entry["memory"] = {
            "used": _memory_json(d, "mem_used_bytes"),
            "total": _memory_json(d, "mem_total_bytes"),
        }
        entry["util"] = _util(d)
        entry["board_info"] = _BOARDS.get(name, name)
        entry["location"] = cards[d.uuid][1]
        devices.append(entry)
    doc = {"KMD_version": v.version.kmd_tool, "devices": devices, "contexts": []}
    return json.dumps(doc, indent=2) + "\n"


# ------------------------------------------------------------------------------- text table

# column widths between the pipes, from the verbatim docs table (§2.1)
_COLUMNS = ("NPU", "Name", "Device", "PCI BUS ID", "Temp", "Power", "Perf", "Memory", "Util")
_WIDTHS = (5, 11, 9, 15, 6, 9, 6, 21, 7)
_HEADER_CELLS = (
    " NPU ",
    "    Name   ",
    " Device  ",
    "   PCI BUS ID  ",
    " Temp ",
    "  Power  ",
    " Perf ",
    "  Memory(used/total) ",
    "  Util ",
)
_CONTEXT_WIDTHS = (5, 12, 9, 68)  # assumed layout, same total width as the device table
_CONTEXT_HEADER = ("NPU", "PID", "CTX", "Memalloc")
#: The KMD 3.x header cells (``Device`` right of centre, tests/fixtures/real/rbln-smi KMD 3.2.2).
_HEADER_CELLS_KMD3 = (*_HEADER_CELLS[:2], "  Device ", *_HEADER_CELLS[3:])
#: The KMD 3.x Context table with no process running, as a real KMD 3.0.0 host prints it
#: (tests/fixtures/real/rbln-smi/rbln-smi-kmd3.0.0-atom-ca22.txt); the emulator runs no process.
_CONTEXT_KMD3 = (
    "+-----+---------------------+--------------+-----------+----------+------+---------------+--------+",
    "| NPU | Process             |     PID      |    CTX    | Priority | PTID |      Memalloc | Status |",
    "+=====+=====================+==============+===========+==========+======+===============+========+",
    "| N/A | N/A                 |     N/A      |    N/A    |   N/A    | N/A  |           N/A |  N/A   |",
    "+-----+---------------------+--------------+-----------+----------+------+---------------+--------+",
)


def _cell(column: str, text: str, width: int, *, kmd3: bool = False) -> str:
    if column in ("Name", "Power", "Memory"):
        return text.center(width)
    if column in ("PCI BUS ID", "Temp", "Util") or (kmd3 and column == "Perf"):
        return text.rjust(width - 1) + " "
    return " " + text.ljust(width - 1)  # NPU, Device, Perf


def _rule(widths: Sequence[int], char: str = "-") -> str:
    return "+" + "+".join(char * w for w in widths) + "+"


def render_text(v: RblnView) -> str:
    """``rbln-smi`` without options: the Device and Context tables of §2.1."""
    columns = [c for c in _COLUMNS if c != "Perf" or v.version.perf_column]
    rows: list[dict[str, str]] = []
    card_ends: set[int] = set()  # rows after which the KMD 3.x table draws a rule
    cards: dict[tuple[str, int], list[DeviceState]] = {}
    for d in v.devices:
        if product_name(d) == ATOM_MAX:
            cards.setdefault((d.model, d.card), []).append(d)

    def card_of(d: DeviceState) -> tuple[str, int] | None:
        return (d.model, d.card) if (d.model, d.card) in cards else None

    for i, d in enumerate(v.devices):
        row = {
            "NPU": str(d.index),
            "Name": product_name(d),
            "Device": f"rbln{d.index}",
            "PCI BUS ID": d.bus_id,
            "Temp": _temp(d),
            "Power": _power(d),
            "Perf": pstate(d),
            "Memory": _memory_text(d),
            "Util": _util(d),
        }
        if v.version.real_kmd3:
            # A card's rows are one group: its name on the group's first row, a rule after its
            # last. A die that re-enumerated under a new index is listed apart from its card (the
            # rows follow the NPU index): it starts a group of its own, so it shows the card's name
            # again (never an empty Name with no card above it); the card's power stays on the
            # card's first row only, so it is shown once.
            dies = cards.get((d.model, d.card), [d])
            card = card_of(d)
            continues = i > 0 and card is not None and card_of(v.devices[i - 1]) == card
            if len(dies) > 1:
                # one power cell per card, on its first row: the capture does not say what it
                # covers, and kwatt reads it as that die's power, so it shows that die's own power
                # (assumed; a sum of four dies read as one die's exceeds a die's range)
                row["Power"] = _power(d) if d is dies[0] else ""
                if continues:
                    row["Name"] = ""
            last = i == len(v.devices) - 1
            if last or card is None or card_of(v.devices[i + 1]) != card:
                card_ends.add(i)
        rows.append(row)
    default = dict(zip(_COLUMNS, _WIDTHS, strict=True))
    widths = [max([default[c]] + [len(r[c]) + 2 for r in rows]) for c in columns]
    headers = dict(
        zip(_COLUMNS, _HEADER_CELLS_KMD3 if v.version.real_kmd3 else _HEADER_CELLS, strict=True)
    )
    if all(w == default[c] for c, w in zip(columns, widths, strict=True)):
        header = "|" + "|".join(headers[c] for c in columns) + "|"
    else:
        label = {"Memory": "Memory(used/total)"}
        header = (
            "|"
            + "|".join(label.get(c, c).center(w) for c, w in zip(columns, widths, strict=True))
            + "|"
        )
    inner = sum(widths) + len(widths) - 1
    title = f"{v.version.title} KMD ver: {v.version.kmd_tool}"
    lines = [
        "+" + "-" * inner + "+",
        "|" + title.center(inner) + "|",
        _rule(widths),
        header,
        _rule(widths, v.version.header_rule),
    ]
    if v.version.real_kmd3:
        when = time.gmtime(v.snapshot.wall_ns // 1_000_000_000)
        lines.insert(
            0,
            time.strftime("%a %b ", when) + str(when.tm_mday) + time.strftime(" %H:%M:%S %Y", when),
        )
    for i, r in enumerate(rows):
        cells = (
            _cell(c, r[c], w, kmd3=v.version.real_kmd3)
            for c, w in zip(columns, widths, strict=True)
        )
        lines.append("|" + "|".join(cells) + "|")
        if i in card_ends and i != len(rows) - 1:
            lines.append(_rule(widths))
    lines.append(_rule(widths))
    if v.version.real_kmd3:
        lines += ["+" + "-" * inner + "+", "|" + "Context Information".center(inner) + "|"]
        lines += _CONTEXT_KMD3
        return "\n".join(lines) + "\n"
    ctx_widths = list(_CONTEXT_WIDTHS)
    ctx_widths[-1] += inner - (sum(ctx_widths) + len(ctx_widths) - 1)
    lines += [
        "|" + "Context Information".center(inner) + "|",
        _rule(ctx_widths),
        "|" + "|".join(h.center(w) for h, w in zip(_CONTEXT_HEADER, ctx_widths, strict=True)) + "|",
        _rule(ctx_widths, v.version.header_rule),
        _rule(ctx_widths),
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- the surface


def install_tools(root: Path, python: str = sys.executable) -> list[Path]:
    """Write ``ROOT/bin/rbln-smi`` and ``ROOT/bin/rbln-stat``: scripts running the emulated tool."""
    return [
        install_executable(root, name, "kwatt.emulators.tools.rbln_smi", ("--prog", name), python)
        for name in (TOOL, TOOL_LEGACY)
    ]


class RebellionsSurface:
    """The Rebellions surface of one node (contract: :mod:`kwatt.emulators.surfaces`).

    ``probing_layout`` renders the sysfs ``status`` of the future KMD (PROBING inserted at 2, §2.0).
    """

    def __init__(self, context: SurfaceContext, *, probing_layout: bool = False) -> None:
        versions = context.tool_versions or {}
        self.version = versions.get(TOOL, DEFAULT_VERSION)
        if self.version not in VERSIONS:
            raise ValueError(f"rbln-smi version {self.version!r}: expected one of {list(VERSIONS)}")
        self.root = context.root
        self.probing_layout = probing_layout
        self._last: dict[str, DeviceState] = {}  # last state shown while not stuck, by uuid
        self._held: tuple[DeviceState, ...] = ()

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {}

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None:
        self.root = root
        install_tools(root)
        for dev in devices:
            if dev.vendor == VENDOR:
                product_name(dev)  # an unknown model fails here, not at the first step
                self._last[dev.uuid] = dev
        _write_config(root, self.version, ())
        self._class_dir.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        return None

    @property
    def _class_dir(self) -> Path:
        return self.root / "sys" / "class" / "rebellions"

    def render(self, snap: Snapshot) -> None:
        """Rewrite the sysfs class (devices that vanished or re-enumerated lose their old entry) and
        the held states the tool shows for stuck devices."""
        held: list[DeviceState] = []
        for dev in snap.devices:
            if dev.vendor != VENDOR:
                continue
            if not dev.stuck:
                self._last[dev.uuid] = dev
            elif dev.uuid in self._last:
                held.append(self._last[dev.uuid])
        if tuple(held) != self._held:
            self._held = tuple(held)
            _write_config(self.root, self.version, self._held)
        present = [d for d in snap.devices if d.vendor == VENDOR and d.present]
        wanted = {f"rbln{d.index}" for d in present}
        if self._class_dir.is_dir():
            for entry in self._class_dir.iterdir():
                if entry.name.startswith("rbln") and entry.name not in wanted:
                    shutil.rmtree(entry, ignore_errors=True)
        for dev in present:
            self._render_device(dev)

    def _render_device(self, dev: DeviceState) -> None:
        sys_dir = self.root / "sys"
        pci = sys_dir / "bus" / "pci" / "devices" / dev.bus_id
        name = product_name(dev)
        write_atomic(pci / "vendor", f"0x{PCI_VENDOR_ID:04x}\n")
        write_atomic(pci / "device", f"0x{PCI_DEVICE_IDS.get(name, 0):04x}\n")
        d = self._class_dir / f"rbln{dev.index}"
        d.mkdir(parents=True, exist_ok=True)
        status = status_value(dev, probing_layout=self.probing_layout)
        write_atomic(d / "status", f"{status}\n")
        write_atomic(d / "kernel_version", f"{VERSIONS[self.version].kmd_sysfs}\n")
        link = d / "device"
        target = os.path.relpath(pci, d)
        if not link.is_symlink() or str(link.readlink()) != target:
            tmp = d / f".device.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            tmp.replace(link)

    async def aclose(self) -> None:
        return None


register(VENDOR, RebellionsSurface)
