"""Perf-per-watt over aligned windows, per device, node, service, device class and fleet (DESIGN §6).

Method (MLPerf Power style: mlcommons/inference_policies power_measurement.adoc and
mlcommons/power-dev):

* One analysis window ``[start, end]`` (the requested range clipped to the data), shorter windows of
  ``window_s`` inside it for the charts. A window shorter than ``min_window_s`` gets no verdict.
* Energy per device from its counter where it has one, else the trapezoid over ``power_w``
  (:mod:`kwatt.analytics.energy`); work from the serving counters (:mod:`kwatt.analytics.work`).
* Work per joule = work / (mean power over the covered time × window length), i.e. throughput / mean
  power: a sampling gap lowers the coverage, it does not bias the figure.
* Power and work are aligned on the same window edges; the skew between the power and the work
  samples at the edges is measured per node and service, and a row whose skew exceeds
  ``max_skew_s`` (default 0.8 s, MLPerf's ``TIME_DELTA_TOLERANCE``) is marked not aligned and gets
  no verdict.

Devices are attributed to services by the ``service`` tag of their ``accel`` series, else by a
``serving`` series tagged with their ``device``, else by their node when that node serves exactly one
service. The device class is ``vendor/model``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kwatt.analytics.energy import (
    DEFAULT_GAP_FACTOR,
    EnergyCurve,
    EnergyMethod,
    counter_curve,
    power_curve,
)
from kwatt.analytics.load import Series, SeriesSet
from kwatt.analytics.work import WORK_FIELDS, WorkCurve, WorkUnit

__all__ = [
    "Analysis",
    "DeviceId",
    "DeviceRow",
    "Level",
    "Options",
    "PpwRow",
    "TimePoint",
    "analyze",
]

F64 = npt.NDArray[np.float64]


class Level(enum.StrEnum):
    DEVICE = "device"
    NODE = "node"
    DEVICE_CLASS = "device_class"
    SERVICE = "service"
    FLEET = "fleet"


@dataclass(frozen=True, slots=True)
class Options:
    gap_factor: float = DEFAULT_GAP_FACTOR
    #: MLPerf Power's client/server timestamp tolerance (mlcommons/power-dev compliance/check.py:
    #: TIME_DELTA_TOLERANCE 800 ms)
    max_skew_s: float = 0.8
    min_window_s: float = 60.0
    #: Chart windows; 0 = choose about 30 windows over the range (never below min_window_s / 2).
    window_s: float = 0.0
    #: Known energy-counter ranges in J, keyed by ``vendor/model`` or ``vendor``.
    counter_wrap_j: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, order=True)
class DeviceId:
    site: str
    node: str
    vendor: str
    model: str
    device: str

    @property
    def device_class(self) -> str:
        return f"{self.vendor}/{self.model}"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device over the analysis window."""

    device: DeviceId
    service: str | None
    method: EnergyMethod
    energy_j: float  # measured over the covered time
    covered_s: float
    window_s: float
    mean_power_w: float
    util_mean_ratio: float | None
    gaps: int
    resets: int
    wraps: int

    @property
    def coverage(self) -> float:
        return self.covered_s / self.window_s if self.window_s > 0 else 0.0

    @property
    def window_energy_j(self) -> float:
        return 0.0 if math.isnan(self.mean_power_w) else self.mean_power_w * self.window_s


@dataclass(frozen=True, slots=True)
class PpwRow:
    """Perf-per-watt of one group over one window.

    ``latency_p50_s`` is the median of the serving collector's per-poll p50s in the window;
    ``latency_p99_s`` the largest per-poll p99 (a conservative bound for a latency constraint).
    """

    level: Level
    name: str
    service: str | None
    node: str | None
    device_class: str | None
    work_unit: WorkUnit | None
    start_s: float
    end_s: float
    devices: int
    energy_j: float  # mean power × window, summed over the group's devices
    mean_power_w: float
    coverage: float  # device-averaged share of the window with samples
    energy_method: str
    work: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    skew_s: float
    aligned: bool
    note: str = ""

    @property
    def window_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def work_per_j(self) -> float:
        if self.work_unit is None or self.energy_j <= 0:
            return math.nan
        return self.work / self.energy_j

    @property
    def j_per_work(self) -> float:
        return self.energy_j / self.work if self.work > 0 else math.nan

    @property
    def throughput_per_s(self) -> float:
        return self.work / self.window_s if self.window_s > 0 else math.nan


