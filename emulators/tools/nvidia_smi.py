"""Emulated ``nvidia-smi``: the node's NVIDIA devices in the real tool's CSV and XML formats.

``python -m kwatt.emulators.tools.nvidia_smi --root ROOT [nvidia-smi arguments]`` reads the node's snapshot
(:func:`kwatt.emulators.nvidia.load_view`) and prints what the real tool prints for it:

- ``--query-gpu=FIELD[,FIELD...] --format=csv[,noheader][,nounits]`` (docs/device-interfaces.md
  §4.2): a header of the field names as asked, with the unit in brackets (``power.draw [W]``,
  ``memory.used [MiB]``, ``utilization.gpu [%]``; ``temperature.gpu`` has none); rows joined by ``", "``;
  values carry their unit (``120.45 W``, ``42 %``, ``1000 MiB``) unless ``nounits``; a value the board
  does not have is ``[N/A]``, one the architecture cannot measure ``[Not Supported]``; a field the
  driver does not know is refused with exit status 2 (``power.draw.instant`` and
  ``clocks_event_reasons.*`` exist from the 535 branch; ``clocks_throttle_reasons.*`` in every branch).
- ``-q -x`` (``--query --xml-format``): the XML report with ``<!DOCTYPE nvidia_smi_log SYSTEM
  "nvsmi_device_v12.dtd">`` (driver 535 and later; ``v11`` before), in the element order of the real
  report for the elements emitted (identity, PCI, performance state, clock event reasons, framebuffer
  memory, utilization, temperature, power readings, clocks, max clocks, processes). Power readings
  follow the driver: ``<power_readings>`` with ``power_draw`` before 535, ``<gpu_power_readings>`` with
  ``power_draw`` in 535 and 545, with ``average_power_draw``/``instant_power_draw`` from 550. The XML
  layout is not in the reference: element names and order follow public captures of real
  ``nvidia-smi -q -x`` output (a 575.51.02 report; older field names from collectors that parse them).
- ``-L``: ``GPU 0: NAME (UUID: GPU-...)`` lines. ``-i ID`` (index, UUID or PCI bus id) selects GPUs.

The driver version comes from the node (``SurfaceContext.tool_versions["nvidia-smi"]``). Faults of tool
``"nvidia-smi"`` (``Snapshot.tool_faults``) are honoured: ``hang_s`` sleeps first, ``garbage`` prints
random bytes, ``truncate`` prints the first half, ``exit_code`` exits with that status after printing.
Device faults: a field in ``na_fields`` prints ``[N/A]`` (CSV) / ``N/A`` (XML), one in ``nan_fields``
prints ``nan``; vanished devices are not listed; stuck ones repeat what they showed
(:mod:`kwatt.emulators.nvidia`). No node under ``--root``: the real tool's "couldn't communicate with the
NVIDIA driver" message and exit status 9.

Values not in the device state are derived (assumptions, documented here): ``P0`` when the device is
busy (util > 1 %), ``P8`` idle; memory-controller utilization = ``kwatt.emulators.nvidia.MEM_UTIL_SHARE`` x
GPU utilization; video clock = the board's ratio x graphics clock; pre-Volta boards (no energy
counter) have no ``power.draw.instant`` (``[Not Supported]``); reserved framebuffer 0 MiB; no fan
(passive datacenter boards: ``[N/A]``); memory temperature not modelled (``[N/A]``); no processes.
Power (§4.1, §4.4): ``power.draw`` is the 1-s average on Ampere (except GA100) and newer boards and
the instantaneous power on GA100 and older; ``power.draw.average`` / ``average_power_draw`` is the
1-s average and ``power.draw.instant`` / ``instant_power_draw`` the instantaneous power on every
board (the average comes from :class:`kwatt.emulators.nvidia.NvidiaSurface`, which follows the energy).
Header names echo the
field as asked (``clocks.sm [MHz]``), an unconfirmed detail of the real tool.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from kwatt.emulators.executables import faulty_output, split_root
from kwatt.emulators.nvidia import (
    TOOL,
    GpuView,
    NvidiaModel,
    driver_major,
    fault_of,
    gpu_util_pct,
    gpu_uuid,
    load_view,
    mem_util_pct,
    model_of,
    pstate,
    reasons_mask,
)
from kwatt.emulators.nvidia import nvml_bus_id as bus_id_of
from kwatt.emulators.state import DeviceState, ToolFaults

__all__ = [
    "FIELDS",
    "QueryError",
    "main",
    "render_list",
    "render_query_csv",
    "render_xml",
]

_MIB = 1024 * 1024
_EVENT_BRANCH = 535  # clocks_event_reasons.*, power.draw.average/instant, v12 XML
_AVG_INSTANT_XML_BRANCH = 550


class QueryError(Exception):
    """Arguments the real tool refuses; ``str()`` is its message, ``status`` its exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class _NA:
    """A value the tool prints as ``[N/A]`` (CSV) / ``N/A`` (XML)."""


