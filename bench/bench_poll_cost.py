"""Cost of one poll of every collector against an emulated node with every catalogue model.

Starts ``kwatt emulate node`` (a separate process, not measured) with one device of each vendor
family, reads the agent config it prints and times ``collect()`` of every collector in that config,
plus the tool-based variants a site falls back to (``furiosa`` through ``furiosa-smi``). Per
collector: wall time per poll (median and p90), CPU time of this process per poll (the agent's
cost: parsing, the thread hop) and CPU time of child processes per poll (the tool the collector
spawns, if any), and the samples one poll returns.

    .venv/bin/python bench/bench_poll_cost.py [--polls 200] [--devices SPEC]

The emulated tools are Python scripts: a tool spawn here costs a Python start-up (~20-40 ms of CPU),
a vendor's native binary less, but it is still a fork/exec per poll, which is why every collector
prefers sysfs or a library when it can (DESIGN §8). Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.emulators import libnvml

REPO = Path(__file__).resolve().parent.parent
DEVICES = "rngd:2,warboy:1,atom:1,atom-max:1,rebel-quad:1,x220-compact:1,x330:1,h100:1,t4:1"


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def _time(collect: object, polls: int) -> dict[str, float]:
    for _ in range(3):  # discovery, first HTTP connection, caches
        await collect()  # type: ignore[operator]
    walls: list[float] = []
    samples = 0
    c0, k0 = time.process_time(), _children_cpu_s()
    for _ in range(polls):
        t0 = time.perf_counter()
        samples = len(await collect())  # type: ignore[operator]
        walls.append(time.perf_counter() - t0)
    cpu, kids = time.process_time() - c0, _children_cpu_s() - k0
    return {
        "median_ms": round(statistics.median(walls) * 1e3, 3),
        "p90_ms": round(statistics.quantiles(walls, n=10)[-1] * 1e3, 3),
        "cpu_ms": round(cpu / polls * 1e3, 3),
        "tool_cpu_ms": round(kids / polls * 1e3, 3),
        "samples": samples,
        "polls": polls,
    }


async def measure(doc: dict[str, list[dict[str, object]]], polls: int) -> list[dict[str, object]]:
    entries = list(doc["collectors"])
    for e in list(entries):  # the tool fallbacks, timed apart
        if e["type"] == "furiosa":
            entries.append({**e, "name": "furiosa-via-smi", "source": "smi"})
    rows: list[dict[str, object]] = []
    for entry in entries:
        cfg = agent_config_from(
            {"site": "bench", "node": "bench", "collectors": [entry]}, where="printed config"
        )
        (ce,) = cfg.collectors
        c = collectors.load(ce.type).create(ce.name, ce.options)
        spawns = ce.type in ("ipmi_dcmi", "nvidia_smi", "rebellions", "sapeon", "command") or (
            entry.get("source") == "smi"
        )
        n = max(5, polls // 10) if spawns else polls
        try:
            row: dict[str, object] = {"collector": ce.name, "type": ce.type}
            row.update(await _time(c.collect, n))
        except Exception as e:  # a benchmark reports a broken collector, it does not stop
            row = {"collector": ce.name, "type": ce.type, "error": f"{type(e).__name__}: {e}"}
        finally:
            await c.aclose()
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=200, help="polls per sysfs/HTTP collector")
    ap.add_argument("--devices", default=DEVICES)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kwatt-bench-poll-") as tmp:
        cfg = Path(tmp) / "agent.yaml"
        emu = subprocess.Popen(
            [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", args.devices,
             "--service", "chatbot,traffic", "--root", f"{tmp}/root", "--port", "0",
             "--period", "0.5", "--print-config", str(cfg)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            assert emu.stdout is not None
            ready = json.loads(emu.stdout.readline())  # surfaces written, servers listening
            os.environ.pop("KWATT_EMULATOR_ROOT", None)  # the printed config names the root
            if "nvml_lib" in ready:  # the emulated libnvidia-ml.so.1, as LD_LIBRARY_PATH would
                libnvml.load_in_process(Path(ready["root"]))
            rows = asyncio.run(measure(yaml.safe_load(cfg.read_text()), args.polls))
        finally:
            emu.terminate()
            emu.wait(30)
    print(
        f"{'collector':34s} {'median ms':>9s} {'p90 ms':>8s} {'CPU ms':>7s} {'tool CPU':>8s} samples"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['collector']!s:34s} error: {r['error']}")
            continue
        print(
            f"{r['collector']!s:34s} {r['median_ms']:9.3f} {r['p90_ms']:8.3f} {r['cpu_ms']:7.3f} "
            f"{r['tool_cpu_ms']:8.2f} {r['samples']:>7}"
        )
    print(json.dumps({"bench": "poll_cost", "devices": args.devices, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
