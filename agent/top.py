"""``kwatt top``: the fleet, live, from the MQTT wire (like ``nvidia-smi`` and ``htop`` for kwatt).

Three layers, so the screen can be tested and benchmarked without a broker:

* :class:`TopState`, the reducer: :meth:`TopState.feed` takes one received MQTT message (topic,
  payload, arrival time) and updates the latest values per node and device, a short power history
  (sparklines) and throughput rates from the serving counters. No I/O, no clock of its own.
* :func:`render`, the renderer: a pure function of the state, :class:`ViewOptions` and "now" that
  returns a rich renderable: a fleet line (nodes online/offline, total power, throughput and work per
  joule against the target), then the top nodes by the chosen sort key, each with its devices
  (utilization bar, power, temperature, clock, throttle flag, throughput, perf-per-watt coloured
  against the target, power sparkline). At most ``limit`` nodes are drawn; the rest are summed in
  one line, so a 1,000-node fleet costs what 20 rows cost (bench/bench_top.py measures it).
* :func:`follow`, the I/O: subscribes to ``kwatt/v1/<site|+>/+/metrics`` and ``.../status`` (a
  plain QoS 0 subscription: the live view never takes a share of the ingest's messages), reconnects
  with backoff, and records why the broker cannot be reached, which the screen shows.

A node is offline when its retained ``status`` says so (the agent's last will included): it is drawn
as OFFLINE, never with zeros. A node that says online but has sent no metrics for ``stale_s`` is
STALE. Values are SI on the wire; percent and GHz appear only here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiomqtt
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent import lineproto, topics
from agent.config import MqttConfig, TlsConfig
from agent.mqtt import Backoff, make_client

__all__ = [
    "DeviceView",
    "LinkState",
    "NodeSummary",
    "NodeView",
    "TopState",
    "ViewOptions",
    "configure_parser",
    "follow",
    "render",
    "run",
    "subscriptions",
    "summarize",
]

#: Points of power history kept per device and node (one per received batch): the sparkline.
HISTORY = 24
SPARK_CHARS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 10

SortKey = Literal["power", "util", "temp", "throughput", "perf", "name"]
SORT_KEYS: tuple[SortKey, ...] = ("power", "util", "temp", "throughput", "perf", "name")
WorkKind = Literal["tokens", "requests", "inferences"]
WORK_KINDS: tuple[WorkKind, ...] = ("tokens", "requests", "inferences")
_WORK_UNIT = {"tokens": "tok", "requests": "req", "inferences": "inf"}
NodeStatus = Literal["online", "offline", "unknown"]


# ------------------------------------------------------------------------------------ reducer


@dataclass(slots=True)
class _Rate:
    """Per-second rate of a cumulative counter from its last two readings (reset-aware)."""

    ts_ns: int = 0
    value: float = 0.0
    per_s: float | None = None

    def update(self, ts_ns: int, value: float) -> None:
        if self.ts_ns and ts_ns > self.ts_ns:
            delta = value - self.value
            # a counter that went down was reset (restart): no rate from this pair
            self.per_s = delta / ((ts_ns - self.ts_ns) / 1e9) if delta >= 0 else None
        if ts_ns >= self.ts_ns:
            self.ts_ns, self.value = ts_ns, value


@dataclass(slots=True)
class DeviceView:
    """Latest values of one accelerator (absent values stay None, never 0)."""

    device: str
    vendor: str = "?"
    model: str = "?"
    util_ratio: float | None = None
    power_w: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    throttled: int | None = None
    ts_ns: int = 0
    power_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    work: _Rate | None = None  # only when the device itself reports serving counters

    @property
    def work_per_s(self) -> float | None:
        return None if self.work is None else self.work.per_s


@dataclass(slots=True)
class NodeView:
    """One node: status from the retained ``status`` topic, devices and serving from ``metrics``."""

    site: str
    node: str
    status: NodeStatus = "unknown"
    status_since_ns: int | None = None
    agent_version: str | None = None
    last_metrics_s: float | None = None  # arrival (monotonic) of the last metrics message
    devices: dict[str, DeviceView] = field(default_factory=dict)
    host_power_w: dict[str, float] = field(default_factory=dict)  # by source/zone
    work: dict[str, _Rate] = field(default_factory=dict)  # serving counter by service (+device)
    power_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    seq: int | None = None
    seq_gaps: int = 0
    failing_collectors: set[str] = field(default_factory=set)

    @property
    def work_per_s(self) -> float | None:
        rates = [r.per_s for r in self.work.values() if r.per_s is not None]
        return sum(rates) if rates else None


@dataclass(slots=True)
class LinkState:
    """The broker connection, as the screen reports it."""

    url: str = ""
    connected: bool = False
    ever_connected: bool = False
    error: str | None = None
    retry_in_s: float | None = None


class TopState:
    """Everything the live view knows, updated one MQTT message at a time (pure, no I/O)."""

    def __init__(self, work: WorkKind = "tokens") -> None:
        self.work_field = f"{work}_total"
        self.nodes: dict[tuple[str, str], NodeView] = {}
        self.messages = 0
        self.points = 0
        self.bad_messages = 0
        self.link = LinkState()

    def _node(self, site: str, node: str) -> NodeView:
        key = (site, node)
        view = self.nodes.get(key)
        if view is None:
            view = self.nodes[key] = NodeView(site, node)
        return view

    def feed(self, topic: str, payload: bytes, now_s: float) -> None:
        """Apply one message received on ``topic`` at monotonic time ``now_s``."""
        self.messages += 1
        try:
            name = topics.parse_topic(topic)
        except topics.TopicError:
            self.bad_messages += 1
            return
        if name.kind == "metrics":
            self.apply_metrics(name.site, name.node, payload, now_s)
        elif name.kind == "status":
            self.apply_status(name.site, name.node, payload)

    def apply_status(self, site: str, node: str, payload: bytes) -> None:
        """A retained ``status`` JSON document; an empty payload (retained message cleared) forgets
        the node."""
        if not payload:
            self.nodes.pop((site, node), None)
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            self.bad_messages += 1
            return
        state = doc.get("state") if isinstance(doc, dict) else None
        if state not in ("online", "offline"):
            self.bad_messages += 1
            return
        view = self._node(site, node)
        view.status = "online" if state == "online" else "offline"
        since = doc.get("since")
        view.status_since_ns = since if isinstance(since, int) else None
        agent = doc.get("agent")
        view.agent_version = agent if isinstance(agent, str) else None

    def apply_metrics(self, site: str, node: str, payload: bytes, now_s: float) -> None:
        """One line-protocol batch of one node."""
        result = lineproto.parse_payload(payload)
        if result.errors:
            self.bad_messages += 1
        if not result.points:
            return
        view = self._node(site, node)
        view.last_metrics_s = now_s
        work_field = self.work_field
        devices = view.devices
        self.points += len(result.points)
        for pt in result.points:
            m = pt.measurement
            if m == "accel":
                tags = dict(pt.tags)
                dev_id = tags.get("device", "?")
                dev = devices.get(dev_id)
                if dev is None:
                    dev = devices[dev_id] = DeviceView(
                        dev_id, tags.get("vendor", "?"), tags.get("model", "?")
                    )
                if pt.ts_ns < dev.ts_ns:
                    continue  # a replayed (older) batch: keep the newer values
                dev.ts_ns = pt.ts_ns
                for key, value in pt.fields:
                    if key == "power_w":
                        dev.power_w = float(value)
                        dev.power_history.append(float(value))
                    elif key == "util_ratio":
                        dev.util_ratio = float(value)
                    elif key == "temp_c":
                        dev.temp_c = float(value)
                    elif key == "clock_hz":
                        dev.clock_hz = float(value)
                    elif key == "throttled":
                        dev.throttled = int(value)
                    elif key == work_field:
                        if dev.work is None:
                            dev.work = _Rate()
                        dev.work.update(pt.ts_ns, float(value))
            elif m == "serving":
                tags = dict(pt.tags)
                for key, value in pt.fields:
                    if key == work_field:
                        rate_key = f"{tags.get('service', '?')}/{tags.get('device', '')}"
                        rate = view.work.get(rate_key)
                        if rate is None:
                            rate = view.work[rate_key] = _Rate()
                        rate.update(pt.ts_ns, float(value))
            elif m == "host":
                tags = dict(pt.tags)
                for key, value in pt.fields:
                    if key == "power_w":
                        zone = f"{tags.get('source', '?')}/{tags.get('zone', '')}"
                        view.host_power_w[zone] = float(value)
            elif m == "agent":
                self._apply_agent(view, pt)
        powers = [d.power_w for d in devices.values() if d.power_w is not None]
        if powers:
            view.power_history.append(sum(powers))

    @staticmethod
    def _apply_agent(view: NodeView, pt: lineproto.Point) -> None:
        fields = dict(pt.fields)
        seq = fields.get("seq")
        if seq is not None:
            seq = int(seq)
            if view.seq is not None and seq > view.seq + 1:
                view.seq_gaps += seq - view.seq - 1
            if view.seq is None or seq > view.seq or seq == 1:
                view.seq = seq
        ok = fields.get("collect_ok")
        if ok is not None:
            collector = dict(pt.tags).get("collector", "?")
            if ok:
                view.failing_collectors.discard(collector)
            else:
                view.failing_collectors.add(collector)


# ------------------------------------------------------------------------------------ view model


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """What to show: sorting, filters, how many rows, the target."""

    sort: SortKey = "power"
    reverse: bool = False
    limit: int = 20
    devices: Literal["auto", "all", "none"] = "auto"
    #: In ``auto``, device rows are drawn while the shown nodes have at most this many devices.
    auto_device_rows: int = 48
    node_pattern: str | None = None
    vendor: str | None = None
    model: str | None = None
    only_offline: bool = False
    only_throttled: bool = False
    target_work_per_j: float | None = None
    work: WorkKind = "tokens"
    stale_s: float = 10.0
    title: str = "kwatt top"


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """One node reduced to its row: aggregates over the (filtered) devices."""

    view: NodeView
    label: Literal["online", "offline", "stale", "unknown"]
    devices: tuple[DeviceView, ...]
    util_ratio: float | None
    power_w: float | None
    temp_c: float | None
    clock_hz: float | None
    throttled: int
    work_per_s: float | None

    @property
    def work_per_j(self) -> float | None:
        if self.work_per_s is None or not self.power_w:
            return None
        return self.work_per_s / self.power_w


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(view: NodeView, opts: ViewOptions, now_s: float) -> NodeSummary:
    """Reduce one node to its row (offline and stale nodes get no live figures)."""
    devices = tuple(
        d
        for d in view.devices.values()
        if (opts.vendor is None or d.vendor == opts.vendor)
        and (opts.model is None or d.model == opts.model)
    )
    label: Literal["online", "offline", "stale", "unknown"]
    if view.status == "offline":
        label = "offline"
    elif view.last_metrics_s is None:
        label = "unknown" if view.status == "unknown" else "stale"
    elif now_s - view.last_metrics_s > opts.stale_s:
        label = "stale"
    else:
        label = "online"
    if label == "offline":
        return NodeSummary(view, label, devices, None, None, None, None, 0, None)
    utils = [d.util_ratio for d in devices if d.util_ratio is not None]
    powers = [d.power_w for d in devices if d.power_w is not None]
    temps = [d.temp_c for d in devices if d.temp_c is not None]
    clocks = [d.clock_hz for d in devices if d.clock_hz is not None]
    throttled = sum(1 for d in devices if d.throttled)
    if opts.vendor is None and opts.model is None:
        work = view.work_per_s
    else:  # filtered: only the devices' own counters can be attributed
        rates = [d.work_per_s for d in devices if d.work_per_s is not None]
        work = sum(rates) if rates else None
    if work is None:
        rates = [d.work_per_s for d in devices if d.work_per_s is not None]
        work = sum(rates) if rates else None
    return NodeSummary(
        view,
        label,
        devices,
        _mean(utils),
        sum(powers) if powers else None,
        max(temps) if temps else None,
        _mean(clocks),
        throttled,
        work,
    )


def _sort_value(s: NodeSummary, key: SortKey) -> float | None:
    if key == "power":
        return s.power_w
    if key == "util":
        return s.util_ratio
    if key == "temp":
        return s.temp_c
    if key == "throughput":
        return s.work_per_s
    if key == "perf":
        return s.work_per_j
    return None


# ------------------------------------------------------------------------------------ render


def _fmt_power(w: float | None) -> str:
    if w is None:
        return "-"
    if abs(w) >= 10_000:
        return f"{w / 1000:.1f} kW"
    if abs(w) >= 1000:
        return f"{w / 1000:.2f} kW"
    return f"{w:.1f} W"


def _fmt_rate(per_s: float | None, unit: str) -> str:
    if per_s is None:
        return "-"
    if per_s >= 10_000:
        return f"{per_s / 1000:.1f}k {unit}/s"
    return f"{per_s:.1f} {unit}/s"


def _bar(ratio: float | None) -> Text:
    if ratio is None:
        return Text("-".rjust(BAR_WIDTH + 5), style="dim")
    r = min(max(ratio, 0.0), 1.0)
    filled = round(r * BAR_WIDTH)
    style = "red" if r >= 0.9 else "yellow" if r >= 0.6 else "green"
    return Text.assemble(
        ("█" * filled, style), ("░" * (BAR_WIDTH - filled), "dim"), f" {ratio * 100:3.0f}%"
    )


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
    text = f"{work_per_j:.2f} {unit}/J"
    if target is None:
        return Text(text)
    style = "green" if work_per_j >= target else "yellow" if work_per_j >= 0.9 * target else "red"
    return Text(text, style=style)


_LABEL_STYLE = {
    "online": ("online", "green"),
    "offline": ("OFFLINE", "bold white on red"),
    "stale": ("STALE", "bold yellow"),
    "unknown": ("?", "dim"),
}


def render(state: TopState, opts: ViewOptions, now_s: float) -> RenderableType:
    """The screen for ``state`` at monotonic time ``now_s`` (pure: no I/O, no clock)."""
    unit = _WORK_UNIT[opts.work]
    pattern = re.compile(opts.node_pattern) if opts.node_pattern else None
    summaries = [summarize(v, opts, now_s) for v in state.nodes.values()]
    if opts.vendor is not None or opts.model is not None:
        summaries = [s for s in summaries if s.devices or s.label == "offline"]
    # fleet line: over every node that matches the device filters
    online = [s for s in summaries if s.label == "online"]
    offline = [s for s in summaries if s.label == "offline"]
    stale = [s for s in summaries if s.label == "stale"]
    power = sum(s.power_w for s in online if s.power_w is not None)
    n_devices = sum(len(s.devices) for s in online)
    with_work = [s for s in online if s.work_per_s is not None and s.power_w]
    work = sum(s.work_per_s or 0.0 for s in with_work)
    work_power = sum(s.power_w or 0.0 for s in with_work)
    fleet_wpj = work / work_power if work_power > 0 else None

    fleet = Text.assemble(
        (f"{opts.title}  ", "bold"),
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
        ("   throughput ", "dim"),
        _fmt_rate(work if with_work else None, unit),
        ("   work/J ", "dim"),
        _perf(fleet_wpj, opts.target_work_per_j, unit),
        (
            f" (target {opts.target_work_per_j:g} {unit}/J)"
            if opts.target_work_per_j is not None
            else " (no target: --target)",
            "dim",
        ),
    )
    parts: list[RenderableType] = [fleet]
    link = state.link
    if link.error is not None and not link.connected:
        retry = f"; retrying in {link.retry_in_s:.1f} s" if link.retry_in_s is not None else ""
        parts.append(
            Text(f"cannot reach the MQTT broker {link.url}: {link.error}{retry}", style="bold red")
        )
    elif not link.connected and link.url:
        parts.append(Text(f"connecting to {link.url} ...", style="yellow"))

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
        valued = [s for s in shown if _sort_value(s, opts.sort) is not None]
        valued.sort(key=lambda s: _sort_value(s, opts.sort) or 0.0, reverse=not opts.reverse)
        shown = valued + [s for s in shown if _sort_value(s, opts.sort) is None]
    top, rest = shown[: max(opts.limit, 0)], shown[max(opts.limit, 0) :]
    show_devices = opts.devices == "all" or (
        opts.devices == "auto" and sum(len(s.devices) for s in top) <= opts.auto_device_rows
    )

    node_scale = max((max(s.view.power_history, default=0.0) for s in top), default=0.0)
    dev_scale = max(
        (max(d.power_history, default=0.0) for s in top for d in s.devices), default=0.0
    )
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    table.add_column("node / device", no_wrap=True, max_width=36)
    table.add_column("state", no_wrap=True)
    table.add_column("util", no_wrap=True)
    table.add_column("power", justify="right", no_wrap=True)
    table.add_column("temp", justify="right", no_wrap=True)
    table.add_column("clock", justify="right", no_wrap=True)
    table.add_column("thr", no_wrap=True)
    table.add_column("throughput", justify="right", no_wrap=True)
    table.add_column("perf/W", justify="right", no_wrap=True)
    table.add_column("power (recent)", no_wrap=True)
    multi_site = len({k[0] for k in state.nodes}) > 1
    for s in top:
        name = f"{s.view.site}/{s.view.node}" if multi_site else s.view.node
        word, style = _LABEL_STYLE[s.label]
        if s.label == "offline":
            since = ""
            if s.view.status_since_ns:
                since = time.strftime(
                    " since %H:%M:%S", time.localtime(s.view.status_since_ns / 1e9)
                )
            table.add_row(
                Text(name, style="bold"),
                Text(word, style=style),
                Text(f"agent offline{since}", style="dim"),
                *([Text("—", style="dim")] * 7),
            )
            continue
        dim = "dim" if s.label == "stale" else ""
        thr = (
            Text(f"THR×{s.throttled}", style="bold red") if s.throttled else Text("-", style="dim")
        )
        table.add_row(
            Text(name, style="bold"),
            Text(
                word + (f" gap {s.view.seq_gaps}" if s.view.seq_gaps else ""),
                style=style,
            ),
            _bar(s.util_ratio),
            Text(_fmt_power(s.power_w), style=dim or "bold"),
            _temp(s.temp_c),
            Text("-" if s.clock_hz is None else f"{s.clock_hz / 1e9:.2f} GHz", style=dim),
            thr,
            Text(_fmt_rate(s.work_per_s, unit), style=dim),
            _perf(s.work_per_j, opts.target_work_per_j, unit),
            Text(sparkline(s.view.power_history, top=node_scale), style="cyan"),
            style=dim or None,
        )
        if show_devices:
            for d in sorted(s.devices, key=lambda d: d.device):
                dev_wpj = (
                    d.work_per_s / d.power_w if d.work_per_s is not None and d.power_w else None
                )
                table.add_row(
                    Text(f" └ {d.device[:20]} {d.model}", style="dim" if dim else ""),
                    Text(d.vendor, style="dim"),
                    _bar(d.util_ratio),
                    _fmt_power(d.power_w),
                    _temp(d.temp_c),
                    "-" if d.clock_hz is None else f"{d.clock_hz / 1e9:.2f} GHz",
                    Text("THR", style="bold red") if d.throttled else Text("-", style="dim"),
                    _fmt_rate(d.work_per_s, unit),
                    _perf(dev_wpj, opts.target_work_per_j, unit),
                    Text(sparkline(d.power_history, top=dev_scale), style="cyan"),
                    style=dim or None,
                )
    parts.append(table)
    if rest:
        rest_power = sum(s.power_w for s in rest if s.power_w is not None)
        rest_devices = sum(len(s.devices) for s in rest)
        rest_off = sum(1 for s in rest if s.label == "offline")
        parts.append(
            Text(
                f"+ {len(rest)} more nodes ({rest_devices} devices, {_fmt_power(rest_power)}"
                + (f", {rest_off} offline" if rest_off else "")
                + f"), sorted by {opts.sort}; --limit to show more",
                style="dim",
            )
        )
    hidden_offline = [s for s in offline if s not in top]
    if hidden_offline:
        names = ", ".join(s.view.node for s in hidden_offline[:8])
        more = f" (+{len(hidden_offline) - 8})" if len(hidden_offline) > 8 else ""
        parts.append(Text(f"offline: {names}{more}", style="red"))
    if not state.nodes:
        parts.append(Text("no agents seen yet", style="dim"))
    return Group(*parts)


# ------------------------------------------------------------------------------------ I/O


def subscriptions(site: str | None) -> list[str]:
    """The topic filters: every node's ``metrics`` and ``status`` of one site, or of all sites."""
    seg = "+" if site is None else topics.validate_segment("site", site)
    return [f"{topics.PREFIX}/{seg}/+/metrics", f"{topics.PREFIX}/{seg}/+/status"]


