"""The live view's screen: :func:`render`, a pure function of a :class:`TopState`, the
:class:`ViewOptions` and "now" that returns a rich renderable laid out at the console's width (or a
forced one).

The screen: a fleet line (nodes online/offline/stale, devices, power), one work total per kind
(tok/s, inf/s, req/s with work per joule), the services table (one row per service and device
class: rate, perf/W coloured against its target, the target and where it comes from, the ratio to
the GPU baseline, power, nodes), then the top nodes by the sort key, each with its devices
(utilization bar and percent, power, temperature, clock, throttle flag, throughput, perf/W, power
sparkline). At a narrow width (analytics/termfit.py) headers are abbreviated, device ids shorten
to head…tail below 120 columns, and columns leave in this order, named in a footer: nodes table:
power (recent), util bar, clock, thr, state, work/J, work/s, temp, power, util (the node/device
column stays); services table: nodes, power, vs base, work/s, target, work/J (service and class
stay). Numbers are never cut. At a height too small for every device, nodes collapse to one row
each and only the selected node shows its devices. At most ``limit`` nodes are drawn; the rest
are summed in one line. Offline nodes are drawn as OFFLINE, never with zeros;
``NodeView.warnings`` print as a footer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.text import Text

from kwatt.analytics.termfit import SEP_PLAIN, Cell, Column, plan, records, table
from kwatt.live.state import WORK_KINDS, TopState, WorkKind
from kwatt.live.view import (
    NodeSummary,
    ViewOptions,
    fleet_services,
    service_kinds,
    sort_value,
    summarize,
)

__all__ = ["BAR_WIDTH", "SPARK_CHARS", "render", "sparkline"]

SPARK_CHARS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 10
_WORK_UNIT: dict[WorkKind, str] = {"tokens": "tok", "requests": "req", "inferences": "inf"}


def _fmt_power(w: float | None) -> str:
    if w is None:
        return "-"
    if abs(w) >= 10_000:
        return f"{w / 1000:.1f} kW"
    if abs(w) >= 1000:
        return f"{w / 1000:.2f} kW"
    return f"{w:.1f} W"


def _fmt_num(v: float) -> str:
    """Three significant figures or more, never an exponent: 0.0123, 1.23, 12.3, 123, 12345."""
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}" if v > 0 else "0"


def _fmt_rate(per_s: float | None, unit: str) -> str:
    if per_s is None:
        return "-"
    if per_s >= 100_000:
        return f"{per_s / 1000:.0f}k {unit}/s"
    return f"{per_s:.1f} {unit}/s"


def _bar(ratio: float | None) -> Text:
    if ratio is None:
        return Text("")
    r = min(max(ratio, 0.0), 1.0)
    filled = round(r * BAR_WIDTH)
    style = "red" if r >= 0.9 else "yellow" if r >= 0.6 else "green"
    return Text.assemble(("█" * filled, style), ("░" * (BAR_WIDTH - filled), "dim"))


def _pct(ratio: float | None) -> Text:
    return Text("-", style="dim") if ratio is None else Text(f"{ratio * 100:.0f}%")


def _temp(c: float | None) -> Text:
    if c is None:
        return Text("-", style="dim")
    style = "bold red" if c >= 85 else "yellow" if c >= 75 else ""
    return Text(f"{c:.0f}°C", style=style)


def sparkline(values: Iterable[float], width: int = 12, top: float | None = None) -> str:
    """The last ``width`` values as block characters, scaled from 0 to ``top`` (default: their
    maximum; the screen passes one scale per table level so rows compare)."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(tail) if top is None else max(top, *tail)
    if top <= 0:
        return SPARK_CHARS[0] * len(tail)
    last = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[min(last, max(0, round(v / top * last)))] for v in tail)


def _perf(work_per_j: float | None, target: float | None, unit: str) -> Text:
    if work_per_j is None:
        return Text("-", style="dim")
    text = f"{_fmt_num(work_per_j)} {unit}/J"
    if target is None:
        return Text(text)
    style = "green" if work_per_j >= target else "yellow" if work_per_j >= 0.9 * target else "red"
    return Text(text, style=style)


def _short_id(dev: str, n: int) -> str:
    """A device id in at most ``n`` cells: whole, or its head and tail around "…" (PCI addresses
    and UUIDs differ in their last characters as often as in their first)."""
    if len(dev) <= n:
        return dev
    tail = (n - 1) // 2
    return dev[: n - 1 - tail] + "…" + dev[-tail:]


