"""``kwatt demo``: a K-Cloud fleet on emulated hardware, the whole pipeline, and what it is for.

The default fleet (:data:`DEFAULT_FLEET`) is the phase-1 services on their NPUs, each next to a GPU
baseline node running the same service; ``--nodes N`` takes the first N node specs cyclically and
``--devices`` sets the cards per node. Each node is a separate process (``python -m kwatt.emulators.node
node``) that owns a root directory (the vendor's sysfs/hwmon trees and tools) and loopback ports (its
serving runtime's ``/metrics``: furiosa-llm or vLLM for the chatbot, Triton for the vision services),
and prints the agent config that points every collector at it; the demo keeps the cheap collectors
(:func:`demo_collectors`), fills in site, node and broker, and starts one ``kwatt agent`` per node; one
``kwatt ingest`` writes to InfluxDB. At the end the agents are stopped (they flush), the ingest drains,
and InfluxDB is queried back: ``stored`` must equal ``published``. Then the analytics run on what
InfluxDB holds (as ``kwatt report`` does) and are compared with the nodes' ground truth
(:mod:`kwatt.demo.figures`): per service, work per joule by device class, the ratio to the GPU
baseline, the phase-1 verdict and the pipeline's own energy and perf-per-watt error. ``--phase`` runs
the fleet of another K-Cloud phase (:data:`PHASE_FLEETS`: the phase-2 DRAM-PIM cards or the phase-3
analog chip, read through their assumed ``pim-smi`` by the generic ``command`` collector) beside GPU
baselines and gives that phase's verdicts with their targets' sources. Everything the demo started is
stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kwatt.demo.figures import (
    FleetFigures,
    TruthError,
    aligned_window,
    common_window,
    fleet_figures,
    read_truth,
)
from kwatt.demo.services import Influxd, Mosquitto, ServiceError
from kwatt.live.render import render
from kwatt.live.state import TopState
from kwatt.live.top import follow
from kwatt.live.view import ViewOptions
from kwatt.wire.influx import InfluxError, InfluxQL
from kwatt.wire.settings import InfluxConfig, MqttConfig, parse_duration

__all__ = [
    "DEFAULT_FLEET",
    "FAULT_KINDS",
    "PHASE_FLEETS",
    "Fault",
    "NodeSpec",
    "demo_collectors",
    "fleet_specs",
    "parse_fault",
    "parse_fleet",
    "report_command",
    "run_demo",
]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the demo fleet: a catalogue model (cards of it) running one service."""

    model: str
    service: str


#: The default fleet, in the order ``--nodes N`` takes it (cyclically): each phase-1 service on a
#: domestic NPU, then a GPU baseline node running the same service (docs/emulators.md catalogue):
#: the chatbot on FuriosaAI RNGD vs H100 (the pair of FuriosaAI's published Llama 3.1 8B figures);
#: traffic (CCTV detection) on FuriosaAI Warboy vs T4, both ~60-70 W inference cards; food (image
#: classification) on Rebellions ATOM vs L4, both ~70 W cards with MLPerf ResNet-50 results; and
#: construction hazard detection on Sapeon X220-compact vs A100 (the data-centre GPU of phase 1).
DEFAULT_FLEET: tuple[NodeSpec, ...] = (
    NodeSpec("rngd", "chatbot"),
    NodeSpec("h100", "chatbot"),
    NodeSpec("warboy", "traffic"),
    NodeSpec("t4", "traffic"),
    NodeSpec("atom", "food"),
    NodeSpec("l4", "food"),
    NodeSpec("x220-compact", "construction"),
    NodeSpec("a100", "construction"),
)


#: The fleet of each K-Cloud phase (``--phase``), GPU baselines on the same services. Phase 2 (DRAM-PIM):
#: what PIM is for, the memory-bound LLM decode of the chatbot: SK hynix AiMX (GDDR6-AiM card) vs
#: H100, then an MI100 with Samsung HBM-PIM. Phase 3 (NVM analog PIM): the IBM HERMES PCM research
#: chip on the vision services its published 8-bit MVM figures allow (CCTV detection vs T4, image
#: classification vs L4); it has no LLM figure (4.2 M weights on chip). docs/emulators.md has the
#: figures and their status.
PHASE_FLEETS: dict[str, tuple[NodeSpec, ...]] = {
    "phase1_npu": DEFAULT_FLEET,
    "phase2_dram_pim": (
        NodeSpec("aimx", "chatbot"),
        NodeSpec("h100", "chatbot"),
        NodeSpec("mi100-pim", "chatbot"),
    ),
    "phase3_nvm_analog_pim": (
        NodeSpec("hermes", "traffic"),
        NodeSpec("t4", "traffic"),
        NodeSpec("hermes", "food"),
        NodeSpec("l4", "food"),
    ),
}


