"""Pure parsing of what FuriosaAI's Python bindings (``furiosa_smi``, ``furiosa_smi_py``) return:
their errors' meaning (:data:`BINDING_ERRORS`), one card's raw values → :class:`BindingDevice`
→ a sample; no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kwatt.collectors.base import ParseError
from kwatt.collectors.driverlib import Outcome
from kwatt.collectors.furiosa.parse import (
    MODEL,
    VENDOR,
    card_utilization,
    device_tag,
    is_throttled,
    optional_str,
)
from kwatt.wire.model import Sample
from kwatt.wire.units import c_to_c, mhz_to_hz, mw_to_w

# ------------------------------------------------------------------- furiosa_smi bindings parsing
#
# What FuriosaAI's Python bindings return, per call, measured by running the wheels over an emulated
# RNGD tree (tests/conformance/test_furiosa_conformance.py; docs/emulators.md, "FuriosaAI: what the vendor's
# libraries read"). Both read /sys and /dev/rngd themselves, and know RNGD only:
#
#   furiosa-smi-py 2026.1.2, module furiosa_smi_py      furiosa-smi 2026.4.0, module furiosa_smi
#   init() first                                         no init()
#   device.device_info().arch/name/uuid/serial/bdf()     device.arch/device_name/uuid/serial/bdf()
#   .firmware_version() → VersionInfo                    firmware_version() → VersionInfo; Bdf
#   power_consumption() → float W                        the same
#   device_temperature().soc_peak() → float °C           the same
#   core_frequency().pe_frequency()[i].core/frequency()  core_frequency() → {core: MHz}
#     MHz (npu_clocks Hz // 10**6)
#   core_status().pe_status()[i].core/status()           core_status() → {core: CoreStatus}
#   device_performance_counter().pe_performance_         performance_counter() → {core:
#     counters()[i].core/cycle_count/task_execution_       PePerformanceCounter(cycle_count,
#     cycle(); 0 for a PE not occupied                     task_execution_cycle)}; 0 when free
#   memory_utilization(): in_use_bytes() 0 on every PE   memory_usage() → {DeviceCoreRange:
#     whatever alloc_status says: not used                 MemoryInfo(total_bytes, in_use_bytes)}
#   (no power_limit())                                   power_limit() → int mW (hwmon power1_max)
#   throttle_reason() → int bitmask                      throttle_reason() → [ThrottleReason]
#   errors: RuntimeError("Io error")…                    errors: SmiError subclasses


#: Binding error → outcome, by the exception's class name (``furiosa_smi`` 2026.4) or, for the
#: ``RuntimeError``\ s of ``furiosa_smi_py``, by their text (the C return code's name + " error").
#: Anything not listed is FAILED.
BINDING_ERRORS: Mapping[str, Outcome] = {
    # furiosa_smi 2026.4.0 exception classes
    "DeviceNotFoundError": Outcome.DEVICE_GONE,
    "DeviceNotAvailableError": Outcome.DEVICE_GONE,
    "UnknownArchError": Outcome.DEVICE_GONE,  # a card this library cannot read: left out
    "IoError": Outcome.ABSENT,  # a missing sensor file ("no hwmon directory found")
    "ParseError": Outcome.ABSENT,
    "UnexpectedValueError": Outcome.ABSENT,
    "NotSupportedError": Outcome.ABSENT,
    # furiosa_smi_py RuntimeError texts (strings of its bundled libfuriosa_smi)
    "Not supported error": Outcome.ABSENT,
    "Permission denied error": Outcome.ABSENT,
    "IO error": Outcome.ABSENT,
    "Io error": Outcome.ABSENT,
    "Parse error": Outcome.ABSENT,
    "Unexpected value error": Outcome.ABSENT,
    # furiosa-smi-py 2026.1.2 answers device_temperature() with it when a temperature file is
    # missing (its log: "couldn't parse temperature values"; tests/conformance/test_collector_furiosa_bindings.py)
    "Unknown error": Outcome.ABSENT,
    "Device busy error": Outcome.ABSENT,
    "Device not found error": Outcome.DEVICE_GONE,
    "Device lost error": Outcome.DEVICE_GONE,
    "Unknown arch error": Outcome.DEVICE_GONE,
    "Context error": Outcome.REINIT,
    "Uninitialized error": Outcome.REINIT,
    "Incompatible driver error": Outcome.UNAVAILABLE,
}


def binding_outcome(error: BaseException) -> Outcome:
    """The outcome of one exception raised by a binding call."""
    by_class = BINDING_ERRORS.get(type(error).__name__)
    if by_class is not None:
        return by_class
    return BINDING_ERRORS.get(str(error).strip(), Outcome.FAILED)


@dataclass(frozen=True, slots=True)
class BindingReading:
    """What the binding returned for one card, in its own types and units; None = not available.

    The I/O layer fills it from whichever module is loaded; :func:`parse_binding` validates it.
    """

    arch: object = None  # str() of the Arch enum: "RNGD" (furiosa_smi), "rngd" (furiosa_smi_py)
    name: object = None  # "npu0"
    uuid: object = None
    serial: object = None
    bdf: object = None  # "0000:6d:00.0"
    firmware: object = None  # "1.7.0, 4dfed1852e7b" (VersionInfo rendered as sysfs fw_version)
    power_w: object = None  # float, W
    temp_c: object = None  # soc_peak(), °C
    pe_clock_mhz: tuple[object, ...] | None = None  # per PE, MHz
    occupied: tuple[tuple[object, object], ...] | None = None  # (core, str(CoreStatus))
    counters: tuple[tuple[object, object, object], ...] | None = None  # (core, cycles, task cycles)
    memory: tuple[tuple[object, object], ...] | None = None  # (in use, total) bytes per PE range
    power_limit_mw: object = None  # int, mW
    throttle: object = None  # int bitmask, or a tuple of ThrottleReason names


@dataclass(frozen=True, slots=True)
class BindingDevice:
    """One card read through the bindings, in SI units; None = absent."""

    model: str
    tag: str
    name: str | None = None
    bdf: str | None = None
    firmware: str | None = None
    power_w: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    util_ratio: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_limit_w: float | None = None
    throttled: int | None = None
    #: ``{PE: (CycleCount, TaskCycleCount)}`` of the occupied PEs in this read, the baseline of
    #: the next one
    counters: Mapping[int, tuple[int, int]] | None = None


#: ``str(Arch.…)`` of both bindings → the model tag (``rngd+`` is written ``rngd_plus``: a tag
#: keeps to word characters). Neither binding knows Warboy.
_BINDING_ARCH = {
    "rngd": MODEL,
    "rngd_max": "rngd_max",
    "rngd_s": "rngd_s",
    "rngd+": "rngd_plus",
    "arch.rngd": MODEL,
    "arch.rngdmax": "rngd_max",
    "arch.rngds": "rngd_s",
    "arch.rngdplus": "rngd_plus",
}
#: ThrottleReason enum names that are not a slowdown (as the IDLE bit, §1.3).
_NOT_THROTTLING = frozenset({"Idle", "None"})


def _b_text(value: object, what: str, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{source}: {what} is not UTF-8: {value[:40]!r}") from None
    if not isinstance(value, str):
        raise ParseError(f"{source}: {what}: expected a string, got {type(value).__name__}")
    return optional_str(value.rstrip("\x00"))


def _b_number(value: object, what: str, source: str) -> float | None:
    """A finite number; NaN / ±inf (a sensor read that failed) is absent, not 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{source}: {what}: expected a number, got {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


def _b_count(value: object, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError(f"{source}: {what}: expected a non-negative integer, got {value!r:.40}")
    return value


def _b_throttled(value: object, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ParseError(f"{source}: throttle_reason: negative bitmask {value}")
        return int(is_throttled(value))
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return int(any(v not in _NOT_THROTTLING for v in value))
    raise ParseError(
        f"{source}: throttle_reason: expected a bitmask or reason names, got {value!r:.60}"
    )


def _b_occupied(rows: Sequence[tuple[object, object]], source: str) -> set[int]:
    """The cores whose ``CoreStatus`` is occupied (``Occupied`` / ``occupied``)."""
    out: set[int] = set()
    for core, status in rows:
        c = _b_count(core, "core_status core", source)
        text = _b_text(status, "core status", source)
        if text is None or text.lower() not in ("occupied", "available"):
            raise ParseError(f"{source}: core {c}: expected Occupied or Available, got {text!r}")
        if text.lower() == "occupied":
            out.add(c)
    return out


def parse_binding(
    r: BindingReading,
    previous: Mapping[str, Mapping[int, tuple[int, int]]] | None = None,
    source: str = "furiosa_smi",
) -> BindingDevice:
    """One card's binding values → SI (pure). ``previous`` maps a device tag to the counters of
    the last read of that card (``BindingDevice.counters``): utilization is
    :func:`card_utilization` of the occupied PEs' counters, as from sysfs.
    :class:`ParseError` for a value of the wrong type or out of range; NaN is absent."""
    arch = _b_text(r.arch, "arch", source)
    model = _BINDING_ARCH.get((arch or "").lower())
    if model is None:
        raise ParseError(f"{source}: unknown arch {arch!r:.40} (expected an RNGD)")
    uuid = _b_text(r.uuid, "uuid", source)
    serial = _b_text(r.serial, "serial", source)
    bdf = _b_text(r.bdf, "bdf", source)
    name = _b_text(r.name, "name", source)
    tag = device_tag(uuid, serial, bdf)
    if tag is None:
        raise ParseError(f"{source}: {name or 'a card'} has no UUID, serial or PCI address")
    where = f"{source}: {name or tag}"
    power_w = _b_number(r.power_w, "power_consumption (W)", where)
    if power_w is not None and power_w < 0:
        raise ParseError(f"{where}: power_consumption: negative ({power_w:g} W)")
    temp_c = _b_number(r.temp_c, "soc_peak temperature (°C)", where)
    clock_hz: float | None = None
    if r.pe_clock_mhz is not None:
        mhz = [_b_number(v, "core frequency (MHz)", where) for v in r.pe_clock_mhz]
        known = [v for v in mhz if v is not None]
        if any(v < 0 for v in known):
            raise ParseError(f"{where}: core frequency: negative MHz")
        clock_hz = mhz_to_hz(sum(known) / len(known)) if known else None  # mean over the PEs
    counters: dict[int, tuple[int, int]] | None = None
    util_ratio: float | None = None
    if r.counters is not None and r.occupied is not None:
        busy = _b_occupied(r.occupied, where)
        counters = {}
        for row in r.counters:
            core = _b_count(row[0], "performance counter core", where)
            cycles = _b_count(row[1], "cycle_count", where)
            task = _b_count(row[2], "task_execution_cycle", where)
            if core in counters:
                raise ParseError(f"{where}: performance counter of core {core} twice")
            if core in busy:  # a free PE's counters are not read (the library gives 0)
                counters[core] = (cycles, task)
        before = None if previous is None else previous.get(tag)
        util_ratio = card_utilization(before, counters, len(r.occupied))
    used = total = None
    if r.memory is not None:
        blocks = [
            (_b_count(u, "in_use_bytes", where), _b_count(t, "total_bytes", where))
            for u, t in r.memory
        ]
        if blocks:
            used, total = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
    limit_mw = _b_number(r.power_limit_mw, "power_limit (mW)", where)
    return BindingDevice(
        model=model,
        tag=tag,
        name=name,
        bdf=bdf,
        firmware=_b_text(r.firmware, "firmware_version", where),
        power_w=power_w,
        temp_c=None if temp_c is None else c_to_c(temp_c),
        clock_hz=clock_hz,
        util_ratio=util_ratio,
        mem_used_bytes=used,
        mem_total_bytes=total,
        power_limit_w=None if limit_mw is None else mw_to_w(limit_mw),
        throttled=_b_throttled(r.throttle, where),
        counters=counters,
    )


def binding_sample(d: BindingDevice, ts_ns: int, source: str = "furiosa_smi") -> Sample | None:
    """The ``accel`` sample of one card, or None when the binding gave no value at all."""
    if all(
        v is None
        for v in (
            d.power_w,
            d.temp_c,
            d.util_ratio,
            d.clock_hz,
            d.mem_used_bytes,
            d.mem_total_bytes,
            d.power_limit_w,
            d.throttled,
        )
    ):
        return None
    try:
        return Sample.accel(
            ts_ns,
            vendor=VENDOR,
            model=d.model,
            device=d.tag,
            power_w=d.power_w,
            temp_c=d.temp_c,
            util_ratio=d.util_ratio,
            clock_hz=d.clock_hz,
            mem_used_bytes=d.mem_used_bytes,
            mem_total_bytes=d.mem_total_bytes,
            power_limit_w=d.power_limit_w,
            throttled=d.throttled,
        )
    except ValueError as e:
        raise ParseError(f"{source}: {d.name or d.tag}: {e}") from None
