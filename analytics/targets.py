"""Targets: the shipped ``targets.yaml`` (from docs/targets.md §4), a user override, typed.

:func:`load_targets` reads the default file, merges the user's file over it key by key (mappings
merge, lists and scalars replace) and validates the result into frozen dataclasses. Every number must
carry a ``status`` (:data:`STATUSES`) and a ``source`` (an assumption may give ``why`` instead). A bad
key raises :class:`TargetsError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kwatt.analytics.work import WorkUnit

__all__ = [
    "PHASES",
    "STATUSES",
    "ChipFloor",
    "DevicePhase",
    "Economics",
    "Provenance",
    "RatioTarget",
    "Reference",
    "Sourced",
    "Targets",
    "TargetsError",
    "Workload",
    "default_targets_text",
    "load_targets",
]

PHASES = ("phase1_npu", "phase2_dram_pim", "phase3_nvm_analog_pim")
STATUSES = frozenset({"sourced", "derived", "secondary", "vendor_claim", "assumption"})


class TargetsError(ValueError):
    """A targets file that cannot be used: names the file, the key and what was expected."""


@dataclass(frozen=True, slots=True)
class Provenance:
    status: str
    source: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Sourced:
    """A number with its provenance."""

    value: float
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class RatioTarget:
    min_ratio_vs_baseline: float
    stretch: float | None
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class Reference:
    """A published work-per-joule value (work unit per J = per s per W) for a device."""

    device: str
    work_per_j: float
    scope: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    work_unit: WorkUnit
    metric: str
    targets: Mapping[str, RatioTarget]
    references: tuple[Reference, ...]
    latency_p99_s_max: Sourced | None
    ops_per_unit: Sourced | None


@dataclass(frozen=True, slots=True)
class ChipFloor:
    min_tflops_per_w: float
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class Economics:
    tariff_per_kwh: Sourced
    currency: str
    grid_kg_co2_per_kwh: Sourced


@dataclass(frozen=True, slots=True)
class DevicePhase:
    """The K-Cloud phase a device class (``vendor/model``) belongs to, and why."""

    phase: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class Targets:
    files: tuple[str, ...]
    baseline_vendor: str
    baseline_device_default: str
    default_phase: str
    phases: Mapping[str, tuple[int, int]]
    chip_floors: Mapping[str, ChipFloor]
    workloads: Mapping[str, Workload]
    services: Mapping[str, str]
    default_workload: Mapping[WorkUnit, tuple[str, Provenance]]
    economics: Economics
    #: device class (``vendor/model`` as the collectors tag it) → its phase; a class not listed
    #: (and not the GPU baseline) belongs to ``default_phase``.
    device_phases: Mapping[str, DevicePhase] = field(default_factory=dict)

    def phase_of(self, device_class: str) -> str | None:
        """The phase ``device_class`` is judged in; ``None`` for the GPU baseline's classes."""
        if device_class.split("/", maxsplit=1)[0] == self.baseline_vendor:
            return None
        dp = self.device_phases.get(device_class)
        return self.default_phase if dp is None else dp.phase

    def workload_for(self, service: str, unit: WorkUnit) -> tuple[Workload, Provenance | None]:
        """The workload of ``service``: configured (provenance ``None``), else the default for the
        unit of work (with that default's provenance, an assumption)."""
        name = self.services.get(service)
        if name is not None:
            return self.workloads[name], None
        wl, prov = self.default_workload[unit]
        return self.workloads[wl], prov


def default_targets_text() -> str:
    """The shipped ``targets.yaml`` (package data next to this module)."""
    return Path(__file__).with_name("targets.yaml").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- reading


