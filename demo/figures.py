"""What ``kwatt demo`` says at the end: per service, work per joule by device class, the ratio to the
GPU baseline, the verdict of the fleet's phase (phase 1 by default; ``--phase``) with its target's
source, and the pipeline's own error against the emulators' ground truth.

The measured side is :func:`kwatt.analytics.findings.build_report` over what InfluxDB holds (the
same code as ``kwatt report``). The true side is each node's truth log (read with
:func:`kwatt.emulators.truth.read_log`: one record per physics step with ``wall_ns``, every device's
exact ``energy_j`` integral and ``service``, and per service the ``served_units_total``),
interpolated at the same window edges. Both use one window: the span every node's accel and
serving series cover (the latest first sample to the earliest last one), so no node is charged for
time it was not yet running.

``energy_error_pct`` = (measured energy / true energy − 1) × 100 and ``perf_per_watt_error_pct`` =
(measured work per J / true work per J − 1) × 100, per service and device class. The true work is the
physics' served units (frames, images, generated tokens); the serving runtimes count completed requests,
so a request in flight at a window edge is part of the measured error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kwatt.analytics.findings import build_report
from kwatt.analytics.load import SeriesSet
from kwatt.analytics.ppw import Level, Options
from kwatt.analytics.targets import Targets
from kwatt.analytics.verdict import is_baseline
from kwatt.emulators.truth import TruthError, read_log

__all__ = [
    "ClassFigures",
    "FleetFigures",
    "NodeTruth",
    "ServiceFigures",
    "TruthError",
    "VerdictFigures",
    "aligned_window",
    "common_window",
    "fleet_figures",
    "read_truth",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NodeTruth:
    """One node's ground truth for one service: its devices' summed energy and the served work."""

    node: str
    service: str
    devices: int
    t_s: F64  # wall time of each step, s
    energy_j: F64  # true energy of the service's devices since the node started, J
    work: F64  # served units (frames, images, generated tokens) since the node started


def read_truth(path: Path) -> list[NodeTruth]:
    """Parse a node's truth log into one :class:`NodeTruth` per service it runs.

    Raises :class:`~kwatt.emulators.truth.TruthError` on a line that is not a truth record.
    """
    t: list[float] = []
    energy: dict[str, list[float]] = {}
    work: dict[str, list[float]] = {}
    devices: dict[str, int] = {}
    node = ""
    for rec in read_log(path):
        node = rec.node
        per_svc: dict[str, float] = {}
        counts: dict[str, int] = {}
        for d in rec.devices:
            per_svc[d.service] = per_svc.get(d.service, 0.0) + float(d.energy_j)
            counts[d.service] = counts.get(d.service, 0) + 1
        t.append(rec.wall_ns / 1e9)
        for svc, e_j in per_svc.items():
            served = rec.services.get(svc)
            energy.setdefault(svc, []).append(e_j)
            work.setdefault(svc, []).append(
                math.nan if served is None else float(served.served_units_total)
            )
            devices[svc] = counts[svc]
    out = []
    for svc in sorted(energy):
        out.append(
            NodeTruth(
                node,
                svc,
                devices[svc],
                np.asarray(t, dtype=np.float64),
                np.asarray(energy[svc], dtype=np.float64),
                np.asarray(work[svc], dtype=np.float64),
            )
        )
    return out


def _at(t: F64, v: F64, x: float) -> float:
    if t.size == 0 or not t[0] <= x <= t[-1]:
        return math.nan  # the truth does not cover the edge: no figure rather than an extrapolation
    return float(np.interp(x, t, v))


def truth_over(truths: Iterable[NodeTruth], start_s: float, end_s: float) -> tuple[float, float]:
    """True energy (J) and served work of ``truths`` over ``[start_s, end_s]`` (NaN if uncovered)."""
    energy = work = 0.0
    for tr in truths:
        energy += _at(tr.t_s, tr.energy_j, end_s) - _at(tr.t_s, tr.energy_j, start_s)
        work += _at(tr.t_s, tr.work, end_s) - _at(tr.t_s, tr.work, start_s)
    return energy, work


def common_window(ss: SeriesSet) -> tuple[float, float] | None:
    """The span every accel and serving series covers: (latest first sample, earliest last), s."""
    firsts, lasts = [], []
    for s in ss.series:
        if s.key.measurement in ("accel", "serving") and len(s) >= 2:
            firsts.append(int(s.t_ns[0]))
            lasts.append(int(s.t_ns[-1]))
    if not firsts or max(firsts) >= min(lasts):
        return None
    return max(firsts) / 1e9, min(lasts) / 1e9


def _node_series(ss: SeriesSet) -> dict[str, tuple[list[F64], list[F64]]]:
    """Per node: sample times of its accel power/energy series and of its serving work counters."""
    out: dict[str, tuple[list[F64], list[F64]]] = {}
    for s in ss.series:
        node = s.tag("node")
        if node is None or len(s) == 0:
            continue
        power, work = out.setdefault(node, ([], []))
        if s.key.measurement == "accel" and s.key.field in ("power_w", "energy_j"):
            power.append(s.t_s)
        elif s.key.measurement == "serving" and s.key.field.endswith("_total"):
            work.append(s.t_s)
    return {n: pw for n, pw in out.items() if pw[0] and pw[1]}


def _first_at_or_after(ts: Sequence[F64], x: float) -> float:
    firsts = [float(t[i]) for t in ts if (i := int(np.searchsorted(t, x, side="left"))) < t.size]
    return min(firsts) if firsts else math.nan


def _last_at_or_before(ts: Sequence[F64], x: float) -> float:
    lasts = [float(t[i]) for t in ts if (i := int(np.searchsorted(t, x, side="right")) - 1) >= 0]
    return max(lasts) if lasts else math.nan


def aligned_window(
    ss: SeriesSet, window: tuple[float, float], interval_s: float, step_s: float = 0.02
) -> tuple[float, float]:
    """Move ``window``'s edges inwards (by less than one poll interval) to where every node's power
    and work samples nearest each edge are closest together.

    A node's collectors poll on their own schedules, so an edge that falls between a node's power
    read and its work read puts that node's nearest samples a whole interval apart, and the analysis
    (rightly) refuses a verdict for a power/work skew over 0.8 s. Choosing the edges where the reads
    sit together is what aligning the windows means (MLPerf Power aligns the power window to the
    run's timestamps); the figures are then over one window for power, work and truth alike.
    """
    nodes = _node_series(ss)
    start, end = window
    if not nodes:
        return window
    steps = np.arange(0.0, interval_s, step_s)

    def worst(edge: float, at: Callable[[Sequence[F64], float], float]) -> float:
        skews = [abs(at(p, edge) - at(w, edge)) for p, w in nodes.values()]
        finite = [x for x in skews if math.isfinite(x)]
        return max(finite) if finite else math.inf

    best_a = min((worst(start + d, _first_at_or_after), d) for d in steps)[1]
    best_b = min((worst(end - d, _last_at_or_before), d) for d in steps)[1]
    if start + best_a >= end - best_b:
        return window
    return start + float(best_a), end - float(best_b)


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One device class on one service: measured through the pipeline, and true."""

    device_class: str
    gpu_baseline: bool
    nodes: tuple[str, ...]
    devices: int
    work: float
    true_work: float
    energy_j: float
    true_energy_j: float
    mean_power_w: float
    work_per_j: float
    true_work_per_j: float
    energy_error_pct: float
    perf_per_watt_error_pct: float
    energy_method: str
    coverage: float


@dataclass(frozen=True, slots=True)
class VerdictFigures:
    """The phase verdict of one NPU class against the service's GPU baseline."""

    device_class: str
    ratio_vs_baseline: float
    baseline_kind: str  # measured | published_reference | none
    baseline: str
    baseline_work_per_j: float
    target_ratio: float
    meets_target: bool | None
    margin_pct: float
    note: str
    #: The phase the class belongs to (targets.yaml ``device_phases``), and the target's provenance.
    class_phase: str = ""
    target_status: str = ""
    target_source: str = ""


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    service: str
    work_unit: str
    workload: str
    classes: tuple[ClassFigures, ...]
    verdicts: tuple[VerdictFigures, ...]


@dataclass(frozen=True, slots=True)
class FleetFigures:
    start_s: float
    end_s: float
    phase: str
    services: tuple[ServiceFigures, ...]
    #: The phases of the non-baseline device classes the fleet ran.
    phases: tuple[str, ...] = ()

    @property
    def window_s(self) -> float:
        return self.end_s - self.start_s

    def max_abs_error_pct(self) -> tuple[float, float]:
        """The largest |energy_error_pct| and |perf_per_watt_error_pct| over every class."""
        rows = [c for s in self.services for c in s.classes]
        e = [abs(c.energy_error_pct) for c in rows if math.isfinite(c.energy_error_pct)]
        p = [
            abs(c.perf_per_watt_error_pct) for c in rows if math.isfinite(c.perf_per_watt_error_pct)
        ]
        return (max(e) if e else math.nan, max(p) if p else math.nan)

    def to_json(self) -> dict[str, object]:
        """The ``services`` part of the demo's JSON summary (NaN → null)."""
        e, p = self.max_abs_error_pct()
        return {
            "window": {
                "start_s": round(self.start_s, 3),
                "end_s": round(self.end_s, 3),
                "length_s": round(self.window_s, 3),
            },
            "phase": self.phase,
            "phases": list(self.phases),
            "max_abs_energy_error_pct": _j(e),
            "max_abs_perf_per_watt_error_pct": _j(p),
            "services": {
                s.service: {
                    "work_unit": s.work_unit,
                    "workload": s.workload,
                    "work_per_j_by_class": {c.device_class: _j(c.work_per_j, 6) for c in s.classes},
                    "classes": {
                        c.device_class: {
                            "gpu_baseline": c.gpu_baseline,
                            "nodes": list(c.nodes),
                            "devices": c.devices,
                            "work": _j(c.work, 1),
                            "true_work": _j(c.true_work, 1),
                            "energy_j": _j(c.energy_j, 2),
                            "true_energy_j": _j(c.true_energy_j, 2),
                            "mean_power_w": _j(c.mean_power_w, 2),
                            "work_per_j": _j(c.work_per_j, 6),
                            "true_work_per_j": _j(c.true_work_per_j, 6),
                            "energy_error_pct": _j(c.energy_error_pct, 3),
                            "perf_per_watt_error_pct": _j(c.perf_per_watt_error_pct, 3),
                            "energy_method": c.energy_method,
                            "coverage": _j(c.coverage, 4),
                        }
                        for c in s.classes
                    },
                    "verdicts": [
                        {
                            "device_class": v.device_class,
                            "ratio_vs_baseline": _j(v.ratio_vs_baseline, 4),
                            "baseline_kind": v.baseline_kind,
                            "baseline": v.baseline,
                            "baseline_work_per_j": _j(v.baseline_work_per_j, 6),
                            "target_ratio": v.target_ratio,
                            "meets_target": v.meets_target,
                            "margin_pct": _j(v.margin_pct, 2),
                            "note": v.note,
                            "class_phase": v.class_phase,
                            "target_status": v.target_status,
                            "target_source": v.target_source,
                        }
                        for v in s.verdicts
                    ],
                }
                for s in self.services
            },
        }


def _j(v: float, digits: int = 3) -> float | None:
    return round(v, digits) if math.isfinite(v) else None


def _pct(measured: float, true: float) -> float:
    if not (math.isfinite(measured) and math.isfinite(true)) or true <= 0:
        return math.nan
    return (measured / true - 1.0) * 100.0


def fleet_figures(
    ss: SeriesSet,
    truths: Sequence[NodeTruth],
    targets: Targets,
    *,
    window: tuple[float, float],
    min_window_s: float,
    phase: str | None = None,
) -> FleetFigures:
    """Analyse ``ss`` over ``window`` (as ``kwatt report`` would) and compare with the truth."""
    start_s, end_s = window
    report = build_report(
        ss, start_s, end_s, targets, options=Options(min_window_s=min_window_s), phase=phase
    )
    a = report.analysis
    services = []
    for svc in a.services:
        rows = a.select(Level.DEVICE_CLASS, service=svc)
        if not rows:
            continue
        unit = rows[0].work_unit
        classes = []
        for row in rows:
            nodes = tuple(
                sorted(
                    {
                        d.device.node
                        for d in a.devices
                        if d.service == svc and d.device.device_class == row.device_class
                    }
                )
            )
            mine = [t for t in truths if t.service == svc and t.node in nodes]
            true_e, true_w = truth_over(mine, a.start_s, a.end_s)
            true_wpj = true_w / true_e if true_e > 0 else math.nan
            classes.append(
                ClassFigures(
                    device_class=str(row.device_class),
                    gpu_baseline=is_baseline(row.device_class, targets),
                    nodes=nodes,
                    devices=row.devices,
                    work=row.work,
                    true_work=true_w,
                    energy_j=row.energy_j,
                    true_energy_j=true_e,
                    mean_power_w=row.mean_power_w,
                    work_per_j=row.work_per_j,
                    true_work_per_j=true_wpj,
                    energy_error_pct=_pct(row.energy_j, true_e),
                    perf_per_watt_error_pct=_pct(row.work_per_j, true_wpj),
                    energy_method=row.energy_method,
                    coverage=row.coverage,
                )
            )
        vs = [v for v in report.verdicts if v.service == svc]
        services.append(
            ServiceFigures(
                service=svc,
                work_unit=str(unit) if unit is not None else "none",
                workload=vs[0].workload if vs else "",
                classes=tuple(classes),
                verdicts=tuple(
                    VerdictFigures(
                        device_class=v.device_class,
                        ratio_vs_baseline=v.ratio_vs_baseline,
                        baseline_kind=v.baseline_kind,
                        baseline=v.baseline_name,
                        baseline_work_per_j=v.baseline_work_per_j,
                        target_ratio=v.target_ratio,
                        meets_target=v.meets_target,
                        margin_pct=v.margin_pct,
                        note=v.baseline_note if v.row.aligned else v.row.note,
                        class_phase=v.class_phase,
                        target_status=v.target.status,
                        target_source=v.target.source,
                    )
                    for v in vs
                ),
            )
        )
    return FleetFigures(a.start_s, a.end_s, report.phase, tuple(services), report.phases)
