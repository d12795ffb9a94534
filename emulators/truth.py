"""The emulators' truth log: typed records of ground truth and their JSON-lines codec.

An emulated node appends one JSON object per physics step to its truth log (``--truth-log``); the
demo's figures, the tests and the benchmarks read it back. This module is the one place that knows
the keys: :func:`encode` writes a record as one line (compact separators, keys in a fixed order) and
:func:`decode` / :func:`read_log` turn lines back into the same frozen dataclasses, raising
:class:`TruthError` (a ``ValueError``) on anything that is not a record.

Two record shapes exist, one per node class:

- :class:`TruthRecord`, written by :class:`kwatt.emulators.node.Node` (catalogue devices, services,
  host, Triton, faults): ``{"node", "t_s", "dt_s", "wall_ns", "devices": [DeviceTruth…], "host",
  "services": {name: ServiceTruth}, "serving", "triton": {service: TritonTruth}, "faults"}``.
- :class:`RngdTruthRecord`, written by the RNGD-only
  :class:`kwatt.emulators.rngd_node.EmulatedNode`: ``{"t_s", "dt_s", "wall_ns", "devices":
  [RngdDeviceTruth…], "serving"}``.

Units are in the key names (``_w``, ``_j``, ``_hz``, ``_s``, ``_us``, ``_ns``, ``_bytes``); a value
the node could not know is ``null`` (``None`` here), never 0. Like every emulator module this one
imports nothing of kwatt outside ``kwatt.emulators``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DeviceTruth",
    "HostTruth",
    "RngdDeviceTruth",
    "RngdTruthRecord",
    "ServiceTruth",
    "ServingTruth",
    "TritonTruth",
    "TruthError",
    "TruthRecord",
    "decode",
    "decode_rngd",
    "encode",
    "read_log",
    "read_rngd_log",
]


class TruthError(ValueError):
    """A line that is not a truth record of the expected shape."""


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class DeviceTruth:
    """One device of a :class:`~kwatt.emulators.node.Node` at the end of a step."""

    uuid: str
    serial: str
    bus_id: str
    model: str  # catalogue key
    vendor: str
    index: int  # the vendor's enumeration index (changes when a device re-enumerates)
    service: str
    util_ratio: float
    power_w: float
    energy_j: float  # exact integral of power since the node started
    temp_c: float
    clock_hz: float
    throttle_thermal: bool
    throttle_power: bool
    present: bool
    latency_p50_s: float | None  # this step's requests on the device; None without any
    latency_p99_s: float | None


@dataclass(frozen=True, slots=True)
class HostTruth:
    """The host's true power and energy counters (per CPU package for RAPL)."""

    system_power_w: float
    system_energy_j: float
    cpu_energy_j: tuple[float, ...]
    dram_energy_j: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ServiceTruth:
    """One service's true work since the node started."""

    work_class: str | None  # None for a test profile (no unit of work)
    offered_units_total: float
    served_units_total: float
    dropped_units_total: float
    requests_total: int
    prompt_tokens_total: int
    latency_p50_s: float | None  # this step; None without requests
    latency_p99_s: float | None