class _Reader:
    """Typed access to a parsed YAML tree with errors naming the file and the key path."""

    def __init__(
        self, where: str, default_doc: object, user_doc: object, user_file: str | None
    ) -> None:
        self.where = where
        self.default_doc = default_doc
        self.user_doc = user_doc
        self.user_file = user_file

    @staticmethod
    def _has(doc: object, path: tuple[str, ...]) -> bool:
        node = doc
        for k in path:
            if not isinstance(node, Mapping) or k not in node:
                return False
            node = node[k]
        return True

    def _file_of(self, path: tuple[str, ...]) -> str:
        """The user's file when the bad key is theirs (or sits in a mapping only they wrote)."""
        if self.user_file is not None and (
            self._has(self.user_doc, path)
            or (self._has(self.user_doc, path[:-1]) and not self._has(self.default_doc, path[:-1]))
        ):
            return self.user_file
        return self.where

    def fail(self, path: tuple[str, ...], expected: str, got: object = None) -> TargetsError:
        key = ".".join(path) or "<top>"
        tail = "" if got is None else f", got {got!r}"
        return TargetsError(f"{self._file_of(path)}: {key}: expected {expected}{tail}")

    def mapping(self, node: object, path: tuple[str, ...]) -> Mapping[str, object]:
        if not isinstance(node, Mapping) or not all(isinstance(k, str) for k in node):
            raise self.fail(path, "a mapping with string keys", type(node).__name__)
        return node

    def get(self, m: Mapping[str, object], path: tuple[str, ...], key: str) -> object:
        if key not in m:
            raise self.fail((*path, key), "this key (missing)")
        return m[key]

    def number(self, node: object, path: tuple[str, ...], *, positive: bool = True) -> float:
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise self.fail(path, "a number", node)
        v = float(node)
        if not math.isfinite(v) or (positive and v <= 0):
            raise self.fail(path, "a finite number > 0" if positive else "a finite number", node)
        return v

    def text(self, node: object, path: tuple[str, ...]) -> str:
        if not isinstance(node, str) or not node.strip():
            raise self.fail(path, "a non-empty string", node)
        return node

    def only(self, m: Mapping[str, object], path: tuple[str, ...], allowed: set[str]) -> None:
        for k in m:
            if k not in allowed:
                raise self.fail((*path, k), f"one of the keys {', '.join(sorted(allowed))}")

    def provenance(self, m: Mapping[str, object], path: tuple[str, ...]) -> Provenance:
        status = self.text(self.get(m, path, "status"), (*path, "status"))
        if status not in STATUSES:
            raise self.fail((*path, "status"), f"one of {', '.join(sorted(STATUSES))}", status)
        src = m.get("source", m.get("why") if status == "assumption" else None)
        if src is None:
            need = "'source' or 'why'" if status == "assumption" else "'source'"
            raise self.fail((*path, "source"), f"{need} (every number needs its source)")
        note = m.get("note", "")
        return Provenance(status, self.text(src, (*path, "source")), str(note))

    def sourced(self, node: object, path: tuple[str, ...]) -> Sourced:
        m = self.mapping(node, path)
        self.only(m, path, {"value", "status", "source", "why", "note", "currency"})
        return Sourced(
            self.number(self.get(m, path, "value"), (*path, "value")), self.provenance(m, path)
        )


_PROV_KEYS = {"status", "source", "why", "note"}


def _merge(base: object, over: object) -> object:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


