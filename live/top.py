"""``kwatt top``: the fleet, live, from the MQTT wire (like ``nvidia-smi`` and ``htop`` for kwatt).

Three layers, so the screen can be tested and benchmarked without a broker:

* :class:`TopState`, the reducer: :meth:`TopState.feed` takes one received MQTT message (topic,
  payload, arrival time) and updates the latest values per node and device, a short power history
  (sparklines) and throughput rates from the serving counters. No I/O, no clock of its own.
* :func:`render`, the renderer: a pure function of the state, :class:`ViewOptions` and "now" that
  returns a rich renderable laid out at the console's width (or ``--width``): a fleet line (nodes
  online/offline/stale, devices, power), one work total per kind (tok/s, inf/s, req/s with work per
  joule), one row per service in its own work kind (the first of ``tokens_total``,
  ``inferences_total``, ``requests_total`` it reports) and device class, with its perf/W, its
  target (``--target``, else the phase ratio of analytics/targets.yaml × the GPU baseline measured
  live on the same service, else × the published reference) and its ratio to the baseline, then
  the top nodes by the sort key, each with its devices (utilization, power, temperature, clock, throttle
  flag, throughput, perf-per-watt coloured against the service's target, power sparkline). At a
  narrow width (analytics/termfit.py) headers are abbreviated, device ids shorten to head…tail
  below 120 columns, and columns leave in this order, named in a footer: nodes table: power
  (recent), util bar, clock, thr, state, work/J, work/s, temp, power, util (the node/device
  column stays); services table: nodes, power, vs base, work/s, target, work/J (service and
  class stay). Numbers are never cut. At a height too small for every device, nodes collapse to one row each and only the
  selected node (keys j/k) shows its devices. At most ``limit`` nodes are drawn; the rest are
  summed in one line, so a 1,000-node fleet costs what 20 rows cost (bench/bench_top.py measures
  it). ``NodeView.warnings`` (e.g. a clock offset beyond the skew bound) print as a footer.
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
import dataclasses
import json
import math
import os
import re
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.text import Text

from kwatt.analytics.clock import offset_warnings
from kwatt.analytics.targets import PHASES, Targets, load_targets
from kwatt.analytics.termfit import SEP_PLAIN, Cell, Column, plan, records, table
from kwatt.wire import lineproto, topics
from kwatt.wire.mqtt import Backoff, make_client
from kwatt.wire.settings import MqttConfig, TlsConfig

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
#: A node whose clock is off by more than this is named in a warning (kwatt report's --max-skew).
DEFAULT_MAX_SKEW_S = 0.8
#: The clock offset is the largest over this many seconds of messages (as the ingest's window).
CLOCK_WINDOW_S = 60.0

SortKey = Literal["power", "util", "temp", "throughput", "perf", "name"]
SORT_KEYS: tuple[SortKey, ...] = ("power", "util", "temp", "throughput", "perf", "name")
WorkKind = Literal["tokens", "inferences", "requests"]
#: A service's work kind is the first of these its serving counters report.
WORK_KINDS: tuple[WorkKind, ...] = ("tokens", "inferences", "requests")
WORK_FIELDS = frozenset(f"{k}_total" for k in WORK_KINDS)
_WORK_UNIT: dict[WorkKind, str] = {"tokens": "tok", "requests": "req", "inferences": "inf"}
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
    service: str | None = None  # the accel series' optional ``service`` tag
    util_ratio: float | None = None
    power_w: float | None = None
    temp_c: float | None = None
    clock_hz: float | None = None
    throttled: int | None = None
    ts_ns: int = 0
    power_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    #: serving counters the device itself reports on its ``accel`` series, by field
    work: dict[str, _Rate] = field(default_factory=dict)


@dataclass(slots=True)
class ServiceFeed:
    """One service's serving counters on one node: rates by (counter field, ``device`` tag)."""

    rates: dict[tuple[str, str], _Rate] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)  # ``device`` tags of its serving series

    def kinds(self) -> list[WorkKind]:
        """The work kinds it reports, in :data:`WORK_KINDS` order."""
        have = {f for f, _ in self.rates}
        return [k for k in WORK_KINDS if f"{k}_total" in have]

    def per_s(self, kind: WorkKind, device: str | None = None) -> float | None:
        """Its rate in ``kind`` (over every series, or those tagged with ``device``)."""
        fld = f"{kind}_total"
        rates = [
            r.per_s
            for (f, dev), r in self.rates.items()
            if f == fld and r.per_s is not None and (device is None or dev == device)
        ]
        return sum(rates) if rates else None


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
    serving: dict[str, ServiceFeed] = field(default_factory=dict)  # by service
    power_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    seq: int | None = None
    seq_gaps: int = 0
    failing_collectors: set[str] = field(default_factory=set)
    #: Conditions to show under the table for this node (one sentence each); set by whoever
    #: checks them (e.g. a clock offset beyond the skew bound). The screen prints them as a footer.
    warnings: list[str] = field(default_factory=list)
    #: (arrival, newest sample ts - receive wall time in ns) per metrics message of the last
    #: CLOCK_WINDOW_S: the largest is the node's clock offset, low by the shortest delivery delay
    clock_samples: deque[tuple[float, int]] = field(default_factory=deque)
    clock_offset_s: float | None = None

    def work_per_s(self, kind: WorkKind) -> float | None:
        """The node's rate in ``kind`` over every service that reports it."""
        rates = [r for f in self.serving.values() if (r := f.per_s(kind)) is not None]
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

    def __init__(self, max_skew_s: float = DEFAULT_MAX_SKEW_S) -> None:
        self.max_skew_s = max_skew_s
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

    def feed(self, topic: str, payload: bytes, now_s: float, recv_ns: int | None = None) -> None:
        """Apply one message received on ``topic`` at monotonic time ``now_s`` (and wall time
        ``recv_ns``, which the clock check needs; None leaves it out)."""
        self.messages += 1
        try:
            name = topics.parse_topic(topic)
        except topics.TopicError:
            self.bad_messages += 1
            return
        if name.kind == "metrics":
            self.apply_metrics(name.site, name.node, payload, now_s, recv_ns)
        elif name.kind == "status":
            self.apply_status(name.site, name.node, payload)

    def _clock(self, view: NodeView, ahead_ns: int, now_s: float) -> None:
        """The node's clock offset over the last minute, and its warning (DESIGN §4)."""
        samples = view.clock_samples
        samples.append((now_s, ahead_ns))
        while samples and now_s - samples[0][0] > CLOCK_WINDOW_S:
            samples.popleft()
        view.clock_offset_s = max(a for _, a in samples) / 1e9
        prefix = f"node {view.site}/{view.node}: clock"
        view.warnings = [w for w in view.warnings if not w.startswith(prefix)]
        view.warnings += [
            str(w)
            for w in offset_warnings([(view.site, view.node, view.clock_offset_s)], self.max_skew_s)
        ]

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

    def apply_metrics(
        self, site: str, node: str, payload: bytes, now_s: float, recv_ns: int | None = None
    ) -> None:
        """One line-protocol batch of one node."""
        result = lineproto.parse_payload(payload)
        if result.errors:
            self.bad_messages += 1
        if not result.points:
            return
        view = self._node(site, node)
        view.last_metrics_s = now_s
        if recv_ns is not None:
            self._clock(view, max(p.ts_ns for p in result.points) - recv_ns, now_s)
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
                dev.service = tags.get("service", dev.service)
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
                    elif key in WORK_FIELDS:
                        rate = dev.work.get(key)
                        if rate is None:
                            rate = dev.work[key] = _Rate()
                        rate.update(pt.ts_ns, float(value))
            elif m == "serving":
                tags = dict(pt.tags)
                svc = tags.get("service", "?")
                dev_tag = tags.get("device", "")
                for key, value in pt.fields:
                    if key in WORK_FIELDS:
                        feed = view.serving.get(svc)
                        if feed is None:
                            feed = view.serving[svc] = ServiceFeed()
                        if dev_tag:
                            feed.devices.add(dev_tag)
                        rate = feed.rates.get((key, dev_tag))
                        if rate is None:
                            rate = feed.rates[(key, dev_tag)] = _Rate()
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
    """What to show: sorting, filters, how many rows, the targets."""

    sort: SortKey = "power"
    reverse: bool = False
    limit: int = 20
    devices: Literal["auto", "all", "none"] = "auto"
    #: In ``auto``, device rows are drawn while the shown nodes have at most this many devices
    #: (and, when the screen's height is known, while they fit in it).
    auto_device_rows: int = 48
    node_pattern: str | None = None
    vendor: str | None = None
    model: str | None = None
    only_offline: bool = False
    only_throttled: bool = False
    #: a perf/W target for every service (``--target N``)
    target_work_per_j: float | None = None
    #: perf/W targets by service name or work kind (``--target chatbot=2.5``,
    #: ``--target inferences=30``); a service's own name wins over its kind
    targets: tuple[tuple[str, float], ...] = ()
    #: the targets file (analytics/targets.yaml merged with ``--targets``): without an explicit
    #: target, a service's NPU rows get ``phase`` ratio × the perf/W of the GPU baseline measured
    #: live on the same service, or × the published reference when no GPU serves it (DESIGN §6)
    targets_doc: Targets | None = None
    phase: str | None = None
    #: only services (and nodes serving them) counting this kind of work; None: every kind
    work: WorkKind | None = None
    stale_s: float = 10.0
    title: str = "kwatt top"

    def target_for(self, service: str, kind: WorkKind) -> float | None:
        by = dict(self.targets)
        if service in by:
            return by[service]
        if kind in by:
            return by[kind]
        return self.target_work_per_j


