"""CPU time and peak RSS of one `kwatt agent` process polling an emulated node.

Starts a private Mosquitto, a plain subscriber (so the broker has someone to deliver to), one emulated
node (``kwatt emulate node --devices rngd:8``: separate process, not measured) and one agent with the
config that node prints (furiosa sysfs for 8 RNGD cards, rapl and hwmon host power, Redfish, the
furiosa-llm serving metrics; separate process, measured from /proc/<pid>/stat utime+stime and
/proc/<pid>/status VmHWM after a warm-up), at each poll rate. Goals (issue 8): ≤ 1 % of one core at
1 Hz, ≤ 5 % at 10 Hz, peak RSS ≤ 80 MB.

    .venv/bin/python bench/bench_agent.py --devices 8 --duration 60 --rates 1,10
    .venv/bin/python bench/bench_agent.py --rates 10 --profile /tmp/agent.prof   # cProfile the agent

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

from kwatt.demo.services import Mosquitto

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


# BMC readings (IPMI DCMI, Redfish) refresh about once a second on real BMCs, so at 10 Hz they stay at
# 1 Hz; ipmi_dcmi is left out because its cost is a tool spawn per poll (the emulated ipmitool is a
# Python process; bench_host_power.py measures it apart).
SLOW_COLLECTORS = {"redfish": 1.0}
LEFT_OUT = {"ipmi_dcmi"}


def node_config(root: Path, devices: int, rate_hz: float, state: Path) -> subprocess.Popen[str]:
    """Start ``kwatt emulate node`` with ``devices`` RNGD cards and wait for its printed config."""
    cfg = state / f"node-{rate_hz:g}.yaml"
    emu = subprocess.Popen(
        [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", f"rngd:{devices}",
         "--root", str(root), "--port", "0", "--period", str(min(0.5, 0.5 / rate_hz)),
         "--print-config", str(cfg), "--name", f"n{rate_hz:g}hz", "--site", "bench"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert emu.stdout is not None
    emu.stdout.readline()  # the ready line: surfaces are written
    return emu


def agent_config(node_cfg: Path, mqtt_url: str, rate_hz: float) -> dict[str, object]:
    doc = yaml.safe_load(node_cfg.read_text())
    doc["mqtt"] = {"url": mqtt_url}
    doc["publish"] = {"flush_interval_s": 1.0}
    kept = []
    for c in doc["collectors"]:
        if c["type"] in LEFT_OUT:
            continue
        c["interval_s"] = max(1.0 / rate_hz, SLOW_COLLECTORS.get(c["type"], 0.0))
        kept.append(c)
    doc["collectors"] = kept
    return doc


def run_rate(
    mosq: Mosquitto,
    state: Path,
    devices: int,
    rate_hz: float,
    duration_s: float,
    warmup_s: float,
    profile: Path | None = None,
) -> dict[str, object]:
    root = Path(
        tempfile.mkdtemp(
            prefix="kwatt-bench-node-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
    )
    emu = node_config(root, devices, rate_hz, state)
    cfg = agent_config(state / f"node-{rate_hz:g}.yaml", mosq.url, rate_hz)
    cfg_path = state / f"agent-{rate_hz:g}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    stats_path = state / f"agent-{rate_hz:g}-stats.json"
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    agent = subprocess.Popen(
        [sys.executable, *prof, "-m", "kwatt.cli", "agent", "--config", str(cfg_path),
         "--stats-file", str(stats_path), "--log-level", "warning"],
        cwd=REPO,
    )  # fmt: skip
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
        if emu.stdout:
            emu.stdout.close()
    stats = json.loads(stats_path.read_text())
    collectors = [f"{c['type']}@{1 / float(c['interval_s']):g}Hz" for c in cfg["collectors"]]  # type: ignore[attr-defined]
    return {
        "rate_hz": rate_hz,
        "devices": devices,
        "collectors": collectors,
        "duration_s": round(t1 - t0, 1),
        "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
        "cpu_ms_per_poll_cycle": round(1000 * (c1 - c0) / ((t1 - t0) * rate_hz), 3),
        "peak_rss_mb": round(rss, 1),
        "published_points": stats["published_points"],
        "goal_cpu_pct": 1.0 if rate_hz <= 1 else 5.0,
        "goal_rss_mb": 80.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--rates", default="1,10")
    p.add_argument("--profile", help="run the agent under cProfile, writing FILE-<rate>Hz.prof")
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
            prof = Path(f"{args.profile}-{rate:g}Hz.prof") if args.profile else None
            r = run_rate(mosq, state, args.devices, rate, args.duration, args.warmup, prof)
            r["met"] = (
                float(r["cpu_pct_of_one_core"]) <= float(r["goal_cpu_pct"])  # type: ignore[arg-type]
                and float(r["peak_rss_mb"]) <= 80.0  # type: ignore[arg-type]
            )
            results.append(r)
            print(
                f"agent @ {rate:g} Hz, {r['devices']} NPUs + host power + serving "
                f"({', '.join(r['collectors'])}): "  # type: ignore[arg-type]
                f"CPU {r['cpu_pct_of_one_core']}% of one core "
                f"({r['cpu_ms_per_poll_cycle']} ms CPU per poll cycle), "
                f"peak RSS {r['peak_rss_mb']} MB, {r['published_points']} points published; "
                f"goal ≤ {r['goal_cpu_pct']}% and ≤ 80 MB: {'met' if r['met'] else 'NOT met'}"
            )
        loop.call_soon_threadsafe(stop.set)
    print(json.dumps({"bench": "agent", "results": results, "subscriber_points": counter[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
