"""Verdicts against the targets, and what the energy means in money and carbon.

The baseline for a service is the GPU class (``measurement.baseline_vendor`` devices) measured on the
same service over the same window (``baseline_kind = "measured"``). Where none was measured, the
workload's published reference value for ``baseline_device_default`` (else any reference of the
baseline vendor) is used, and the verdict says so (``baseline_kind = "published_reference"``, with the
reference's scope and status: TDP-normalised references are not measured power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kwatt.analytics.ppw import Analysis, Level, PpwRow
from kwatt.analytics.targets import PHASES, Provenance, Reference, Targets
from kwatt.analytics.work import WorkUnit

__all__ = [
    "Cost",
    "Verdict",
    "cost_of",
    "is_baseline",
    "phases_with_data",
    "verdicts",
    "work_per_unit_label",
]

J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Verdict:
    service: str
    device_class: str
    phase: str  # the phase whose target this verdict applies
    class_phase: str  # the phase the device class belongs to (Targets.phase_of)
    workload: str
    workload_assumed: Provenance | None  # set when the workload came from default_workload
    work_unit: WorkUnit
    work_per_j: float
    baseline_kind: str  # "measured" | "published_reference" | "none"
    baseline_name: str
    baseline_work_per_j: float
    baseline_note: str
    ratio_vs_baseline: float
    target_ratio: float
    target: Provenance
    stretch: float | None
    meets_target: bool | None  # None when there is no baseline or no usable window
    margin: float  # ratio - target (in ratio units)
    margin_pct: float  # (ratio / target - 1) × 100
    latency_p99_s: float | None
    latency_p99_s_max: float | None
    latency_ok: bool | None
    tops_per_w: float | None
    chip_floor_tflops_per_w: float | None
    row: PpwRow

    @property
    def meets_chip_floor(self) -> bool | None:
        if self.tops_per_w is None or self.chip_floor_tflops_per_w is None:
            return None
        return self.tops_per_w >= self.chip_floor_tflops_per_w


def is_baseline(device_class: str | None, targets: Targets) -> bool:
    """True for the GPU baseline's device classes (``vendor/model`` of the baseline vendor)."""
    return device_class is not None and device_class.split("/")[0] == targets.baseline_vendor


def _reference(targets: Targets, refs: tuple[Reference, ...]) -> Reference | None:
    for r in refs:
        if r.device == targets.baseline_device_default:
            return r
    for r in refs:
        if r.device.startswith(targets.baseline_vendor):
            return r
    return None


def verdicts(analysis: Analysis, targets: Targets, phase: str | None = None) -> list[Verdict]:
    """One verdict per service and non-baseline device class: against ``phase``'s target, or, with
    no ``phase``, against the target of the phase each class belongs to (``Targets.phase_of``: the
    phase-2 PIM devices against the phase-2 targets, the NPUs against the default phase's)."""
    if phase is None:
        return [
            v
            for p in dict.fromkeys((targets.default_phase, *PHASES))
            for v in _verdicts(analysis, targets, p)
            if v.phase == v.class_phase
        ]
    return _verdicts(analysis, targets, phase)


def phases_with_data(analysis: Analysis, targets: Targets) -> tuple[str, ...]:
    """The phases (in :data:`PHASES` order) of the non-baseline device classes ``analysis`` holds."""
    present = {
        targets.phase_of(str(r.device_class))
        for r in analysis.select(Level.DEVICE_CLASS)
        if r.device_class is not None
    }
    return tuple(p for p in PHASES if p in present)