@dataclass(frozen=True, slots=True)
class ServiceOnNode:
    """One service on one node in its own work kind: rate, the power of its devices, perf/W."""

    service: str
    kind: WorkKind
    work_per_s: float | None
    power_w: float | None
    devices: tuple[str, ...]
    #: ``vendor/model`` of its devices on this node ("mixed" when they differ)
    device_class: str = "?"

    @property
    def work_per_j(self) -> float | None:
        if self.work_per_s is None or not self.power_w:
            return None
        return self.work_per_s / self.power_w


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """One node reduced to its row: aggregates over the (filtered) devices, and its services."""

    view: NodeView
    label: Literal["online", "offline", "stale", "unknown"]
    devices: tuple[DeviceView, ...]
    util_ratio: float | None
    power_w: float | None
    temp_c: float | None
    clock_hz: float | None
    throttled: int
    services: tuple[ServiceOnNode, ...] = ()

    @property
    def kind(self) -> WorkKind | None:
        """The node's work kind when all its services share one (else its rows say per service)."""
        kinds = {s.kind for s in self.services}
        return kinds.pop() if len(kinds) == 1 else None

    @property
    def work_per_s(self) -> float | None:
        if self.kind is None:
            return None
        rates = [s.work_per_s for s in self.services if s.work_per_s is not None]
        return sum(rates) if rates else None

    @property
    def work_per_j(self) -> float | None:
        if self.work_per_s is None or not self.power_w:
            return None
        return self.work_per_s / self.power_w