_LABEL_STYLE = {
    "online": ("online", "green"),
    "offline": ("OFFLINE", "bold white on red"),
    "stale": ("STALE", "bold yellow"),
    "unknown": ("?", "dim"),
}

#: The nodes table's columns. At a width too small for all of them, columns leave in this order
#: (the reverse of their importance; analytics/termfit.py drops them, the footer names them):
#: power history (recent), the utilisation bar, clock, thr (throttling), state, work/J, work/s,
#: temp, power, util. The node/device column stays; device ids shorten to 14 cells (head…tail)
#: below 120 columns and the model moves to the second column.
_NODE_COLS = (
    Column("node / device", rank=0, justify="left"),
    Column("state", rank=5, justify="left"),
    Column("", rank=8, justify="left", headless=True),
    Column("util", rank=1),
    Column("power", rank=2),
    Column("temp", rank=3),
    Column("clock", rank=7),
    Column("thr", rank=6, justify="left"),
    Column("work/s", rank=4),
    Column("work/J", rank=4),
    Column("power (recent)", "recent", rank=9, justify="left"),
)
#: The services table: one row per service and device class (model; the GPU baseline's first).
#: Columns leave in this order: nodes, power, vs base (perf/W over the baseline's), work/s,
#: target, work/J.
_SVC_COLS = (
    Column("service", rank=0, justify="left"),
    Column("class", rank=0, justify="left"),
    Column("work/s", rank=3),
    Column("work/J", rank=1),
    Column("target", rank=2),
    Column("vs base", "×base", rank=4),
    Column("power", rank=5),
    Column("nodes", rank=6),
)
#: Lines the screen needs besides the tables' rows (title, fleet, work, the two headers, the
#: footer lines): used to decide whether every device row fits the height.
_FIXED_LINES = 8


def _node_rows(
    s: NodeSummary,
    opts: ViewOptions,
    name: str,
    scale: tuple[float, float],
    show_devices: bool,
    long_ids: bool,
    selected: bool,
    targets: dict[tuple[str, str], float | None],
) -> list[list[Cell]]:
    """The rows of one node: itself, its services when they count different kinds of work, its
    devices when shown. ``targets``: perf/W target by (service, device class)."""
    word, style = _LABEL_STYLE[s.label]
    mark = "▸ " if selected else ""
    if s.label == "offline":
        since = ""
        if s.view.status_since_ns:
            since = time.strftime(" %H:%M:%S", time.localtime(s.view.status_since_ns / 1e9))
        return [
            [
                Text(mark + name, style="bold"),
                Text(word, style=style),
                Text(f"agent offline{since}", style="dim"),
                *([Text("-", style="dim")] * 8),
            ]
        ]
    dim = "dim" if s.label == "stale" else ""
    thr = Text(f"THR×{s.throttled}", style="bold red") if s.throttled else Text("-", style="dim")
    kind = s.kind
    unit = _WORK_UNIT[kind] if kind is not None else ""
    target = None
    if kind is not None and len(s.services) == 1:
        target = targets.get((s.services[0].service, s.services[0].device_class))
    svc_names = ",".join(so.service for so in s.services)
    work_text = (
        _fmt_rate(s.work_per_s, unit)
        if kind is not None
        else ("-" if not s.services else "by service")
    )
    rows: list[list[Cell]] = [
        [
            Text(mark + name, style="bold"),
            Text(word + (f" gap {s.view.seq_gaps}" if s.view.seq_gaps else ""), style=style),
            _bar(s.util_ratio),
            _pct(s.util_ratio),
            Text(_fmt_power(s.power_w), style=dim or "bold"),
            _temp(s.temp_c),
            Text("-" if s.clock_hz is None else f"{s.clock_hz / 1e9:.2f} GHz", style=dim),
            thr,
            Text(work_text, style=dim),
            _perf(s.work_per_j, target, unit) if kind is not None else Text("-", style="dim"),
            Text(sparkline(s.view.power_history, top=scale[0]), style="cyan"),
        ]
    ]
    if svc_names and (kind is None or len(s.services) > 1):
        for x in s.services:
            u = _WORK_UNIT[x.kind]
            rows.append(
                [
                    Text(f" ◆ {x.service}", style="dim" if dim else ""),
                    Text("service", style="dim"),
                    Text(""),
                    Text(""),
                    Text(_fmt_power(x.power_w) if x.power_w is not None else "-", style="dim"),
                    Text(""),
                    Text(""),
                    Text(""),
                    Text(_fmt_rate(x.work_per_s, u)),
                    _perf(x.work_per_j, targets.get((x.service, x.device_class)), u),
                    Text(""),
                ]
            )
    if not show_devices:
        return rows
    dev_kind = {d: x for x in s.services for d in x.devices}
    for d in sorted(s.devices, key=lambda d: d.device):
        so = dev_kind.get(d.device)
        rate: float | None = None
        u = ""
        if so is not None:
            u = _WORK_UNIT[so.kind]
            own = d.work.get(f"{so.kind}_total")
            rate = own.per_s if own is not None else None
            if rate is None and len(so.devices) > 1:
                feed = s.view.serving.get(so.service)
                rate = feed.per_s(so.kind, d.device) if feed is not None else None
            elif rate is None:
                rate = so.work_per_s
        dev_wpj = rate / d.power_w if rate is not None and d.power_w else None
        target = targets.get((so.service, f"{d.vendor}/{d.model}")) if so is not None else None
        label = f" └ {d.device[:20]} {d.model}" if long_ids else f" └ {_short_id(d.device, 14)}"
        rows.append(
            [
                Text(label, style="dim" if dim else ""),
                Text(d.vendor if long_ids else d.model, style="dim"),
                _bar(d.util_ratio),
                _pct(d.util_ratio),
                Text(_fmt_power(d.power_w)),
                _temp(d.temp_c),
                Text("-" if d.clock_hz is None else f"{d.clock_hz / 1e9:.2f} GHz"),
                Text("THR", style="bold red") if d.throttled else Text("-", style="dim"),
                Text(_fmt_rate(rate, u) if so is not None else "-"),
                _perf(dev_wpj, target, u) if so is not None else Text("-", style="dim"),
                Text(sparkline(d.power_history, top=scale[1]), style="cyan"),
            ]
        )
    return rows