def parse_fleet(text: str) -> tuple[NodeSpec, ...]:
    """``rngd=chatbot,h100=chatbot`` → node specs (validated by the emulator when it starts)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        model, sep, service = part.partition("=")
        if not sep or not model.strip() or not service.strip():
            raise ValueError(f"--fleet: {part!r}: expected MODEL=SERVICE")
        out.append(NodeSpec(model.strip(), service.strip()))
    if not out:
        raise ValueError("--fleet: no node specs")
    return tuple(out)


def fleet_specs(nodes: int, fleet: Sequence[NodeSpec] = DEFAULT_FLEET) -> list[NodeSpec]:
    """The first ``nodes`` specs of ``fleet``, cyclically."""
    return [fleet[k % len(fleet)] for k in range(nodes)]


#: Collectors the demo runs, from the emulator's printed config. Left out: ``nvidia_smi`` (NVML
#: reads the same GPUs without a process spawn), ``ipmi_dcmi`` (a spawn per poll; Redfish and RAPL
#: give host power), and ``furiosa`` on a node without a FuriosaAI card (it reads RNGD and Warboy;
#: the printed ``hwmon`` entry excludes their chips).
#: ``rebellions`` must spawn ``rbln-smi`` (~50 ms a poll): the driver has no power in sysfs (§2.0).
#: ``sapeon`` reads its hwmon files (power, energy counter) instead of spawning the assumed tool.
#: ``command`` is printed only for the phase-2/3 PIM devices (``pim-smi --json``, an assumed tool read
#: by the generic JSON mapping, as a real device would be added; a spawn per poll).
DEMO_COLLECTOR_TYPES = (
    "furiosa",
    "rebellions",
    "sapeon",
    "command",
    "nvml",
    "hwmon",
    "rapl",
    "redfish",
    "serving",
)


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


class DemoError(RuntimeError):
    pass


#: What ``--fault KIND@START[:DURATION]`` can inject into the demo's own processes.
#: ``broker``/``influxdb``: the private Mosquitto/InfluxDB is stopped (SIGTERM) at START and started
#: again on the same port after DURATION (default 10 s). ``ingest-kill``: the ingest worker is
#: SIGKILLed and started again with the same config and client id after DURATION (default 0).
#: ``agent-kill``: node-01's agent is SIGKILLed and started again with the same config (its spool
#: replays) after DURATION (default 0).
FAULT_KINDS = ("broker", "influxdb", "ingest-kill", "agent-kill")
_DEFAULT_FAULT_DURATION_S = {
    "broker": 10.0,
    "influxdb": 10.0,
    "ingest-kill": 0.0,
    "agent-kill": 0.0,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``kind`` at ``start_s`` after the fleet is up, for ``duration_s``."""

    kind: str
    start_s: float
    duration_s: float

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "start_s": self.start_s, "duration_s": self.duration_s}


def parse_fault(text: str) -> Fault:
    """``broker@20s:15s`` → ``Fault("broker", 20.0, 15.0)`` (START and DURATION as in configs)."""
    kind, sep, when = text.strip().partition("@")
    kind = kind.strip()
    if kind not in FAULT_KINDS or not sep or not when.strip():
        raise ValueError(
            f"--fault {text!r}: expected KIND@START[:DURATION] with KIND one of "
            + ", ".join(FAULT_KINDS)
        )
    start, colon, duration = when.partition(":")
    try:
        start_s = parse_duration(start.strip())
        duration_s = parse_duration(duration.strip()) if colon else _DEFAULT_FAULT_DURATION_S[kind]
    except ValueError as e:
        raise ValueError(f"--fault {text!r}: {e}") from None
    return Fault(kind, start_s, duration_s)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    env: Mapping[str, str] | None = None  # added to the demo's environment


