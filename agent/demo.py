"""``kwatt demo``: the whole pipeline on emulated hardware, with its own Mosquitto and InfluxDB.

Each emulated node is a separate process that owns a root directory (FuriosaAI RNGD sysfs + hwmon) and a
loopback port (furiosa-llm ``/metrics``); each node's ``kwatt agent`` process reads it through the real
collectors and publishes to MQTT; one ``kwatt ingest`` process writes to InfluxDB. At the end the agents
are stopped (they flush), the ingest drains, and InfluxDB is queried back: ``stored`` must equal
``published``. Everything the demo started is stopped on exit, Ctrl-C and SIGTERM included.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent.config import InfluxConfig, MqttConfig
from agent.influx import InfluxError, InfluxQL
from agent.services import Influxd, Mosquitto, ServiceError
from agent.top import TopState, ViewOptions, follow, render

__all__ = ["run_demo"]


class DemoError(RuntimeError):
    pass


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class _Procs:
    """Children of the demo, each in its own session, stopped by PID in reverse start order."""

    items: list[_Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log_dir: Path) -> _Proc:
        log_path = log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        proc = _Proc(name, p, log_path)
        self.items.append(proc)
        return proc

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


def _count_stored(q: InfluxQL, site: str, since_ns: int) -> dict[str, int]:
    where = f"\"site\" = '{site}' AND time >= {since_ns}"
    return {m: q.count_points(m, where) for m in ("accel", "serving", "agent", "host")}


@dataclass
class _Summary:
    published: int
    stored: int
    lost: int
    stored_by_measurement: dict[str, int]
    nodes: int
    devices_per_node: int
    duration_s: float
    points_per_s: float
    agents_dropped: int
    ingest: dict[str, int]
    mean_power_w_by_node: dict[str, float]
    requests_by_node: dict[str, float]
    broker: str
    influx: str
    database: str
    state_dir: str


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
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="kwatt-demo-"))
    state.mkdir(parents=True, exist_ok=True)
    procs = _Procs()
    try:
        with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            stack.callback(procs.stop_all)
            summary = _run(args, state, procs, stack, err)
    except (ServiceError, DemoError, InfluxError) as e:
        err.print(f"[red]kwatt demo: {e}[/red]")
        return 1
    except KeyboardInterrupt:
        err.print("kwatt demo: interrupted; everything it started has been stopped")
        return 130
    if args.json:
        print(json.dumps(summary.__dict__, sort_keys=True))
    else:
        _print_summary(summary, err)
    return 0 if summary.lost == 0 and summary.published > 0 else 1


def _run(
    args: argparse.Namespace,
    state: Path,
    procs: _Procs,
    stack: contextlib.ExitStack,
    err: Console,
) -> _Summary:
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    quiet = args.json or args.no_live
    if args.broker:
        broker_url = args.broker
    else:
        mosq = stack.enter_context(Mosquitto(state / "mosquitto"))
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

    # ingest first, so its persistent session exists before the agents publish
    ingest_cfg = {
        "mqtt": {"url": broker_url, "client_id": f"kwatt-demo-ingest-{os.getpid()}"},
        "influx": {"url": influx_url, "database": args.database},
        "batch": {"max_delay_s": 0.2},
        "deadletter_dir": str(state / "deadletter"),
    }
    ingest_yaml = state / "ingest.yaml"
    ingest_yaml.write_text(yaml.safe_dump(ingest_cfg), encoding="utf-8")
    ingest_stats = state / "ingest-stats.json"
    ingest = procs.start(
        "ingest",
        [
            *_python(),
            "-m",
            "agent.cli",
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
    agents: list[tuple[str, _Proc, Path]] = []
    for n in range(1, args.nodes + 1):
        node = f"node-{n:02d}"
        root = roots / node
        emu = procs.start(
            f"emulator-{node}",
            [
                *_python(),
                "-m",
                "emulators.node",
                "--root",
                str(root),
                "--devices",
                str(args.devices),
                "--seed",
                str(args.seed * 1000 + n),
                "--port",
                "0",
                "--workload",
                "steady" if n % 2 else "bursty",
                "--period",
                str(min(0.25, args.interval / 2)),
                "--truth-log",
                str(state / "truth" / f"{node}.jsonl"),
            ],
            logs,
        )
        ready = _read_ready_line(emu)
        agent_cfg = {
            "site": args.site,
            "node": node,
            "mqtt": {"url": broker_url},
            "publish": {"flush_interval_s": args.interval},
            "collectors": [
                {"type": "furiosa", "name": "rngd", "root": str(root), "interval_s": args.interval},
                {
                    "type": "serving",
                    "name": "llm",
                    "url": ready["serving_url"],
                    "service": "chatbot",
                    "runtime": "furiosa-llm",
                    "interval_s": args.interval,
                },
            ],
        }
        cfg_path = state / f"agent-{node}.yaml"
        cfg_path.write_text(yaml.safe_dump(agent_cfg), encoding="utf-8")
        stats_path = state / f"agent-{node}-stats.json"
        proc = procs.start(
            f"agent-{node}",
            [
                *_python(),
                "-m",
                "agent.cli",
                "agent",
                "--config",
                str(cfg_path),
                "--stats-file",
                str(stats_path),
            ],
            logs,
        )
        agents.append((node, proc, stats_path))

    live = _Live(args.site)
    asyncio.run(_show(args, mqtt_cfg, live, procs, agents, ingest, quiet, err))

    # stop the agents: each flushes its last batch and writes its counters
    for node, proc, _ in agents:
        rc = procs.stop(proc)
        if rc not in (0, None):
            raise DemoError(f"agent {node} exited with {rc}: {_tail(proc.log_path)}")
    published = 0
    dropped = 0
    for node, _, stats_path in agents:
        try:
            doc = json.loads(stats_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DemoError(f"agent {node}: no stats file ({e})") from None
        published += int(doc["published_points"])
        dropped += int(doc["dropped_points"])

    # let the ingest drain, then count what InfluxDB holds
    q = InfluxQL(influx_cfg)
    deadline = time.monotonic() + 30.0
    counts = _count_stored(q, args.site, since_ns)
    while sum(counts.values()) < published and time.monotonic() < deadline:
        if ingest.popen.poll() is not None:
            raise DemoError(f"ingest exited: {_tail(ingest.log_path)}")
        time.sleep(0.25)
        counts = _count_stored(q, args.site, since_ns)
    procs.stop(ingest)
    ingest_doc = (
        json.loads(ingest_stats.read_text(encoding="utf-8")) if ingest_stats.exists() else {}
    )
    stored = sum(counts.values())
    power, requests = _fleet_figures(q, args.site, since_ns)
    q.close()
    return _Summary(
        published=published,
        stored=stored,
        lost=published - stored,
        stored_by_measurement=counts,
        nodes=args.nodes,
        devices_per_node=args.devices,
        duration_s=args.duration,
        points_per_s=round(published / args.duration, 1),
        agents_dropped=dropped,
        ingest={k: int(v) for k, v in ingest_doc.items()},
        mean_power_w_by_node={k: round(v, 2) for k, v in sorted(power.items())},
        requests_by_node=dict(sorted(requests.items())),
        broker=broker_url,
        influx=influx_url,
        database=args.database,
        state_dir=str(state),
    )


async def _show(
    args: argparse.Namespace,
    mqtt_cfg: MqttConfig,
    live: _Live,
    procs: _Procs,
    agents: list[tuple[str, _Proc, Path]],
    ingest: _Proc,
    quiet: bool,
    err: Console,
) -> None:
    watcher = asyncio.create_task(_watch(mqtt_cfg, live))
    start = time.monotonic()

    def check_children() -> None:
        for proc in [ingest, *(p for _, p, _ in agents)]:
            if proc.popen.poll() is not None:
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
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _print_summary(s: _Summary, console: Console) -> None:
    console.print()
    t = Table(title="kwatt demo summary", show_header=False)
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row("nodes x NPUs", f"{s.nodes} x {s.devices_per_node}")
    t.add_row("duration", f"{s.duration_s:g} s")
    t.add_row("points published (acknowledged by the broker)", str(s.published))
    t.add_row("points stored in InfluxDB", str(s.stored))
    t.add_row("lost", Text(str(s.lost), style="green" if s.lost == 0 else "bold red"))
    t.add_row("published points/s", f"{s.points_per_s:g}")
    for node, watts in s.mean_power_w_by_node.items():
        req = s.requests_by_node.get(node)
        t.add_row(
            f"{node}: mean NPU power, requests served",
            f"{watts:.1f} W, {'-' if req is None else f'{req:.0f}'}",
        )
    console.print(t)
    console.print(f"state, logs and configs: {s.state_dir}")