TargetBasis = Literal["set", "gpu", "ref"]


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One service on one device class over the fleet (online nodes): its work kind, rate,
    power, perf/W, and its target with where it comes from (``set`` by ``--target``, ``gpu``:
    ratio × the GPU baseline measured live, ``ref``: ratio × a published value)."""

    service: str
    kind: WorkKind
    work_per_s: float | None
    power_w: float | None
    nodes: int
    target_work_per_j: float | None
    device_class: str = "?"
    baseline: bool = False
    target_basis: TargetBasis | None = None
    #: perf/W over the baseline's (live GPU or published), when both are known
    ratio_vs_baseline: float | None = None

    @property
    def work_per_j(self) -> float | None:
        if self.work_per_s is None or not self.power_w:
            return None
        return self.work_per_s / self.power_w


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def service_kinds(state: TopState) -> dict[str, WorkKind]:
    """Each service's work kind: the first of tokens, inferences, requests it reports anywhere."""
    seen: dict[str, set[WorkKind]] = {}
    for view in state.nodes.values():
        for svc, feed in view.serving.items():
            seen.setdefault(svc, set()).update(feed.kinds())
    return {svc: next(k for k in WORK_KINDS if k in kinds) for svc, kinds in seen.items() if kinds}


def _attributed(view: NodeView, service: str, feed: ServiceFeed) -> list[DeviceView]:
    """The devices a service runs on: tagged with it, named by its serving series, or every
    untagged device of a node that serves only it (DESIGN §6)."""
    tagged = [d for d in view.devices.values() if d.service == service]
    if tagged:
        return tagged
    named = [view.devices[x] for x in sorted(feed.devices) if x in view.devices]
    if named:
        return named
    if len(view.serving) == 1:
        return [d for d in view.devices.values() if d.service is None]
    return []