@dataclass
class _Procs:
    """Children of the demo, each in its own session, stopped by PID in reverse start order."""

    items: list[_Proc] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None
    ) -> _Proc:
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        proc = _Proc(name, p, log_path, argv, env)
        self.items.append(proc)
        return proc

    def kill(self, proc: _Proc) -> None:
        """SIGKILL ``proc``'s process group by PID (a crash: no flush, no stats file)."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
        if proc.popen.stdout:
            proc.popen.stdout.close()

    def stop(self, proc: _Proc, timeout_s: float = 15.0) -> int:
        p = proc.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p.stdout:
            p.stdout.close()
        return p.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            self.stop(proc, timeout_s=5.0)


def _python() -> list[str]:
    return [sys.executable]


def _read_ready_line(proc: _Proc, timeout_s: float = 20.0) -> dict[str, str]:
    """The emulator prints one JSON line when its surfaces are up."""
    assert proc.popen.stdout is not None
    deadline = time.monotonic() + timeout_s
    os.set_blocking(proc.popen.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise DemoError(f"{proc.name} exited: {_tail(proc.log_path)}")
        chunk = proc.popen.stdout.read()
        if chunk:
            buf += chunk
            if b"\n" in buf:
                doc = json.loads(buf.split(b"\n", 1)[0])
                if not isinstance(doc, dict):
                    raise DemoError(f"{proc.name}: unexpected ready line {buf!r}")
                return {str(k): str(v) for k, v in doc.items()}
        time.sleep(0.02)
    raise DemoError(f"{proc.name}: not ready within {timeout_s:g} s: {_tail(proc.log_path)}")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return "(no log)"


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


def _node_seqs(q: InfluxQL, site: str, since_ns: int, node: str) -> list[tuple[int, int]]:
    """(time ns, seq) of every ``agent`` point ``node`` has in InfluxDB: one per batch."""
    where = f"\"site\" = '{site}' AND \"node\" = '{node}' AND time >= {since_ns}"
    return [
        (int(row[0]), int(row[1]))
        for s in q.query(f'SELECT "seq" FROM "agent" WHERE {where}')
        for row in s.values
        if row[1] is not None
    ]


def _missing_seqs(rows: Sequence[tuple[int, int]], last_seq: int) -> list[int]:
    seqs = {seq for _, seq in rows}
    first = min(seqs, default=1)
    return [k for k in range(first, max(last_seq, max(seqs, default=0)) + 1) if k not in seqs]


def _seqs_complete(
    q: InfluxQL,
    site: str,
    since_ns: int,
    kills: Mapping[str, int],
    stats: Mapping[str, Mapping[str, int]],
) -> bool:
    return all(
        not _missing_seqs(_node_seqs(q, site, since_ns, node), stats[node].get("last_seq", 0))
        for node in kills
    )


def _agent_kill_accounting(
    q: InfluxQL,
    site: str,
    since_ns: int,
    node: str,
    kill_ns: int,
    stats: Mapping[str, int],
    interval_s: float,
) -> dict[str, object]:
    """What a SIGKILLed (and restarted) agent published, and what the kill cost.

    A killed agent writes no stats file, so its first run's ``published_points`` is unknown. Its
    batch ``seq`` numbering continues across the restart (the spool keeps it) and every batch
    carries one ``agent`` point with its seq, so the batches it published over both runs are seqs
    ``first..last_seq`` (``last_seq`` from the restarted agent's stats). Each message is written to
    InfluxDB whole (one write per message, acknowledged only after it), so the node's published
    points are its stored points plus, for every seq missing from InfluxDB, a mean batch's worth
    (counted as lost). ``lost_to_agent_kill`` is the open batch the kill threw away (sampled, never
    batched, so it has no seq): the points per batch times the share of an interval between the last
    batch closed before the kill and the kill, at most one batch (one flush interval).
    """
    rows = _node_seqs(q, site, since_ns, node)
    missing = _missing_seqs(rows, stats.get("last_seq", 0))
    where = f"\"site\" = '{site}' AND \"node\" = '{node}' AND time >= {since_ns}"
    stored = sum(q.count_points(m, where) for m in ("accel", "serving", "agent", "host"))
    batches = len({seq for _, seq in rows})
    per_batch = stored / batches if batches else 0.0
    before = [t for t, _ in rows if t <= kill_ns]
    open_s = min(interval_s, (kill_ns - max(before)) / 1e9) if before else interval_s
    return {
        "kill_time_ns": kill_ns,
        "stored_points": stored,
        "stored_batches": batches,
        "duplicate_batches": len(rows) - batches,
        "missing_seqs": missing,
        "last_seq": stats.get("last_seq", 0),
        "published_points_after_restart": stats.get("published_points", 0),
        "replayed_batches": stats.get("replayed_batches", 0),
        "published_points": stored + round(len(missing) * per_batch),
        "open_batch_s": round(open_s, 3),
        "lost_to_agent_kill": round(per_batch * open_s / interval_s),
    }


def _count_stored(
    q: InfluxQL, site: str, since_ns: int, exclude: Sequence[str] = ()
) -> dict[str, int]:
    where = f"\"site\" = '{site}' AND time >= {since_ns}" + "".join(
        f" AND \"node\" != '{node}'" for node in exclude
    )
    return {m: q.count_points(m, where) for m in ("accel", "serving", "agent", "host")}


@dataclass
class _Summary:
    published: int
    stored: int
    lost: int
    stored_by_measurement: dict[str, int]
    nodes: int
    devices_per_node: int
    fleet: dict[str, str]  # node → "model:cards service"
    duration_s: float
    points_per_s: float
    agents_dropped: int
    ingest: dict[str, int]
    mean_power_w_by_node: dict[str, float]
    requests_by_node: dict[str, float]
    #: CPU seconds the demo's processes used (user + system, /proc), by role, and in cores.
    cpu_s: dict[str, float]
    cpu_cores: float
    #: Per service: work per J by device class, ratio to the GPU baseline, verdict, measured error.
    figures: dict[str, object]
    broker: str
    influx: str
    database: str
    state_dir: str
    #: What ``--fault`` injected and when (seconds after the fleet was up), and the agent-kill
    #: accounting (see :func:`_agent_kill_accounting`).
    faults: list[dict[str, object]] = field(default_factory=list)
    lost_to_agent_kill: int = 0
    agent_kill: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {k: v for k, v in self.__dict__.items() if k != "figures"}
        doc.update(self.figures)
        return json.dumps(doc, sort_keys=True)


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


#: Verdicts need a window at least this long in the demo (``kwatt report``'s default is 60 s; pass
#: ``--min-window`` to it for a shorter demo).
DEMO_MIN_WINDOW_S = 10.0


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
    from kwatt.analytics.load import load_influx
    from kwatt.analytics.targets import load_targets

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
    procs = _Procs()
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
        _print_summary(summary, err, kept_influx=bool(args.influx))
    return 0 if summary.lost == 0 and summary.published > 0 else 1


def _start_node(
    procs: _Procs,
    args: argparse.Namespace,
    n: int,
    spec: NodeSpec,
    root: Path,
    state: Path,
    broker_url: str,
) -> tuple[str, _Proc, Path]:
    node = f"node-{n:02d}"
    printed = state / "emulator-configs" / f"{node}.yaml"
    printed.parent.mkdir(exist_ok=True)
    emu = procs.start(
        f"emulator-{node}",
        [
            *_python(),
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
    procs: _Procs,
    stack: contextlib.ExitStack,
    err: Console,
) -> _Summary:
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
            *_python(),
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
    agents: list[tuple[str, _Proc, Path]] = []
    emulator_procs: list[_Proc] = []
    fleet: dict[str, str] = {}
    for spec, node, emu, printed in emulators:
        ready = _read_ready_line(emu, timeout_s=60.0)
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
                *_python(),
                "-m",
                "kwatt.cli",
                "agent",
                "--config",
                str(cfg_path),
                "--stats-file",
                str(stats_path),
            ],
            logs,
            # the node's emulated libnvidia-ml.so.1 (the loader reads this only at process start)
            env={"LD_LIBRARY_PATH": ready["nvml_lib"]} if "nvml_lib" in ready else None,
        )
        agents.append((node, proc, stats_path))

    live = _Live(args.site)
    cpu0 = {
        p.name: _cpu_s(p.popen.pid) for p in [ingest, *emulator_procs, *(a for _, a, _ in agents)]
    }
    t0 = time.monotonic()
    children = _Children(ingest, agents)
    injector = _Injector(faults, procs, children, mosq, influxd, logs)
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
            raise DemoError(f"agent {node} exited with {rc}: {_tail(proc.log_path)}")
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
        or not _seqs_complete(q, args.site, since_ns, injector.agent_kills, agent_stats)
    ) and time.monotonic() < deadline:
        if ingest.popen.poll() is not None:
            raise DemoError(f"ingest exited: {_tail(ingest.log_path)}")
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
        acc = _agent_kill_accounting(
            q, args.site, since_ns, node, kill_ns, agent_stats[node], args.interval
        )
        published += int(acc["published_points"])  # type: ignore[call-overload]
        lost_to_kill += int(acc["lost_to_agent_kill"])  # type: ignore[call-overload]
        kill_doc[node] = acc
    power, requests = _fleet_figures(q, args.site, since_ns)
    q.close()
    from kwatt.analytics.load import LoadError

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
    return _Summary(
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


@dataclass
class _Children:
    """The ingest and the agents as they are now (a killed one is replaced by its restart)."""

    ingest: _Proc
    agents: list[tuple[str, _Proc, Path]]


@dataclass
class _Injector:
    """Runs ``--fault``s against the demo's own processes and records what it did."""

    faults: Sequence[Fault]
    procs: _Procs
    children: _Children
    mosq: Mosquitto | None
    influxd: Influxd | None
    log_dir: Path
    events: list[dict[str, object]] = field(default_factory=list)
    #: node → wall time (ns) its agent was SIGKILLed
    agent_kills: dict[str, int] = field(default_factory=dict)
    #: names of children down on purpose right now
    down: set[str] = field(default_factory=set)

    async def run(self, t0: float) -> None:
        await asyncio.gather(*(self._one(k, f, t0) for k, f in enumerate(self.faults, start=1)))

    async def _one(self, k: int, fault: Fault, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fault.start_s - time.monotonic()))
        event: dict[str, object] = {**fault.to_json(), "at_s": round(time.monotonic() - t0, 2)}
        self.events.append(event)
        if fault.kind in ("broker", "influxdb"):
            svc: Mosquitto | Influxd | None = self.mosq if fault.kind == "broker" else self.influxd
            assert svc is not None  # run_demo refuses these faults with external services
            await asyncio.to_thread(svc.stop)
            await asyncio.sleep(fault.duration_s)
            await asyncio.to_thread(svc.start)
        elif fault.kind == "ingest-kill":
            old = self.children.ingest
            self.down.add(old.name)
            self.procs.kill(old)
            await asyncio.sleep(fault.duration_s)
            self.children.ingest = self.procs.start(f"ingest-restart{k}", old.argv, self.log_dir)
            self.down.discard(old.name)
        else:  # agent-kill: the first node's agent
            node, old, stats_path = self.children.agents[0]
            self.down.add(old.name)
            self.procs.kill(old)
            self.agent_kills[node] = time.time_ns()
            await asyncio.sleep(fault.duration_s)
            new = self.procs.start(f"agent-{node}-restart{k}", old.argv, self.log_dir, old.env)
            self.children.agents[0] = (node, new, stats_path)
            self.down.discard(old.name)
        event["restored_at_s"] = round(time.monotonic() - t0, 2)


