"""The live view's view model: what ``kwatt top`` shows, reduced from a :class:`TopState` (pure).

:class:`ViewOptions` says what to show (sort key, filters, row limits, perf/W targets, the targets
file and phase). :func:`summarize` reduces one node to a :class:`NodeSummary` (its label online,
offline, stale or unknown; aggregates over its filtered devices; its services as
:class:`ServiceOnNode` in their own work kind); :func:`fleet_services` sums the services over the
online nodes, one :class:`ServiceSummary` per service and device class, with its target and its
ratio to the GPU baseline measured live (else the published reference, DESIGN §6);
:func:`selection_order` lists the nodes in screen order (for the selection keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kwatt.analytics.targets import Targets
from kwatt.analytics.work import WorkUnit
from kwatt.live.state import WORK_KINDS, DeviceView, NodeView, ServiceFeed, TopState, WorkKind

__all__ = [
    "SORT_KEYS",
    "NodeSummary",
    "ServiceOnNode",
    "ServiceSummary",
    "SortKey",
    "TargetBasis",
    "ViewOptions",
    "fleet_services",
    "selection_order",
    "service_kinds",
    "sort_value",
    "summarize",
]

SortKey = Literal["power", "util", "temp", "throughput", "perf", "name"]
SORT_KEYS: tuple[SortKey, ...] = ("power", "util", "temp", "throughput", "perf", "name")


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


def sort_value(s: NodeSummary, key: SortKey) -> float | None:
    """The node's figure for ``key`` (None for ``name``, or when the node has none)."""
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


def selection_order(state: TopState, opts: ViewOptions, now_s: float) -> list[tuple[str, str]]:
    """The nodes in screen order (for moving the selection with the keys)."""
    kinds = service_kinds(state)
    summaries = [summarize(v, opts, now_s, kinds) for v in state.nodes.values()]
    if opts.sort == "name":
        summaries.sort(key=lambda s: (s.view.site, s.view.node), reverse=opts.reverse)
    else:
        summaries.sort(key=lambda s: (s.view.site, s.view.node))
        valued = [s for s in summaries if sort_value(s, opts.sort) is not None]
        valued.sort(key=lambda s: sort_value(s, opts.sort) or 0.0, reverse=not opts.reverse)
        summaries = valued + [s for s in summaries if sort_value(s, opts.sort) is None]
    return [(s.view.site, s.view.node) for s in summaries]
