"""Any tool that prints JSON, mapped to kwatt fields by config: a DEEPX, Mobilint or future card
monitored without code (issue #4 item 7).

The collector runs ``argv`` (killed after ``timeout_s``), reads its stdout as one JSON document, finds
the list of devices at ``devices`` and, in each device object, the values named by ``fields``::

    - type: command
      name: deepx
      argv: [dxrt-cli, --status, --json]
      devices: data.cards            # "" = the document itself is the list
      vendor: deepx
      model_field: product           # or model: dx-m1 (a fixed model tag; the fallback of model_field)
      device_field: serial           # stable identity: serial number, UUID or PCI address
      fields:
        - {path: power, field: power_w, unit: mW}
        - {path: temp.npu.0, field: temp_c, unit: C}
        - {path: mem.used, field: mem_used_bytes, unit: MiB}

Paths are dot-separated object keys; a segment of digits indexes a list (``temp.npu.0``). A key that
contains a dot cannot be reached. ``unit`` is the unit of the tool's numbers (any unit
:func:`kwatt.wire.units.parse_quantity` knows for the field's SI unit, plus ``mC``/``m°C``; none = already
SI), ``scale`` multiplies the number first (e.g. ``0.1`` for a tool that prints tenths). A value may be a
JSON number, ``true``/``false`` (``throttled`` only), or a string: a bare number (in ``unit``) or a
number with its own unit (``"38.4 W"``, which wins over ``unit``). ``null``, ``NaN``, a missing key and
the "no value" spellings (``N/A``, ``-``, ``[Not Supported]``) are absent, never 0. Anything else is a
:class:`ParseError` naming the tool, the device and the path.

Validation at config load: every ``field`` must be an ``accel`` field of DESIGN §3 and every ``unit`` a
unit of that field's SI unit; errors name the key (``collectors[2].fields[0]: ...``).

Cost per poll = one process spawn + the tool's own run time + the parse; a tool written in Python
adds its interpreter's start-up (see BENCHMARKS.md (Cost per collector poll), the tool-spawning collectors). Prefer a vendor's sysfs/hwmon
(the ``hwmon`` collector) where there is one, or a longer ``interval_s``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Final

from kwatt.collectors.base import ParseError, run_tool
from kwatt.collectors.plugin import CollectorPlugin
from kwatt.wire.model import (
    FIELDS,
    MEASUREMENTS,
    DeviceInfo,
    FieldType,
    FieldValue,
    Measurement,
    Sample,
    validate_tag_value,
)
from kwatt.wire.units import NOT_AVAILABLE, QuantityError, parse_quantity

__all__ = [
    "PLUGIN",
    "CommandCollector",
    "CommandDevice",
    "Config",
    "FieldMap",
    "parse",
    "parse_devices",
    "split_path",
    "unit_factor",
]

#: Units parse_quantity does not know but device tools print (SI unit, factor to it).
_EXTRA_UNITS: Final[dict[str, tuple[str, float]]] = {
    "mc": ("degC", 1e-3),
    "m°c": ("degC", 1e-3),
    "millic": ("degC", 1e-3),
    "ratio": ("1", 1.0),
}
#: Fields a JSON true/false may feed (1/0).
_BOOL_FIELDS: Final = frozenset({"throttled"})
#: Fields that cannot be negative.
_NON_NEGATIVE: Final = frozenset({"mem_used_bytes", "mem_total_bytes", "energy_j"})


def split_path(path: str) -> tuple[str | int, ...]:
    """``"data.cards.0.power"`` → ``("data", "cards", 0, "power")``; ``""`` → ``()``.

    Raises ``ValueError`` for an empty segment (``"a..b"``, a leading or trailing dot).
    """
    if path == "":
        return ()
    parts: list[str | int] = []
    for seg in path.split("."):
        if seg == "" or seg != seg.strip():
            raise ValueError(f"path {path!r}: empty segment or stray space")
        parts.append(int(seg) if seg.isascii() and seg.isdigit() else seg)
    return tuple(parts)


def unit_factor(unit: str | None, si: str) -> float:
    """The factor from ``unit`` to ``si`` (``"mW"``, ``"W"`` → 0.001); ``ValueError`` if it is none."""
    if unit is None or unit.strip() in ("", si):
        return 1.0
    extra = _EXTRA_UNITS.get(unit.strip().lower())
    if extra is not None and extra[0] == si:
        return extra[1]
    try:
        factor = parse_quantity(f"1 {unit.strip()}", si)
    except QuantityError:
        factor = None
    if factor is None:
        raise ValueError(f"unit {unit!r} is not a unit of {si}")
    return factor


@dataclass(frozen=True)
class FieldMap:
    """One value of a device object: where it is, which kwatt field it feeds, in which unit."""

    #: Dot-separated path inside one device object (``power.now``, ``temps.0``).
    path: str
    #: The kwatt field (an ``accel`` field of DESIGN §3: ``power_w``, ``temp_c``, ...).
    field: str
    #: The unit the tool prints (``mW``, ``W``, ``%``, ``MiB``, ``mJ``, ``C``, ``MHz``); none = SI.
    unit: str | None = None
    #: Multiplies the number before the unit conversion.
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.field not in MEASUREMENTS[Measurement.ACCEL].fields:
            allowed = ", ".join(sorted(MEASUREMENTS[Measurement.ACCEL].fields))
            raise ValueError(f"field {self.field!r} is not a device field (one of: {allowed})")
        if not split_path(self.path):
            raise ValueError(f"field {self.field!r}: empty path")
        try:
            unit_factor(self.unit, FIELDS[self.field].unit)
        except ValueError as e:
            raise ValueError(f"field {self.field!r}: {e}") from None
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"field {self.field!r}: scale must be finite and non-zero")

    @property
    def factor(self) -> float:
        """Number in the tool's output → SI value."""
        return self.scale * unit_factor(self.unit, FIELDS[self.field].unit)


