"""An emulated node: N RNGD cards under ``ROOT/sys`` and a furiosa-llm ``/metrics`` endpoint.

One workload drives every card; each card is one engine of the serving runtime, so the serving
counters follow the device physics. Each :meth:`EmulatedNode.step` advances the physics to a
monotonic time, rewrites the sysfs files atomically and, with ``truth_log``, appends one JSON line
of ground truth:

``{"t_s", "dt_s", "wall_ns", "devices": [{"index", "device" (UUID), "sn", "bdf", "util_ratio",
"power_w", "energy_j" (exact integral since the first step), "temp_c" (PEAK), "clock_hz",
"throttle_reason", "mem_used_bytes"}], "serving": {"requests_total", "tokens_total" (generated),
"prompt_tokens_total", "latencies_s" (requests completed in this step)}}``

Run it as ``python -m kwatt.emulators.node --root DIR``: it prints ``{"root": ..., "serving_url": ...}``
on one line once the tree and the endpoint are ready, and stops on SIGTERM/SIGINT or ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from kwatt.emulators import rngd
from kwatt.emulators.catalogue import ModelSpec, load_catalogue, model
from kwatt.emulators.faults import (
    FAULT_KINDS,
    Fault,
    FaultEngine,
    FaultError,
    FaultEvent,
    control_dir,
    load_schedule,
    parse_fault,
    send,
)
from kwatt.emulators.physics import DeviceIdentity, DevicePhysics, Latency
from kwatt.emulators.pim import PIM_VENDORS, pim_command_entry
from kwatt.emulators.rngd import PE_COUNT, RngdDevice, RngdSysfs, SysfsWriter
from kwatt.emulators.serving import (
    RUNTIMES,
    TRITON_MODELS,
    MetricsServer,
    ServingModel,
    TritonModel,
)
from kwatt.emulators.state import DeviceState, HostState, Snapshot, write_atomic, write_snapshot
from kwatt.emulators.surfaces import HOST, Surface, SurfaceContext, load_builtin
from kwatt.emulators.workloads import WORKLOADS, WorkloadParams, make_workload, work_class_of

__all__ = [
    "DeviceSpec",
    "EmulatedNode",
    "Node",
    "NodeOptions",
    "ServingEndpoint",
    "agent_config",
    "collector_candidates",
    "main",
    "parse_devices",
]


class EmulatedNode:
    """N emulated RNGD cards and one serving endpoint, under ``root`` and on a loopback port."""

    def __init__(
        self,
        root: Path,
        *,
        devices: int = 4,
        seed: int = 0,
        serving_port: int = 0,
        workload: str = "steady",
        truth_log: Path | None = None,
        symlinks: bool = True,
    ) -> None:
        if devices < 1:
            raise ValueError(f"devices must be >= 1, got {devices}")
        if workload not in rngd.WORKLOADS:
            raise ValueError(f"workload {workload!r}: expected one of {', '.join(rngd.WORKLOADS)}")
        self.root = Path(root)
        self.seed = seed
        self.workload = workload
        self.truth_log = truth_log
        self.devices = tuple(RngdDevice(i, seed=seed, workload=workload) for i in range(devices))
        self.serving = ServingModel(devices, seed=seed)
        self._writer = SysfsWriter(self.root)
        self._sysfs = [RngdSysfs(self._writer, d, symlinks=symlinks) for d in self.devices]
        self._server = MetricsServer(self.serving.render, port=serving_port)
        self._truth: IO[str] | None = None
        self._origin_s: float | None = None
        self._last_s = 0.0
        self._started = False

    @property
    def serving_url(self) -> str:
        """Base URL of the serving runtime; its metrics are at ``serving_url + "/metrics"``."""
        return f"http://{MetricsServer.HOST}:{self._server.port}"

    async def start(self) -> None:
        """Write the whole tree (initial state, before any step) and start the HTTP endpoint."""
        if self._started:
            raise RuntimeError("EmulatedNode already started")
        await asyncio.to_thread(self._write_initial)
        await self._server.start()
        self._started = True

    def _write_initial(self) -> None:
        for s in self._sysfs:
            s.write_static()
            s.write_dynamic()
        if self.truth_log is not None:
            self.truth_log.parent.mkdir(parents=True, exist_ok=True)
            self._truth = self.truth_log.open("a", encoding="utf-8", buffering=1)

    def step(self, now_s: float) -> dict[str, Any]:
        """Advance to monotonic time ``now_s`` (the first call sets the origin), rewrite, log truth.

        Returns the ground-truth record of this step (the line appended to ``truth_log``).
        """
        record, files = self._advance(now_s)
        self._writer.write_many(files)
        self._log(record)
        return record

    def _advance(self, now_s: float) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
        """The physics of one step: its truth record and the files to write (not written yet)."""
        if not self._started:
            raise RuntimeError("EmulatedNode.step() before start()")
        if self._origin_s is None:
            self._origin_s = self._last_s = now_s
        dt_s = now_s - self._last_s
        if dt_s < 0:
            raise ValueError(f"time went backwards: {now_s} < {self._last_s}")
        t_mid_s = (self._last_s + now_s) / 2 - self._origin_s
        latencies: list[float] = []
        for d in self.devices:
            tokens = d.advance(t_mid_s, dt_s)
            if dt_s > 0:
                index = d.identity.index
                latencies += self.serving.advance(index, tokens, d.util_ratio, d.clock_ratio)
        self._last_s = now_s
        files = [f for s in self._sysfs for f in s.dynamic_files()]
        return self._truth_record(now_s - self._origin_s, dt_s, latencies), files

    def _log(self, record: dict[str, Any]) -> None:
        if self._truth is not None:
            self._truth.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _truth_record(self, t_s: float, dt_s: float, latencies: list[float]) -> dict[str, Any]:
        return {
            "t_s": t_s,
            "dt_s": dt_s,
            "wall_ns": time.time_ns(),
            "devices": [
                {
                    "index": d.identity.index,
                    "device": d.identity.uuid,
                    "sn": d.identity.sn,
                    "bdf": d.identity.bdf,
                    "util_ratio": d.util_ratio,
                    "power_w": d.power_w,
                    "energy_j": d.energy_j,
                    "temp_c": d.peak_temp_c,
                    "clock_hz": d.clock_mhz * 1e6,
                    "throttle_reason": d.throttle_reason,
                    "mem_used_bytes": d.mem_used_bytes_per_pe() * PE_COUNT,
                }
                for d in self.devices
            ],
            "serving": {
                "requests_total": self.serving.requests_total,
                "tokens_total": self.serving.generation_tokens_total,
                "prompt_tokens_total": self.serving.prompt_tokens_total,
                "latencies_s": latencies,
            },
        }

    async def run(self, stop: asyncio.Event, period_s: float = 0.1) -> None:
        """Step on the monotonic clock every ``period_s`` until ``stop`` is set.

        The files are written in a worker thread, so the event loop (and the HTTP endpoint) stays
        responsive on a slow disk. A step rewrites about 20 files per card: measured at ~0.9 ms per
        card on tmpfs and ~17 ms per card on an ext4 disk, so give a many-card node a tmpfs root
        (``/dev/shm``) or a longer period.
        """
        while not stop.is_set():
            record, files = self._advance(time.monotonic())
            await asyncio.to_thread(self._writer.write_many, files)
            self._log(record)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period_s):
                    await stop.wait()

    async def aclose(self) -> None:
        """Stop the endpoint and close the truth log; the files stay where they are."""
        await self._server.aclose()
        if self._truth is not None:
            self._truth.close()
            self._truth = None

    async def __aenter__(self) -> EmulatedNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kwatt.emulators.node",
        description="Emulate a node with FuriosaAI RNGD cards and a furiosa-llm /metrics endpoint.",
    )
    p.add_argument("--root", type=Path, required=True, help="directory to write ROOT/sys under")
    p.add_argument("--devices", type=int, default=4, help="number of RNGD cards (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--port", type=int, default=0, help="serving port on 127.0.0.1 (0 = any free)")
    p.add_argument("--workload", choices=rngd.WORKLOADS, default="steady")
    p.add_argument("--truth-log", type=Path, default=None, help="append ground truth here (JSONL)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--period", type=float, default=0.1, help="physics step, seconds (default 0.1)")
    return p


async def _amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = EmulatedNode(
        args.root,
        devices=args.devices,
        seed=args.seed,
        serving_port=args.port,
        workload=args.workload,
        truth_log=args.truth_log,
    )
    async with node:
        print(
            json.dumps({"root": str(args.root.resolve()), "serving_url": node.serving_url}),
            flush=True,
        )
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await node.run(stop, args.period)
    return 0


def _legacy_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.devices < 1 or args.period <= 0:
        print("--devices must be >= 1 and --period > 0", file=sys.stderr)
        return 2
    return asyncio.run(_amain(args))


# =====================================================================================================
# The general node: devices of any catalogue model, the K-Cloud services, every vendor surface, faults.
# =====================================================================================================

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


#: The serving runtime of the chatbot per vendor (§6: furiosa-llm; vllm-rbln is a vLLM plugin; vLLM on
#: NVIDIA; Sapeon has no public LLM runtime — vLLM names assumed).
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
    :meth:`run` steps on the wall clock at ``speed`` × real time. Ground truth (one JSON line per step,
    see :meth:`truth_record`) goes to ``truth_log``.
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
        # each vision service is served by Triton (§6.4), one model over all of its devices
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
    def advance(self, t_s: float) -> tuple[Snapshot, dict[str, Any]]:
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

    def step(self, t_s: float) -> dict[str, Any]:
        """Advance to emulator time ``t_s``, render every surface, log and return the truth."""
        snap, record = self.advance(t_s)
        self.render(snap)
        self.log_truth(record)
        return record

    def log_truth(self, record: dict[str, Any]) -> None:
        """Append one ground-truth record to the truth log (if any)."""
        if self._truth is not None:
            self._truth.write(json.dumps(record, separators=(",", ":")) + "\n")

    def truth_record(
        self, t_s: float, dt: float, snap: Snapshot, completed: list[float]
    ) -> dict[str, Any]:
        """Ground truth of one step: true energy per device and host, true work per service."""
        host = snap.host
        models = [rt.model for rt in self.runtimes.values() if rt.model is not None]
        return {
            "node": self.options.name,
            "t_s": t_s,
            "dt_s": dt,
            "wall_ns": snap.wall_ns,
            "devices": [
                {
                    "uuid": p.identity.uuid,
                    "serial": p.identity.serial,
                    "bus_id": p.identity.bus_id,
                    "model": p.spec.key,
                    "vendor": p.spec.vendor,
                    "index": p.index,
                    "service": p.service,
                    "util_ratio": p.util,
                    "power_w": p.power_w,
                    "energy_j": p.energy_j,
                    "temp_c": p.temp_c,
                    "clock_hz": p.clock_hz,
                    "throttle_thermal": p.throttle_thermal,
                    "throttle_power": p.throttle_power,
                    "present": s.present,
                    "latency_p50_s": _finite(self._latency.get(p.identity.uuid, _NO_LATENCY).p50_s),
                    "latency_p99_s": _finite(self._latency.get(p.identity.uuid, _NO_LATENCY).p99_s),
                }
                for p, s in zip(self.physics, snap.devices, strict=True)
            ],
            "host": None
            if host is None
            else {
                "system_power_w": host.system_power_w,
                "system_energy_j": host.system_energy_j,
                "cpu_energy_j": list(host.cpu_energy_j),
                "dram_energy_j": list(host.dram_energy_j),
            },
            "services": {
                s: {
                    "work_class": work_class_of(s),
                    "offered_units_total": t.offered_units,
                    "served_units_total": t.served_units,
                    "dropped_units_total": t.dropped_units,
                    "requests_total": t.requests,
                    "prompt_tokens_total": t.prompt_tokens,
                    "latency_p50_s": self._service_latency.get(s, (None, None))[0],
                    "latency_p99_s": self._service_latency.get(s, (None, None))[1],
                }
                for s, t in self._totals.items()
            },
            "serving": None
            if not self.runtimes
            else {
                "requests_total": sum(m.requests_total for m in models),
                "tokens_total": sum(m.generation_tokens_total for m in models),
                "prompt_tokens_total": sum(m.prompt_tokens_total for m in models),
                "latencies_s": completed,
            },
            "triton": {
                svc: {
                    "model": t.model.model_name,
                    "inferences_total": t.model.inferences,
                    "requests_total": t.model.success,
                    "request_duration_us": t.model.request_us,
                }
                for svc, t in self.tritons.items()
            },
            "faults": [what for at, what in self.faults.log if at == t_s],
        }

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

    # ---------------------------------------------------------------------------- agent config
    def agent_config(self, site: str = "emulated", mqtt_url: str = "mqtt://127.0.0.1:1883") -> str:
        """The agent YAML that points every available collector at this node (see agent_config)."""
        return agent_config(self, site=site, mqtt_url=mqtt_url)


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


#: Checks one collector entry of the printed agent config; returns why it is left out, or None.
#: ``kwatt emulate`` passes one built from ``collectors.REGISTRY`` and the agent's config validator
#: (emulators never import collectors, so the check comes from the caller).
ConfigCheck = Callable[[Mapping[str, object]], "str | None"]


def collector_candidates(node: Node) -> list[dict[str, object]]:
    """Collector entries that read this node's surfaces (before the availability check)."""
    root = str(node.root.resolve())
    vendors = set(node.vendors)
    eps = node.endpoints
    out: list[dict[str, object]] = []
    if "furiosa" in vendors:
        out.append({"type": "furiosa", "name": "furiosa", "root": root})
    if "rebellions" in vendors:
        out.append(
            {
                "type": "rebellions",
                "name": "rebellions",
                "tool": f"{root}/bin/rbln-smi",
                "root": root,
            }
        )
    if "sapeon" in vendors:
        out.append(
            {"type": "sapeon", "name": "sapeon", "tool": f"{root}/bin/sapeon-smi", "root": root}
        )
    if "nvidia" in vendors:
        if "nvml_lib" in eps:  # the emulated libnvidia-ml.so.1: the agent needs LD_LIBRARY_PATH
            out.append({"type": "nvml", "name": "nvml"})
        out.append({"type": "nvidia_smi", "name": "nvidia-smi", "tool": f"{root}/bin/nvidia-smi"})
    for vendor in PIM_VENDORS:  # assumed surface: the generic command collector reads pim-smi
        if vendor in vendors:
            out.append(pim_command_entry(root, vendor))
    out.append({"type": "rapl", "name": "rapl", "root": root})
    out.append({"type": "hwmon", "name": "hwmon", "root": root})  # exclude: see agent_config
    out.append({"type": "ipmi_dcmi", "name": "ipmi", "tool": f"{root}/bin/ipmitool"})
    if "redfish" in eps:
        out.append({"type": "redfish", "name": "redfish", "url": eps["redfish"]})
    for ep in node.serving_endpoints:
        out.append(
            {
                "type": "serving",
                "name": f"{ep.service}-{ep.runtime}",
                "url": f"{ep.url}/metrics",
                "service": ep.service,
                "runtime": ep.runtime,
            }
        )
    for entry in out:
        entry["interval_s"] = "1s"
    return out