@dataclass(frozen=True, slots=True)
class TimePoint:
    """One chart window of one service and device class."""

    service: str
    device_class: str
    start_s: float
    end_s: float
    work_per_j: float
    mean_power_w: float


@dataclass(frozen=True, slots=True)
class Analysis:
    start_s: float
    end_s: float
    window_s: float  # chart window
    options: Options
    devices: tuple[DeviceRow, ...]
    rows: tuple[PpwRow, ...]
    timeline: tuple[TimePoint, ...]
    #: (device class, util_ratio, power_w) per device and chart window, for power vs utilisation
    power_vs_util: tuple[tuple[str, float, float], ...]
    samples: int

    def select(
        self, level: Level, *, service: str | None = None, device_class: str | None = None
    ) -> list[PpwRow]:
        return [
            r
            for r in self.rows
            if r.level is level
            and (service is None or r.service == service)
            and (device_class is None or r.device_class == device_class)
        ]

    @property
    def services(self) -> list[str]:
        return sorted({r.service for r in self.rows if r.service is not None})


# ------------------------------------------------------------------------------ internals


@dataclass(slots=True)
class _Dev:
    id: DeviceId
    curve: EnergyCurve
    util: Series | None
    service: str | None


@dataclass(slots=True)
class _Serving:
    node: str
    service: str
    device: str | None
    counters: dict[WorkUnit, WorkCurve]
    p50: Series | None
    p99: Series | None


def _device_id(s: Series) -> DeviceId | None:
    vals = [s.tag(k) for k in ("site", "node", "vendor", "model", "device")]
    if any(v is None for v in vals):
        return None
    site, node, vendor, model, device = (str(v) for v in vals)
    return DeviceId(site, node, vendor, model, device)


def _wrap_for(opts: Options, d: DeviceId) -> float | None:
    return opts.counter_wrap_j.get(d.device_class, opts.counter_wrap_j.get(d.vendor))


def _build_devices(ss: SeriesSet, start_s: float, end_s: float, opts: Options) -> list[_Dev]:
    by_dev: dict[DeviceId, dict[str, Series]] = {}
    services: dict[DeviceId, str] = {}
    for s in ss.series:
        if s.key.measurement != "accel":
            continue
        d = _device_id(s)
        if d is None:
            continue
        by_dev.setdefault(d, {})[s.key.field] = s
        svc = s.tag("service")
        if svc is not None:
            services[d] = svc
    out = []
    for d, fields in sorted(by_dev.items()):
        counter = fields.get("energy_j")
        curve: EnergyCurve | None = None
        if counter is not None:
            t = counter.t_s
            if np.count_nonzero((t >= start_s) & (t <= end_s)) >= 2:
                curve = counter_curve(
                    t, counter.values, wrap_j=_wrap_for(opts, d), gap_factor=opts.gap_factor
                )
        if curve is None:
            power = fields.get("power_w")
            if power is None:
                continue
            curve = power_curve(power.t_s, power.values, gap_factor=opts.gap_factor)
        out.append(_Dev(d, curve, fields.get("util_ratio"), services.get(d)))
    return out


def _build_serving(ss: SeriesSet, opts: Options) -> list[_Serving]:
    groups: dict[tuple[str, str, str | None, str], dict[str, Series]] = {}
    for s in ss.series:
        if s.key.measurement not in ("serving", "accel"):
            continue
        if s.key.field not in (*WORK_FIELDS, "latency_p50_s", "latency_p99_s"):
            continue
        node, service = s.tag("node"), s.tag("service")
        if node is None or service is None:
            continue
        device = s.tag("device")
        if s.key.measurement == "accel" and device is None:
            continue
        key = (node, service, device, s.key.measurement)
        groups.setdefault(key, {})[s.key.field] = s
    out = []
    for (node, service, device, _m), fields in sorted(groups.items(), key=lambda kv: str(kv[0])):
        counters = {
            u: WorkCurve.build(
                u, fields[u.field].t_s, fields[u.field].values, gap_factor=opts.gap_factor
            )
            for u in WorkUnit
            if u.field in fields
        }
        out.append(
            _Serving(
                node,
                service,
                device,
                counters,
                fields.get("latency_p50_s"),
                fields.get("latency_p99_s"),
            )
        )
    return out