class _NotSupported:
    """A value the tool prints as ``[Not Supported]`` (CSV) / ``N/A`` (XML)."""


NA = _NA()
NOT_SUPPORTED = _NotSupported()
Value = str | _NA | _NotSupported


@dataclass(frozen=True, slots=True)
class _Gpu:
    dev: DeviceState
    board: NvidiaModel
    view: GpuView
    now: datetime


def _watts(w: float) -> str:
    return f"{w:.2f}"


def _mib(b: int) -> int:
    return b // _MIB


def _util_pct(g: _Gpu) -> int:
    return gpu_util_pct(g.dev)


def _mem_util_pct(g: _Gpu) -> int:
    return mem_util_pct(g.dev)


def _mhz(g: _Gpu) -> int:
    return round(g.dev.clock_hz / 1e6)


def _pstate(g: _Gpu) -> str:
    return f"P{pstate(g.dev)}"


def _active(bit: int) -> Callable[[_Gpu], Value]:
    return lambda g: "Active" if reasons_mask(g.dev) & bit else "Not Active"


def _power_instant(g: _Gpu) -> Value:
    """Pre-Volta boards have no separate instantaneous reading (assumed: as for the energy counter)."""
    return _watts(g.dev.power_w) if g.board.energy_counter else NOT_SUPPORTED


@dataclass(frozen=True, slots=True)
class _Field:
    names: tuple[str, ...]  # canonical name first, then aliases
    unit: str | None
    value: Callable[[_Gpu], Value]
    since_branch: int = 0


def _f(
    names: str, unit: str | None, value: Callable[[_Gpu], Value], since_branch: int = 0
) -> _Field:
    return _Field(tuple(names.split("|")), unit, value, since_branch)


_REASON_FIELDS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
)


# the order of the real -q -x report (575.51.02 capture), display clocks included
_XML_REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("display_clocks_setting", 0x100),
)


def _reason_fields() -> list[_Field]:
    out: list[_Field] = []
    for prefix, since in (("clocks_throttle_reasons", 0), ("clocks_event_reasons", _EVENT_BRANCH)):
        out.append(_f(f"{prefix}.active", None, lambda g: f"0x{reasons_mask(g.dev):016X}", since))
        out.append(_f(f"{prefix}.supported", None, lambda g: "0x00000000000001FF", since))
        for name, bit in _REASON_FIELDS:
            out.append(_f(f"{prefix}.{name}", None, _active(bit), since))
    return out


