"""CPU time and peak RSS of one `kwatt agent` process polling an emulated node.

Starts a private Mosquitto, a plain subscriber (so the broker has someone to deliver to), one emulated
RNGD node (separate process, not measured) and one agent (separate process, measured from
/proc/<pid>/stat utime+stime and /proc/<pid>/status VmHWM after a warm-up), at each poll rate.

    .venv/bin/python bench/bench_agent.py --devices 8 --duration 60 --rates 1,10

Prints one line per rate and a JSON summary. Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiomqtt
import yaml

from agent.services import Mosquitto

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def count_messages(port: int, stop: asyncio.Event, counter: list[int]) -> None:
    with contextlib.suppress(aiomqtt.MqttError):  # the broker goes away at the end
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-sub-{os.getpid()}") as c:
            await c.subscribe("kwatt/v1/+/+/metrics", qos=1)
            async for m in c.messages:
                counter[0] += bytes(m.payload).count(b"\n")  # type: ignore[arg-type]
                if stop.is_set():
                    return


def run_rate(
    mosq: Mosquitto, state: Path, devices: int, rate_hz: float, duration_s: float, warmup_s: float
) -> dict[str, float]:
    root = Path(
        tempfile.mkdtemp(
            prefix="kwatt-bench-node-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
    )
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.node",
            "--root",
            str(root),
            "--devices",
            str(devices),
            "--port",
            "0",
            "--period",
            str(min(0.5, 0.5 / rate_hz)),
            "--workload",
            "bursty",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert emu.stdout is not None
    ready = json.loads(emu.stdout.readline())
    interval = 1.0 / rate_hz
    cfg = {
        "site": "bench",
        "node": f"n{int(rate_hz)}hz",
        "mqtt": {"url": mosq.url},
        "publish": {"flush_interval_s": 1.0},
        "collectors": [
            {"type": "furiosa", "root": str(root), "interval_s": interval},
            {
                "type": "serving",
                "url": ready["serving_url"],
                "service": "chatbot",
                "interval_s": interval,
            },
        ],
    }
    cfg_path = state / f"agent-{rate_hz}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    stats_path = state / f"agent-{rate_hz}-stats.json"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "agent",
            "--config",
            str(cfg_path),
            "--stats-file",
            str(stats_path),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
    )
    try:
        time.sleep(warmup_s)
        c0, t0 = cpu_s(agent.pid), time.monotonic()
        time.sleep(duration_s)
        c1, t1 = cpu_s(agent.pid), time.monotonic()
        rss = peak_rss_mb(agent.pid)
    finally:
        agent.terminate()
        agent.wait(30)
        emu.terminate()
        emu.wait(30)
        emu.stdout.close()
    stats = json.loads(stats_path.read_text())
    return {
        "rate_hz": rate_hz,
        "devices": devices,
        "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
        "cpu_ms_per_poll_cycle": round(1000 * (c1 - c0) / ((t1 - t0) * rate_hz), 3),
        "peak_rss_mb": round(rss, 1),
        "published_points": stats["published_points"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--rates", default="1,10")
    args = p.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    state = Path(tempfile.mkdtemp(prefix="kwatt-bench-agent-"))
    results = []
    counter = [0]

    with Mosquitto(state / "mosquitto") as mosq:
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        t = threading.Thread(
            target=loop.run_until_complete,
            args=(count_messages(mosq.port, stop, counter),),
            daemon=True,
        )
        t.start()
        time.sleep(0.5)
        for rate in (float(r) for r in args.rates.split(",")):
            r = run_rate(mosq, state, args.devices, rate, args.duration, args.warmup)
            results.append(r)
            print(
                f"agent @ {r['rate_hz']:g} Hz, {r['devices']} NPUs + serving: "
                f"CPU {r['cpu_pct_of_one_core']:.2f}% of one core "
                f"({r['cpu_ms_per_poll_cycle']:.2f} ms CPU per poll cycle), "
                f"peak RSS {r['peak_rss_mb']:.1f} MB, {r['published_points']} points published"
            )
        loop.call_soon_threadsafe(stop.set)
    print(json.dumps({"bench": "agent", "results": results, "subscriber_points": counter[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