@dataclass(frozen=True, slots=True)
class ServingTruth:
    """The LLM serving runtimes' counters, summed, and the latencies completed in this step."""

    requests_total: int
    tokens_total: int  # generated tokens
    prompt_tokens_total: int
    latencies_s: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class TritonTruth:
    """A vision service's Triton model counters."""

    model: str
    inferences_total: int
    requests_total: int
    request_duration_us: int


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One physics step of a :class:`~kwatt.emulators.node.Node`."""

    node: str
    t_s: float  # emulator time since the start
    dt_s: float
    wall_ns: int  # wall clock of the step (with any clock-skew fault applied)
    devices: tuple[DeviceTruth, ...]
    host: HostTruth | None
    services: Mapping[str, ServiceTruth]
    serving: ServingTruth | None  # None on a node without an LLM runtime
    triton: Mapping[str, TritonTruth]
    faults: tuple[str, ...]  # what the fault engine did at this step ("start stuck", …)


@dataclass(frozen=True, slots=True)
class RngdDeviceTruth:
    """One card of the RNGD-only :class:`~kwatt.emulators.rngd_node.EmulatedNode`."""

    index: int
    device: str  # UUID
    sn: str
    bdf: str
    util_ratio: float
    power_w: float
    energy_j: float  # exact integral since the first step
    temp_c: float  # the hottest PE
    clock_hz: float
    throttle_reason: int  # the driver's bitmask
    mem_used_bytes: int


@dataclass(frozen=True, slots=True)
class RngdTruthRecord:
    """One physics step of the RNGD-only :class:`~kwatt.emulators.rngd_node.EmulatedNode`."""

    t_s: float
    dt_s: float
    wall_ns: int
    devices: tuple[RngdDeviceTruth, ...]
    serving: ServingTruth


# ------------------------------------------------------------------------------------ encode
def _serving_doc(s: ServingTruth) -> dict[str, object]:
    return {
        "requests_total": s.requests_total,
        "tokens_total": s.tokens_total,
        "prompt_tokens_total": s.prompt_tokens_total,
        "latencies_s": list(s.latencies_s),
    }


def _record_doc(r: TruthRecord) -> dict[str, object]:
    return {
        "node": r.node,
        "t_s": r.t_s,
        "dt_s": r.dt_s,
        "wall_ns": r.wall_ns,
        "devices": [
            {
                "uuid": d.uuid,
                "serial": d.serial,
                "bus_id": d.bus_id,
                "model": d.model,
                "vendor": d.vendor,
                "index": d.index,
                "service": d.service,
                "util_ratio": d.util_ratio,
                "power_w": d.power_w,
                "energy_j": d.energy_j,
                "temp_c": d.temp_c,
                "clock_hz": d.clock_hz,
                "throttle_thermal": d.throttle_thermal,
                "throttle_power": d.throttle_power,
                "present": d.present,
                "latency_p50_s": d.latency_p50_s,
                "latency_p99_s": d.latency_p99_s,
            }
            for d in r.devices
        ],
        "host": None
        if r.host is None
        else {
            "system_power_w": r.host.system_power_w,
            "system_energy_j": r.host.system_energy_j,
            "cpu_energy_j": list(r.host.cpu_energy_j),
            "dram_energy_j": list(r.host.dram_energy_j),
        },
        "services": {
            name: {
                "work_class": s.work_class,
                "offered_units_total": s.offered_units_total,
                "served_units_total": s.served_units_total,
                "dropped_units_total": s.dropped_units_total,
                "requests_total": s.requests_total,
                "prompt_tokens_total": s.prompt_tokens_total,
                "latency_p50_s": s.latency_p50_s,
                "latency_p99_s": s.latency_p99_s,
            }
            for name, s in r.services.items()
        },
        "serving": None if r.serving is None else _serving_doc(r.serving),
        "triton": {
            svc: {
                "model": t.model,
                "inferences_total": t.inferences_total,
                "requests_total": t.requests_total,
                "request_duration_us": t.request_duration_us,
            }
            for svc, t in r.triton.items()
        },
        "faults": list(r.faults),
    }


def _rngd_doc(r: RngdTruthRecord) -> dict[str, object]:
    return {
        "t_s": r.t_s,
        "dt_s": r.dt_s,
        "wall_ns": r.wall_ns,
        "devices": [
            {
                "index": d.index,
                "device": d.device,
                "sn": d.sn,
                "bdf": d.bdf,
                "util_ratio": d.util_ratio,
                "power_w": d.power_w,
                "energy_j": d.energy_j,
                "temp_c": d.temp_c,
                "clock_hz": d.clock_hz,
                "throttle_reason": d.throttle_reason,
                "mem_used_bytes": d.mem_used_bytes,
            }
            for d in r.devices
        ],
        "serving": _serving_doc(r.serving),
    }


def encode(record: TruthRecord | RngdTruthRecord) -> str:
    """One truth-log line (with its newline) for ``record``."""
    doc = _record_doc(record) if isinstance(record, TruthRecord) else _rngd_doc(record)
    return json.dumps(doc, separators=(",", ":")) + "\n"


# ------------------------------------------------------------------------------------ decode
def _obj(v: object, what: str) -> Mapping[str, object]:
    if not isinstance(v, dict):
        raise TruthError(f"{what}: expected an object, got {type(v).__name__}")
    return v


def _list(v: object, what: str) -> list[object]:
    if not isinstance(v, list):
        raise TruthError(f"{what}: expected a list, got {type(v).__name__}")
    return v


def _get(doc: Mapping[str, object], key: str) -> object:
    if key not in doc:
        raise TruthError(f"missing key {key!r}")
    return doc[key]


def _str(doc: Mapping[str, object], key: str) -> str:
    v = _get(doc, key)
    if not isinstance(v, str):
        raise TruthError(f"{key}: expected a string, got {v!r}")
    return v


def _opt_str(doc: Mapping[str, object], key: str) -> str | None:
    return None if _get(doc, key) is None else _str(doc, key)


def _int(doc: Mapping[str, object], key: str) -> int:
    v = _get(doc, key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TruthError(f"{key}: expected an integer, got {v!r}")
    return v


def _number(v: object, what: str) -> float:
    # an int stays an int, so that decode → encode gives back the same bytes
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TruthError(f"{what}: expected a number, got {v!r}")
    return v


def _float(doc: Mapping[str, object], key: str) -> float:
    return _number(_get(doc, key), key)


def _opt_float(doc: Mapping[str, object], key: str) -> float | None:
    return None if _get(doc, key) is None else _float(doc, key)


def _bool(doc: Mapping[str, object], key: str) -> bool:
    v = _get(doc, key)
    if not isinstance(v, bool):
        raise TruthError(f"{key}: expected true or false, got {v!r}")
    return v


def _floats(doc: Mapping[str, object], key: str) -> tuple[float, ...]:
    return tuple(_number(x, key) for x in _list(_get(doc, key), key))


def _serving(v: object) -> ServingTruth:
    s = _obj(v, "serving")
    return ServingTruth(
        requests_total=_int(s, "requests_total"),
        tokens_total=_int(s, "tokens_total"),
        prompt_tokens_total=_int(s, "prompt_tokens_total"),
        latencies_s=_floats(s, "latencies_s"),
    )


def _device(v: object) -> DeviceTruth:
    d = _obj(v, "device")
    return DeviceTruth(
        uuid=_str(d, "uuid"),
        serial=_str(d, "serial"),
        bus_id=_str(d, "bus_id"),
        model=_str(d, "model"),
        vendor=_str(d, "vendor"),
        index=_int(d, "index"),
        service=_str(d, "service"),
        util_ratio=_float(d, "util_ratio"),
        power_w=_float(d, "power_w"),
        energy_j=_float(d, "energy_j"),
        temp_c=_float(d, "temp_c"),
        clock_hz=_float(d, "clock_hz"),
        throttle_thermal=_bool(d, "throttle_thermal"),
        throttle_power=_bool(d, "throttle_power"),
        present=_bool(d, "present"),
        latency_p50_s=_opt_float(d, "latency_p50_s"),
        latency_p99_s=_opt_float(d, "latency_p99_s"),
    )


def _host(v: object) -> HostTruth | None:
    if v is None:
        return None
    h = _obj(v, "host")
    return HostTruth(
        system_power_w=_float(h, "system_power_w"),
        system_energy_j=_float(h, "system_energy_j"),
        cpu_energy_j=_floats(h, "cpu_energy_j"),
        dram_energy_j=_floats(h, "dram_energy_j"),
    )


def _service(v: object) -> ServiceTruth:
    s = _obj(v, "service")
    return ServiceTruth(
        work_class=_opt_str(s, "work_class"),
        offered_units_total=_float(s, "offered_units_total"),
        served_units_total=_float(s, "served_units_total"),
        dropped_units_total=_float(s, "dropped_units_total"),
        requests_total=_int(s, "requests_total"),
        prompt_tokens_total=_int(s, "prompt_tokens_total"),
        latency_p50_s=_opt_float(s, "latency_p50_s"),
        latency_p99_s=_opt_float(s, "latency_p99_s"),
    )


def _triton(v: object) -> TritonTruth:
    t = _obj(v, "triton")
    return TritonTruth(
        model=_str(t, "model"),
        inferences_total=_int(t, "inferences_total"),
        requests_total=_int(t, "requests_total"),
        request_duration_us=_int(t, "request_duration_us"),
    )


def _rngd_device(v: object) -> RngdDeviceTruth:
    d = _obj(v, "device")
    return RngdDeviceTruth(
        index=_int(d, "index"),
        device=_str(d, "device"),
        sn=_str(d, "sn"),
        bdf=_str(d, "bdf"),
        util_ratio=_float(d, "util_ratio"),
        power_w=_float(d, "power_w"),
        energy_j=_float(d, "energy_j"),
        temp_c=_float(d, "temp_c"),
        clock_hz=_float(d, "clock_hz"),
        throttle_reason=_int(d, "throttle_reason"),
        mem_used_bytes=_int(d, "mem_used_bytes"),
    )


def _load(line: str | bytes) -> Mapping[str, object]:
    try:
        doc: object = json.loads(line)
    except json.JSONDecodeError as e:
        raise TruthError(f"not JSON ({e})") from None
    return _obj(doc, "record")


def decode(line: str | bytes) -> TruthRecord:
    """A :class:`TruthRecord` from one line written by :func:`encode`."""
    doc = _load(line)
    faults = _list(_get(doc, "faults"), "faults")
    if not all(isinstance(f, str) for f in faults):
        raise TruthError(f"faults: expected strings, got {faults!r}")
    return TruthRecord(
        node=_str(doc, "node"),
        t_s=_float(doc, "t_s"),
        dt_s=_float(doc, "dt_s"),
        wall_ns=_int(doc, "wall_ns"),
        devices=tuple(_device(d) for d in _list(_get(doc, "devices"), "devices")),
        host=_host(_get(doc, "host")),
        services={k: _service(v) for k, v in _obj(_get(doc, "services"), "services").items()},
        serving=None if _get(doc, "serving") is None else _serving(doc["serving"]),
        triton={k: _triton(v) for k, v in _obj(_get(doc, "triton"), "triton").items()},
        faults=tuple(str(f) for f in faults),
    )


def decode_rngd(line: str | bytes) -> RngdTruthRecord:
    """An :class:`RngdTruthRecord` from one line written by :func:`encode`."""
    doc = _load(line)
    return RngdTruthRecord(
        t_s=_float(doc, "t_s"),
        dt_s=_float(doc, "dt_s"),
        wall_ns=_int(doc, "wall_ns"),
        devices=tuple(_rngd_device(d) for d in _list(_get(doc, "devices"), "devices")),
        serving=_serving(_get(doc, "serving")),
    )


def read_log(path: Path) -> Iterator[TruthRecord]:
    """Every record of a :class:`~kwatt.emulators.node.Node` truth log (blank lines skipped)."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield decode(line)
                except TruthError as e:
                    raise TruthError(f"{path}:{number}: not a truth record ({e})") from None


def read_rngd_log(path: Path) -> Iterator[RngdTruthRecord]:
    """Every record of an :class:`~kwatt.emulators.rngd_node.EmulatedNode` truth log."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield decode_rngd(line)
                except TruthError as e:
                    raise TruthError(f"{path}:{number}: not a truth record ({e})") from None