#: Every ``--query-gpu`` field the emulated tool answers (names as ``nvidia-smi --help-query-gpu``).
FIELDS: tuple[_Field, ...] = (
    _f("timestamp", None, lambda g: g.now.strftime("%Y/%m/%d %H:%M:%S.") + f"{g.now.microsecond // 1000:03d}"),
    _f("driver_version", None, lambda g: g.view.driver_version),
    _f("count", None, lambda g: str(len(g.view.gpus))),
    _f("name|gpu_name", None, lambda g: g.board.product_name),
    _f("serial|gpu_serial", None, lambda g: g.dev.serial),
    _f("uuid|gpu_uuid", None, lambda g: gpu_uuid(g.dev)),
    _f("pci.bus_id|gpu_bus_id", None, lambda g: bus_id_of(g.dev.bus_id)),
    _f("pci.device_id", None, lambda g: f"0x{g.board.pci_device_id:08X}"),
    _f("index", None, lambda g: str(g.dev.index)),
    _f("pstate", None, _pstate),
    _f("fan.speed", "%", lambda g: NA),
    _f("memory.total", "MiB", lambda g: str(_mib(g.dev.mem_total_bytes))),
    _f("memory.reserved", "MiB", lambda g: "0"),
    _f("memory.used", "MiB", lambda g: str(_mib(g.dev.mem_used_bytes))),
    _f("memory.free", "MiB", lambda g: str(_mib(g.dev.mem_total_bytes) - _mib(g.dev.mem_used_bytes))),
    _f("utilization.gpu", "%", lambda g: str(_util_pct(g))),
    _f("utilization.memory", "%", lambda g: str(_mem_util_pct(g))),
    _f("utilization.encoder", "%", lambda g: "0"),
    _f("utilization.decoder", "%", lambda g: "0"),
    _f("temperature.gpu", None, lambda g: str(round(g.dev.temp_c))),
    _f("temperature.memory", None, lambda g: NA),
    _f("temperature.gpu.tlimit", None, lambda g: NA, _EVENT_BRANCH),
    _f("power.management", None, lambda g: "Enabled"),
    _f("power.draw", "W", lambda g: _watts(g.view.draw_power_w(g.dev))),
    _f("power.draw.average", "W", lambda g: _watts(g.view.average_power_w(g.dev)), _EVENT_BRANCH),
    _f("power.draw.instant", "W", _power_instant, _EVENT_BRANCH),
    _f("power.limit", "W", lambda g: _watts(g.dev.power_limit_w)),
    _f("enforced.power.limit", "W", lambda g: _watts(g.dev.power_limit_w)),
    _f("power.default_limit", "W", lambda g: _watts(g.board.default_power_limit_w)),
    _f("power.min_limit", "W", lambda g: _watts(g.board.min_power_limit_w)),
    _f("power.max_limit", "W", lambda g: _watts(g.board.max_power_limit_w)),
    _f("module.power.draw.average", "W", lambda g: NA, _EVENT_BRANCH),
    _f("module.power.draw.instant", "W", lambda g: NA, _EVENT_BRANCH),
    _f("clocks.current.graphics|clocks.gr", "MHz", lambda g: str(_mhz(g))),
    _f("clocks.current.sm|clocks.sm", "MHz", lambda g: str(_mhz(g))),
    _f("clocks.current.memory|clocks.mem", "MHz", lambda g: str(g.board.mem_clock_mhz)),
    _f("clocks.current.video|clocks.video", "MHz", lambda g: str(round(_mhz(g) * g.board.video_clock_ratio))),
    _f("clocks.max.graphics|clocks.max.gr", "MHz", lambda g: str(g.board.max_graphics_mhz)),
    _f("clocks.max.sm", "MHz", lambda g: str(g.board.max_graphics_mhz)),
    _f("clocks.max.memory|clocks.max.mem", "MHz", lambda g: str(g.board.mem_clock_mhz)),
    *_reason_fields(),
)  # fmt: skip

_BY_NAME = {name: f for f in FIELDS for name in f.names}

#: query field (canonical name) -> the DeviceState field whose N/A or NaN fault it shows
_FAULTABLE: dict[str, str] = {
    "power.draw": "power_w",
    "power.draw.average": "power_w",
    "power.draw.instant": "power_w",
    "temperature.gpu": "temp_c",
    "utilization.gpu": "util_ratio",
    "utilization.memory": "util_ratio",
    "clocks.current.graphics": "clock_hz",
    "clocks.current.sm": "clock_hz",
    "clocks.current.video": "clock_hz",
    "memory.used": "mem_used_bytes",
    "memory.free": "mem_used_bytes",
    "memory.total": "mem_total_bytes",
    "power.limit": "power_limit_w",
    "enforced.power.limit": "power_limit_w",
}


def _cell(spec: _Field, g: _Gpu, units: bool) -> str:
    fault = fault_of(g.dev, _FAULTABLE.get(spec.names[0], ""))
    value: Value = NA if fault == "na" else "nan" if fault == "nan" else spec.value(g)
    if isinstance(value, _NA):
        return "[N/A]"
    if isinstance(value, _NotSupported):
        return "[Not Supported]"
    return f"{value} {spec.unit}" if spec.unit and units else value


