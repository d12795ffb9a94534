"""``kwatt demo``: a K-Cloud fleet on emulated hardware, the whole pipeline, and what it is for.

The default fleet (:data:`kwatt.demo.fleet.DEFAULT_FLEET`) is the phase-1 services on their NPUs,
each next to a GPU baseline node running the same service; ``--nodes N`` takes the first N node
specs cyclically and ``--devices`` sets the cards per node. Each node is a separate process
(``python -m kwatt.emulators.node node``) that owns a root directory (the vendor's sysfs/hwmon trees
and tools) and loopback ports (its serving runtime's ``/metrics``: furiosa-llm or vLLM for the
chatbot, Triton for the vision services), and prints the agent config that points every collector
at it; the demo keeps the cheap collectors (:func:`demo_collectors`), fills in site, node and
broker, and starts one ``kwatt agent`` per node; one ``kwatt ingest`` writes to InfluxDB
(:mod:`kwatt.demo.procs` starts and stops them). At the end the agents are stopped (they flush), the
ingest drains, and InfluxDB is queried back: ``stored`` must equal ``published``. Then the analytics
run on what InfluxDB holds (as ``kwatt report`` does) and are compared with the nodes' ground truth
(:mod:`kwatt.demo.figures`): per service, work per joule by device class, the ratio to the GPU
baseline, the phase-1 verdict and the pipeline's own energy and perf-per-watt error
(:mod:`kwatt.demo.summary` prints them). ``--phase`` runs the fleet of another K-Cloud phase
(:data:`kwatt.demo.fleet.PHASE_FLEETS`: the phase-2 DRAM-PIM cards or the phase-3 analog chip, read
through their assumed ``pim-smi`` by the generic ``command`` collector) beside GPU baselines and
gives that phase's verdicts with their targets' sources. ``--fault`` injects faults into the demo's
own processes (:mod:`kwatt.demo.faults`). Everything the demo started is stopped on exit, Ctrl-C and
SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from kwatt import collectors
from kwatt.analytics.load import LoadError, load_influx
from kwatt.analytics.targets import load_targets
from kwatt.demo.faults import (
    Fault,
    Injector,
    agent_kill_accounting,
    parse_fault,
    seqs_complete,
)
from kwatt.demo.figures import (
    FleetFigures,
    TruthError,
    aligned_window,
    common_window,
    fleet_figures,
    read_truth,
)
from kwatt.demo.fleet import DEFAULT_FLEET, PHASE_FLEETS, NodeSpec, fleet_specs, parse_fleet
from kwatt.demo.procs import (
    Children,
    DemoError,
    Proc,
    Procs,
    log_tail,
    python_command,
    read_ready_line,
)
from kwatt.demo.services import Influxd, Mosquitto, ServiceError
from kwatt.demo.summary import DEMO_MIN_WINDOW_S, Summary, print_summary
from kwatt.emulators import libnvml
from kwatt.live.render import render
from kwatt.live.state import TopState
from kwatt.live.top import follow
from kwatt.live.view import ViewOptions
from kwatt.wire.influx import InfluxError, InfluxQL
from kwatt.wire.settings import InfluxConfig, MqttConfig

__all__ = ["DEMO_COLLECTOR_TYPES", "demo_collectors", "run_demo"]


#: Collectors the demo runs (the registry's plugins with ``demo``), from the emulator's printed
#: config. Left out: ``nvidia_smi`` (NVML reads the same GPUs without a process spawn),
#: ``ipmi_dcmi`` (a spawn per poll; Redfish and RAPL give host power), and ``furiosa`` on a node
#: without a FuriosaAI card (it reads RNGD and Warboy; the printed ``hwmon`` entry excludes their
#: chips).
#: ``rebellions`` must spawn ``rbln-smi`` (~50 ms a poll): the driver has no power in sysfs
#: (docs/device-interfaces.md §2.0).
#: ``sapeon`` reads its hwmon files (power, energy counter) instead of spawning the assumed tool.
#: ``command`` is printed only for the phase-2/3 PIM devices (``pim-smi --json``, an assumed tool read
#: by the generic JSON mapping, as a real device would be added; a spawn per poll).
DEMO_COLLECTOR_TYPES = tuple(p.kind for p in collectors.plugins() if p.demo)


def demo_collectors(
    entries: Sequence[Mapping[str, object]], model: str, interval_s: float
) -> list[dict[str, object]]:
    """The demo's collector entries for a node of ``model`` from its printed config."""
    out: list[dict[str, object]] = []
    for entry in entries:
        kind = entry.get("type")
        if kind not in DEMO_COLLECTOR_TYPES:
            continue
        if kind == "furiosa" and model not in ("rngd", "warboy"):
            continue
        e = {**entry, "interval_s": interval_s}
        if kind == "sapeon":
            e["tool"] = f"{entry.get('root')}/bin/.no-sapeon-smi"  # absent: read hwmon only
        out.append(e)
    return out


