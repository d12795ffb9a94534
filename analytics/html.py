"""Self-contained HTML report: inline CSS and SVG charts, no JavaScript, nothing fetched.

Charts: work per joule over time per service and device class against the target line; power
against utilisation per device class; energy by service.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["Chart", "bar_chart", "line_chart", "page", "scatter_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
W, H = 640, 300
ML, MR, MT, MB = 64, 150, 20, 40

Chart = str


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _nice(lo: float, hi: float) -> tuple[float, float, list[float]]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    end = math.ceil(hi / step) * step
    n = round((end - start) / step)
    return start, end, [start + i * step for i in range(n + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-2:
        return f"{v:.2g}"
    return f"{v:.3g}"


def _axes(
    x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str, xmode: str
) -> tuple[list[str], float, float, float, float]:
    """Axes and grid; ``xmode`` is ``time`` (epoch s), ``num`` or ``none`` (no x tick labels)."""
    xa, xb, xt = _nice(x0, x1) if xmode == "num" else (x0, x1 if x1 > x0 else x0 + 1, [])
    ya, yb, yt = _nice(y0, y1)
    parts = [
        f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#333"/>',
        f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#333"/>',
    ]

    def sx(v: float) -> float:
        return ML + (v - xa) / (xb - xa) * (W - ML - MR)

    def sy(v: float) -> float:
        return H - MB - (v - ya) / (yb - ya) * (H - MT - MB)

    for v in yt:
        parts.append(
            f'<line x1="{ML}" y1="{sy(v):.1f}" x2="{W - MR}" y2="{sy(v):.1f}" stroke="#eee"/>'
            f'<text x="{ML - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    if xmode == "time":
        for k in range(5):
            v = xa + (xb - xa) * k / 4
            label = datetime.fromtimestamp(v, tz=UTC).strftime("%H:%M:%S")
            parts.append(
                f'<text x="{sx(v):.1f}" y="{H - MB + 16}" text-anchor="middle">{label}</text>'
            )
    else:
        for v in xt:
            parts.append(
                f'<text x="{sx(v):.1f}" y="{H - MB + 16}" text-anchor="middle">{_fmt(v)}</text>'
            )
    parts.append(
        f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" text-anchor="middle">{_e(xlabel)}</text>'
        f'<text x="14" y="{(MT + H - MB) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(MT + H - MB) / 2})">{_e(ylabel)}</text>'
    )
    return parts, xa, xb, ya, yb


def _svg(title: str, parts: Sequence[str]) -> str:
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" font-size="11" font-family="sans-serif" role="img">'
        f"<title>{_e(title)}</title>{''.join(parts)}</svg><figcaption>{_e(title)}</figcaption>"
        "</figure>"
    )


def _legend(names: Sequence[str], dashed: Sequence[bool] | None = None) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = MT + 14 * i + 6
        dash = ' stroke-dasharray="5,3"' if dashed and dashed[i] else ""
        out.append(
            f'<line x1="{W - MR + 8}" y1="{y}" x2="{W - MR + 24}" y2="{y}" '
            f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2"{dash}/>'
            f'<text x="{W - MR + 28}" y="{y + 4}">{_e(name)}</text>'
        )
    return out


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    hlines: Sequence[tuple[str, float]],
    *,
    ylabel: str,
) -> Chart:
    """Lines over time (x in epoch seconds); ``hlines`` are dashed horizontal target lines."""
    pts = [(x, y) for _, s in series for x, y in s if math.isfinite(y)]
    if not pts:
        return f"<p>{_e(title)}: no data.</p>"
    ys = [y for _, y in pts] + [v for _, v in hlines if math.isfinite(v)]
    xs = [x for x, _ in pts]
    parts, xa, xb, ya, yb = _axes(
        min(xs), max(xs), min(0.0, *ys), max(ys), "time (UTC)", ylabel, "time"
    )

    def sx(v: float) -> float:
        return ML + (v - xa) / (xb - xa) * (W - ML - MR)

    def sy(v: float) -> float:
        return H - MB - (v - ya) / (yb - ya) * (H - MT - MB)

    names: list[str] = []
    dashed: list[bool] = []
    for i, (name, s) in enumerate(series):
        color = PALETTE[len(names) % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s if math.isfinite(y))
        if path:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>'
            )
        names.append(name)
        dashed.append(False)
        del i
    for name, v in hlines:
        if not math.isfinite(v):
            continue
        color = PALETTE[len(names) % len(PALETTE)]
        parts.append(
            f'<line x1="{ML}" y1="{sy(v):.1f}" x2="{W - MR}" y2="{sy(v):.1f}" stroke="{color}" '
            'stroke-width="2" stroke-dasharray="5,3"/>'
        )
        names.append(name)
        dashed.append(True)
    parts += _legend(names, dashed)
    return _svg(title, parts)


def scatter_chart(
    title: str,
    groups: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    xlabel: str,
    ylabel: str,
) -> Chart:
    pts = [p for _, g in groups for p in g if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not pts:
        return f"<p>{_e(title)}: no data.</p>"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    parts, xa, xb, ya, yb = _axes(
        min(0.0, *xs), max(xs), min(0.0, *ys), max(ys), xlabel, ylabel, "num"
    )
    for i, (_, g) in enumerate(groups):
        color = PALETTE[i % len(PALETTE)]
        for x, y in g:
            if math.isfinite(x) and math.isfinite(y):
                cx = ML + (x - xa) / (xb - xa) * (W - ML - MR)
                cy = H - MB - (y - ya) / (yb - ya) * (H - MT - MB)
                parts.append(
                    f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{color}" fill-opacity="0.6"/>'
                )
    parts += _legend([n for n, _ in groups])
    return _svg(title, parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, ylabel: str) -> Chart:
    if not bars:
        return f"<p>{_e(title)}: no data.</p>"
    top = max(*(v for _, v in bars), 0.0)
    parts, _, _, ya, yb = _axes(0, 1, 0.0, top, "", ylabel, "none")
    n = len(bars)
    slot = (W - ML - MR) / n
    for i, (name, v) in enumerate(bars):
        h = (v - ya) / (yb - ya) * (H - MT - MB)
        x = ML + i * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{H - MB - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_e(name)}: {_fmt(v)}</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{H - MB + 28}" text-anchor="middle">{_e(name)}</text>'
        )
    return _svg(title, parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}.na{color:#888}
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:12px;color:#555}
.note{font-size:12px;color:#555}
"""


def page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(body)}</body></html>\n"
    )