def _gpus(view: GpuView, now: datetime, select: str | None) -> list[_Gpu]:
    gpus = [_Gpu(d, model_of(d), view, now) for d in view.gpus]
    if select is None:
        return gpus
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    chosen: list[_Gpu] = []
    for w in wanted:
        match = [
            g
            for g in gpus
            if w in (str(g.dev.index), gpu_uuid(g.dev), bus_id_of(g.dev.bus_id), g.dev.bus_id)
        ]
        if not match:
            raise QueryError(f"No devices were found matching the id {w!r}.", status=6)
        chosen.extend(match)
    return chosen


def render_query_csv(
    view: GpuView,
    fields: Sequence[str],
    format_options: Sequence[str],
    now: datetime,
    select: str | None = None,
) -> str:
    """``nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]`` (§4.2)."""
    opts = [o.strip() for o in format_options]
    if not opts or opts[0] != "csv" or any(o not in ("csv", "noheader", "nounits") for o in opts):
        raise QueryError(f'"{",".join(opts)}" is not a valid format.')
    branch = driver_major(view.driver_version)
    specs: list[_Field] = []
    for name in fields:
        spec = _BY_NAME.get(name.strip())
        if spec is None or branch < spec.since_branch:
            raise QueryError(f'Field "{name.strip()}" is not a valid field to query.')
        specs.append(spec)
    units = "nounits" not in opts
    lines: list[str] = []
    if "noheader" not in opts:
        lines.append(
            ", ".join(
                f"{n.strip()} [{s.unit}]" if s.unit and units else n.strip()
                for n, s in zip(fields, specs, strict=True)
            )
        )
    for g in _gpus(view, now, select):
        cells = [_cell(spec, g, units) for spec in specs]
        lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def render_list(view: GpuView, now: datetime, select: str | None = None) -> str:
    """``nvidia-smi -L``."""
    return "".join(
        f"GPU {g.dev.index}: {g.board.product_name} (UUID: {gpu_uuid(g.dev)})\n"
        for g in _gpus(view, now, select)
    )


# ---------------------------------------------------------------------------------------- XML


def _x(value: Value) -> str:
    return "N/A" if isinstance(value, _NA | _NotSupported) else escape(value)