def agent_config(
    node: Node,
    *,
    site: str = "emulated",
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    check: ConfigCheck | None = None,
) -> str:
    """The agent YAML for ``node``: every collector whose entry passes ``check`` (all without one)."""
    kept: list[dict[str, object]] = []
    left_out: list[str] = []
    for candidate in collector_candidates(node):
        entry = candidate
        if entry["type"] == "hwmon":
            # chips a kept vendor collector reports already would be counted twice (hwmon's
            # auto_accel takes every PCI chip with power): RNGD and Warboy by `furiosa`, Sapeon
            # by `sapeon`
            kinds = {e["type"] for e in kept}
            owned = (("furiosa", "rngd*"), ("furiosa", "furiosa_warboy"), ("sapeon", "sapeon_*"))
            exclude = [p for k, p in owned if k in kinds]
            # PIM chips when their pim-smi command entry is kept
            names = {e.get("name") for e in kept if e["type"] == "command"}
            exclude += [f"{v}_*" for v in PIM_VENDORS if f"pim-{v}" in names]
            if exclude:
                entry = {**entry, "exclude": exclude}
        why = None if check is None else check(entry)
        if why is None:
            kept.append(entry)
        else:
            left_out.append(f"# left out {entry['type']}: {why}")
    doc = {"site": site, "node": node.options.name, "mqtt": {"url": mqtt_url}, "collectors": kept}
    head = [
        f"# kwatt agent config for the emulated node {node.options.name} at {node.root.resolve()}",
        f"# devices: {', '.join(f'{d.model}:{d.cards}' for d in node.options.devices)}; "
        f"services: {', '.join(node.workloads)}; seed {node.options.seed}",
    ]
    if "nvml_lib" in node.endpoints:
        head.append(
            f"# nvml: start the agent with LD_LIBRARY_PATH={node.endpoints['nvml_lib']} "
            "(the emulated libnvidia-ml.so.1; ready line key nvml_lib)"
        )
    nvidia = node.surfaces.get("nvidia")
    why_no_nvml = getattr(nvidia, "library_error", None)
    if why_no_nvml:
        head.append(f"# left out nvml: {why_no_nvml}")
    if check is None:
        head.append("# (not checked against this agent's collectors: run kwatt emulate node)")
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return "\n".join([*head, *left_out, body])


