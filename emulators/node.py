"""The general emulated node: devices of any catalogue model, the K-Cloud services, every vendor
surface, ground truth and faults.

- :class:`NodeOptions` (with :class:`DeviceSpec` and :func:`parse_devices` for ``--devices
  rngd:2,atom-max:1,h100:1``) defines a node; same options and seed give the same run.
- :class:`Node` builds one :class:`~kwatt.emulators.physics.DevicePhysics` per catalogue device,
  drives them with the services' workloads (:mod:`kwatt.emulators.workloads`), serves the chatbot's
  devices through their vendor's LLM runtime (:data:`RUNTIME_OF_VENDOR`) and each vision service
  through Triton (:mod:`kwatt.emulators.serving`), models the host's CPU, DRAM and system power
  (``HOST_*``), applies faults (:mod:`kwatt.emulators.faults`), renders every registered vendor
  surface (:mod:`kwatt.emulators.surfaces`) and appends one
  :class:`~kwatt.emulators.truth.TruthRecord` per step to its truth log.

The printed agent config is :mod:`kwatt.emulators.agentconfig`; many nodes in one process are
:mod:`kwatt.emulators.fleet`; the command line (``kwatt emulate node|fleet|fault``) is
:mod:`kwatt.emulators.cli`, also run as ``python -m kwatt.emulators.node``. The RNGD-only node of the
first emulator is :mod:`kwatt.emulators.rngd_node`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from kwatt.emulators.catalogue import ModelSpec, load_catalogue, model
from kwatt.emulators.faults import Fault, FaultEngine, FaultEvent, control_dir
from kwatt.emulators.physics import DeviceIdentity, DevicePhysics, Latency
from kwatt.emulators.serving import (
    RUNTIMES,
    TRITON_MODELS,
    MetricsServer,
    ServingModel,
    TritonModel,
)
from kwatt.emulators.state import DeviceState, HostState, Snapshot, write_snapshot
from kwatt.emulators.surfaces import HOST, Surface, SurfaceContext, load_builtin
from kwatt.emulators.truth import (
    DeviceTruth,
    HostTruth,
    ServiceTruth,
    ServingTruth,
    TritonTruth,
    TruthRecord,
    encode,
)
from kwatt.emulators.workloads import WorkloadParams, make_workload, work_class_of

__all__ = [
    "RUNTIME_OF_VENDOR",
    "DeviceSpec",
    "Node",
    "NodeOptions",
    "ServingEndpoint",
    "parse_devices",
]


#: Host model (assumed; a 2-socket inference server): per package idle and busy power, DRAM power,
#: and the chassis overhead (fans, NICs, BMC) and PSU loss the BMC's reading includes.
HOST_PACKAGES = 2
HOST_CPU_IDLE_W = 45.0
HOST_CPU_BUSY_W = 110.0
HOST_DRAM_IDLE_W = 8.0
HOST_DRAM_BUSY_W = 14.0
HOST_OVERHEAD_W = 60.0
HOST_PSU_LOSS = 0.06


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """``model:cards`` of ``--devices`` (an ATOM-Max card gives 4 devices)."""

    model: str
    cards: int


def parse_devices(text: str) -> tuple[DeviceSpec, ...]:
    """``rngd:2,atom-max:1,h100:1`` → specs; ``rngd`` alone means one card."""
    out: list[DeviceSpec] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, _, count = part.partition(":")
        cat = load_catalogue()
        if name not in cat:
            raise ValueError(f"--devices: unknown model {name!r}; known: {', '.join(cat)}")
        try:
            cards = int(count) if count else 1
        except ValueError:
            raise ValueError(f"--devices: {part!r}: expected MODEL[:CARDS]") from None
        if cards < 1:
            raise ValueError(f"--devices: {part!r}: cards must be >= 1")
        out.append(DeviceSpec(name, cards))
    if not out:
        raise ValueError("--devices: no devices")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """Everything that defines one emulated node (same options + same seed → same run)."""

    devices: tuple[DeviceSpec, ...]
    services: tuple[str, ...] = ("chatbot",)
    seed: int = 0
    name: str = "node0"
    speed: float = 1.0
    period_s: float = 0.5
    #: Utilization the services' daily peak asks of the node's devices (sizes the workloads).
    load: float = 0.7
    serving_port: int = 0
    tool_versions: tuple[tuple[str, str], ...] = ()
    workload: WorkloadParams = field(default_factory=WorkloadParams)
    faults: tuple[Fault, ...] = ()


#: The serving runtime of the chatbot per vendor (docs/device-interfaces.md §6: furiosa-llm;
#: vllm-rbln is a vLLM plugin; vLLM on NVIDIA; Sapeon has no public LLM runtime — vLLM names
#: assumed).
RUNTIME_OF_VENDOR = {
    "furiosa": "furiosa-llm",
    "rebellions": "vllm-rbln",
    "nvidia": "vllm",
    "sapeon": "vllm",
    # phase-2/3 PIM devices (emulators/pim.py): no public LLM runtime either — vLLM names assumed
    "skhynix": "vllm",
    "samsung": "vllm",
    "ibm": "vllm",
}


@dataclass(slots=True)
class _Runtime:
    name: str
    devices: list[DevicePhysics]
    model: ServingModel | None = None
    server: MetricsServer | None = None


@dataclass(slots=True)
class _Triton:
    """A vision service's Triton Inference Server: one model over the service's devices."""

    service: str
    model: TritonModel
    server: MetricsServer


@dataclass(frozen=True, slots=True)
class ServingEndpoint:
    """One serving runtime's ``/metrics`` on a node: which service it serves, and how."""

    service: str
    runtime: str
    url: str  # base URL; the metrics are at url + "/metrics"


