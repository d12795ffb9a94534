"""The sample model: every value past a collector, in SI units with the unit in its name.

This module is the single source of DESIGN §3 (fields and units) and §4 (measurements and their tags).
Collectors build :class:`Sample` objects with the constructors below; the agent adds the ``site`` and
``node`` tags when it encodes a batch (a collector never speaks for another node). A value the device did
not report is *absent* (``None`` in a constructor, no field in the sample), never 0.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BOUNDS",
    "FIELDS",
    "MEASUREMENTS",
    "Bound",
    "DeviceInfo",
    "FieldSpec",
    "FieldType",
    "FieldValue",
    "Measurement",
    "MeasurementSpec",
    "MetricKind",
    "RangeViolation",
    "Sample",
    "drop_implausible",
    "range_violations",
    "validate_tag_value",
]


class Measurement(enum.StrEnum):
    """The measurements of DESIGN §4."""

    ACCEL = "accel"
    HOST = "host"
    SERVING = "serving"
    AGENT = "agent"
    INGEST = "ingest"
    EFFICIENCY = "efficiency"


class MetricKind(enum.Enum):
    """Gauge (a level) or counter (a running total that may wrap or reset)."""

    GAUGE = "gauge"
    COUNTER = "counter"


class FieldType(enum.Enum):
    """The InfluxDB field type; fixed per field so a series never changes type."""

    FLOAT = "float"
    INT = "int"


FieldValue = float | int


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the wire: its name (unit suffix included), unit, kind and storage type."""

    name: str
    unit: str
    kind: MetricKind
    type: FieldType
    description: str


_G, _C = MetricKind.GAUGE, MetricKind.COUNTER
_F, _I = FieldType.FLOAT, FieldType.INT

#: DESIGN §3 plus the agent and efficiency fields of §4. Keyed by field name.
FIELDS: Mapping[str, FieldSpec] = {
    f.name: f
    for f in (
        FieldSpec("power_w", "W", _G, _F, "electrical power draw"),
        FieldSpec(
            "energy_j", "J", _C, _F, "energy counter since an arbitrary origin; may wrap/reset"
        ),
        FieldSpec("util_ratio", "1", _G, _F, "busy share of the device, 0-1"),
        FieldSpec("temp_c", "degC", _G, _F, "temperature"),
        FieldSpec("clock_hz", "Hz", _G, _F, "core clock"),
        FieldSpec("mem_used_bytes", "B", _G, _I, "device memory in use"),
        FieldSpec("mem_total_bytes", "B", _G, _I, "device memory size"),
        FieldSpec("power_limit_w", "W", _G, _F, "enforced power limit"),
        FieldSpec("throttled", "1", _G, _I, "1 when the device is throttling (thermal or power)"),
        FieldSpec("requests_total", "1", _C, _I, "completed requests"),
        FieldSpec("inferences_total", "1", _C, _I, "completed inferences (a batch of n counts n)"),
        FieldSpec("tokens_total", "1", _C, _I, "generated tokens"),
        FieldSpec("latency_p50_s", "s", _G, _F, "median request latency over the collector window"),
        FieldSpec("latency_p99_s", "s", _G, _F, "99th percentile request latency over the window"),
        FieldSpec("seq", "1", _C, _I, "per-node batch sequence number (gap detection)"),
        FieldSpec("collect_ok", "1", _G, _I, "1 when the collector's last poll succeeded"),
        FieldSpec("collect_duration_s", "s", _G, _F, "duration of the collector's last poll"),
        FieldSpec("collect_errors_total", "1", _C, _I, "failed polls of the collector"),
        FieldSpec(
            "out_of_range_total", "1", _C, _I, "readings of the collector outside BOUNDS, dropped"
        ),
        FieldSpec("spool_bytes", "B", _G, _I, "bytes waiting in the agent's outbound spool"),
        FieldSpec("dropped_total", "1", _C, _I, "points the agent had to drop"),
        FieldSpec("seq_last", "1", _G, _I, "highest batch seq the ingest worker saw from the node"),
        FieldSpec(
            "seq_missing", "1", _G, _I, "batch seqs of the node this worker has not seen (gaps)"
        ),
        FieldSpec("seq_duplicates_total", "1", _C, _I, "batches of the node this worker saw again"),
        FieldSpec("seq_resets_total", "1", _C, _I, "times the node's seq restarted at 1"),
        FieldSpec(
            "clock_offset_s",
            "s",
            _G,
            _F,
            "node clock minus ingest clock, estimated as the largest (newest sample ts - receive "
            "time) over a window: low by at most the shortest delivery delay",
        ),
        FieldSpec("work_per_j", "1/J", _G, _F, "units of work per joule"),
        FieldSpec("ratio_vs_baseline", "1", _G, _F, "work_per_j divided by the baseline's"),
        FieldSpec("target_ratio", "1", _G, _F, "the target's minimum ratio"),
        FieldSpec("meets_target", "1", _G, _I, "1 when ratio_vs_baseline >= target_ratio"),
    )
}