# ------------------------------------------------------------------------------------------ CLI
def _node_parser(prog: str = "kwatt emulate node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run one emulated node: catalogue devices, a service workload, the real driver "
        "surfaces under --root, ground truth and faults (docs/emulators.md).",
    )
    p.add_argument("--devices", required=True, help="MODEL[:CARDS],… e.g. rngd:2,atom-max:1,h100:1")
    p.add_argument(
        "--service",
        default="chatbot",
        help="service(s), comma-separated; each device runs the first it can "
        f"({', '.join(WORKLOADS)}; default chatbot)",
    )
    p.add_argument("--root", type=Path, required=True, help="directory of the node's surfaces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="emulator seconds per wall second")
    p.add_argument("--period", type=float, default=0.5, help="wall seconds between steps")
    p.add_argument("--name", default="node0", help="node name (agent config node:)")
    p.add_argument("--site", default="emulated", help="site of the printed agent config")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker of the agent config")
    p.add_argument("--port", type=int, default=0, help="serving /metrics port (0 = any free)")
    p.add_argument("--truth-log", type=Path, default=None, help="append ground truth (JSONL)")
    p.add_argument("--faults", type=Path, default=None, help="fault schedule (YAML/JSON)")
    p.add_argument(
        "--tool-version",
        action="append",
        default=[],
        metavar="TOOL=VERSION",
        help="imitated tool version, e.g. furiosa-smi=2025.2.0 (repeatable)",
    )
    p.add_argument(
        "--load", type=float, default=0.7, help="utilization at the daily peak (default 0.7)"
    )
    p.add_argument("--start-hour", type=float, default=9.0, help="time of day at start")
    p.add_argument("--day-s", type=float, default=86_400.0, help="emulator seconds per day")
    p.add_argument("--print-config", type=Path, default=None, metavar="FILE",
                   help="write the agent config here instead of printing it")  # fmt: skip
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    return p


def node_options(
    args: argparse.Namespace, *, name: str | None = None, seed: int | None = None
) -> NodeOptions:
    versions = []
    for tv in args.tool_version:
        tool, sep, version = tv.partition("=")
        if not sep or not tool or not version:
            raise ValueError(f"--tool-version {tv!r}: expected TOOL=VERSION")
        versions.append((tool, version))
    services = tuple(s.strip() for s in args.service.split(",") if s.strip())
    for s in services:
        work_class_of(s)
    return NodeOptions(
        devices=parse_devices(args.devices),
        services=services,
        seed=args.seed if seed is None else seed,
        name=args.name if name is None else name,
        speed=args.speed,
        period_s=args.period,
        load=args.load,
        serving_port=args.port,
        tool_versions=tuple(versions),
        workload=WorkloadParams(start_hour=args.start_hour, day_s=args.day_s),
        faults=tuple(load_schedule(args.faults)) if args.faults else (),
    )


async def _run_node(args: argparse.Namespace, check: ConfigCheck | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = Node(args.root, node_options(args), truth_log=args.truth_log)
    async with node:
        node.step(0.0)
        config = agent_config(node, site=args.site, mqtt_url=args.mqtt, check=check)
        if args.print_config is not None:
            write_atomic(args.print_config, config)
        else:
            print(config, flush=True)
        ready = {"root": str(args.root.resolve()), "node": node.options.name, **node.endpoints}
        print(json.dumps(ready), flush=True)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await node.run(stop)
    return 0


def _fault_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kwatt emulate fault", description="Inject a fault into a running emulated node."
    )
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--kind", required=True, choices=FAULT_KINDS)
    p.add_argument("--device", default=None, help="serial | uuid | bus id | vendor:N | model | *")
    p.add_argument("--tool", default=None, help="executable, e.g. furiosa-smi")
    p.add_argument("--fields", default="", help="DeviceState fields (na, nan), comma-separated")
    p.add_argument("--value", type=float, default=None)
    p.add_argument("--duration", type=float, default=None, help="seconds of emulator time")
    p.add_argument("--at", type=float, default=None, help="emulator time (default: next step)")
    return p


def _send_fault(args: argparse.Namespace) -> int:
    doc: dict[str, object] = {"kind": args.kind}
    for key, value in (
        ("device", args.device),
        ("tool", args.tool),
        ("value", args.value),
        ("duration_s", args.duration),
        ("at_s", args.at),
    ):
        if value is not None:
            doc[key] = value
    if args.fields:
        doc["fields"] = [f.strip() for f in args.fields.split(",") if f.strip()]
    try:
        path = send(args.root, parse_fault(doc))
    except FaultError as e:
        print(f"kwatt emulate fault: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv: list[str] | None = None, *, config_check: ConfigCheck | None = None) -> int:
    """``node …`` / ``fleet …`` / ``fault …`` subcommands, or the legacy RNGD-only options."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("node", "fleet", "fault"):
        cmd, rest = args_list[0], args_list[1:]
        if cmd == "fault":
            return _send_fault(_fault_parser().parse_args(rest))
        if cmd == "fleet":
            from kwatt.emulators.fleet import main as fleet_main

            return fleet_main(rest, config_check=config_check)
        args = _node_parser().parse_args(rest)
        try:
            node_options(args)
        except (ValueError, OSError) as e:
            print(f"kwatt emulate node: {e}", file=sys.stderr)
            return 2
        return asyncio.run(_run_node(args, config_check))
    return _legacy_main(args_list)


if __name__ == "__main__":
    sys.exit(main())