@dataclass(frozen=True)
class Config:
    """Options of a ``command`` collector entry (module docstring)."""

    #: The command and its arguments (no shell); its stdout must be one JSON document.
    argv: tuple[str, ...]
    #: The ``vendor`` tag of every sample.
    vendor: str
    #: Path, inside a device object, to its stable identity (serial, UUID, PCI address).
    device_field: str
    #: The values to read.
    fields: tuple[FieldMap, ...]
    #: Path to the list of device objects; ``""``: the document is the list.
    devices: str = ""
    #: A fixed ``model`` tag (also the fallback when ``model_field`` is missing from a device).
    model: str = ""
    #: Path, inside a device object, to its model name (lower-cased, spaces become ``-``).
    model_field: str = ""
    #: Seconds one run may take before the tool is killed.
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ValueError("argv: give the command to run, e.g. [tool, --json]")
        validate_tag_value("vendor", self.vendor)
        split_path(self.devices)
        if not split_path(self.device_field):
            raise ValueError("device_field: empty path (the device's identity is required)")
        if self.model:
            validate_tag_value("model", self.model)
        elif not self.model_field:
            raise ValueError("give model (a fixed model tag) or model_field (a path), or both")
        split_path(self.model_field)
        if not self.fields:
            raise ValueError("fields: map at least one value")
        targets = [f.field for f in self.fields]
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ValueError(f"fields: {dup} mapped more than once")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s: must be > 0")

    @property
    def source(self) -> str:
        """The tool as error messages name it."""
        return " ".join(self.argv)


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class CommandDevice:
    """One device object, values in SI units (absent values left out)."""

    device: str
    model: str
    values: tuple[tuple[str, FieldValue], ...]


class _Missing:
    pass


_MISSING: Final = _Missing()


def _lookup(node: object, parts: tuple[str | int, ...], where: str) -> object:
    """Follow ``parts`` from ``node``; a missing key or index is :data:`_MISSING`."""
    for i, part in enumerate(parts):
        if node is None:
            return _MISSING
        if isinstance(node, dict):
            key = str(part)
            if key not in node:
                return _MISSING
            node = node[key]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                return _MISSING
            node = node[part]
        else:
            done = ".".join(str(p) for p in parts[:i]) or "(top)"
            raise ParseError(f"{where}: cannot take {part!r} of {type(node).__name__} at {done!r}")
    return node


def _tag(value: object, key: str, where: str) -> str | None:
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ParseError(f"{where}: expected a string for the {key}, got {type(value).__name__}")
    text = str(value).strip()
    if key == "model":
        text = "-".join(text.lower().split())
    if text.lower() in NOT_AVAILABLE:
        return None
    try:
        return validate_tag_value(key, text)
    except ValueError as e:
        raise ParseError(f"{where}: {e}") from None