def _xml_gpu(g: _Gpu, branch: int) -> list[str]:
    d, b = g.dev, g.board
    bus = bus_id_of(d.bus_id)
    domain, pci_bus, devfn = bus.split(":") if bus.count(":") == 2 else ("00000000", "00", "00.0")
    mask = reasons_mask(d)
    mib_total, mib_used = _mib(d.mem_total_bytes), _mib(d.mem_used_bytes)
    t = "\t\t"

    def v(field: str, text: Callable[[], object], unit: str) -> str:
        """The value, unless ``field`` is faulted: computed only then (a NaN cannot be rounded)."""
        fault = fault_of(d, field)
        return "N/A" if fault == "na" else f"nan {unit}" if fault == "nan" else f"{text()} {unit}"

    out = [
        f'\t<gpu id="{escape(bus)}">',
        f"{t}<product_name>{escape(b.product_name)}</product_name>",
        f"{t}<product_brand>{escape(b.brand)}</product_brand>",
        f"{t}<product_architecture>{escape(b.architecture)}</product_architecture>",
        f"{t}<persistence_mode>Enabled</persistence_mode>",
        f"{t}<mig_mode>",
        f"{t}\t<current_mig>{'Disabled' if b.mig_capable else 'N/A'}</current_mig>",
        f"{t}\t<pending_mig>{'Disabled' if b.mig_capable else 'N/A'}</pending_mig>",
        f"{t}</mig_mode>",
        f"{t}<serial>{escape(d.serial)}</serial>",
        f"{t}<uuid>{escape(gpu_uuid(d))}</uuid>",
        f"{t}<minor_number>{d.index}</minor_number>",
        f"{t}<pci>",
        f"{t}\t<pci_bus>{pci_bus}</pci_bus>",
        f"{t}\t<pci_device>{devfn.split('.')[0]}</pci_device>",
        f"{t}\t<pci_domain>{domain[-4:]}</pci_domain>",
        f"{t}\t<pci_device_id>{b.pci_device_id:08X}</pci_device_id>",
        f"{t}\t<pci_bus_id>{escape(bus)}</pci_bus_id>",
        f"{t}</pci>",
        f"{t}<fan_speed>N/A</fan_speed>",
        f"{t}<performance_state>{_pstate(g)}</performance_state>",
    ]
    kind = "event" if branch >= _EVENT_BRANCH else "throttle"
    out.append(f"{t}<clocks_{kind}_reasons>")
    for name, bit in _XML_REASONS:
        state = "Active" if mask & bit else "Not Active"
        out.append(f"{t}\t<clocks_{kind}_reason_{name}>{state}</clocks_{kind}_reason_{name}>")
    out.append(f"{t}</clocks_{kind}_reasons>")
    out.append(f"{t}<fb_memory_usage>")
    out.append(f"{t}\t<total>{v('mem_total_bytes', lambda: mib_total, 'MiB')}</total>")
    if branch >= _EVENT_BRANCH:
        out.append(f"{t}\t<reserved>0 MiB</reserved>")
    out += [
        f"{t}\t<used>{v('mem_used_bytes', lambda: mib_used, 'MiB')}</used>",
        f"{t}\t<free>{v('mem_used_bytes', lambda: mib_total - mib_used, 'MiB')}</free>",
        f"{t}</fb_memory_usage>",
        f"{t}<compute_mode>Default</compute_mode>",
        f"{t}<utilization>",
        f"{t}\t<gpu_util>{v('util_ratio', lambda: _util_pct(g), '%')}</gpu_util>",
        f"{t}\t<memory_util>{v('util_ratio', lambda: _mem_util_pct(g), '%')}</memory_util>",
        f"{t}\t<encoder_util>0 %</encoder_util>",
        f"{t}\t<decoder_util>0 %</decoder_util>",
        f"{t}</utilization>",
        f"{t}<temperature>",
        f"{t}\t<gpu_temp>{v('temp_c', lambda: round(d.temp_c), 'C')}</gpu_temp>",
        f"{t}\t<memory_temp>N/A</memory_temp>",
        f"{t}</temperature>",
    ]
    draw = v("power_w", lambda: _watts(g.view.draw_power_w(d)), "W")
    average = v("power_w", lambda: _watts(g.view.average_power_w(d)), "W")
    limit, default = (
        v("power_limit_w", lambda: _watts(d.power_limit_w), "W"),
        _watts(b.default_power_limit_w),
    )
    lo, hi = _watts(b.min_power_limit_w), _watts(b.max_power_limit_w)
    instant = _x(_power_instant(g))
    if branch < _EVENT_BRANCH:
        out += [
            f"{t}<power_readings>",
            f"{t}\t<power_state>{_pstate(g)}</power_state>",
            f"{t}\t<power_management>Supported</power_management>",
            f"{t}\t<power_draw>{draw}</power_draw>",
            f"{t}\t<power_limit>{limit}</power_limit>",
            f"{t}\t<default_power_limit>{default} W</default_power_limit>",
            f"{t}\t<enforced_power_limit>{limit}</enforced_power_limit>",
            f"{t}\t<min_power_limit>{lo} W</min_power_limit>",
            f"{t}\t<max_power_limit>{hi} W</max_power_limit>",
            f"{t}</power_readings>",
        ]
    else:
        out += [f"{t}<gpu_power_readings>", f"{t}\t<power_state>{_pstate(g)}</power_state>"]
        if branch >= _AVG_INSTANT_XML_BRANCH:
            if fault_of(d, "power_w") is not None:
                instant = draw.removesuffix(" W")
            unit = "" if instant == "N/A" else " W"
            out += [
                f"{t}\t<average_power_draw>{average}</average_power_draw>",
                f"{t}\t<instant_power_draw>{instant}{unit}</instant_power_draw>",
            ]
        else:
            out.append(f"{t}\t<power_draw>{draw}</power_draw>")
        out += [
            f"{t}\t<current_power_limit>{limit}</current_power_limit>",
            f"{t}\t<requested_power_limit>{limit}</requested_power_limit>",
            f"{t}\t<default_power_limit>{default} W</default_power_limit>",
            f"{t}\t<min_power_limit>{lo} W</min_power_limit>",
            f"{t}\t<max_power_limit>{hi} W</max_power_limit>",
            f"{t}</gpu_power_readings>",
        ]
    out += [
        f"{t}<clocks>",
        f"{t}\t<graphics_clock>{v('clock_hz', lambda: _mhz(g), 'MHz')}</graphics_clock>",
        f"{t}\t<sm_clock>{v('clock_hz', lambda: _mhz(g), 'MHz')}</sm_clock>",
        f"{t}\t<mem_clock>{b.mem_clock_mhz} MHz</mem_clock>",
        f"{t}\t<video_clock>{v('clock_hz', lambda: round(_mhz(g) * b.video_clock_ratio), 'MHz')}</video_clock>",
        f"{t}</clocks>",
        f"{t}<max_clocks>",
        f"{t}\t<graphics_clock>{b.max_graphics_mhz} MHz</graphics_clock>",
        f"{t}\t<sm_clock>{b.max_graphics_mhz} MHz</sm_clock>",
        f"{t}\t<mem_clock>{b.mem_clock_mhz} MHz</mem_clock>",
        f"{t}</max_clocks>",
        f"{t}<processes>",
        f"{t}</processes>",
        "\t</gpu>",
    ]
    return out