@dataclass(frozen=True, slots=True)
class MeasurementSpec:
    """Tags and fields allowed for one measurement (DESIGN §4)."""

    required_tags: frozenset[str]
    optional_tags: frozenset[str]
    fields: frozenset[str]

    @property
    def tags(self) -> frozenset[str]:
        return self.required_tags | self.optional_tags


_DEVICE_FIELDS = frozenset(
    {
        "power_w",
        "energy_j",
        "util_ratio",
        "temp_c",
        "clock_hz",
        "mem_used_bytes",
        "mem_total_bytes",
        "power_limit_w",
        "throttled",
    }
)
_SERVING_FIELDS = frozenset(
    {"requests_total", "inferences_total", "tokens_total", "latency_p50_s", "latency_p99_s"}
)

MEASUREMENTS: Mapping[Measurement, MeasurementSpec] = {
    Measurement.ACCEL: MeasurementSpec(
        frozenset({"site", "node", "vendor", "model", "device"}),
        frozenset({"service"}),
        _DEVICE_FIELDS | _SERVING_FIELDS,
    ),
    Measurement.HOST: MeasurementSpec(
        frozenset({"site", "node", "source"}),
        frozenset({"zone"}),
        frozenset({"power_w", "energy_j"}),
    ),
    Measurement.SERVING: MeasurementSpec(
        frozenset({"site", "node", "service", "runtime"}),
        frozenset({"model_name", "device"}),
        _SERVING_FIELDS,
    ),
    Measurement.AGENT: MeasurementSpec(
        frozenset({"site", "node"}),
        frozenset({"collector"}),
        frozenset(
            {
                "seq",
                "collect_ok",
                "collect_duration_s",
                "collect_errors_total",
                "out_of_range_total",
                "spool_bytes",
                "dropped_total",
            }
        ),
    ),
    Measurement.INGEST: MeasurementSpec(
        frozenset({"site", "node", "worker"}),
        frozenset(),
        frozenset(
            {
                "seq_last",
                "seq_missing",
                "seq_duplicates_total",
                "seq_resets_total",
                "clock_offset_s",
            }
        ),
    ),
    Measurement.EFFICIENCY: MeasurementSpec(
        frozenset({"site", "service", "window"}),
        frozenset({"node", "device", "phase"}),  # phase: of the verdict's target (issue 16)
        frozenset({"work_per_j", "ratio_vs_baseline", "target_ratio", "meets_target"}),
    ),
}

#: Tags the agent adds to every point; a collector may not set them.
NODE_TAGS = frozenset({"site", "node"})

_BAD_TAG_CHARS = re.compile(r"[,= \n\r\t\\\"]")


def validate_tag_value(key: str, value: str) -> str:
    """Return ``value`` if it is a legal kwatt tag value, else raise ``ValueError`` naming the tag.

    DESIGN §4: no commas, spaces, ``=``, newlines or empty strings (backslashes and quotes are refused
    as well, so no value ever needs escaping and topics, tags and dashboards agree on the spelling).
    """
    if not value:
        raise ValueError(f"tag {key!r}: empty value")
    if not value.isprintable() or _BAD_TAG_CHARS.search(value):
        raise ValueError(
            f"tag {key!r}: value {value!r} contains a comma, space, '=', quote, backslash or "
            "control character"
        )
    if len(value) > 256:
        raise ValueError(f"tag {key!r}: value longer than 256 characters")
    return value