def _attribute(devs: list[_Dev], serving: list[_Serving]) -> None:
    by_device = {(s.node, s.device): s.service for s in serving if s.device is not None}
    node_services: dict[str, set[str]] = {}
    for s in serving:
        node_services.setdefault(s.node, set()).add(s.service)
    for d in devs:
        if d.service is not None:
            continue
        svc = by_device.get((d.id.node, d.id.device))
        if svc is None:
            only = node_services.get(d.id.node, set())
            svc = next(iter(only)) if len(only) == 1 else None
        d.service = svc


def _latency(series: Sequence[Series], start_s: float, end_s: float, worst: bool) -> float | None:
    vals = []
    for s in series:
        t = s.t_s
        m = (t >= start_s) & (t <= end_s) & np.isfinite(s.values)
        vals.append(s.values[m])
    allv = np.concatenate(vals) if vals else np.zeros(0)
    if allv.size == 0:
        return None
    return float(allv.max() if worst else np.median(allv))


def _edge_skew(
    devs: Sequence[_Dev], serv: Sequence[_Serving], unit: WorkUnit, a: float, b: float
) -> float:
    """The largest gap between the power and the work samples nearest each window edge."""

    def edges(ts: Sequence[F64]) -> tuple[float, float] | None:
        firsts, lasts = [], []
        for t in ts:
            i = int(np.searchsorted(t, a, side="left"))
            j = int(np.searchsorted(t, b, side="right")) - 1
            if i <= j:
                firsts.append(float(t[i]))
                lasts.append(float(t[j]))
        return (min(firsts), max(lasts)) if firsts else None

    pe = edges([d.curve.t_s for d in devs])
    we = edges([s.counters[unit].t_s for s in serv if unit in s.counters])
    if pe is None or we is None:
        return math.inf
    return max(abs(pe[0] - we[0]), abs(pe[1] - we[1]))


def _method(devs: Sequence[_Dev]) -> str:
    methods = sorted({d.curve.method.value for d in devs})
    return methods[0] if len(methods) == 1 else "mixed:" + "+".join(methods)


def _unit_for(serv: Sequence[_Serving]) -> WorkUnit | None:
    for u in WorkUnit:
        if any(u in s.counters for s in serv):
            return u
    return None