def summarize(
    view: NodeView,
    opts: ViewOptions,
    now_s: float,
    kinds: dict[str, WorkKind] | None = None,
) -> NodeSummary:
    """Reduce one node to its row (offline and stale nodes get no live figures); ``kinds`` is
    :func:`service_kinds` of the whole state (default: this node's own)."""
    filtered = opts.vendor is not None or opts.model is not None
    devices = (
        tuple(
            d
            for d in view.devices.values()
            if (opts.vendor is None or d.vendor == opts.vendor)
            and (opts.model is None or d.model == opts.model)
        )
        if filtered
        else tuple(view.devices.values())
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
        return NodeSummary(view, label, devices, None, None, None, None, 0)
    utils: list[float] = []
    powers: list[float] = []
    temps: list[float] = []
    clocks: list[float] = []
    throttled = 0
    for d in devices:  # one pass: this runs for every node at every frame
        if d.util_ratio is not None:
            utils.append(d.util_ratio)
        if d.power_w is not None:
            powers.append(d.power_w)
        if d.temp_c is not None:
            temps.append(d.temp_c)
        if d.clock_hz is not None:
            clocks.append(d.clock_hz)
        if d.throttled:
            throttled += 1
    shown_ids = {d.device for d in devices} if filtered else None
    services: list[ServiceOnNode] = []
    for svc, feed in sorted(view.serving.items()):
        kind = (kinds or {}).get(svc) or next(iter(feed.kinds()), None)
        if kind is None or (opts.work is not None and kind != opts.work):
            continue
        on = _attributed(view, svc, feed)
        mine = on if shown_ids is None else [d for d in on if d.device in shown_ids]
        if len(mine) == len(on):
            rate = feed.per_s(kind)
        else:  # filtered by vendor/model: only what is counted per shown device
            rates = [x for d in mine if (x := feed.per_s(kind, d.device)) is not None]
            for d in mine:
                own = d.work.get(f"{kind}_total")
                if own is not None and own.per_s is not None:
                    rates.append(own.per_s)
            rate = sum(rates) if rates else None
            if not mine:
                continue
        p = [d.power_w for d in mine if d.power_w is not None]
        classes = {f"{d.vendor}/{d.model}" for d in mine}
        services.append(
            ServiceOnNode(
                svc,
                kind,
                rate,
                sum(p) if p else None,
                tuple(d.device for d in mine),
                classes.pop() if len(classes) == 1 else ("mixed" if classes else "?"),
            )
        )
    return NodeSummary(
        view,
        label,
        devices,
        _mean(utils),
        sum(powers) if powers else None,
        max(temps) if temps else None,
        _mean(clocks),
        throttled,
        tuple(services),
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


def _phase_rule(
    opts: ViewOptions, service: str, kind: WorkKind
) -> tuple[float, float | None] | None:
    """(minimum ratio vs the GPU baseline, published reference perf/W or None) for ``service``
    in the options' phase, from the targets file (as analytics/verdict.py chooses them)."""
    doc = opts.targets_doc
    if doc is None:
        return None
    from kwatt.analytics.work import WorkUnit

    workload, _ = doc.workload_for(service, WorkUnit(kind))
    rule = workload.targets.get(opts.phase or doc.default_phase)
    if rule is None:
        return None
    refs = workload.references
    ref = next((r for r in refs if r.device == doc.baseline_device_default), None) or next(
        (r for r in refs if r.device.startswith(doc.baseline_vendor)), None
    )
    return rule.min_ratio_vs_baseline, None if ref is None else ref.work_per_j


def fleet_services(summaries: Sequence[NodeSummary], opts: ViewOptions) -> list[ServiceSummary]:
    """Every service over the online nodes, one row per device class, by name then class; the
    GPU baseline's rows (``baseline_vendor`` of the targets file, default nvidia) first."""
    base_vendor = opts.targets_doc.baseline_vendor if opts.targets_doc is not None else "nvidia"
    acc: dict[tuple[str, str], list[ServiceOnNode]] = {}
    for s in summaries:
        if s.label == "online":
            for so in s.services:
                acc.setdefault((so.service, so.device_class), []).append(so)

    def figures(parts: list[ServiceOnNode]) -> tuple[float | None, float | None]:
        rates = [p.work_per_s for p in parts if p.work_per_s is not None]
        powered = [p for p in parts if p.work_per_s is not None and p.power_w]
        return (
            sum(rates) if rates else None,
            sum(p.power_w or 0.0 for p in powered) if powered else None,
        )

    def is_base(cls: str) -> bool:
        return cls.split("/", maxsplit=1)[0] == base_vendor

    out = []
    for svc in sorted({k[0] for k in acc}):
        classes = sorted((c for s2, c in acc if s2 == svc), key=lambda c: (not is_base(c), c))
        base_parts = [
            x
            for cls in classes
            if is_base(cls)
            for x in acc[(svc, cls)]
            if x.work_per_s is not None and x.power_w
        ]
        base_work = sum(x.work_per_s or 0.0 for x in base_parts)
        base_power = sum(x.power_w or 0.0 for x in base_parts)
        live_base = base_work / base_power if base_power > 0 else None
        for cls in classes:
            parts = acc[(svc, cls)]
            kind = parts[0].kind
            work, power = figures(parts)
            wpj = work / power if work is not None and power else None
            target: float | None = opts.target_for(svc, kind)
            basis: TargetBasis | None = "set" if target is not None else None
            ratio = None
            if not is_base(cls):
                rule = _phase_rule(opts, svc, kind)
                base = live_base if live_base is not None else (rule[1] if rule else None)
                if base is not None and wpj is not None:
                    ratio = wpj / base
                if target is None and rule is not None and base is not None:
                    target = rule[0] * base
                    basis = "gpu" if live_base is not None else "ref"
            out.append(
                ServiceSummary(
                    svc,
                    kind,
                    work,
                    power,
                    len(parts),
                    target,
                    cls,
                    is_base(cls),
                    basis,
                    ratio,
                )
            )
    return out


# ------------------------------------------------------------------------------------ render


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
        valued = [s for s in shown if _sort_value(s, opts.sort) is not None]
        valued.sort(key=lambda s: _sort_value(s, opts.sort) or 0.0, reverse=not opts.reverse)
        shown = valued + [s for s in shown if _sort_value(s, opts.sort) is None]
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


def selection_order(state: TopState, opts: ViewOptions, now_s: float) -> list[tuple[str, str]]:
    """The nodes in screen order (for moving the selection with the keys)."""
    kinds = service_kinds(state)
    summaries = [summarize(v, opts, now_s, kinds) for v in state.nodes.values()]
    if opts.sort == "name":
        summaries.sort(key=lambda s: (s.view.site, s.view.node), reverse=opts.reverse)
    else:
        summaries.sort(key=lambda s: (s.view.site, s.view.node))
        valued = [s for s in summaries if _sort_value(s, opts.sort) is not None]
        valued.sort(key=lambda s: _sort_value(s, opts.sort) or 0.0, reverse=not opts.reverse)
        summaries = valued + [s for s in summaries if _sort_value(s, opts.sort) is None]
    return [(s.view.site, s.view.node) for s in summaries]


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
                        state.feed(str(msg.topic), bytes(payload), time.monotonic(), time.time_ns())
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
        help="only services counting this kind of work (default: every service in its own kind: "
        "the first of tokens, inferences, requests it reports)",
    )
    p.add_argument(
        "--target",
        type=_target,
        action="append",
        default=[],
        metavar="[SERVICE|KIND=]WORK_PER_J",
        help="perf/W target (colours green/red): for one service (chatbot=2.5), one kind of work "
        "(inferences=30) or, bare, every service; repeatable",
    )
    p.add_argument(
        "--targets",
        dest="targets_file",
        type=Path,
        metavar="FILE",
        help="targets YAML merged over analytics/targets.yaml (as kwatt report --targets): "
        "without --target, NPU rows aim at the phase ratio × the GPU measured live on the same "
        "service, or × the published reference",
    )
    p.add_argument("--phase", choices=PHASES, help="phase of the targets (default from the file)")
    p.add_argument(
        "--width",
        type=_width,
        metavar="N",
        help="lay the screen out in N columns (default: the terminal's width)",
    )
    p.add_argument(
        "--stale", type=float, default=10.0, help="seconds without metrics before STALE (10)"
    )
    p.add_argument(
        "--max-skew",
        type=float,
        default=DEFAULT_MAX_SKEW_S,
        help="warn about a node whose clock is off by more (s; kwatt report's bound, 0.8)",
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


#: The narrowest ``--width``.
MIN_WIDTH = 40


def _width(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < MIN_WIDTH:
        raise argparse.ArgumentTypeError(
            f"expected a number of columns ≥ {MIN_WIDTH}, got {text!r}"
        )
    return n


def _target(text: str) -> tuple[str, float]:
    """``--target``: ``N`` (key ``*``), ``SERVICE=N`` or ``KIND=N`` with N > 0."""
    name, sep, value = text.rpartition("=")
    try:
        n = float(value)
    except ValueError:
        n = math.nan
    if not (n > 0 and math.isfinite(n)) or (sep and not name):
        raise argparse.ArgumentTypeError(
            f"expected [SERVICE|KIND=]WORK_PER_J with WORK_PER_J > 0, got {text!r}"
        )
    return (name if sep else "*", n)


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
        target_work_per_j=dict(args.target).get("*"),
        targets_doc=load_targets(args.targets_file),
        phase=args.phase,
        targets=tuple((k, v) for k, v in args.target if k != "*"),
        work=args.work,
        stale_s=args.stale,
        title=title,
    )


_KEYS_HINT = "keys: j/k or ↑/↓ select a node · d devices all/auto/none · q quit"


class _Keys:
    """Single keys from a terminal on stdin (cbreak mode, restored on exit): the selection."""

    def __init__(self) -> None:
        self.pending: deque[str] = deque()
        self._fd: int | None = None
        self._saved: list[Any] = []

    def __enter__(self) -> _Keys:
        if not sys.stdin.isatty():
            return self
        import termios
        import tty

        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)
        return self

    @property
    def active(self) -> bool:
        return self._fd is not None

    def _read(self) -> None:
        assert self._fd is not None
        data = os.read(self._fd, 64).decode(errors="replace")
        data = data.replace("\x1b[A", "k").replace("\x1b[B", "j")
        self.pending.extend(data)

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        import termios

        asyncio.get_running_loop().remove_reader(self._fd)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._fd = None


async def watch(
    cfg: MqttConfig,
    site: str | None,
    opts: ViewOptions,
    console: Console,
    *,
    once: bool,
    duration_s: float | None,
    refresh_s: float,
    width: int | None = None,
    max_skew_s: float = 0.8,
) -> int:
    """Run the live view (or one ``--once`` screen); 0, or 1 when the broker was never reached."""
    state = TopState(max_skew_s)
    identifier = f"kwatt-top-{socket.gethostname()[:32]}-{os.getpid()}"
    follower = asyncio.create_task(follow(cfg, site, state, identifier=identifier))
    start = time.monotonic()
    try:
        if once:
            await asyncio.sleep(3.0 if duration_s is None else duration_s)
            console.print(render(state, opts, time.monotonic(), width=width))
        else:
            await _live(state, opts, console, start, duration_s, refresh_s, width)
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


async def _live(
    state: TopState,
    opts: ViewOptions,
    console: Console,
    start: float,
    duration_s: float | None,
    refresh_s: float,
    width: int | None,
) -> None:
    """The refreshing screen, at the terminal's size; keys move the selection."""
    selected: tuple[str, str] | None = None
    modes: tuple[Literal["auto", "all", "none"], ...] = ("auto", "all", "none")
    with _Keys() as keys, Live(console=console, auto_refresh=False, screen=False) as live:
        hint = _KEYS_HINT if keys.active else None
        while duration_s is None or time.monotonic() - start < duration_s:
            now = time.monotonic()
            while keys.pending:
                key = keys.pending.popleft()
                if key == "q":
                    return
                if key == "d":
                    nxt = modes[(modes.index(opts.devices) + 1) % len(modes)]
                    opts = dataclasses.replace(opts, devices=nxt)
                elif key in "jk":
                    order = selection_order(state, opts, now)
                    if order:
                        at = order.index(selected) if selected in order else 0
                        at = min(max(at + (1 if key == "j" else -1), 0), len(order) - 1)
                        selected = order[at]
            screen = render(
                state,
                opts,
                now,
                width=width,
                height=console.size.height - 1,
                selected=selected,
                keys_hint=hint,
            )
            live.update(screen, refresh=True)
            await asyncio.sleep(refresh_s)


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
        opts = view_options(args)
    except ValueError as e:  # TargetsError included
        print(f"kwatt top: {e}", file=sys.stderr)
        return 2
    console = Console() if args.width is None else Console(width=args.width)
    try:
        return asyncio.run(
            watch(
                cfg,
                args.site,
                opts,
                console,
                once=args.once,
                duration_s=args.duration,
                refresh_s=args.refresh,
                width=args.width,
                max_skew_s=args.max_skew,
            )
        )
    except KeyboardInterrupt:
        return 130