class _Live:
    """The demo's live view: `kwatt top`'s state and screen, plus the demo's progress line."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.state = TopState()
        self.options = ViewOptions(title="kwatt demo", limit=20, devices="auto")

    def render(self, elapsed_s: float, duration_s: float, stored: int | None) -> Group:
        line = Text(
            f"{elapsed_s:5.1f} / {duration_s:g} s   {self.state.messages} MQTT messages, "
            f"{self.state.points} points on the wire"
            + (f", {stored} stored in InfluxDB" if stored is not None else ""),
            style="dim",
        )
        return Group(render(self.state, self.options, time.monotonic()), line)


async def _watch(broker: MqttConfig, live: _Live) -> None:
    """Follow the agents' metrics and status with a plain (non-shared) subscription, for display
    only (`kwatt top`'s follower; runs until cancelled)."""
    await follow(broker, live.site, live.state, identifier=f"kwatt-demo-view-{os.getpid()}")


def _count_stored(
    q: InfluxQL, site: str, since_ns: int, exclude: Sequence[str] = ()
) -> dict[str, int]:
    where = f"\"site\" = '{site}' AND time >= {since_ns}" + "".join(
        f" AND \"node\" != '{node}'" for node in exclude
    )
    return {m: q.count_points(m, where) for m in ("accel", "serving", "agent", "host")}


def _fleet_figures(
    q: InfluxQL, site: str, since_ns: int
) -> tuple[dict[str, float], dict[str, float]]:
    where = f"\"site\" = '{site}' AND time >= {since_ns}"
    power: dict[str, float] = {}
    for s in q.query(
        f'SELECT mean("power_w") FROM "accel" WHERE {where} GROUP BY "node", "device"'
    ):
        if s.values and s.values[0][1] is not None:
            node = s.tags.get("node", "?")
            power[node] = power.get(node, 0.0) + float(s.values[0][1])
    requests: dict[str, float] = {}
    for s in q.query(
        f'SELECT spread("requests_total") FROM "serving" WHERE {where} GROUP BY "node"'
    ):
        if s.values and s.values[0][1] is not None:
            requests[s.tags.get("node", "?")] = float(s.values[0][1])
    return power, requests


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process and of its waited-for children (/proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _analyse(
    influx_url: str,
    database: str,
    site: str,
    since_ns: int,
    truth_dir: Path,
    interval_s: float,
    phase: str | None = None,
) -> FleetFigures | None:
    """The analytics on what InfluxDB holds, compared with the nodes' ground truth."""

    ss = load_influx(
        influx_url,
        database,
        since_ns=since_ns,
        until_ns=time.time_ns() + 1,
        where=f"\"site\" = '{site}'",
    )
    common = common_window(ss)
    if common is None:
        return None
    window = aligned_window(ss, common, interval_s)
    truths = [t for path in sorted(truth_dir.glob("*.jsonl")) for t in read_truth(path)]
    return fleet_figures(
        ss, truths, load_targets(), window=window, min_window_s=DEMO_MIN_WINDOW_S, phase=phase
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_demo(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    if args.nodes < 1 or args.devices < 1 or args.duration <= 0:
        err.print("kwatt demo: --nodes and --devices must be >= 1 and --duration > 0")
        return 2
    phase = getattr(args, "phase", None)
    try:
        if getattr(args, "fleet", None):
            fleet = parse_fleet(args.fleet)
        else:
            fleet = PHASE_FLEETS[phase] if phase else DEFAULT_FLEET
    except ValueError as e:
        err.print(f"kwatt demo: {e}")
        return 2
    try:
        faults = [parse_fault(f) for f in getattr(args, "fault", None) or []]
    except ValueError as e:
        err.print(f"kwatt demo: {e}")
        return 2
    for f in faults:
        if (f.kind == "broker" and args.broker) or (f.kind == "influxdb" and args.influx):
            err.print(
                f"kwatt demo: --fault {f.kind} needs the demo's private "
                f"{'Mosquitto' if f.kind == 'broker' else 'InfluxDB'}; leave out "
                f"{'--broker' if f.kind == 'broker' else '--influx'}"
            )
            return 2
        if f.start_s >= args.duration:
            err.print(f"kwatt demo: --fault {f.kind}@{f.start_s:g}s starts after --duration")
            return 2
    args.faults = faults
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="kwatt-demo-"))
    state.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    try:
        with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            stack.callback(procs.stop_all)
            summary = _run(args, fleet_specs(args.nodes, fleet), state, procs, stack, err)
    except (ServiceError, DemoError, InfluxError) as e:
        err.print(f"[red]kwatt demo: {e}[/red]")
        return 1
    except KeyboardInterrupt:
        err.print("kwatt demo: interrupted; everything it started has been stopped")
        return 130
    if args.json:
        print(summary.to_json())
    else:
        print_summary(summary, err, kept_influx=bool(args.influx))
    return 0 if summary.lost == 0 and summary.published > 0 else 1


def _start_node(
    procs: Procs,
    args: argparse.Namespace,
    n: int,
    spec: NodeSpec,
    root: Path,
    state: Path,
    broker_url: str,
) -> tuple[str, Proc, Path]:
    node = f"node-{n:02d}"
    printed = state / "emulator-configs" / f"{node}.yaml"
    printed.parent.mkdir(exist_ok=True)
    emu = procs.start(
        f"emulator-{node}",
        [
            *python_command(),
            "-m",
            "kwatt.emulators.node",
            "node",
            "--devices",
            f"{spec.model}:{args.devices}",
            "--service",
            spec.service,
            "--root",
            str(root),
            "--name",
            node,
            "--site",
            args.site,
            "--mqtt",
            broker_url,
            "--seed",
            str(args.seed * 1000 + n),
            "--period",
            str(min(EMULATOR_PERIOD_S, args.interval / 2)),
            "--truth-log",
            str(state / "truth" / f"{node}.jsonl"),
            "--print-config",
            str(printed),
        ],
        state / "logs",
    )
    return node, emu, printed


#: Wall seconds between the emulators' physics steps: a collector's reading is at most this old, which
#: is most of the demo's measured error at a window edge (0.2 s ≈ 0.3 % of a 30 s window).
EMULATOR_PERIOD_S = 0.2


def _run(
    args: argparse.Namespace,
    specs: Sequence[NodeSpec],
    state: Path,
    procs: Procs,
    stack: contextlib.ExitStack,
    err: Console,
) -> Summary:
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    quiet = args.json or args.no_live
    faults: list[Fault] = list(getattr(args, "faults", []))
    broker_fault = any(f.kind == "broker" for f in faults)
    mosq: Mosquitto | None = None
    influxd: Influxd | None = None
    if args.broker:
        broker_url = args.broker
    else:
        # persistence: the ingest's session and subscription, and queued messages, survive a restart
        mosq = stack.enter_context(Mosquitto(state / "mosquitto", persistence=broker_fault))
        broker_url = mosq.url
    if args.influx:
        influx_url = args.influx
    else:
        influxd = stack.enter_context(Influxd(state / "influxdb"))
        influx_url = influxd.url
    if not quiet:
        err.print(
            f"broker {broker_url}, InfluxDB {influx_url} (database {args.database}), state {state}"
        )
    mqtt_cfg = MqttConfig(url=broker_url)
    influx_cfg = InfluxConfig(url=influx_url, database=args.database)
    since_ns = time.time_ns()

    # ingest first, so its persistent session exists before the agents publish. Its shared-
    # subscription group is this run's own: on a broker that outlives the demo (--broker), an earlier
    # run's ingest session is still a member of its group, and the broker would deal it a share of
    # this run's messages.
    run_id = f"{os.getpid()}-{since_ns // 1_000_000 % 100_000_000}"
    ingest_cfg = {
        "group": f"kwatt-demo-{run_id}",
        "mqtt": {"url": broker_url, "client_id": f"kwatt-demo-ingest-{run_id}"},
        "influx": {"url": influx_url, "database": args.database},
        "batch": {"max_delay_s": 0.2},
        "deadletter_dir": str(state / "deadletter"),
        # Mosquitto 2.0 does not restore a shared subscription after a restart, and the live view
        # (a plain subscriber) would take the batches the agents publish before the ingest
        # re-subscribes (PUBACK 0, not 0x10): a plain subscription in the ingest's persistent
        # session is restored from mosquitto.db and queues them (docs/delivery.md).
        "shared": not broker_fault,
    }
    ingest_yaml = state / "ingest.yaml"
    ingest_yaml.write_text(yaml.safe_dump(ingest_cfg), encoding="utf-8")
    ingest_stats = state / "ingest-stats.json"
    ingest = procs.start(
        "ingest",
        [
            *python_command(),
            "-m",
            "kwatt.cli",
            "ingest",
            "--config",
            str(ingest_yaml),
            "--stats-file",
            str(ingest_stats),
        ],
        logs,
    )

    # Emulated sysfs trees are rewritten several times a second: keep them in RAM when we can
    # (an atomic file write costs ~200 µs on disk here against ~24 µs on tmpfs).
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        roots = Path(tempfile.mkdtemp(prefix="kwatt-demo-nodes-", dir=shm))
        stack.callback(shutil.rmtree, roots, True)
    else:
        roots = state / "nodes"
    # every emulator first (they start in parallel), then one agent per node as each is ready
    emulators = [
        (spec, *_start_node(procs, args, n, spec, roots / f"node-{n:02d}", state, broker_url))
        for n, spec in enumerate(specs, start=1)
    ]
    agents: list[tuple[str, Proc, Path]] = []
    emulator_procs: list[Proc] = []
    fleet: dict[str, str] = {}
    for spec, node, emu, printed in emulators:
        ready = read_ready_line(emu, timeout_s=60.0)
        emulator_procs.append(emu)
        fleet[node] = f"{spec.model}:{args.devices} {spec.service}"
        text = printed.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("collectors"), list):
            raise DemoError(f"{printed}: not an agent config")
        for line in text.splitlines():  # a GPU node without its emulated libnvidia-ml.so.1
            if line.startswith("# left out nvml:"):
                raise DemoError(
                    f"{node} ({spec.model}): {line.removeprefix('# left out nvml:').strip()}"
                )
        agent_cfg = {
            "site": args.site,
            "node": node,
            "mqtt": {"url": broker_url},
            "publish": {"flush_interval_s": args.interval},
            # every batch on disk before it is published (docs/delivery.md), as in production
            "spool": {"dir": str(state / "spool" / node)},
            "collectors": demo_collectors(doc["collectors"], spec.model, args.interval),
        }
        cfg_path = state / f"agent-{node}.yaml"
        cfg_path.write_text(yaml.safe_dump(agent_cfg), encoding="utf-8")
        stats_path = state / f"agent-{node}-stats.json"
        proc = procs.start(
            f"agent-{node}",
            [
                *python_command(),
                "-m",
                "kwatt.cli",
                "agent",
                "--config",
                str(cfg_path),
                "--stats-file",
                str(stats_path),
            ],
            logs,
            # the node's emulated libnvidia-ml.so.1 (the loader reads this only at process start),
            # and its state file named outright: a KWATT_NVML_STATE left in the demo's own
            # environment would otherwise point the agent at another node's GPUs
            env=(
                {
                    "LD_LIBRARY_PATH": ready["nvml_lib"],
                    libnvml.STATE_ENV: str(libnvml.state_path(Path(ready["root"]))),
                }
                if "nvml_lib" in ready
                else None
            ),
        )
        agents.append((node, proc, stats_path))

    live = _Live(args.site)
    cpu0 = {
        p.name: _cpu_s(p.popen.pid) for p in [ingest, *emulator_procs, *(a for _, a, _ in agents)]
    }
    t0 = time.monotonic()
    children = Children(ingest, agents)
    injector = Injector(faults, procs, children, mosq, influxd, logs)
    asyncio.run(_show(args, mqtt_cfg, live, children, injector, quiet, err))
    wall = time.monotonic() - t0
    ingest = children.ingest
    cpu = {
        p.name: _cpu_s(p.popen.pid) for p in [ingest, *emulator_procs, *(a for _, a, _ in agents)]
    }
    cpu_s: dict[str, float] = {"emulators": 0.0, "agents": 0.0, "ingest": 0.0}
    for name, after in cpu.items():
        before = cpu0.get(name)
        if after is None or before is None:
            continue
        role = "ingest" if name == "ingest" else name.split("-", 1)[0] + "s"
        cpu_s[role] = cpu_s.get(role, 0.0) + after - before

    # stop the agents: each flushes its last batch and writes its counters
    for node, proc, _ in agents:
        rc = procs.stop(proc)
        if rc not in (0, None):
            raise DemoError(f"agent {node} exited with {rc}: {log_tail(proc.log_path)}")
    # the emulators too: their truth logs are complete from here on
    for emu in emulator_procs:
        procs.stop(emu)
    published = 0
    dropped = 0
    agent_stats: dict[str, dict[str, int]] = {}
    for node, _, stats_path in agents:
        try:
            doc = json.loads(stats_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DemoError(f"agent {node}: no stats file ({e})") from None
        agent_stats[node] = {k: v for k, v in doc.items() if isinstance(v, int)}
        if node not in injector.agent_kills:
            published += int(doc["published_points"])
        dropped += int(doc["dropped_points"])

    # let the ingest drain, then count what InfluxDB holds
    q = InfluxQL(influx_cfg)
    deadline = time.monotonic() + 30.0
    # a killed agent wrote no stats for its first run: wait until every seq it numbered is stored
    # (``published`` is the other nodes' so far: compare it with their stored points only)
    killed = sorted(injector.agent_kills)
    while (
        sum(_count_stored(q, args.site, since_ns, killed).values()) < published
        or not seqs_complete(q, args.site, since_ns, injector.agent_kills, agent_stats)
    ) and time.monotonic() < deadline:
        if ingest.popen.poll() is not None:
            raise DemoError(f"ingest exited: {log_tail(ingest.log_path)}")
        time.sleep(0.25)
    counts = _count_stored(q, args.site, since_ns)
    procs.stop(ingest)
    ingest_doc = (
        json.loads(ingest_stats.read_text(encoding="utf-8")) if ingest_stats.exists() else {}
    )
    stored = sum(counts.values())
    kill_doc: dict[str, object] = {}
    lost_to_kill = 0
    for node, kill_ns in injector.agent_kills.items():
        acc = agent_kill_accounting(
            q, args.site, since_ns, node, kill_ns, agent_stats[node], args.interval
        )
        published += int(acc["published_points"])  # type: ignore[call-overload]
        lost_to_kill += int(acc["lost_to_agent_kill"])  # type: ignore[call-overload]
        kill_doc[node] = acc
    power, requests = _fleet_figures(q, args.site, since_ns)
    q.close()

    try:
        figures = _analyse(
            influx_url,
            args.database,
            args.site,
            since_ns,
            state / "truth",
            args.interval,
            getattr(args, "phase", None),
        )
    except (LoadError, TruthError, OSError) as e:
        raise DemoError(f"analysing what InfluxDB holds: {e}") from None
    return Summary(
        published=published,
        stored=stored,
        lost=published - stored,
        stored_by_measurement=counts,
        nodes=args.nodes,
        devices_per_node=args.devices,
        fleet=fleet,
        duration_s=args.duration,
        points_per_s=round(published / args.duration, 1),
        agents_dropped=dropped,
        ingest={k: int(v) for k, v in ingest_doc.items()},
        mean_power_w_by_node={k: round(v, 2) for k, v in sorted(power.items())},
        requests_by_node=dict(sorted(requests.items())),
        cpu_s={k: round(v, 2) for k, v in cpu_s.items()},
        cpu_cores=round(sum(cpu_s.values()) / wall, 3) if wall > 0 else 0.0,
        figures={} if figures is None else figures.to_json(),
        broker=broker_url,
        influx=influx_url,
        database=args.database,
        state_dir=str(state),
        faults=injector.events,
        lost_to_agent_kill=lost_to_kill,
        agent_kill=kill_doc,
    )


async def _show(
    args: argparse.Namespace,
    mqtt_cfg: MqttConfig,
    live: _Live,
    children: Children,
    injector: Injector,
    quiet: bool,
    err: Console,
) -> None:
    watcher = asyncio.create_task(_watch(mqtt_cfg, live))
    start = time.monotonic()
    faults = asyncio.create_task(injector.run(start))

    def check_children() -> None:
        if faults.done() and faults.exception() is not None:
            raise DemoError(f"injecting faults: {faults.exception()}")
        for proc in [children.ingest, *(p for _, p, _ in children.agents)]:
            if proc.name not in injector.down and proc.popen.poll() is not None:
                raise DemoError(f"{proc.name} exited early: {log_tail(proc.log_path)}")

    try:
        if quiet:
            while (elapsed := time.monotonic() - start) < args.duration:
                check_children()
                await asyncio.sleep(min(0.5, args.duration - elapsed))
        else:
            with Live(
                live.render(0, args.duration, None), console=err, refresh_per_second=4
            ) as view:
                while (elapsed := time.monotonic() - start) < args.duration:
                    check_children()
                    view.update(live.render(elapsed, args.duration, None))
                    await asyncio.sleep(0.25)
        await faults  # every fault is over (services up, killed processes restarted)
    finally:
        faults.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faults
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