def analyze(
    ss: SeriesSet,
    start_s: float,
    end_s: float,
    opts: Options | None = None,
    *,
    units: Mapping[str, WorkUnit] | None = None,
) -> Analysis:
    """Perf-per-watt of everything in ``ss`` over ``[start_s, end_s]`` (clipped to the data).

    ``units`` picks the unit of work per service where its counters report it (otherwise, and by
    default: tokens, else inferences, else requests, whichever the service's counters report).
    """
    opts = opts or Options()
    span = ss.span_ns()
    if span is not None:
        start_s = max(start_s, span[0] / 1e9)
        end_s = min(end_s, span[1] / 1e9)
    end_s = max(end_s, start_s)
    devs = _build_devices(ss, start_s, end_s, opts)
    serving = _build_serving(ss, opts)
    _attribute(devs, serving)
    a = np.array([start_s])
    b = np.array([end_s])

    dev_rows = []
    for d in devs:
        e, c, g, r, w = d.curve.windows(a, b)
        util = None
        if d.util is not None:
            t = d.util.t_s
            m = (t >= start_s) & (t <= end_s) & np.isfinite(d.util.values)
            util = float(d.util.values[m].mean()) if np.any(m) else None
        dev_rows.append(
            DeviceRow(
                d.id,
                d.service,
                d.curve.method,
                float(e[0]),
                float(c[0]),
                end_s - start_s,
                float(e[0] / c[0]) if c[0] > 0 else math.nan,
                util,
                int(g[0]),
                int(r[0]),
                int(w[0]),
            )
        )
    by_id = {row.device: row for row in dev_rows}

    rows: list[PpwRow] = []

    def group_row(
        level: Level,
        name: str,
        gdevs: Sequence[_Dev],
        gserv: Sequence[_Serving],
        unit: WorkUnit | None,
        *,
        service: str | None,
        node: str | None,
        device_class: str | None,
        note: str = "",
    ) -> PpwRow:
        drs = [by_id[d.id] for d in gdevs]
        energy = sum(dr.window_energy_j for dr in drs)
        window = end_s - start_s
        work = 0.0
        skew = 0.0
        if unit is not None:
            work = float(
                sum(s.counters[unit].windows(a, b)[0][0] for s in gserv if unit in s.counters)
            )
            skew = _edge_skew(gdevs, gserv, unit, start_s, end_s)
        short = window < opts.min_window_s
        aligned = skew <= opts.max_skew_s and not short
        notes = [note] if note else []
        if short:
            notes.append(
                f"window {window:.0f} s shorter than the {opts.min_window_s:.0f} s minimum"
            )
        elif skew > opts.max_skew_s:
            notes.append(f"power/work edge skew {skew:.3g} s exceeds {opts.max_skew_s:g} s")
        return PpwRow(
            level=level,
            name=name,
            service=service,
            node=node,
            device_class=device_class,
            work_unit=unit,
            start_s=start_s,
            end_s=end_s,
            devices=len(drs),
            energy_j=energy,
            mean_power_w=energy / window if window > 0 else math.nan,
            coverage=float(np.mean([dr.coverage for dr in drs])) if drs else 0.0,
            energy_method=_method(gdevs) if gdevs else "none",
            work=work,
            latency_p50_s=_latency(
                [s.p50 for s in gserv if s.p50 is not None], start_s, end_s, False
            ),
            latency_p99_s=_latency(
                [s.p99 for s in gserv if s.p99 is not None], start_s, end_s, True
            ),
            skew_s=skew,
            aligned=aligned,
            note="; ".join(notes),
        )

    services = sorted({s.service for s in serving})
    units = dict(units or {})
    timeline: list[TimePoint] = []
    edges = _chart_edges(start_s, end_s, opts)
    for svc in services:
        sserv = [s for s in serving if s.service == svc]
        wanted = units.get(svc)
        if wanted is not None and any(wanted in s.counters for s in sserv):
            unit: WorkUnit | None = wanted
        else:
            unit = _unit_for(sserv)
        units[svc] = unit if unit is not None else WorkUnit.REQUESTS
        sdevs = [d for d in devs if d.service == svc]
        # device level: only where work is counted per device
        for d in sdevs:
            dserv = [s for s in sserv if s.device == d.id.device and s.node == d.id.node]
            if dserv and unit is not None:
                rows.append(
                    group_row(
                        Level.DEVICE,
                        d.id.device,
                        [d],
                        dserv,
                        unit,
                        service=svc,
                        node=d.id.node,
                        device_class=d.id.device_class,
                    )
                )
        # node level, and the class of each homogeneous node
        class_parts: dict[str, tuple[list[_Dev], list[_Serving]]] = {}
        for node in sorted({s.node for s in sserv} | {d.id.node for d in sdevs}):
            ndevs = [d for d in sdevs if d.id.node == node]
            nserv = [s for s in sserv if s.node == node]
            untagged = [s for s in nserv if s.device is None]
            nserv = untagged or nserv
            classes = {d.id.device_class for d in ndevs}
            rows.append(
                group_row(
                    Level.NODE,
                    node,
                    ndevs,
                    nserv,
                    unit,
                    service=svc,
                    node=node,
                    device_class=next(iter(classes)) if len(classes) == 1 else None,
                )
            )
            if len(classes) == 1:
                part = class_parts.setdefault(next(iter(classes)), ([], []))
                part[0].extend(ndevs)
                part[1].extend(nserv)
            elif len(classes) > 1:
                # mixed node: classes only from per-device work
                for d in ndevs:
                    dserv = [s for s in sserv if s.device == d.id.device and s.node == node]
                    if dserv:
                        part = class_parts.setdefault(d.id.device_class, ([], []))
                        part[0].append(d)
                        part[1].extend(dserv)
        for cls, (cdevs, cserv) in sorted(class_parts.items()):
            rows.append(
                group_row(
                    Level.DEVICE_CLASS,
                    cls,
                    cdevs,
                    cserv,
                    unit,
                    service=svc,
                    node=None,
                    device_class=cls,
                )
            )
            if unit is not None:
                timeline.extend(_timeline(svc, cls, cdevs, cserv, unit, edges))
        rows.append(
            group_row(
                Level.SERVICE,
                svc,
                sdevs,
                [s for s in sserv if s.device is None] or sserv,
                unit,
                service=svc,
                node=None,
                device_class=None,
            )
        )
    # fleet: all devices' energy; work per unit where every service counts the same unit
    fleet_units = {units[s] for s in services}
    fleet_unit = next(iter(fleet_units)) if len(fleet_units) == 1 else None
    fleet_serv = [s for s in serving if s.device is None] or serving
    rows.append(
        group_row(
            Level.FLEET,
            "fleet",
            devs,
            fleet_serv if fleet_unit is not None else [],
            fleet_unit,
            service=None,
            node=None,
            device_class=None,
            note=""
            if fleet_unit is not None or not services
            else "services count different units of work",
        )
    )
    pvu = _power_vs_util(devs, edges)
    return Analysis(
        start_s,
        end_s,
        float(edges[1] - edges[0]) if edges.size > 1 else 0.0,
        opts,
        tuple(dev_rows),
        tuple(rows),
        tuple(timeline),
        pvu,
        ss.n_samples,
    )