async def _show(
    args: argparse.Namespace,
    mqtt_cfg: MqttConfig,
    live: _Live,
    children: _Children,
    injector: _Injector,
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
                raise DemoError(f"{proc.name} exited early: {_tail(proc.log_path)}")

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


def _print_summary(s: _Summary, console: Console, *, kept_influx: bool = True) -> None:
    console.print()
    t = Table(title="kwatt demo summary", show_header=False)
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row("nodes x cards", f"{s.nodes} x {s.devices_per_node}")
    t.add_row("duration", f"{s.duration_s:g} s")
    t.add_row("points published (acknowledged by the broker)", str(s.published))
    t.add_row("points stored in InfluxDB", str(s.stored))
    t.add_row("lost", Text(str(s.lost), style="green" if s.lost == 0 else "bold red"))
    t.add_row("published points/s", f"{s.points_per_s:g}")
    t.add_row(
        "CPU (emulators, agents, ingest)",
        f"{s.cpu_cores:.2f} cores ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(s.cpu_s.items()))
        + ")",
    )
    for node, watts in s.mean_power_w_by_node.items():
        req = s.requests_by_node.get(node)
        t.add_row(
            f"{node} ({s.fleet.get(node, '?')}): mean accelerator power, requests",
            f"{watts:.1f} W, {'-' if req is None else f'{req:.0f}'}",
        )
    console.print(t)
    _print_figures(s.figures, console)
    window = s.figures.get("window")
    if isinstance(window, dict):
        command = " ".join(report_command(s.influx, s.database, window))
        if kept_influx:
            console.print(f"the same figures, with methods, coverage, money and carbon: {command}")
        else:
            console.print(
                "the demo's private InfluxDB stopped with it; to keep the data for `kwatt report` "
                "(methods, coverage, money and carbon), run the demo with --influx URL, then: "
                + command.replace(s.influx, "URL")
            )
    console.print(f"state, logs and configs: {s.state_dir}")


def report_command(influx: str, database: str, window: Mapping[str, object]) -> list[str]:
    """The ``kwatt report`` invocation over the demo's window (its verdicts need --min-window)."""
    return [
        "kwatt",
        "report",
        "--influx",
        influx,
        "--database",
        database,
        "--since",
        str(window.get("start_s")),
        "--until",
        str(window.get("end_s")),
        "--min-window",
        f"{DEMO_MIN_WINDOW_S:g}",
        # the window edges above are rounded to 1 ms: leave room over the default 0.8 s skew bound
        # so an edge the demo found aligned is not refused for the rounding
        "--max-skew",
        "1.0",
    ]


def _print_figures(figures: Mapping[str, object], console: Console) -> None:
    """Per service: work per J by device class, ratio to the GPU, verdict, measured error."""
    services = figures.get("services")
    window = figures.get("window")
    if not isinstance(services, dict) or not isinstance(window, dict):
        console.print("no perf-per-watt figures (no common window in what InfluxDB holds)")
        return
    t = Table(
        title=f"perf-per-watt over the common {window.get('length_s')} s window, "
        f"{figures.get('phase')} verdicts, pipeline error vs ground truth"
    )
    for col in ("service", "device class", "work/J", "true work/J", "vs GPU", "verdict",
                "energy err", "perf/W err"):  # fmt: skip
        t.add_column(
            col, justify="left" if col in ("service", "device class", "verdict") else "right"
        )

    def num(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, int | float) else "–"

    for svc, doc in services.items():
        if not isinstance(doc, dict):
            continue
        verdicts = {v["device_class"]: v for v in doc.get("verdicts", []) if isinstance(v, dict)}
        for cls, c in doc.get("classes", {}).items():
            v = verdicts.get(cls)
            if c.get("gpu_baseline"):
                ratio, word = "baseline", "GPU baseline"
            elif v is None:
                ratio, word = "–", "no verdict"
            else:
                ratio = num(v.get("ratio_vs_baseline"), ".2f") + "x"
                meets = v.get("meets_target")
                word = (
                    "no verdict"
                    if meets is None
                    else ("meets" if meets else "misses") + f" {v.get('target_ratio')}x"
                )
                if v.get("baseline_kind") != "measured":
                    word += f" ({v.get('baseline_kind')})"
            t.add_row(
                svc,
                cls,
                num(c.get("work_per_j"), ".4g") + f" {doc.get('work_unit')}/J",
                num(c.get("true_work_per_j"), ".4g"),
                ratio,
                word,
                num(c.get("energy_error_pct"), "+.2f") + " %",
                num(c.get("perf_per_watt_error_pct"), "+.2f") + " %",
            )
    console.print(t)
    if figures.get("phase") != "phase1_npu":  # phase 2/3 (--phase): say where each target is from
        for svc, doc in services.items():
            for v in doc.get("verdicts", []) if isinstance(doc, dict) else []:
                console.print(
                    f"{svc} / {v.get('device_class')}: {v.get('class_phase')} target "
                    f">= {v.get('target_ratio')}x the GPU ({v.get('target_status')}: "
                    f"{v.get('target_source')})"
                )
        console.print(
            "the phase-2/3 devices' figures are published chip or vendor figures, derived and "
            "assumed ones among them (docs/emulators.md): their verdicts are model outputs, "
            "not evidence"
        )
