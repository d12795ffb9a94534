"""Points/s the whole demo pipeline sustains (agents → Mosquitto → ingest → influxd) with zero loss.

Runs `kwatt demo --no-live --json` at each fleet size and poll interval given, and prints published,
stored, lost and points/s per run, plus the machine.

    .venv/bin/python bench/bench_demo.py --duration 30 --fleets 3x4@1,10x8@1,10x8@0.1

Each fleet is NODESxDEVICES@INTERVAL_S. Every node is two processes (emulator + agent), so on a
2-core machine the emulators, not the pipeline, bound the larger runs; the ingest's own throughput
is measured in isolation by the benchmarks of issue 8. Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--fleets", default="3x4@1,10x8@1,10x8@0.1")
    args = p.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    rows = []
    for spec in args.fleets.split(","):
        size, interval = spec.split("@")
        nodes, devices = size.split("x")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "kwatt.cli",
                "demo",
                "--nodes",
                nodes,
                "--devices",
                devices,
                "--interval",
                interval,
                "--duration",
                str(args.duration),
                "--no-live",
                "--json",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        if out.returncode not in (0, 1) or not out.stdout.strip():
            print(f"{spec}: demo failed (exit {out.returncode}): {out.stderr[-800:]}")
            continue
        s = json.loads(out.stdout)
        row = {
            "fleet": spec,
            "published": s["published"],
            "stored": s["stored"],
            "lost": s["lost"],
            "points_per_s": s["points_per_s"],
        }
        rows.append(row)
        print(
            f"{nodes} nodes x {devices} NPUs, poll {interval} s, {args.duration:g} s: "
            f"published {s['published']}, stored {s['stored']}, lost {s['lost']}, "
            f"{s['points_per_s']:g} points/s"
        )
    print(json.dumps({"bench": "demo", "duration_s": args.duration, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