@dataclass(slots=True)
class _ServiceTotals:
    offered_units: float = 0.0
    served_units: float = 0.0
    dropped_units: float = 0.0
    requests: int = 0
    prompt_tokens: int = 0


class Node:
    """One emulated node: catalogue devices → physics → every registered vendor surface.

    :meth:`step` advances emulator time (seconds since the start) and renders every surface;
    :meth:`run` steps on the wall clock at ``speed`` × real time. Ground truth (one
    :class:`~kwatt.emulators.truth.TruthRecord` per step, see :meth:`truth_record`) goes to
    ``truth_log``, one JSON line each (:func:`kwatt.emulators.truth.encode`).
    """

    def __init__(self, root: Path, options: NodeOptions, *, truth_log: Path | None = None) -> None:
        if options.speed <= 0 or options.period_s <= 0:
            raise ValueError("speed and period_s must be > 0")
        self.root = Path(root)
        self.options = options
        self.truth_log = truth_log
        self.faults = FaultEngine(self.root)
        self.faults.schedule(options.faults)
        self.physics: list[DevicePhysics] = []
        ordinals: dict[str, int] = {}
        card = 0
        for ds in options.devices:
            spec = model(ds.model)
            for _ in range(ds.cards):
                for _ in range(spec.devices_per_card):
                    n = ordinals.get(spec.vendor, 0)
                    ordinals[spec.vendor] = n + 1
                    service = self._service_for(spec)
                    ident = DeviceIdentity.derive(spec, options.name, options.seed, n, card)
                    self.physics.append(
                        DevicePhysics(
                            spec,
                            ident,
                            index=n,
                            seed=options.seed,
                            work_class=work_class_of(service),
                            service=service,
                        )
                    )
                card += 1
        self.workloads = {
            s: make_workload(s, options.seed, options.workload)
            for s in dict.fromkeys(p.service for p in self.physics)
        }
        for s, wl in self.workloads.items():
            cls = wl.work_class
            if cls is None:
                continue
            # size the service to the node: its daily peak offers ``load`` of the devices' capacity
            cap = sum(p.spec.capacity(cls) for p in self.physics if p.service == s)
            peak = wl.peak_units_per_s()
            wl.scale = options.load * cap / peak if peak > 0 else 1.0
        # the chatbot's devices are served by their vendor's runtime, one endpoint per runtime
        self.runtimes: dict[str, _Runtime] = {}
        for p in self.physics:
            if p.service != "chatbot":
                continue
            name = RUNTIME_OF_VENDOR[p.spec.vendor]
            self.runtimes.setdefault(name, _Runtime(name, [])).devices.append(p)
        for k, rt in enumerate(self.runtimes.values()):
            prefix, model_name = RUNTIMES[rt.name]
            rt.model = ServingModel(
                len(rt.devices), seed=options.seed, model_name=model_name, prefix=prefix
            )
            port = options.serving_port + k if options.serving_port else 0
            rt.server = MetricsServer(rt.model.render, port=port)
        # each vision service is served by Triton (docs/device-interfaces.md §6.4), one model over
        # all of its devices
        self.tritons: dict[str, _Triton] = {}
        for s in self.workloads:
            if s in TRITON_MODELS:
                k = len(self.runtimes) + len(self.tritons)
                port = options.serving_port + k if options.serving_port else 0
                tm = TritonModel(TRITON_MODELS[s])
                self.tritons[s] = _Triton(s, tm, MetricsServer(tm.render, port=port))
        self.surfaces: dict[str, Surface] = {}
        self._totals = {s: _ServiceTotals() for s in self.workloads}
        self._host_cpu_j = [0.0] * HOST_PACKAGES
        self._host_dram_j = [0.0] * HOST_PACKAGES
        self._system_j = 0.0
        self._host: HostState | None = None
        self._t_s = 0.0
        self._latency: dict[str, Latency] = {}  # per device uuid, this step
        self._service_latency: dict[str, tuple[float | None, float | None]] = {}
        self._truth: IO[str] | None = None
        self._started = False

    def _service_for(self, spec: ModelSpec) -> str:
        for s in self.options.services:
            cls = work_class_of(s)
            if cls is None or cls in spec.throughput:
                return s
        raise ValueError(
            f"{spec.key} runs none of the services {', '.join(self.options.services)} "
            f"(it can run {', '.join(spec.throughput)} work); add a service it can run"
        )

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def serving_url(self) -> str | None:
        """Base URL of the first serving runtime (None without a chatbot)."""
        urls = self.serving_urls
        return next(iter(urls.values())) if urls else None

    @property
    def serving_urls(self) -> dict[str, str]:
        """Runtime → base URL of its ``/metrics``."""
        return {
            name: f"http://{MetricsServer.HOST}:{rt.server.port}"
            for name, rt in self.runtimes.items()
            if rt.server is not None
        }

    @property
    def serving_endpoints(self) -> list[ServingEndpoint]:
        """Every serving runtime of the node (chatbot runtimes, then Triton per vision service)."""
        out = [ServingEndpoint("chatbot", name, url) for name, url in self.serving_urls.items()]
        for t in self.tritons.values():
            if t.server.started:
                out.append(
                    ServingEndpoint(
                        t.service, "triton", f"http://{MetricsServer.HOST}:{t.server.port}"
                    )
                )
        return out

    @property
    def endpoints(self) -> dict[str, str]:
        out = {} if self.serving_url is None else {"serving": self.serving_url}
        out.update({f"serving:{name}": url for name, url in self.serving_urls.items()})
        out.update(
            {f"triton:{e.service}": e.url for e in self.serving_endpoints if e.runtime == "triton"}
        )
        for s in self.surfaces.values():
            out.update(s.endpoints)
        return out

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.spec.vendor for p in self.physics))

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("Node already started")
        registry = load_builtin()
        ctx = SurfaceContext(
            root=self.root,
            seed=self.options.seed,
            node_name=self.options.name,
            tool_versions=dict(self.options.tool_versions),
        )
        for vendor in (*self.vendors, HOST):
            factory = registry.get(vendor)
            if factory is not None:
                self.surfaces[vendor] = factory(ctx)
        snap = self._snapshot()
        await asyncio.to_thread(self._setup, snap)
        for s in self.surfaces.values():
            await s.start()
        for rt in self.runtimes.values():
            if rt.server is not None:
                await rt.server.start()
        for t in self.tritons.values():
            await t.server.start()
        if self.truth_log is not None:
            self.truth_log.parent.mkdir(parents=True, exist_ok=True)
            self._truth = self.truth_log.open("a", encoding="utf-8", buffering=1)
        self._started = True

    def _setup(self, snap: Snapshot) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        control_dir(self.root).mkdir(parents=True, exist_ok=True)
        write_snapshot(self.root, snap)
        for s in self.surfaces.values():
            s.setup(self.root, snap.devices)
            s.render(snap)

    async def aclose(self) -> None:
        for s in self.surfaces.values():
            await s.aclose()
        for rt in self.runtimes.values():
            if rt.server is not None:
                await rt.server.aclose()
        for t in self.tritons.values():
            await t.server.aclose()
        if self._truth is not None:
            self._truth.close()
            self._truth = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------- physics
    def advance(self, t_s: float) -> tuple[Snapshot, TruthRecord]:
        """Physics up to emulator time ``t_s``: the snapshot to render and the truth record."""
        if not self._started:
            raise RuntimeError("Node.advance() before start()")
        dt = t_s - self._t_s
        if dt < 0:
            raise ValueError(f"time went backwards: {t_s} < {self._t_s}")
        t0 = self._t_s
        self._t_s = t_s
        self.faults.poll_commands()  # pause/resume wait for the run loop, between steps
        for ev in self.faults.advance(t_s):
            self._apply(ev)
        served_by: dict[str, float] = {}
        self._latency = {}
        self._service_latency = {}
        for service, wl in self.workloads.items():
            devs = [p for p in self.physics if p.service == service]
            offer = wl.offer(t0, t_s)
            tot = self._totals[service]
            tot.offered_units += 0.0 if offer.share else offer.units
            tot.requests += offer.requests
            tot.prompt_tokens += offer.prompt_tokens
            weights = [p.capacity(p.clock_max_hz) for p in devs]
            reqs = _apportion(offer.requests, weights)
            for k, p in enumerate(devs):
                # a load balancer weighted by capacity; a test profile gives every device its share
                units = offer.units if offer.share else offer.units * weights[k] / sum(weights)
                r = p.step(t_s, dt, units, reqs[k])
                if not offer.share:
                    tot.served_units += r.served_units
                    tot.dropped_units += r.dropped_units
                served_by[p.identity.uuid] = r.served_units
                self._latency[p.identity.uuid] = r.latency
            self._service_latency[service] = _service_latency(
                [(self._latency[p.identity.uuid], n) for p, n in zip(devs, reqs, strict=True)]
            )
            triton = self.tritons.get(service)
            if triton is not None and dt > 0:
                self._advance_triton(triton, devs, reqs, served_by)
        completed: list[float] = []
        for rt in self.runtimes.values():
            if rt.model is None or dt <= 0:
                continue
            for engine, p in enumerate(rt.devices):
                completed += rt.model.advance(
                    engine,
                    served_by.get(p.identity.uuid, 0.0),
                    p.util,
                    p.clock_hz / p.clock_max_hz,
                )
        self._host_step(dt)
        snap = self._snapshot()
        return snap, self.truth_record(t_s, dt, snap, completed)

    def _advance_triton(
        self,
        triton: _Triton,
        devs: list[DevicePhysics],
        reqs: list[int],
        served_by: Mapping[str, float],
    ) -> None:
        """Complete the service's requests on Triton from the units its devices served."""
        served = sum(served_by.get(p.identity.uuid, 0.0) for p in devs)
        util = sum(p.util for p in devs) / len(devs)
        lat_w = lat = comp = 0.0
        for p, n in zip(devs, reqs, strict=True):
            mean_s = self._latency[p.identity.uuid].mean_s
            cap = p.capacity(p.clock_hz)
            if n <= 0 or math.isnan(mean_s) or cap <= 0:
                continue
            lat += n * mean_s
            comp += n * p.spec.core_count / cap  # one frame's service time on one core
            lat_w += n
        mean_s, compute_s = (lat / lat_w, comp / lat_w) if lat_w > 0 else (math.nan, 0.0)
        triton.model.advance(served, util, mean_s, compute_s)

    def _apply(self, ev: FaultEvent) -> None:
        f = ev.fault
        targets = [p for p in self.physics if FaultEngine.matches(f, self._keys(p))]
        if not ev.starting:
            if f.kind == "disappear":  # back: re-enumerate with the next free index
                for p in targets:
                    self._reenumerate(p)
            return
        for p in targets:
            if f.kind == "counter_reset":
                p.reset_counters()
            elif f.kind == "power_limit" and f.value is not None:
                p.power_limit_w = f.value
            elif f.kind == "governor":
                p.governor = "powersave" if f.value else "performance"

    def _reenumerate(self, dev: DevicePhysics) -> None:
        """The device comes back last: it takes the highest index of its vendor, others move down."""
        same = sorted(
            (p for p in self.physics if p.spec.vendor == dev.spec.vendor), key=lambda p: p.index
        )
        same.remove(dev)
        same.append(dev)
        for i, p in enumerate(same):
            p.index = i

    @staticmethod
    def _keys(p: DevicePhysics) -> tuple[str, ...]:
        return (
            p.identity.serial,
            p.identity.uuid,
            p.identity.bus_id,
            f"{p.spec.vendor}:{p.index}",
            p.spec.key,
        )

    def _host_step(self, dt: float) -> None:
        load = sum(p.util for p in self.physics) / len(self.physics)
        cpu = HOST_CPU_IDLE_W + (HOST_CPU_BUSY_W - HOST_CPU_IDLE_W) * load
        dram = HOST_DRAM_IDLE_W + (HOST_DRAM_BUSY_W - HOST_DRAM_IDLE_W) * load
        for k in range(HOST_PACKAGES):
            self._host_cpu_j[k] += cpu * dt
            self._host_dram_j[k] += dram * dt
        accel = sum(p.power_w for p in self.physics)
        system = (HOST_PACKAGES * (cpu + dram) + accel + HOST_OVERHEAD_W) / (1 - HOST_PSU_LOSS)
        self._system_j += system * dt
        self._host = HostState(
            t_s=self._t_s,
            cpu_power_w=(cpu,) * HOST_PACKAGES,
            cpu_energy_j=tuple(self._host_cpu_j),
            dram_power_w=(dram,) * HOST_PACKAGES,
            dram_energy_j=tuple(self._host_dram_j),
            system_power_w=system,
            system_energy_j=self._system_j,
        )

    def _snapshot(self) -> Snapshot:
        if self._host is None:
            self._host_step(0.0)
        states: list[DeviceState] = []
        for p in self.physics:
            present, stuck, na, nan = self.faults.device_view(self._keys(p))
            s = p.state(present=present, stuck=stuck, na_fields=na, nan_fields=nan)
            if nan:
                nan_values: dict[str, Any] = {f: math.nan for f in nan if _is_float_field(f)}
                s = dataclasses.replace(s, **nan_values)
            states.append(s)
        return Snapshot(
            t_s=self._t_s,
            wall_ns=time.time_ns() + self.faults.wall_offset_ns,
            devices=tuple(states),
            host=self._host,
            tool_faults=self.faults.tool_faults(),
        )

    def render(self, snap: Snapshot) -> None:
        """Write the snapshot file and every surface (blocking; run it in a thread from asyncio)."""
        write_snapshot(self.root, snap)
        for s in self.surfaces.values():
            s.render(snap)

    def step(self, t_s: float) -> TruthRecord:
        """Advance to emulator time ``t_s``, render every surface, log and return the truth."""
        snap, record = self.advance(t_s)
        self.render(snap)
        self.log_truth(record)
        return record

    def log_truth(self, record: TruthRecord) -> None:
        """Append one ground-truth record to the truth log (if any)."""
        if self._truth is not None:
            self._truth.write(encode(record))

    def truth_record(
        self, t_s: float, dt: float, snap: Snapshot, completed: list[float]
    ) -> TruthRecord:
        """Ground truth of one step: true energy per device and host, true work per service."""
        host = snap.host
        models = [rt.model for rt in self.runtimes.values() if rt.model is not None]
        return TruthRecord(
            node=self.options.name,
            t_s=t_s,
            dt_s=dt,
            wall_ns=snap.wall_ns,
            devices=tuple(
                DeviceTruth(
                    uuid=p.identity.uuid,
                    serial=p.identity.serial,
                    bus_id=p.identity.bus_id,
                    model=p.spec.key,
                    vendor=p.spec.vendor,
                    index=p.index,
                    service=p.service,
                    util_ratio=p.util,
                    power_w=p.power_w,
                    energy_j=p.energy_j,
                    temp_c=p.temp_c,
                    clock_hz=p.clock_hz,
                    throttle_thermal=p.throttle_thermal,
                    throttle_power=p.throttle_power,
                    present=s.present,
                    latency_p50_s=_finite(self._latency.get(p.identity.uuid, _NO_LATENCY).p50_s),
                    latency_p99_s=_finite(self._latency.get(p.identity.uuid, _NO_LATENCY).p99_s),
                )
                for p, s in zip(self.physics, snap.devices, strict=True)
            ),
            host=None
            if host is None
            else HostTruth(
                system_power_w=host.system_power_w,
                system_energy_j=host.system_energy_j,
                cpu_energy_j=tuple(host.cpu_energy_j),
                dram_energy_j=tuple(host.dram_energy_j),
            ),
            services={
                s: ServiceTruth(
                    work_class=work_class_of(s),
                    offered_units_total=t.offered_units,
                    served_units_total=t.served_units,
                    dropped_units_total=t.dropped_units,
                    requests_total=t.requests,
                    prompt_tokens_total=t.prompt_tokens,
                    latency_p50_s=self._service_latency.get(s, (None, None))[0],
                    latency_p99_s=self._service_latency.get(s, (None, None))[1],
                )
                for s, t in self._totals.items()
            },
            serving=None
            if not self.runtimes
            else ServingTruth(
                requests_total=sum(m.requests_total for m in models),
                tokens_total=sum(m.generation_tokens_total for m in models),
                prompt_tokens_total=sum(m.prompt_tokens_total for m in models),
                latencies_s=tuple(completed),
            ),
            triton={
                svc: TritonTruth(
                    model=t.model.model_name,
                    inferences_total=t.model.inferences,
                    requests_total=t.model.success,
                    request_duration_us=t.model.request_us,
                )
                for svc, t in self.tritons.items()
            },
            faults=tuple(what for at, what in self.faults.log if at == t_s),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``period_s`` of wall time; emulator time runs ``speed`` × faster."""
        origin = time.monotonic()
        base = self._t_s
        paused_s = 0.0  # wall time spent paused: left out of emulator time
        while not stop.is_set():
            self.faults.poll_commands(pause=True)
            if self.faults.paused():
                t0 = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(self.options.period_s, 0.05)):
                        await stop.wait()
                paused_s += time.monotonic() - t0
                continue
            t = base + (time.monotonic() - origin - paused_s) * self.options.speed
            snap, record = self.advance(t)
            await asyncio.to_thread(self.render, snap)
            self.log_truth(record)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.period_s):
                    await stop.wait()


_NO_LATENCY = Latency(math.nan, math.nan, math.nan)


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def _service_latency(per_device: list[tuple[Latency, int]]) -> tuple[float | None, float | None]:
    """A service's step latency: request-weighted mean of its devices' p50, the worst p99."""
    live = [(lat, n) for lat, n in per_device if n > 0 and not math.isnan(lat.p50_s)]
    if not live:
        return None, None
    total = sum(n for _, n in live)
    return sum(lat.p50_s * n for lat, n in live) / total, max(lat.p99_s for lat, _ in live)


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; deterministic)."""
    w = sum(weights)
    exact = [total * x / w for x in weights]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (out[i] - exact[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def _is_float_field(name: str) -> bool:
    f = DeviceState.__dataclass_fields__.get(name)
    return f is not None and f.type in ("float", float)


if __name__ == "__main__":
    from kwatt.emulators.cli import main

    sys.exit(main())