def render_xml(view: GpuView, now: datetime, select: str | None = None) -> str:
    """``nvidia-smi -q -x``."""
    branch = driver_major(view.driver_version)
    dtd = "nvsmi_device_v12.dtd" if branch >= _EVENT_BRANCH else "nvsmi_device_v11.dtd"
    stamp = f"{now:%a %b} {now.day:2d} {now:%H:%M:%S %Y}"
    lines = [
        '<?xml version="1.0" ?>',
        f'<!DOCTYPE nvidia_smi_log SYSTEM "{dtd}">',
        "<nvidia_smi_log>",
        f"\t<timestamp>{stamp}</timestamp>",
        f"\t<driver_version>{escape(view.driver_version)}</driver_version>",
        f"\t<cuda_version>{view.cuda_version}</cuda_version>",
        f"\t<attached_gpus>{len(view.gpus)}</attached_gpus>",
    ]
    for g in _gpus(view, now, select):
        lines += _xml_gpu(g, branch)
    lines.append("</nvidia_smi_log>")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nvidia-smi", add_help=False, allow_abbrev=False)
    p.add_argument("--query-gpu", dest="query_gpu")
    p.add_argument("--format", dest="format")
    p.add_argument("-q", "--query", action="store_true")
    p.add_argument("-x", "--xml-format", dest="xml", action="store_true")
    p.add_argument("-L", "--list-gpus", dest="list_gpus", action="store_true")
    p.add_argument("-i", "--id", dest="id")
    return p


def render(argv: Sequence[str], view: GpuView, now: datetime) -> str:
    """The tool's standard output for ``argv`` (without ``--root``); :class:`QueryError` if refused."""
    args, rest = _parser().parse_known_args(list(argv))
    if rest:
        raise QueryError(
            f"Invalid combination of input arguments ({' '.join(rest)}). "
            "Please run 'nvidia-smi -h' for help."
        )
    if args.query_gpu is not None:
        if args.format is None:
            raise QueryError("--format must be specified with --query-gpu (csv).")
        return render_query_csv(
            view, args.query_gpu.split(","), args.format.split(","), now, args.id
        )
    if args.query and args.xml:
        return render_xml(view, now, args.id)
    if args.list_gpus:
        return render_list(view, now, args.id)
    raise QueryError(
        "this emulator prints --query-gpu CSV, -q -x XML and -L only (not the default table)"
    )


def _emit(out: bytes, faults: ToolFaults, seed: int) -> None:
    sys.stdout.buffer.write(faulty_output(out, faults, seed))
    sys.stdout.buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    root, own = split_root(list(sys.argv[1:] if argv is None else argv))
    if root is None:
        print(
            "usage: python -m kwatt.emulators.tools.nvidia_smi --root ROOT [nvidia-smi arguments]"
        )
        return 2
    try:
        view = load_view(root)
    except (OSError, ValueError) as e:
        print(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            f"Make sure that the latest NVIDIA driver is installed and running. ({e})",
            file=sys.stderr,
        )
        return 9
    faults = view.snapshot.faults_for(TOOL)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    now = datetime.fromtimestamp(view.snapshot.wall_ns / 1e9).astimezone()
    try:
        text = render(own, view, now)
    except QueryError as e:
        print(str(e), file=sys.stdout)
        print(file=sys.stdout)
        return e.status
    _emit(text.encode("utf-8"), faults, view.snapshot.wall_ns)
    return faults.exit_code


if __name__ == "__main__":
    sys.exit(main())