@dataclass(frozen=True, slots=True)
class Sample:
    """One point before encoding: measurement, tags (without site/node), fields, wall time in ns.

    ``tags`` and ``fields`` are sorted tuples of pairs so samples are hashable and compare by value.
    Build samples with :meth:`accel`, :meth:`host`, :meth:`serving` or :meth:`agent`, which validate
    every tag and field against the tables above; the plain constructor validates as well.
    """

    measurement: Measurement
    ts_ns: int
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]

    def __post_init__(self) -> None:
        spec = MEASUREMENTS[self.measurement]
        keys = [k for k, _ in self.tags]
        if keys != sorted(set(keys)):
            raise ValueError(f"{self.measurement}: tags must be sorted and unique: {keys}")
        for k, v in self.tags:
            if k in NODE_TAGS:
                raise ValueError(
                    f"{self.measurement}: tag {k!r} is added by the agent, not a collector"
                )
            if k not in spec.tags:
                raise ValueError(f"{self.measurement}: unknown tag {k!r}")
            validate_tag_value(k, v)
        missing = spec.required_tags - NODE_TAGS - set(keys)
        if missing:
            raise ValueError(f"{self.measurement}: missing tag(s) {sorted(missing)}")
        names = [k for k, _ in self.fields]
        if not names:
            raise ValueError(f"{self.measurement}: a sample needs at least one field")
        if names != sorted(set(names)):
            raise ValueError(f"{self.measurement}: fields must be sorted and unique: {names}")
        for name, value in self.fields:
            if name not in spec.fields:
                raise ValueError(f"{self.measurement}: field {name!r} not allowed here")
            check_field_value(name, value)
        if not isinstance(self.ts_ns, int) or self.ts_ns <= 0:
            raise ValueError(
                f"{self.measurement}: ts_ns must be a positive int, got {self.ts_ns!r}"
            )

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None

    def field(self, name: str) -> FieldValue | None:
        for k, v in self.fields:
            if k == name:
                return v
        return None

    @classmethod
    def build(
        cls,
        measurement: Measurement,
        ts_ns: int,
        tags: Mapping[str, str | None],
        fields: Mapping[str, FieldValue | None],
    ) -> Sample:
        """Build a sample, dropping ``None`` tags and fields (absent is not 0) and coercing types."""
        t = tuple(sorted((k, v) for k, v in tags.items() if v is not None))
        f = tuple(sorted((k, coerce_field(k, v)) for k, v in fields.items() if v is not None))
        return cls(measurement, ts_ns, t, f)

    @classmethod
    def accel(
        cls,
        ts_ns: int,
        *,
        vendor: str,
        model: str,
        device: str,
        service: str | None = None,
        **fields: FieldValue | None,
    ) -> Sample:
        tags = {"vendor": vendor, "model": model, "device": device, "service": service}
        return cls.build(Measurement.ACCEL, ts_ns, tags, fields)

    @classmethod
    def host(
        cls, ts_ns: int, *, source: str, zone: str | None = None, **fields: FieldValue | None
    ) -> Sample:
        return cls.build(Measurement.HOST, ts_ns, {"source": source, "zone": zone}, fields)

    @classmethod
    def serving(
        cls,
        ts_ns: int,
        *,
        service: str,
        runtime: str,
        model_name: str | None = None,
        device: str | None = None,
        **fields: FieldValue | None,
    ) -> Sample:
        tags = {"service": service, "runtime": runtime, "model_name": model_name, "device": device}
        return cls.build(Measurement.SERVING, ts_ns, tags, fields)

    @classmethod
    def agent(
        cls, ts_ns: int, *, collector: str | None = None, **fields: FieldValue | None
    ) -> Sample:
        return cls.build(Measurement.AGENT, ts_ns, {"collector": collector}, fields)

    @classmethod
    def ingest(cls, ts_ns: int, *, worker: str, **fields: FieldValue | None) -> Sample:
        """An ingest worker's per-node seq figures (site/node: the node they are about)."""
        return cls.build(Measurement.INGEST, ts_ns, {"worker": worker}, fields)


# ------------------------------------------------------------------------ plausible ranges


@dataclass(frozen=True, slots=True)
class Bound:
    """The closed range a reading of one field can physically take; outside it is a failed read
    (a sentinel such as 65535 °C, -273 °C, an all-ones counter, 1e300 W), never a measurement."""

    lo: float
    hi: float
    unit: str
    why: str

    def __str__(self) -> str:
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:g}"
        return f"[{self.lo:g}, {hi}] {self.unit}".rstrip()


_INF = math.inf
_DEVICE_POWER = Bound(
    0.0, 10_000.0, "W", "the largest accelerator module draws ~1-3 kW; 10 kW leaves headroom"
)
_COUNT = Bound(0.0, _INF, "", "a count of events cannot be negative")
_SECONDS = Bound(0.0, _INF, "s", "a latency cannot be negative")
_SERVING_BOUNDS: Mapping[str, Bound] = {
    "requests_total": _COUNT,
    "inferences_total": _COUNT,
    "tokens_total": _COUNT,
    "latency_p50_s": _SECONDS,
    "latency_p99_s": _SECONDS,
}