def _value(raw: object, fm: FieldMap, where: str) -> FieldValue | None:
    """One mapped value → the field's SI value (None: absent)."""
    spec = FIELDS[fm.field]
    si: float
    if raw is _MISSING or raw is None:
        return None
    if isinstance(raw, bool):
        if fm.field not in _BOOL_FIELDS:
            raise ParseError(f"{where}: expected a number, got {raw!r}")
        return int(raw)
    if isinstance(raw, int | float):
        if isinstance(raw, float) and math.isnan(raw):
            return None
        try:
            si = float(raw) * fm.factor
        except OverflowError:
            raise ParseError(f"{where}: {raw!r} is out of range") from None
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in NOT_AVAILABLE or text.lower() in ("nan", "-nan"):
            return None
        try:
            si = float(text) * fm.factor  # a bare number: in the configured unit
        except ValueError:
            try:
                parsed = parse_quantity(text, spec.unit)  # a number with its own unit
            except QuantityError as e:
                raise ParseError(f"{where}: {e}") from None
            if parsed is None:
                return None
            si = parsed * fm.scale
        except OverflowError:
            raise ParseError(f"{where}: {text[:40]!r} is out of range") from None
    else:
        raise ParseError(f"{where}: expected a number or a string, got {type(raw).__name__}")
    if not math.isfinite(si):
        raise ParseError(f"{where}: {raw!r:.40} is not finite")
    if fm.field in _NON_NEGATIVE and si < 0:
        raise ParseError(f"{where}: {fm.field} cannot be negative, got {si!r}")
    if spec.type is FieldType.INT:
        if abs(si) >= 2**63:
            raise ParseError(f"{where}: {si!r} is out of the int64 range")
        return round(si)
    return si


def parse_devices(raw: bytes, config: Config) -> list[CommandDevice]:
    """The tool's stdout → one :class:`CommandDevice` per device object (pure)."""
    source = config.source
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ParseError(f"{source}: expected a JSON document: {e}") from None
    where_list = f"{source}: {config.devices or '(top)'}"
    items = _lookup(doc, split_path(config.devices), where_list)
    if not isinstance(items, list):
        got = "nothing" if items is _MISSING else type(items).__name__
        raise ParseError(f"{where_list}: expected a list of devices, got {got}")
    id_path = split_path(config.device_field)
    model_path = split_path(config.model_field)
    devices: list[CommandDevice] = []
    seen: set[str] = set()
    for i, entry in enumerate(items):
        where = f"{source}: {config.devices + '.' if config.devices else ''}{i}"
        if not isinstance(entry, dict):
            raise ParseError(f"{where}: expected a device object, got {type(entry).__name__}")
        device = _tag(
            _lookup(entry, id_path, f"{where}.{config.device_field}"),
            "device",
            f"{where}.{config.device_field}",
        )
        if device is None:
            raise ParseError(
                f"{where}.{config.device_field}: missing (the device's identity is required)"
            )
        if device in seen:
            raise ParseError(f"{where}.{config.device_field}: device {device!r} appears twice")
        seen.add(device)
        model: str | None = None
        if model_path:
            mwhere = f"{where}.{config.model_field}"
            model = _tag(_lookup(entry, model_path, mwhere), "model", mwhere)
        model = model or config.model or None
        if model is None:
            raise ParseError(f"{where}.{config.model_field}: missing and no fixed model configured")
        values: list[tuple[str, FieldValue]] = []
        for fm in config.fields:
            fwhere = f"{where}.{fm.path}"
            value = _value(_lookup(entry, split_path(fm.path), fwhere), fm, fwhere)
            if value is not None:
                values.append((fm.field, value))
        devices.append(CommandDevice(device, model, tuple(sorted(values))))
    return devices


def parse(raw: bytes, config: Config, *, ts_ns: int) -> list[Sample]:
    """The tool's stdout → ``accel`` samples; a device with no value gives none (pure)."""
    samples: list[Sample] = []
    for d in parse_devices(raw, config):
        if not d.values:
            continue
        tags = {"vendor": config.vendor, "model": d.model, "device": d.device}
        try:
            samples.append(Sample.build(Measurement.ACCEL, ts_ns, tags, dict(d.values)))
        except ValueError as e:
            raise ParseError(f"{config.source}: device {d.device!r}: {e}") from None
    return samples


# ------------------------------------------------------------------------------------ I/O


class CommandCollector:
    """Runs ``argv`` each poll and maps its JSON by :class:`Config`."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config

    async def _run(self) -> bytes:
        return await run_tool(list(self.config.argv), self.config.timeout_s)

    async def collect(self) -> list[Sample]:
        raw = await self._run()
        return parse(raw, self.config, ts_ns=time.time_ns())

    async def inventory(self) -> list[DeviceInfo]:
        raw = await self._run()
        return [
            DeviceInfo(vendor=self.config.vendor, model=d.model, id=d.device, collector=self.name)
            for d in parse_devices(raw, self.config)
        ]

    async def aclose(self) -> None:
        return None


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="command",
    config=Config,
    factory=CommandCollector,
    demo=True,
)
