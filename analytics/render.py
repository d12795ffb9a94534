"""The renderers of a :class:`kwatt.analytics.findings.Report`: the terminal tables, Markdown, a
self-contained HTML page, JSON, and the ``efficiency`` measurement as line protocol (pure: text
and bytes; only :func:`render_table` prints).

The terminal table fits the width it gets (analytics/termfit.py): headers are abbreviated first;
then columns move, least important first, to continuation tables stacked below that repeat the
key columns, so nothing is dropped and no number is cut. The orders are listed in
analytics/report.py's docstring and at :data:`_CLASS_COLS`, :data:`_DEV_COLS` and
:func:`_cost_cols`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from kwatt.analytics import html as htmlr
from kwatt.analytics.findings import Report
from kwatt.analytics.ppw import DeviceRow, Level, PpwRow
from kwatt.analytics.targets import Targets
from kwatt.analytics.termfit import Cell, Column, fitted
from kwatt.analytics.verdict import Cost, Verdict, cost_of, is_baseline
from kwatt.wire.lineproto import format_float
from kwatt.wire.model import validate_tag_value

__all__ = [
    "efficiency_lines",
    "render_html",
    "render_json",
    "render_markdown",
    "render_table",
    "table_renderables",
]


# ---------------------------------------------------------------------------------- formatting


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _verdict_word(v: Verdict) -> str:
    if v.meets_target is None:
        return "n/a"
    word = "PASS" if v.meets_target else "FAIL"
    return word + (" (ref)" if v.baseline_kind == "published_reference" else "")


def _ts(t_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_s)) + "Z"


def _class_rows(r: Report) -> list[tuple[PpwRow, Verdict | None]]:
    by_key = {(v.service, v.device_class): v for v in r.verdicts}
    return [
        (row, by_key.get((row.service or "", row.device_class or "")))
        for row in r.analysis.select(Level.DEVICE_CLASS)
    ]


_CLASS_HEAD = (
    "service",
    "device class",
    "devices",
    "unit",
    "work/s",
    "mean W",
    "work/J",
    "J/unit",
    "p99 s",
    "coverage",
    "energy method",
    "baseline",
    "ratio",
    "target",
    "verdict",
    "margin",
)


def _class_cells(row: PpwRow, v: Verdict | None, targets: Targets) -> list[str]:
    base = "(baseline)" if is_baseline(row.device_class, targets) else "–"
    ratio = target = verdict = margin = "–"
    if v is not None:
        base = f"{v.baseline_name or '–'} [{v.baseline_kind}]"
        ratio = _num(v.ratio_vs_baseline, 3)
        target = f"≥{v.target_ratio:g}"
        verdict = _verdict_word(v)
        margin = "–" if not math.isfinite(v.margin) else f"{v.margin:+.2f} ({v.margin_pct:+.0f}%)"
    return [
        row.service or "",
        row.device_class or "",
        str(row.devices),
        row.work_unit.value if row.work_unit else "–",
        _num(row.throughput_per_s),
        _num(row.mean_power_w),
        _num(row.work_per_j),
        _num(row.j_per_work),
        _num(row.latency_p99_s, 3),
        _pct(row.coverage),
        row.energy_method,
        base,
        ratio,
        target,
        verdict,
        margin,
    ]


_COST_HEAD = ("service", "kWh", "cost", "kg CO2", "per", "kWh/per", "cost/per", "kg CO2/per")


def _cost_cells(row: PpwRow, c: Cost, *, with_currency: bool = True) -> list[str]:
    cur = f" {c.currency}" if with_currency else ""
    return [
        row.service or row.name,
        _num(c.energy_kwh),
        f"{_num(c.cost)}{cur}",
        _num(c.co2_kg),
        c.per_label,
        _num(c.kwh_per),
        f"{_num(c.cost_per)}{cur}",
        _num(c.co2_kg_per),
    ]


_DEV_HEAD = (
    "node",
    "device",
    "class",
    "service",
    "method",
    "energy J",
    "mean W",
    "util",
    "coverage",
    "gaps",
    "resets",
    "wraps",
)


def _dev_cells(d: DeviceRow) -> list[str]:
    return [
        d.device.node,
        d.device.device,
        d.device.device_class,
        d.service or "–",
        d.method.value,
        _num(d.energy_j, 6),
        _num(d.mean_power_w),
        "–" if d.util_mean_ratio is None else _pct(d.util_mean_ratio),
        _pct(d.coverage),
        str(d.gaps),
        str(d.resets),
        str(d.wraps),
    ]


def _notes(r: Report) -> list[str]:
    out = []
    for v in r.verdicts:
        if v.baseline_kind != "measured":
            out.append(f"{v.service} / {v.device_class}: {v.baseline_note}.")
        if v.workload_assumed is not None:
            out.append(
                f"{v.service}: workload {v.workload} assumed from its unit of work "
                f"({v.workload_assumed.status}: {v.workload_assumed.source})."
            )
        out.append(
            f"{v.service} / {v.device_class}: {v.phase} target ≥{v.target_ratio:g}× "
            f"({v.target.status}: {v.target.source})."
        )
        if v.row.note:
            out.append(f"{v.service} / {v.device_class}: {v.row.note}.")
    eco = r.targets.economics
    out.append(
        f"Tariff {eco.tariff_per_kwh.value:g} {eco.currency}/kWh ({eco.tariff_per_kwh.provenance.status}: "
        f"{eco.tariff_per_kwh.provenance.source}); grid {eco.grid_kg_co2_per_kwh.value:g} kg CO2/kWh "
        f"({eco.grid_kg_co2_per_kwh.provenance.status}: {eco.grid_kg_co2_per_kwh.provenance.source})."
    )
    return list(dict.fromkeys(out))


def _phase_text(r: Report) -> str:
    """``phase P`` (one phase, or the one the reader chose), else ``phases P1, P2`` (each class
    judged in its own)."""
    if r.phase_chosen or len(r.phases) <= 1:
        return f"phase {r.phase}"
    return "phases " + ", ".join(r.phases)


def _header(r: Report) -> str:
    a = r.analysis
    return (
        f"{r.source}: {_ts(a.start_s)} – {_ts(a.end_s)} ({a.end_s - a.start_s:.0f} s), "
        f"{len(a.devices)} devices, {a.samples} samples; {_phase_text(r)}; "
        f"targets {', '.join(r.targets.files)}"
    )


#: The terminal tables' columns: header, abbreviated header, importance rank (0: key column, in
#: every stacked part; then 1 = most important); the orders are listed in the module docstring.
_CLASS_COLS = {
    "service": Column("service", rank=0, justify="left", fold_min=8),
    "device class": Column("device class", "class", rank=0, justify="left", fold_min=10),
    "devices": Column("devices", "dev", rank=10),
    "unit": Column("unit", rank=2, justify="left"),
    "work/s": Column("work/s", rank=8),
    "mean W": Column("mean W", "W", rank=7),
    "work/J": Column("work/J", rank=3),
    "J/unit": Column("J/unit", rank=11),
    "p99 s": Column("p99 s", rank=12),
    "coverage": Column("coverage", "cov", rank=13),
    "energy method": Column("energy method", "method", rank=14, justify="left", fold_min=8),
    "baseline": Column("baseline", rank=9, justify="left", fold_min=12),
    "ratio": Column("ratio", rank=4),
    "target": Column("target", rank=5),
    "verdict": Column("verdict", rank=1, justify="left"),
    "margin": Column("margin", rank=6),
}
_UNIT_ABBR = {"tokens": "tok", "inferences": "inf", "requests": "req"}
_DEV_COLS = {
    "node": Column("node", rank=0, justify="left", fold_min=8),
    "device": Column("device", rank=0, justify="left", fold_min=12),
    "class": Column("class", rank=5, justify="left"),
    "service": Column("service", rank=4, justify="left"),
    "method": Column("method", rank=7, justify="left", fold_min=8),
    "energy J": Column("energy J", "J", rank=1),
    "mean W": Column("mean W", "W", rank=2),
    "util": Column("util", rank=3),
    "coverage": Column("coverage", "cov", rank=6),
    "gaps": Column("gaps", rank=8),
    "resets": Column("resets", rank=9),
    "wraps": Column("wraps", rank=10),
}


def _cost_cols(currency: str) -> list[Column]:
    return [
        Column("service", rank=0, justify="left", fold_min=8),
        Column("kWh", rank=1),
        Column(f"cost {currency}", rank=2),
        Column("kg CO2", "kgCO2", rank=3),
        Column("per", rank=4, justify="left"),
        Column("kWh/per", rank=5),
        Column(f"cost/per {currency}", f"{currency}/per", rank=6),
        Column("kg CO2/per", "kgCO2/per", rank=7),
    ]


def table_renderables(r: Report, width: int | None) -> list[RenderableType]:
    """The terminal report for ``width`` cells (``None``: every table at its full width): header,
    the three tables (stacked in parts where they do not fit), warnings, notes."""
    out: list[RenderableType] = [Text(_header(r))]
    rows: list[list[Cell]] = []
    styles: list[str | None] = []
    for row, v in _class_rows(r):
        cells: list[Cell] = list(_class_cells(row, v, r.targets))
        unit_at = _CLASS_HEAD.index("unit")
        cells[unit_at] = _UNIT_ABBR.get(str(cells[unit_at]), cells[unit_at])
        rows.append(cells)
        styles.append(
            None if v is None or v.meets_target is None else ("green" if v.meets_target else "red")
        )
    out += fitted(
        [_CLASS_COLS[h] for h in _CLASS_HEAD],
        rows,
        width,
        title="Perf-per-watt by service and device class",
        row_styles=styles,
    )
    cur = r.targets.economics.currency
    cost_rows: list[list[Cell]] = [
        list(_cost_cells(row, cost_of(row, r.targets), with_currency=False))
        for row in r.analysis.select(Level.SERVICE) + r.analysis.select(Level.FLEET)
    ]
    out += fitted(_cost_cols(cur), cost_rows, width, title="Energy, money and carbon by service")
    dev_rows: list[list[Cell]] = [list(_dev_cells(d)) for d in r.analysis.devices]
    out += fitted([_DEV_COLS[h] for h in _DEV_HEAD], dev_rows, width, title="Devices")
    for w in r.warnings:
        out.append(Text(f"⚠ {w}", style="bold yellow"))
    for n in _notes(r):
        out.append(Text(f"• {n}"))
    return out


def _table_width(r: Report) -> int:
    """Cells the widest table needs at full width (for output that is not a terminal)."""
    widest = 80
    for part in table_renderables(r, None):
        if isinstance(part, Table):
            widest = max(widest, Console(width=10_000).measure(part).maximum)
    return widest


def render_table(r: Report, file: TextIO | None = None, *, width: int | None = None) -> None:
    """Rich tables on the terminal, or into ``file``. ``width``: fit that many cells; otherwise the
    terminal's width when the output is a terminal, and every column in full when it is not (a
    file, a pipe, a pager)."""
    out = sys.stdout if file is None else file
    if width is None and file is None and out.isatty():
        console = Console(file=out)
        fit: int | None = console.width
    elif width is None:
        fit = None
        console = Console(file=out, width=_table_width(r))
    else:
        fit = width
        console = Console(file=out, width=width)
    for part in table_renderables(r, fit):
        console.print(part, highlight=False)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(r: Report) -> str:
    parts = [f"# kwatt perf-per-watt report\n\n{_header(r)}\n\n## Perf-per-watt and verdicts\n\n"]
    parts.append(
        _md_table(_CLASS_HEAD, [_class_cells(row, v, r.targets) for row, v in _class_rows(r)])
    )
    parts.append("\n## Energy, money and carbon\n\n")
    rows = r.analysis.select(Level.SERVICE) + r.analysis.select(Level.FLEET)
    parts.append(_md_table(_COST_HEAD, [_cost_cells(row, cost_of(row, r.targets)) for row in rows]))
    parts.append("\n## Nodes\n\n")
    parts.append(
        _md_table(
            (
                "service",
                "node",
                "class",
                "devices",
                "work/J",
                "mean W",
                "coverage",
                "skew s",
                "aligned",
            ),
            [
                [
                    n.service or "",
                    n.name,
                    n.device_class or "mixed",
                    str(n.devices),
                    _num(n.work_per_j),
                    _num(n.mean_power_w),
                    _pct(n.coverage),
                    _num(n.skew_s, 2),
                    "yes" if n.aligned else "no",
                ]
                for n in r.analysis.select(Level.NODE)
            ],
        )
    )
    parts.append("\n## Devices\n\n")
    parts.append(_md_table(_DEV_HEAD, [_dev_cells(d) for d in r.analysis.devices]))
    if r.warnings:
        parts.append("\n## Warnings\n\n" + "".join(f"- ⚠ {w}\n" for w in r.warnings))
    parts.append("\n## Notes\n\n" + "".join(f"- {n}\n" for n in _notes(r)))
    return "".join(parts)


def _f(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def _row_json(row: PpwRow, targets: Targets) -> dict[str, object]:
    c = cost_of(row, targets)
    return {
        "level": row.level.value,
        "name": row.name,
        "service": row.service,
        "node": row.node,
        "device_class": row.device_class,
        "work_unit": row.work_unit.value if row.work_unit else None,
        "start_s": row.start_s,
        "end_s": row.end_s,
        "devices": row.devices,
        "work": row.work,
        "throughput_per_s": _f(row.throughput_per_s),
        "energy_j": row.energy_j,
        "energy_method": row.energy_method,
        "coverage": row.coverage,
        "mean_power_w": _f(row.mean_power_w),
        "work_per_j": _f(row.work_per_j),
        "j_per_work": _f(row.j_per_work),
        "latency_p50_s": row.latency_p50_s,
        "latency_p99_s": row.latency_p99_s,
        "skew_s": _f(row.skew_s),
        "aligned": row.aligned,
        "note": row.note,
        "energy_kwh": c.energy_kwh,
        "cost": c.cost,
        "currency": c.currency,
        "co2_kg": c.co2_kg,
        "per": c.per_label,
        "kwh_per": _f(c.kwh_per),
        "cost_per": _f(c.cost_per),
        "co2_kg_per": _f(c.co2_kg_per),
    }


def _verdict_json(v: Verdict) -> dict[str, object]:
    return {
        "service": v.service,
        "device_class": v.device_class,
        "phase": v.phase,
        "class_phase": v.class_phase,
        "workload": v.workload,
        "workload_assumed": None
        if v.workload_assumed is None
        else {"status": v.workload_assumed.status, "source": v.workload_assumed.source},
        "work_unit": v.work_unit.value,
        "work_per_j": _f(v.work_per_j),
        "baseline_kind": v.baseline_kind,
        "baseline": v.baseline_name,
        "baseline_work_per_j": _f(v.baseline_work_per_j),
        "baseline_note": v.baseline_note,
        "ratio_vs_baseline": _f(v.ratio_vs_baseline),
        "target_ratio": v.target_ratio,
        "target_status": v.target.status,
        "target_source": v.target.source,
        "stretch": v.stretch,
        "meets_target": v.meets_target,
        "margin": _f(v.margin),
        "margin_pct": _f(v.margin_pct),
        "latency_p99_s": v.latency_p99_s,
        "latency_p99_s_max": v.latency_p99_s_max,
        "latency_ok": v.latency_ok,
        "tops_per_w": v.tops_per_w,
        "chip_floor_tflops_per_w": v.chip_floor_tflops_per_w,
        "meets_chip_floor": v.meets_chip_floor,
        "energy_method": v.row.energy_method,
        "coverage": v.row.coverage,
    }


def render_json(r: Report) -> str:
    a = r.analysis
    eco = r.targets.economics
    doc = {
        "source": r.source,
        "start_s": a.start_s,
        "end_s": a.end_s,
        "chart_window_s": a.window_s,
        "samples": a.samples,
        "phase": r.phase,
        "phases": list(r.phases),
        "targets_files": list(r.targets.files),
        "options": {
            "gap_factor": a.options.gap_factor,
            "max_skew_s": a.options.max_skew_s,
            "min_window_s": a.options.min_window_s,
        },
        "economics": {
            "tariff_per_kwh": eco.tariff_per_kwh.value,
            "currency": eco.currency,
            "tariff_status": eco.tariff_per_kwh.provenance.status,
            "tariff_source": eco.tariff_per_kwh.provenance.source,
            "grid_kg_co2_per_kwh": eco.grid_kg_co2_per_kwh.value,
            "grid_status": eco.grid_kg_co2_per_kwh.provenance.status,
            "grid_source": eco.grid_kg_co2_per_kwh.provenance.source,
        },
        "verdicts": [_verdict_json(v) for v in r.all_phase_verdicts],
        "rows": [_row_json(row, r.targets) for row in a.rows],
        "devices": [
            {
                "site": d.device.site,
                "node": d.device.node,
                "device": d.device.device,
                "device_class": d.device.device_class,
                "service": d.service,
                "energy_method": d.method.value,
                "energy_j": d.energy_j,
                "covered_s": d.covered_s,
                "coverage": d.coverage,
                "mean_power_w": _f(d.mean_power_w),
                "util_mean_ratio": d.util_mean_ratio,
                "gaps": d.gaps,
                "resets": d.resets,
                "wraps": d.wraps,
            }
            for d in a.devices
        ],
        "warnings": list(r.warnings),
        "notes": _notes(r),
    }
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def render_html(r: Report) -> str:
    a = r.analysis
    body = [f"<p>{htmlr._e(_header(r))}</p>", "<h2>Perf-per-watt and verdicts</h2><table><tr>"]
    body += [f"<th>{htmlr._e(h)}</th>" for h in _CLASS_HEAD]
    body.append("</tr>")
    for row, v in _class_rows(r):
        cls = (
            "na" if v is None or v.meets_target is None else ("pass" if v.meets_target else "fail")
        )
        cells = _class_cells(row, v, r.targets)
        body.append(
            "<tr>"
            + "".join(
                f'<td class="{cls}">{htmlr._e(c)}</td>'
                if h == "verdict"
                else f"<td>{htmlr._e(c)}</td>"
                for h, c in zip(_CLASS_HEAD, cells, strict=True)
            )
            + "</tr>"
        )
    body.append("</table><h2>Charts</h2>")
    by_key = {(v.service, v.device_class): v for v in r.verdicts}
    for svc in a.services:
        series = []
        for cls in sorted({p.device_class for p in a.timeline if p.service == svc}):
            pts = [
                ((p.start_s + p.end_s) / 2, p.work_per_j)
                for p in a.timeline
                if p.service == svc and p.device_class == cls
            ]
            series.append((cls, pts))
        hl = []
        for (vs, vc), v in sorted(by_key.items()):
            if vs == svc and math.isfinite(v.baseline_work_per_j):
                hl.append(
                    (
                        f"target {vc} ≥{v.target_ratio:g}× {v.baseline_kind.split('_')[0]}",
                        v.baseline_work_per_j * v.target_ratio,
                    )
                )
                break
        unit = next(
            (row.work_unit.value for row in a.select(Level.SERVICE, service=svc) if row.work_unit),
            "work",
        )
        body.append(
            htmlr.line_chart(
                f"{svc}: {unit} per joule over time, by device class",
                series,
                hl,
                ylabel=f"{unit}/J",
            )
        )
    groups: dict[str, list[tuple[float, float]]] = {}
    for cls, u, p in a.power_vs_util:
        groups.setdefault(cls, []).append((u, p))
    body.append(
        htmlr.scatter_chart(
            "Power against utilisation (per device and window)",
            sorted(groups.items()),
            xlabel="utilisation (0-1)",
            ylabel="W",
        )
    )
    bars = [(row.name, row.energy_j / 3.6e6) for row in a.select(Level.SERVICE)]
    body.append(htmlr.bar_chart("Energy by service (kWh)", bars, ylabel="kWh"))
    body.append(
        "<h2>Energy, money and carbon</h2><table><tr>"
        + "".join(f"<th>{htmlr._e(h)}</th>" for h in _COST_HEAD)
        + "</tr>"
    )
    for row in a.select(Level.SERVICE) + a.select(Level.FLEET):
        body.append(
            "<tr>"
            + "".join(f"<td>{htmlr._e(c)}</td>" for c in _cost_cells(row, cost_of(row, r.targets)))
            + "</tr>"
        )
    body.append(
        "</table><h2>Devices</h2><table><tr>"
        + "".join(f"<th>{htmlr._e(h)}</th>" for h in _DEV_HEAD)
        + "</tr>"
    )
    for d in a.devices:
        body.append("<tr>" + "".join(f"<td>{htmlr._e(c)}</td>" for c in _dev_cells(d)) + "</tr>")
    body.append("</table>")
    if r.warnings:
        body.append(
            "<h2>Warnings</h2><ul>"
            + "".join(f'<li class="warning">{htmlr._e(w)}</li>' for w in r.warnings)
            + "</ul>"
        )
    body.append(
        "<h2>Notes</h2><ul>"
        + "".join(f'<li class="note">{htmlr._e(n)}</li>' for n in _notes(r))
        + "</ul>"
    )
    return htmlr.page("kwatt perf-per-watt report", body)


# ------------------------------------------------------------------------------- efficiency


def efficiency_lines(r: Report) -> bytes:
    """The ``efficiency`` measurement (DESIGN §4) for the report's window, as line protocol: per
    node and per device (where work is counted per device) ``work_per_j`` and, where the row's class
    has a verdict, ``ratio_vs_baseline``, ``target_ratio``, ``meets_target``; per service
    ``work_per_j`` (and the verdict when the service has exactly one non-baseline class)."""
    a = r.analysis
    window = f"{round(a.end_s - a.start_s)}s"
    ts = int(a.end_s * 1e9)
    by_key = {(vd.service, vd.device_class): vd for vd in r.verdicts}
    per_service: dict[str, list[Verdict]] = {}
    for vd in r.verdicts:
        per_service.setdefault(vd.service, []).append(vd)
    sites = {d.device.node: d.device.site for d in a.devices}
    default_site = next(iter(sites.values()), "unknown")
    lines = []
    for row in a.rows:
        if row.level not in (Level.DEVICE, Level.NODE, Level.SERVICE) or row.service is None:
            continue
        if not math.isfinite(row.work_per_j):
            continue
        tags = {
            "service": row.service,
            "window": window,
            "site": sites.get(row.node or "", default_site),
        }
        if row.node is not None:
            tags["node"] = row.node
        if row.level is Level.DEVICE:
            tags["device"] = row.name
        v: Verdict | None = by_key.get((row.service, row.device_class or ""))
        if row.level is Level.SERVICE and len(per_service.get(row.service, [])) == 1:
            v = per_service[row.service][0]
        if v is not None:
            tags["phase"] = v.phase
        fields = [f"work_per_j={format_float(row.work_per_j)}"]
        if v is not None and v.meets_target is not None:
            fields += [
                f"ratio_vs_baseline={format_float(v.ratio_vs_baseline)}",
                f"target_ratio={format_float(v.target_ratio)}",
                f"meets_target={int(v.meets_target)}i",
            ]
        tag_text = ",".join(f"{k}={validate_tag_value(k, val)}" for k, val in sorted(tags.items()))
        lines.append(f"efficiency,{tag_text} {','.join(fields)} {ts}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