async def follow(cfg: MqttConfig, site: str | None, state: TopState, *, identifier: str) -> None:
    """Feed ``state`` from the broker until cancelled; on failure, record why and retry."""
    backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
    link = state.link
    link.url = cfg.url
    while True:
        try:
            client = make_client(cfg, identifier=identifier)
            async with client:
                link.connected, link.ever_connected = True, True
                link.error, link.retry_in_s = None, None
                backoff.reset()
                for filt in subscriptions(site):
                    await client.subscribe(filt, qos=0)
                async for msg in client.messages:
                    payload = msg.payload
                    if isinstance(payload, bytes | bytearray):
                        state.feed(str(msg.topic), bytes(payload), time.monotonic())
        except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as e:
            link.connected = False
            link.error = str(e) or type(e).__name__
            delay = backoff.next_delay()
            link.retry_in_s = delay
            await asyncio.sleep(delay)


# ------------------------------------------------------------------------------------ command


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The ``kwatt top`` options."""
    p.add_argument(
        "--broker",
        default=os.environ.get("KWATT_BROKER", "mqtt://127.0.0.1:1883"),
        help="mqtt://host:port or mqtts://host:port (default $KWATT_BROKER or mqtt://127.0.0.1:1883)",
    )
    p.add_argument("--site", help="only this site (default: every site)")
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password-file", help="file holding the MQTT password")
    p.add_argument("--ca-file", help="CA certificate(s) to verify the broker (TLS)")
    p.add_argument("--cert-file", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", help="client key (mutual TLS)")
    p.add_argument("--sort", choices=SORT_KEYS, default="power", help="sort nodes (default power)")
    p.add_argument("--reverse", action="store_true", help="reverse the sort order")
    p.add_argument("--limit", type=int, default=20, help="nodes to list (default 20; rest summed)")
    p.add_argument(
        "--devices",
        choices=("auto", "all", "none"),
        default="auto",
        help="device rows under each node (auto: when they fit)",
    )
    p.add_argument("--node", dest="node_pattern", metavar="REGEX", help="only nodes matching")
    p.add_argument("--vendor", help="only devices of this vendor (e.g. furiosa)")
    p.add_argument("--model", help="only devices of this model (e.g. rngd)")
    p.add_argument("--offline", action="store_true", help="only offline or stale nodes")
    p.add_argument("--throttled", action="store_true", help="only nodes with a throttling device")
    p.add_argument(
        "--work",
        choices=WORK_KINDS,
        default="tokens",
        help="unit of work for throughput and perf/W (default tokens)",
    )
    p.add_argument(
        "--target", type=float, metavar="WORK_PER_J", help="perf/W target (colours green/red)"
    )
    p.add_argument(
        "--stale", type=float, default=10.0, help="seconds without metrics before STALE (10)"
    )
    p.add_argument(
        "--refresh", type=float, default=0.5, help="seconds between screen updates (0.5)"
    )
    p.add_argument("--duration", type=float, help="exit after this many seconds")
    p.add_argument(
        "--once",
        action="store_true",
        help="listen for --duration seconds (default 3), print one screen, exit",
    )


def _mqtt_config(args: argparse.Namespace) -> MqttConfig:
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = TlsConfig(ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    return MqttConfig(
        url=args.broker,
        username=args.username,
        password_file=args.password_file,
        tls=tls,
        connect_timeout_s=5.0,
        reconnect_min_s=0.5,
        reconnect_max_s=5.0,
    )


def view_options(args: argparse.Namespace) -> ViewOptions:
    title = f"kwatt top · {args.broker}" + (f" · site {args.site}" if args.site else "")
    return ViewOptions(
        sort=args.sort,
        reverse=args.reverse,
        limit=args.limit,
        devices=args.devices,
        node_pattern=args.node_pattern,
        vendor=args.vendor,
        model=args.model,
        only_offline=args.offline,
        only_throttled=args.throttled,
        target_work_per_j=args.target,
        work=args.work,
        stale_s=args.stale,
        title=title,
    )


async def watch(
    cfg: MqttConfig,
    site: str | None,
    opts: ViewOptions,
    console: Console,
    *,
    once: bool,
    duration_s: float | None,
    refresh_s: float,
) -> int:
    """Run the live view (or one ``--once`` screen); 0, or 1 when the broker was never reached."""
    state = TopState(opts.work)
    identifier = f"kwatt-top-{socket.gethostname()[:32]}-{os.getpid()}"
    follower = asyncio.create_task(follow(cfg, site, state, identifier=identifier))
    start = time.monotonic()
    try:
        if once:
            await asyncio.sleep(3.0 if duration_s is None else duration_s)
            console.print(render(state, opts, time.monotonic()))
        else:
            with Live(
                render(state, opts, start),
                console=console,
                auto_refresh=False,
                transient=False,
                screen=False,
            ) as live:
                while duration_s is None or time.monotonic() - start < duration_s:
                    live.update(render(state, opts, time.monotonic()), refresh=True)
                    await asyncio.sleep(refresh_s)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    if not state.link.ever_connected:
        print(
            f"kwatt top: cannot reach the MQTT broker {cfg.url}: {state.link.error or 'timeout'}",
            file=sys.stderr,
        )
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """``kwatt top``."""
    if args.refresh <= 0 or args.refresh > 1.0:
        print("kwatt top: --refresh must be in (0, 1] seconds", file=sys.stderr)
        return 2
    if args.node_pattern:
        try:
            re.compile(args.node_pattern)
        except re.error as e:
            print(f"kwatt top: --node: bad regular expression: {e}", file=sys.stderr)
            return 2
    try:
        cfg = _mqtt_config(args)
        if args.site is not None:
            topics.validate_segment("site", args.site)
    except ValueError as e:
        print(f"kwatt top: {e}", file=sys.stderr)
        return 2
    console = Console()
    try:
        return asyncio.run(
            watch(
                cfg,
                args.site,
                view_options(args),
                console,
                once=args.once,
                duration_s=args.duration,
                refresh_s=args.refresh,
            )
        )
    except KeyboardInterrupt:
        return 130
