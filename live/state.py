"""The live view's model: :class:`TopState`, the reducer of ``kwatt top`` (pure, no I/O).

:meth:`TopState.feed` takes one received MQTT message (topic, payload, arrival time) and updates the
latest values per node (:class:`NodeView`) and device (:class:`DeviceView`), a short power history
(sparklines), throughput rates from the serving counters (:class:`ServiceFeed`), batch sequence gaps,
failing collectors and the node's clock offset. The retained ``status`` document is parsed with
:func:`kwatt.wire.documents.decode_status`; an empty one (the retained message cleared) forgets the
node. Malformed messages are counted in :attr:`TopState.bad_messages`, never raised. Values stay SI,
absent values ``None``, never 0; the broker link's state (:class:`LinkState`) is kept here for the
screen. No clock of its own: the caller passes the arrival time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from kwatt.analytics.clock import offset_warnings
from kwatt.wire import lineproto, topics
from kwatt.wire.documents import DocumentError, decode_status

__all__ = [
    "CLOCK_WINDOW_S",
    "DEFAULT_MAX_SKEW_S",
    "HISTORY",
    "WORK_FIELDS",
    "WORK_KINDS",
    "DeviceView",
    "LinkState",
    "NodeStatus",
    "NodeView",
    "ServiceFeed",
    "TopState",
    "WorkKind",
]

#: Points of power history kept per device and node (one per received batch): the sparkline.
HISTORY = 24
#: A node whose clock is off by more than this is named in a warning (kwatt report's --max-skew).
DEFAULT_MAX_SKEW_S = 0.8
#: The clock offset is the largest over this many seconds of messages (as the ingest's window).
CLOCK_WINDOW_S = 60.0

WorkKind = Literal["tokens", "inferences", "requests"]
#: A service's work kind is the first of these its serving counters report.
WORK_KINDS: tuple[WorkKind, ...] = ("tokens", "inferences", "requests")
WORK_FIELDS = frozenset(f"{k}_total" for k in WORK_KINDS)
NodeStatus = Literal["online", "offline", "unknown"]


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
        """A retained ``status`` document (:func:`kwatt.wire.documents.decode_status`; one that
        does not decode counts as a bad message); an empty payload (retained message cleared)
        forgets the node."""
        if not payload:
            self.nodes.pop((site, node), None)
            return
        try:
            status = decode_status(payload)
        except DocumentError:
            self.bad_messages += 1
            return
        view = self._node(site, node)
        view.status = status.state
        view.status_since_ns = status.since_ns
        view.agent_version = status.agent

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