@dataclass(frozen=True, slots=True)
class _Screen:
    """The screen, laid out when rich draws it: at the console's width (or a forced one)."""

    head: tuple[Text, ...]
    services: tuple[tuple[list[Cell], ...], tuple[str | None, ...], int]
    nodes: tuple[Sequence[NodeSummary], ...]
    build_rows: Callable[[bool], tuple[list[list[Cell]], list[str | None]]]
    tail: tuple[Text, ...]
    width: int | None
    keys_hint: str | None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        yield from self.head
        svc_rows, svc_styles, svc_more = self.services
        if svc_rows:
            lay = plan(_SVC_COLS, list(svc_rows), width, sep=SEP_PLAIN, stack=False)
            if lay is None:
                yield from records(_SVC_COLS, list(svc_rows))
            else:
                yield table(_SVC_COLS, list(svc_rows), lay, boxed=False, row_styles=svc_styles)
        if svc_more:
            yield Text(
                f"+ {svc_more} more service rows (--work KIND, or a taller terminal)", style="dim"
            )
        rows, styles = self.build_rows(width >= 120)
        lay = plan(_NODE_COLS, rows, width, sep=SEP_PLAIN, stack=False)
        if lay is None:
            yield from records(_NODE_COLS, rows)
        else:
            yield table(_NODE_COLS, rows, lay, boxed=False, row_styles=styles)
            hidden = [(_NODE_COLS[i].short or _NODE_COLS[i].header) for i in lay.hidden]
            hidden = [h if h else "util bar" for h in hidden]
            if hidden:
                yield Text(f"hidden at {width} columns: {', '.join(hidden)}", style="dim")
        yield from self.tail
        if self.keys_hint:
            yield Text(self.keys_hint, style="dim")


