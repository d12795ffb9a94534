"""End-to-end latency at the default settings: from a device reading to the point being visible in
InfluxDB.

    .venv/bin/python bench/bench_latency.py [--duration 60] [--devices 8]

Starts a private Mosquitto and a private influxd (demo/services.py), one `kwatt ingest` process
(default batch settings: a write per 5000 points or every 200 ms), one emulated node
(`kwatt emulate node --devices rngd:8`, which writes the agent config that reads it) and one
`kwatt agent` process on that config, with the agent's defaults: every collector polled each 1 s,
a batch closed and published each 1 s (``publish.flush_interval_s``), no spool. Every process is
separate; all run on this machine, so they share one wall clock.

What is measured: a collector stamps its samples with ``time.time_ns()`` when it reads the device
(collectors/furiosa/; agent/runtime.py polls on the monotonic clock and keeps the collector's
timestamp), so the latency of a sample is (wall time at which a query first returned it) − (its
timestamp). It includes the read itself, the wait for the agent's next batch flush (0–1 s), encoding
and the MQTT publish at QoS 1, broker delivery, the ingest's validation and batch delay (up to
``batch.max_delay_s`` 200 ms), the InfluxDB write and, in the measurement itself, the polling: the
bench asks InfluxDB every 50 ms (``SELECT power_w FROM accel WHERE time > <newest seen>``,
``epoch=ns``) and stamps each newly seen timestamp with the wall time at which that answer arrived,
so a figure is late by up to 50 ms plus one query. A sample is one card's reading (the furiosa
collector stamps each card as it reads it, so a node of 8 cards gives 8 a second). Samples stamped
before the first one seen + ``--warmup`` (3 s) are left out (agent and ingest start-up); then the
bench runs for ``--duration`` seconds.

Note the phase: the agent's poll loop and its flush loop both start at start-up and tick each 1 s
(the poll loop drift-free on the monotonic clock, the flush loop 1 s after its previous flush ended),
so the flush comes just after the poll and a reading waits only milliseconds for it. That wait then
grows by the flush loop's drift (the time a flush takes, a millisecond or two per tick) and would
sweep the whole 0–1 s only over many minutes, so a run of a minute sees about the best phase: in
long operation the flush wait is anywhere in 0–1 s, and the worst case is this run's figure plus up
to ~1 s (the printed ``min`` is the floor of this run).

Prints the figures and, as the last line of stdout, one JSON object; ``goal_p99_s`` is the goal
(p99 ≤ 2 s). Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import yaml

from kwatt.demo.services import Influxd, Mosquitto
from kwatt.wire.influx import InfluxQL
from kwatt.wire.settings import InfluxConfig

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.05
GOAL_P99_S = 2.0
SITE = "latency"
NODE = "n1"
DB = "latency"


def kwatt_argv() -> list[str]:
    exe = Path(sys.executable).parent / "kwatt"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kwatt.cli"]


def terminate(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def wait_for_text(path: Path, text: bytes, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_bytes()):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = path.read_text(errors="replace")[-2000:] if path.exists() else ""
            raise RuntimeError(f"{path.name}: no {text!r} within {timeout_s:g} s: {tail}")
        time.sleep(0.05)


def measure(
    influx_url: str, duration_s: float, warmup_s: float, procs: list[subprocess.Popen[Any]]
) -> tuple[list[float], float]:
    """Poll InfluxDB every POLL_S; latencies (s) of the samples after the warm-up; mean query s."""
    q = InfluxQL(InfluxConfig(url=influx_url, database=DB))
    latencies: list[float] = []
    last = 0
    first_ts: int | None = None
    end: float | None = None
    deadline = time.monotonic() + 60  # for the first point
    queries, query_s = 0, 0.0
    try:
        next_poll = time.monotonic()
        while end is None or time.monotonic() < end:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
            if end is None and time.monotonic() > deadline:
                raise RuntimeError("no point reached InfluxDB within 60 s")
            t0 = time.monotonic()
            try:
                series = list(q.query(f'SELECT "power_w" FROM "accel" WHERE time > {last}'))
            except Exception as e:  # the database does not exist before the first write
                if "database not found" not in str(e):
                    raise
                series = []
            now_ns = time.time_ns()
            queries += 1
            query_s += time.monotonic() - t0
            seen = sorted({int(v[0]) for s in series for v in s.values})
            for ts in seen:
                if first_ts is None:
                    first_ts = ts
                    end = time.monotonic() + warmup_s + duration_s
                if ts >= first_ts + warmup_s * 1e9:
                    latencies.append((now_ns - ts) / 1e9)
            if seen:
                last = seen[-1]
            next_poll += POLL_S
            time.sleep(max(0.0, next_poll - time.monotonic()))
    finally:
        q.close()
    return latencies, query_s / max(1, queries)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (and SIGINT) unwind through the finally blocks: every child is stopped
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds left out first (default 3)")
    p.add_argument("--devices", type=int, default=8, help="RNGD cards of the node (default 8)")
    p.add_argument("--keep", action="store_true", help="keep the state directory (logs)")
    args = p.parse_args(argv)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    state = Path(tempfile.mkdtemp(prefix="kwatt-bench-latency-"))
    procs: list[subprocess.Popen[Any]] = []
    logs: list[IO[bytes]] = []
    try:
        with contextlib.ExitStack() as stack:
            mosq = stack.enter_context(Mosquitto(state / "mosquitto"))
            influxd = stack.enter_context(Influxd(state / "influxdb"))

            def stop_procs() -> None:  # before the services stop (LIFO), also on errors
                for proc in reversed(procs):
                    terminate(proc)

            stack.callback(stop_procs)

            def start(name: str, argv: list[str], **kw: object) -> subprocess.Popen[Any]:
                log = (state / f"{name}.log").open("wb")
                logs.append(log)
                kw.setdefault("stdout", log)
                proc: subprocess.Popen[Any] = subprocess.Popen(argv, cwd=REPO, stderr=log, **kw)  # type: ignore[call-overload]
                procs.append(proc)
                return proc

            # the ingest: default batch settings
            ingest_cfg = {
                "mqtt": {"url": mosq.url, "client_id": f"bench-latency-{os.getpid()}"},
                "group": f"bench-latency-{os.getpid()}",
                "influx": {"url": influxd.url, "database": DB},
                "deadletter_dir": str(state / "deadletter"),
                "log_level": "info",
            }
            (state / "ingest.yaml").write_text(yaml.safe_dump(ingest_cfg), encoding="utf-8")
            ingest = start(
                "ingest", [*kwatt_argv(), "ingest", "--config", str(state / "ingest.yaml")]
            )
            wait_for_text(state / "ingest.log", b"subscribed to", ingest, 30)

            # the emulated node; it writes the agent config (agent defaults) before it says ready
            agent_yaml = state / "agent.yaml"
            emu = start(
                "emulator",
                [
                    *kwatt_argv(),
                    "emulate",
                    "node",
                    "--devices",
                    f"rngd:{args.devices}",
                    "--root",
                    str(state / "node"),
                    "--site",
                    SITE,
                    "--name",
                    NODE,
                    "--mqtt",
                    mosq.url,
                    "--print-config",
                    str(agent_yaml),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert emu.stdout is not None
            ready = emu.stdout.readline()
            if not ready.strip():
                raise RuntimeError(
                    f"emulator did not start: {(state / 'emulator.log').read_text()}"
                )
            cfg = yaml.safe_load(agent_yaml.read_text())
            intervals = sorted({str(c.get("interval_s", "1s")) for c in cfg["collectors"]})
            agent = start(
                "agent",
                [*kwatt_argv(), "agent", "--config", str(agent_yaml), "--log-level", "info"],
            )
            print(
                f"pipeline: {len(cfg['collectors'])} collectors (interval {', '.join(intervals)}), "
                f"agent flush {cfg.get('publish', {}).get('flush_interval_s', '1s (default)')}, "
                f"ingest batch defaults (5000 points / 200 ms); measuring {args.duration:g} s "
                f"after a {args.warmup:g} s warm-up, polling InfluxDB every {POLL_S * 1000:.0f} ms",
                flush=True,
            )
            latencies, mean_query_s = measure(
                influxd.url, args.duration, args.warmup, [ingest, emu, agent]
            )
    finally:
        for proc in reversed(procs):
            terminate(proc)
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()
        for log in logs:
            log.close()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)

    lat = sorted(latencies)
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    mx = lat[-1] if lat else float("nan")
    summary = {
        "bench": "latency",
        "samples": len(lat),
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "max_s": round(mx, 3),
        "min_s": round(lat[0], 3) if lat else None,
        "goal_p99_s": GOAL_P99_S,
        "met": bool(lat) and p99 <= GOAL_P99_S,
        "poll_interval_s": POLL_S,
    }
    print(
        f"latency reading → visible in InfluxDB over {len(lat)} samples: p50 {p50:.3f} s, "
        f"p99 {p99:.3f} s, max {mx:.3f} s, min {summary['min_s']} s (goal p99 ≤ {GOAL_P99_S} s; "
        f"figures late by up to {POLL_S * 1000:.0f} ms of polling + {mean_query_s * 1000:.1f} ms "
        f"mean query)" + (f"; state kept in {state}" if args.keep else "")
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