def _chart_edges(start_s: float, end_s: float, opts: Options) -> F64:
    span = end_s - start_s
    if span <= 0:
        return np.array([start_s], dtype=np.float64)
    w = opts.window_s if opts.window_s > 0 else max(span / 30.0, opts.min_window_s / 2)
    n = max(math.ceil(span / w - 1e-9), 1)
    return np.asarray(start_s + np.minimum(np.arange(n + 1) * w, span), dtype=np.float64)


def _timeline(
    svc: str,
    cls: str,
    devs: Sequence[_Dev],
    serv: Sequence[_Serving],
    unit: WorkUnit,
    edges: F64,
) -> list[TimePoint]:
    if edges.size < 2:
        return []
    a, b = edges[:-1], edges[1:]
    energy = np.zeros(a.shape)
    for d in devs:
        e, c, *_ = d.curve.windows(a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            energy += np.where(c > 0, e / c * (b - a), 0.0)
    work = np.zeros(a.shape)
    for s in serv:
        if unit in s.counters:
            work += s.counters[unit].windows(a, b)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        wpj = np.where(energy > 0, work / energy, np.nan)
        power = energy / (b - a)
    return [
        TimePoint(svc, cls, float(a[k]), float(b[k]), float(wpj[k]), float(power[k]))
        for k in range(a.size)
    ]


def _power_vs_util(devs: Sequence[_Dev], edges: F64) -> tuple[tuple[str, float, float], ...]:
    if edges.size < 2:
        return ()
    a, b = edges[:-1], edges[1:]
    out: list[tuple[str, float, float]] = []
    for d in devs:
        if d.util is None or d.util.values.size == 0:
            continue
        e, c, *_ = d.curve.windows(a, b)
        t = d.util.t_s
        v = np.where(np.isfinite(d.util.values), d.util.values, 0.0)
        ok = np.isfinite(d.util.values).astype(np.float64)
        idx = np.searchsorted(t, edges)
        cs = np.concatenate(([0.0], np.cumsum(v)))
        cn = np.concatenate(([0.0], np.cumsum(ok)))
        sums = cs[idx[1:]] - cs[idx[:-1]]
        counts = cn[idx[1:]] - cn[idx[:-1]]
        for k in np.flatnonzero((counts > 0) & (c > 0)):
            out.append((d.id.device_class, float(sums[k] / counts[k]), float(e[k] / c[k])))
    return tuple(out)