#: DESIGN §3 "Plausible ranges": per measurement, the bound of each field (fields not listed, and
#: the agent's, ingest's and analytics' own measurements, are not bounded). ``mem_used_bytes`` is
#: also bounded by the same sample's ``mem_total_bytes`` (see :func:`range_violations`).
BOUNDS: Mapping[str, Mapping[str, Bound]] = {
    Measurement.ACCEL.value: {
        "power_w": _DEVICE_POWER,
        "power_limit_w": _DEVICE_POWER,
        "energy_j": Bound(
            0.0, _INF, "J", "a counter since an origin; wraps are unwrapped by the collector"
        ),
        "temp_c": Bound(
            -40.0,
            150.0,
            "°C",
            "silicon operates within about -40..125 °C; 65535, 255 and -273 "
            "are what drivers print when a sensor read fails",
        ),
        "util_ratio": Bound(0.0, 1.0, "", "a busy share"),
        "clock_hz": Bound(0.0, 10e9, "Hz", "no accelerator core clock is near 10 GHz"),
        "mem_used_bytes": Bound(0.0, _INF, "B", "memory in use cannot be negative"),
        "mem_total_bytes": Bound(0.0, _INF, "B", "a memory size cannot be negative"),
        "throttled": Bound(0.0, 1.0, "", "a flag"),
        **_SERVING_BOUNDS,
    },
    Measurement.HOST.value: {
        "power_w": Bound(0.0, 100_000.0, "W", "a whole server or chassis draws well under 100 kW"),
        "energy_j": Bound(
            0.0, _INF, "J", "a counter since an origin; RAPL wraps are unwrapped by the collector"
        ),
    },
    Measurement.SERVING.value: _SERVING_BOUNDS,
}


@dataclass(frozen=True, slots=True)
class RangeViolation:
    """One reading outside its :data:`BOUNDS` (or memory used above the total)."""

    field: str
    value: FieldValue
    bound: str  # the range, e.g. "[-40, 150] °C", or "<= mem_total_bytes (1024)"

    def __str__(self) -> str:
        return f"{self.field}={self.value!r} outside {self.bound}"


def range_violations(
    measurement: str, fields: tuple[tuple[str, FieldValue], ...] | list[tuple[str, FieldValue]]
) -> list[RangeViolation]:
    """The fields of one point outside their plausible range (DESIGN §3); empty when all fit."""
    bounds = BOUNDS.get(measurement)
    if bounds is None:
        return []
    out: list[RangeViolation] = []
    used = total = None
    for name, value in fields:
        b = bounds.get(name)
        if b is not None and not b.lo <= value <= b.hi:
            out.append(RangeViolation(name, value, str(b)))
            continue
        if name == "mem_used_bytes":
            used = value
        elif name == "mem_total_bytes":
            total = value
    if used is not None and total is not None and used > total:
        out.append(RangeViolation("mem_used_bytes", used, f"<= mem_total_bytes ({total})"))
    return out


def drop_implausible(sample: Sample) -> tuple[Sample | None, list[RangeViolation]]:
    """``sample`` without its out-of-range fields (absent, never clamped), and what was dropped;
    None when no field is left."""
    bad = range_violations(sample.measurement.value, sample.fields)
    if not bad:
        return sample, bad
    names = {v.field for v in bad}
    kept = tuple((k, v) for k, v in sample.fields if k not in names)
    if not kept:
        return None, bad
    return Sample(sample.measurement, sample.ts_ns, sample.tags, kept), bad


def coerce_field(name: str, value: FieldValue) -> FieldValue:
    """Coerce ``value`` to the field's fixed storage type (bool → int, whole float → int for INT)."""
    spec = FIELDS.get(name)
    if spec is None:
        raise ValueError(f"unknown field {name!r}")
    if isinstance(value, bool):
        value = int(value)
    if spec.type is FieldType.FLOAT:
        return float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"field {name!r} is an integer field, got {value!r}")
        return int(value)
    return value


def check_field_value(name: str, value: FieldValue) -> None:
    """Raise ``ValueError`` unless ``value`` has the field's type and is finite."""
    spec = FIELDS.get(name)
    if spec is None:
        raise ValueError(f"unknown field {name!r}")
    if spec.type is FieldType.FLOAT:
        if type(value) is not float:
            raise ValueError(f"field {name!r} must be a float, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"field {name!r} must be finite, got {value!r}")
    elif type(value) is not int:
        raise ValueError(f"field {name!r} must be an int, got {type(value).__name__}")
    elif not -(2**63) <= value < 2**63:
        raise ValueError(f"field {name!r} out of the int64 range")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One entry of the retained ``inventory`` topic (DESIGN §4)."""

    vendor: str
    model: str
    id: str
    collector: str
    driver_version: str | None = None
    firmware_version: str | None = None
    bus_id: str | None = None