def _verdicts(analysis: Analysis, targets: Targets, phase: str) -> list[Verdict]:
    out: list[Verdict] = []
    for svc in analysis.services:
        classes = analysis.select(Level.DEVICE_CLASS, service=svc)
        if not classes:
            continue
        unit = classes[0].work_unit or WorkUnit.REQUESTS
        workload, assumed = targets.workload_for(svc, unit)
        tgt = workload.targets.get(phase)
        if tgt is None:
            continue
        gpu = [r for r in classes if is_baseline(r.device_class, targets)]
        usable_gpu = [r for r in gpu if r.aligned and r.work > 0 and r.energy_j > 0]
        for row in classes:
            if is_baseline(row.device_class, targets):
                continue
            if usable_gpu:
                energy = sum(r.energy_j for r in usable_gpu)
                base = sum(r.work for r in usable_gpu) / energy
                kind = "measured"
                name = "+".join(str(r.device_class) for r in usable_gpu)
                note = "GPU measured on the same service over the same window"
            else:
                ref = _reference(targets, workload.references)
                if ref is None:
                    base, kind, name, note = (
                        math.nan,
                        "none",
                        "",
                        "no GPU measured and no published reference",
                    )
                else:
                    base, kind, name = ref.work_per_j, "published_reference", ref.device
                    note = (
                        f"no GPU measured on this service: published {ref.scope}-scope value "
                        f"({ref.provenance.status}, {ref.provenance.source})"
                    )
            wpj = row.work_per_j
            ratio = wpj / base if base > 0 and math.isfinite(wpj) else math.nan
            usable = row.aligned and math.isfinite(ratio)
            lat_max = workload.latency_p99_s_max.value if workload.latency_p99_s_max else None
            lat_ok = None
            if lat_max is not None and row.latency_p99_s is not None:
                lat_ok = row.latency_p99_s <= lat_max
            meets = (
                None if not usable else (ratio >= tgt.min_ratio_vs_baseline and lat_ok is not False)
            )
            tops = None
            floor = targets.chip_floors.get(phase)
            if workload.ops_per_unit is not None and math.isfinite(wpj):
                tops = wpj * workload.ops_per_unit.value / 1e12
            out.append(
                Verdict(
                    service=svc,
                    device_class=str(row.device_class),
                    phase=phase,
                    class_phase=targets.phase_of(str(row.device_class)) or phase,
                    workload=workload.name,
                    workload_assumed=assumed,
                    work_unit=unit,
                    work_per_j=wpj,
                    baseline_kind=kind,
                    baseline_name=name,
                    baseline_work_per_j=base,
                    baseline_note=note,
                    ratio_vs_baseline=ratio,
                    target_ratio=tgt.min_ratio_vs_baseline,
                    target=tgt.provenance,
                    stretch=tgt.stretch,
                    meets_target=meets,
                    margin=ratio - tgt.min_ratio_vs_baseline,
                    margin_pct=(ratio / tgt.min_ratio_vs_baseline - 1.0) * 100.0,
                    latency_p99_s=row.latency_p99_s,
                    latency_p99_s_max=lat_max,
                    latency_ok=lat_ok,
                    tops_per_w=tops,
                    chip_floor_tflops_per_w=None if floor is None else floor.min_tflops_per_w,
                    row=row,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Cost:
    """Energy of a row in kWh, money and CO2, and energy per 1,000 inferences / 1M tokens."""

    energy_kwh: float
    cost: float
    currency: str
    co2_kg: float
    per_label: str  # "1k inferences", "1M tokens", "1k requests"
    kwh_per: float  # kWh per that many units of work
    cost_per: float
    co2_kg_per: float


def work_per_unit_label(unit: WorkUnit | None) -> tuple[str, float]:
    if unit is WorkUnit.TOKENS:
        return "1M tokens", 1e6
    if unit is WorkUnit.INFERENCES:
        return "1k inferences", 1e3
    return "1k requests", 1e3


def cost_of(row: PpwRow, targets: Targets) -> Cost:
    eco = targets.economics
    kwh = row.energy_j / J_PER_KWH
    label, n = work_per_unit_label(row.work_unit)
    kwh_per = row.j_per_work * n / J_PER_KWH if row.work > 0 else math.nan
    return Cost(
        kwh,
        kwh * eco.tariff_per_kwh.value,
        eco.currency,
        kwh * eco.grid_kg_co2_per_kwh.value,
        label,
        kwh_per,
        kwh_per * eco.tariff_per_kwh.value,
        kwh_per * eco.grid_kg_co2_per_kwh.value,
    )