def render(
    state: TopState,
    opts: ViewOptions,
    now_s: float,
    *,
    width: int | None = None,
    height: int | None = None,
    selected: tuple[str, str] | None = None,
    keys_hint: str | None = None,
) -> RenderableType:
    """The screen for ``state`` at monotonic time ``now_s`` (pure: no I/O, no clock). Laid out
    at ``width`` cells (default: the console's) and, when ``height`` is given, in that many
    lines: nodes collapse to one row each and only the ``selected`` node (default: the first)
    shows its devices."""
    pattern = re.compile(opts.node_pattern) if opts.node_pattern else None
    kinds = service_kinds(state)
    summaries = [summarize(v, opts, now_s, kinds) for v in state.nodes.values()]
    if opts.vendor is not None or opts.model is not None:
        summaries = [s for s in summaries if s.devices or s.label == "offline"]
    if opts.work is not None:
        summaries = [s for s in summaries if s.services or s.label == "offline"]
    # fleet line: over every node that matches the device filters
    online = [s for s in summaries if s.label == "online"]
    offline = [s for s in summaries if s.label == "offline"]
    stale = [s for s in summaries if s.label == "stale"]
    power = sum(s.power_w for s in online if s.power_w is not None)
    n_devices = sum(len(s.devices) for s in online)
    fleet_svcs = fleet_services(summaries, opts)

    head: list[Text] = [Text(opts.title, style="bold")]
    head.append(
        Text.assemble(
            ("nodes ", "dim"),
            (f"{len(online)} online", "green"),
            " · ",
            (f"{len(offline)} offline", "bold red" if offline else "dim"),
            " · ",
            (f"{len(stale)} stale", "yellow" if stale else "dim"),
            ("   devices ", "dim"),
            str(n_devices),
            ("   power ", "dim"),
            (_fmt_power(power if online else None), "bold"),
        )
    )
    work_line = Text("work ", style="dim")
    totals = []
    for kind in WORK_KINDS:
        mine = [f for f in fleet_svcs if f.kind == kind]
        if not mine:
            continue
        u = _WORK_UNIT[kind]
        rate = sum(f.work_per_s for f in mine if f.work_per_s is not None)
        powered = [f for f in mine if f.work_per_s is not None and f.power_w]
        wpj = (
            sum(f.work_per_s or 0.0 for f in powered) / sum(f.power_w or 0.0 for f in powered)
            if powered
            else None
        )
        totals.append(
            Text.assemble(
                (_fmt_rate(rate, u), "bold"),
                " ",
                _perf(wpj, None, u),
                (f" ({len({f.service for f in mine})} svc)", "dim"),
            )
        )
    if totals:
        work_line.append_text(Text(" · ").join(totals))
    else:
        work_line.append("no serving counters" + (f" counting {opts.work}" if opts.work else ""))
    head.append(work_line)
    link = state.link
    if link.error is not None and not link.connected:
        retry = f"; retrying in {link.retry_in_s:.1f} s" if link.retry_in_s is not None else ""
        head.append(
            Text(f"cannot reach the MQTT broker {link.url}: {link.error}{retry}", style="bold red")
        )
    elif not link.connected and link.url:
        head.append(Text(f"connecting to {link.url} ...", style="yellow"))

    targets = {(f.service, f.device_class): f.target_work_per_j for f in fleet_svcs}
    svc_rows: list[list[Cell]] = []
    svc_styles: list[str | None] = []
    for f in fleet_svcs:
        u = _WORK_UNIT[f.kind]
        target = "-"
        if f.target_work_per_j is not None:
            target = f"≥{_fmt_num(f.target_work_per_j)}" + (
                " ref" if f.target_basis == "ref" else ""
            )
        svc_rows.append(
            [
                Text(f.service, style="bold"),
                Text(f.device_class.split("/")[-1]),
                Text(_fmt_rate(f.work_per_s, u)),
                _perf(f.work_per_j, f.target_work_per_j, u),
                Text(target),
                Text(
                    "base"
                    if f.baseline
                    else ("-" if f.ratio_vs_baseline is None else f"{f.ratio_vs_baseline:.2f}×")
                ),
                Text(_fmt_power(f.power_w)),
                Text(str(f.nodes)),
            ]
        )
        svc_styles.append(None)

    shown = summaries
    if pattern is not None:
        shown = [s for s in shown if pattern.search(s.view.node)]
    if opts.only_offline:
        shown = [s for s in shown if s.label in ("offline", "stale")]
    if opts.only_throttled:
        shown = [s for s in shown if s.throttled]
    if opts.sort == "name":
        shown.sort(key=lambda s: (s.view.site, s.view.node), reverse=opts.reverse)
    else:
        # ties by name; nodes without the figure (offline ones) last in either direction
        shown.sort(key=lambda s: (s.view.site, s.view.node))
        valued = [s for s in shown if sort_value(s, opts.sort) is not None]
        valued.sort(key=lambda s: sort_value(s, opts.sort) or 0.0, reverse=not opts.reverse)
        shown = valued + [s for s in shown if sort_value(s, opts.sort) is None]
    limit = max(opts.limit, 0)
    svc_more = 0
    if height is not None:  # the services table takes at most half of a short screen
        cap = max(2, (height - _FIXED_LINES - len(head)) // 2)
        if len(svc_rows) > cap:
            svc_more = len(svc_rows) - (cap - 1)
            svc_rows, svc_styles = svc_rows[: cap - 1], svc_styles[: cap - 1]
    n_svc_rows = len(svc_rows) + 1 + (1 if svc_more else 0) if svc_rows else 0
    room = None if height is None else height - _FIXED_LINES - len(head) - n_svc_rows
    if room is not None:
        limit = max(min(limit, room), 1)
    top, rest = shown[:limit], shown[limit:]
    sel = next((s for s in top if (s.view.site, s.view.node) == selected), top[0] if top else None)

    def extra_rows(s: NodeSummary) -> int:
        return len(s.services) if s.kind is None or len(s.services) > 1 else 0

    all_rows = sum(1 + extra_rows(s) + len(s.devices) for s in top)
    if opts.devices == "all":
        expand: set[int] = {id(s) for s in top}
    elif opts.devices == "none":
        expand = set()
    elif sum(len(s.devices) for s in top) <= opts.auto_device_rows and (
        room is None or all_rows <= room
    ):
        expand = {id(s) for s in top}
    else:  # collapsed: one row per node, the selected node's devices
        expand = {id(sel)} if sel is not None and room is not None else set()
    collapsed = opts.devices == "auto" and len(expand) < len(top)

    node_scale = max((max(s.view.power_history, default=0.0) for s in top), default=0.0)
    dev_scale = max(
        (max(d.power_history, default=0.0) for s in top for d in s.devices), default=0.0
    )
    multi_site = len({k[0] for k in state.nodes}) > 1

    def build_rows(long_ids: bool) -> tuple[list[list[Cell]], list[str | None]]:
        rows: list[list[Cell]] = []
        styles: list[str | None] = []
        for s in top:
            name = f"{s.view.site}/{s.view.node}" if multi_site else s.view.node
            mine = _node_rows(
                s,
                opts,
                name,
                (node_scale, dev_scale),
                id(s) in expand,
                long_ids,
                collapsed and s is sel,
                targets,
            )
            rows += mine
            styles += ["dim" if s.label == "stale" else None] * len(mine)
        return rows, styles

    tail: list[Text] = []
    if rest:
        rest_power = sum(s.power_w for s in rest if s.power_w is not None)
        rest_devices = sum(len(s.devices) for s in rest)
        rest_off = sum(1 for s in rest if s.label == "offline")
        tail.append(
            Text(
                f"+ {len(rest)} more nodes ({rest_devices} devices, {_fmt_power(rest_power)}"
                + (f", {rest_off} offline" if rest_off else "")
                + f") by {opts.sort}: --limit N",
                style="dim",
            )
        )
    if collapsed:
        tail.append(
            Text(
                "one row per node: devices "
                + (
                    f"of {sel.view.node} shown"
                    if sel is not None and id(sel) in expand
                    else "hidden"
                )
                + " (--devices all, or a taller terminal)",
                style="dim",
            )
        )
    hidden_offline = [s for s in offline if s not in top]
    if hidden_offline:
        names = ", ".join(s.view.node for s in hidden_offline[:8])
        more = f" (+{len(hidden_offline) - 8})" if len(hidden_offline) > 8 else ""
        tail.append(Text(f"offline: {names}{more}", style="red"))
    for s in summaries:
        for w in s.view.warnings:
            tail.append(Text(f"⚠ {s.view.node}: {w}", style="bold yellow"))
    if not state.nodes:
        tail.append(Text("no agents seen yet", style="dim"))
    return _Screen(
        tuple(head),
        (tuple(svc_rows), tuple(svc_styles), svc_more),
        (top,),
        build_rows,
        tuple(tail),
        width,
        keys_hint,
    )