def _parse_yaml(text: str, where: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TargetsError(f"{where}: not valid YAML: {e}") from e


def load_targets(user_file: Path | None = None) -> Targets:
    """The default targets, with ``user_file`` merged over them when given."""
    default_where = "analytics/targets.yaml (default)"
    doc = default_doc = _parse_yaml(default_targets_text(), default_where)
    user_doc: object = None
    files = [default_where]
    if user_file is not None:
        try:
            text = user_file.read_text(encoding="utf-8")
        except OSError as e:
            raise TargetsError(f"{user_file}: cannot read: {e.strerror or e}") from e
        user_doc = _parse_yaml(text, str(user_file)) or {}
        if not isinstance(user_doc, Mapping):
            raise TargetsError(f"{user_file}: expected a mapping at the top level")
        top = set(doc) if isinstance(doc, Mapping) else set()
        for k in user_doc:
            if k not in top:
                raise TargetsError(
                    f"{user_file}: {k}: unknown key; expected one of {', '.join(sorted(top))}"
                )
        doc = _merge(doc, user_doc)
        files.append(str(user_file))
    r = _Reader(default_where, default_doc, user_doc, None if user_file is None else str(user_file))
    return _build(r, doc, tuple(files))


def _build(r: _Reader, doc: object, files: tuple[str, ...]) -> Targets:
    top = r.mapping(doc, ())
    r.only(
        top,
        (),
        {
            "version",
            "measurement",
            "phases",
            "chip_level_efficiency",
            "device_phases",
            "services",
            "default_workload",
            "workloads",
            "economics",
        },
    )
    meas = r.mapping(r.get(top, (), "measurement"), ("measurement",))
    r.only(
        meas,
        ("measurement",),
        {
            "power_scope_default",
            "tdp_normalized_allowed",
            "baseline_vendor",
            "baseline_device_default",
            "default_phase",
        },
    )
    default_phase = r.text(
        r.get(meas, ("measurement",), "default_phase"), ("measurement", "default_phase")
    )
    if default_phase not in PHASES:
        raise r.fail(("measurement", "default_phase"), f"one of {', '.join(PHASES)}", default_phase)

    phases: dict[str, tuple[int, int]] = {}
    pm = r.mapping(r.get(top, (), "phases"), ("phases",))
    for name in PHASES:
        path = ("phases", name)
        m = r.mapping(r.get(pm, ("phases",), name), path)
        years = m.get("years")
        if not (
            isinstance(years, list) and len(years) == 2 and all(isinstance(y, int) for y in years)
        ):
            raise r.fail((*path, "years"), "[first_year, last_year]", years)
        r.provenance(m, path)
        phases[name] = (years[0], years[1])
    r.only(pm, ("phases",), set(PHASES))

    floors: dict[str, ChipFloor] = {}
    cm = r.mapping(r.get(top, (), "chip_level_efficiency"), ("chip_level_efficiency",))
    r.only(cm, ("chip_level_efficiency",), set(PHASES))
    for name, node in cm.items():
        path = ("chip_level_efficiency", name)
        m = r.mapping(node, path)
        r.only(m, path, {"min_tflops_per_w"} | _PROV_KEYS)
        v = r.number(r.get(m, path, "min_tflops_per_w"), (*path, "min_tflops_per_w"))
        floors[name] = ChipFloor(v, r.provenance(m, path))

    workloads: dict[str, Workload] = {}
    wm = r.mapping(r.get(top, (), "workloads"), ("workloads",))
    for name, node in wm.items():
        workloads[name] = _workload(r, name, node)

    services: dict[str, str] = {}
    sm = r.mapping(top.get("services") or {}, ("services",))
    for svc, wl in sm.items():
        if wl not in workloads:
            raise r.fail(("services", svc), f"a workload name ({', '.join(workloads)})", wl)
        services[svc] = str(wl)

    defaults: dict[WorkUnit, tuple[str, Provenance]] = {}
    dm = r.mapping(r.get(top, (), "default_workload"), ("default_workload",))
    r.only(dm, ("default_workload",), {u.value for u in WorkUnit})
    for unit in WorkUnit:
        path = ("default_workload", unit.value)
        m = r.mapping(r.get(dm, ("default_workload",), unit.value), path)
        r.only(m, path, {"workload"} | _PROV_KEYS)
        wl = r.get(m, path, "workload")
        if wl not in workloads:
            raise r.fail((*path, "workload"), f"a workload name ({', '.join(workloads)})", wl)
        defaults[unit] = (str(wl), r.provenance(m, path))

    device_phases: dict[str, DevicePhase] = {}
    dpm = r.mapping(top.get("device_phases") or {}, ("device_phases",))
    for cls, node in dpm.items():
        path = ("device_phases", cls)
        vendor, slash, model_tag = cls.partition("/")
        if not slash or not vendor or not model_tag:
            raise r.fail(path, "a device class key vendor/model (the accel tags)", cls)
        if vendor == meas.get("baseline_vendor"):
            raise r.fail(
                path, "a class not of the baseline vendor (the GPU baseline of every phase)"
            )
        m = r.mapping(node, path)
        r.only(m, path, {"phase"} | _PROV_KEYS)
        phase = r.text(r.get(m, path, "phase"), (*path, "phase"))
        if phase not in PHASES:
            raise r.fail((*path, "phase"), f"one of {', '.join(PHASES)}", phase)
        device_phases[cls] = DevicePhase(phase, r.provenance(m, path))

    em = r.mapping(r.get(top, (), "economics"), ("economics",))
    r.only(em, ("economics",), {"tariff_per_kwh", "grid_kg_co2_per_kwh"})
    tariff_node = r.mapping(
        r.get(em, ("economics",), "tariff_per_kwh"), ("economics", "tariff_per_kwh")
    )
    economics = Economics(
        r.sourced(tariff_node, ("economics", "tariff_per_kwh")),
        r.text(
            r.get(tariff_node, ("economics", "tariff_per_kwh"), "currency"),
            ("economics", "tariff_per_kwh", "currency"),
        ),
        r.sourced(
            r.get(em, ("economics",), "grid_kg_co2_per_kwh"), ("economics", "grid_kg_co2_per_kwh")
        ),
    )
    return Targets(
        files=files,
        baseline_vendor=r.text(
            r.get(meas, ("measurement",), "baseline_vendor"), ("measurement", "baseline_vendor")
        ),
        baseline_device_default=r.text(
            r.get(meas, ("measurement",), "baseline_device_default"),
            ("measurement", "baseline_device_default"),
        ),
        default_phase=default_phase,
        phases=phases,
        chip_floors=floors,
        workloads=workloads,
        services=services,
        default_workload=defaults,
        economics=economics,
        device_phases=device_phases,
    )


def _workload(r: _Reader, name: str, node: object) -> Workload:
    path = ("workloads", name)
    m = r.mapping(node, path)
    r.only(
        m,
        path,
        {"work_unit", "metric", "targets", "reference_values", "latency_p99_s_max", "ops_per_unit"},
    )
    unit_text = r.text(r.get(m, path, "work_unit"), (*path, "work_unit"))
    try:
        unit = WorkUnit(unit_text)
    except ValueError:
        raise r.fail(
            (*path, "work_unit"), f"one of {', '.join(u.value for u in WorkUnit)}", unit_text
        ) from None
    targets: dict[str, RatioTarget] = {}
    tm = r.mapping(r.get(m, path, "targets"), (*path, "targets"))
    r.only(tm, (*path, "targets"), set(PHASES))
    for phase, tnode in tm.items():
        tp = (*path, "targets", phase)
        t = r.mapping(tnode, tp)
        r.only(t, tp, {"min_ratio_vs_baseline", "stretch"} | _PROV_KEYS)
        stretch = t.get("stretch")
        targets[phase] = RatioTarget(
            r.number(r.get(t, tp, "min_ratio_vs_baseline"), (*tp, "min_ratio_vs_baseline")),
            None if stretch is None else r.number(stretch, (*tp, "stretch")),
            r.provenance(t, tp),
        )
    refs: list[Reference] = []
    rl = m.get("reference_values") or []
    if not isinstance(rl, list):
        raise r.fail((*path, "reference_values"), "a list", type(rl).__name__)
    for i, rnode in enumerate(rl):
        rp = (*path, "reference_values", str(i))
        rm = r.mapping(rnode, rp)
        r.only(rm, rp, {"device", "value", "scope", "model"} | _PROV_KEYS)
        refs.append(
            Reference(
                r.text(r.get(rm, rp, "device"), (*rp, "device")),
                r.number(r.get(rm, rp, "value"), (*rp, "value")),
                r.text(r.get(rm, rp, "scope"), (*rp, "scope")),
                r.provenance(rm, rp),
            )
        )
    lat = m.get("latency_p99_s_max")
    ops = m.get("ops_per_unit")
    return Workload(
        name,
        unit,
        r.text(r.get(m, path, "metric"), (*path, "metric")),
        targets,
        tuple(refs),
        None if lat is None else r.sourced(lat, (*path, "latency_p99_s_max")),
        None if ops is None else r.sourced(ops, (*path, "ops_per_unit")),
    )
