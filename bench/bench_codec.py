"""Line-protocol codec throughput: kwatt's encoder vs influxdb_client's Point; the strict parser.

Usage: ``python bench/bench_codec.py [--points 200000] [--batch 2000] [--repeat 3]``

The data is ``accel`` samples with 8 fields (DESIGN §3 device fields) from 8 devices, encoded in
agent-sized batches (``publish.max_batch_points``, default 2000) and parsed one batch per payload
as the ingest sees them. Figures are points/s, best of ``--repeat`` runs. It prints; it never
asserts (DESIGN §2: benchmarks print figures); its figures are in BENCHMARKS.md (Encoder and
parser).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import TypeVar

from influxdb_client.client.write.point import Point as InfluxPoint
from influxdb_client.domain.write_precision import WritePrecision

from kwatt.wire.lineproto import encode, parse_payload
from kwatt.wire.model import Sample

SITE, NODE = "seoul-dc1", "npu-node-07"
T = TypeVar("T")


def make_samples(n: int, seed: int = 1) -> list[Sample]:
    rng = random.Random(seed)
    t0 = 1_763_700_000_000_000_000
    out = []
    for i in range(n):
        dev = i % 8
        out.append(
            Sample.accel(
                t0 + (i // 8) * 100_000_000,
                vendor="furiosa",
                model="rngd",
                device=f"rngd-{dev:02d}-0000:{17 + dev:02x}:00.0",
                power_w=round(rng.uniform(35, 180), 2),
                energy_j=rng.uniform(1e5, 1e9),
                util_ratio=rng.random(),
                temp_c=round(rng.uniform(30, 85), 2),
                clock_hz=float(rng.choice([500, 1000, 1500, 2000]) * 1_000_000),
                mem_used_bytes=rng.randrange(0, 48 << 30),
                mem_total_bytes=48 << 30,
                power_limit_w=180.0,
            )
        )
    return out


def point_payload(batch: list[Sample]) -> bytes:
    lines = []
    for s in batch:
        p = InfluxPoint(s.measurement.value).tag("site", SITE).tag("node", NODE)
        for k, v in s.tags:
            p.tag(k, v)
        for name, value in s.fields:
            p.field(name, value)
        lines.append(p.time(s.ts_ns, WritePrecision.NS).to_line_protocol())
    return ("\n".join(lines) + "\n").encode()


def best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best CPU time of ``repeat`` runs, and the last run's result. CPU time (single-threaded
    work) rather than wall time, so that other processes on a shared machine count less."""
    times = []
    for _ in range(max(1, repeat)):
        t = time.process_time()
        result = fn()
        times.append(time.process_time() - t)
    return min(times), result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000, help="samples per encode call / payload")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    print(
        f"machine: {platform.machine()}, nproc {os.cpu_count()}, {platform.platform()}\n"
        f"python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"influxdb-client {version('influxdb-client')}"
    )
    samples = make_samples(args.points)
    batches = [samples[i : i + args.batch] for i in range(0, len(samples), args.batch)]
    n = len(samples)
    print(f"{n} accel samples, 8 fields each, batches of {args.batch}, best of {args.repeat}\n")

    t_enc, ours = best(lambda: [encode(b, site=SITE, node=NODE) for b in batches], args.repeat)
    t_pt, theirs = best(lambda: [point_payload(b) for b in batches], args.repeat)
    payloads = ours
    nbytes = sum(map(len, payloads))
    max_bytes = max(map(len, payloads))
    t_parse, parsed = best(
        lambda: [parse_payload(p, max_bytes=max_bytes) for p in payloads], args.repeat
    )
    good = sum(len(r.points) for r in parsed)
    bad = sum(len(r.errors) for r in parsed)

    rows = [
        ("lineproto.encode", t_enc),
        ("influxdb_client Point (build + to_line_protocol)", t_pt),
        ("lineproto.parse_payload (strict, validated)", t_parse),
    ]
    for name, t in rows:
        print(f"{name:<50} {n / t:>12,.0f} points/s  {t / n * 1e6:6.2f} µs/point")
    print(f"\nencode / Point throughput: {t_pt / t_enc:.1f}x")
    print(f"parse / Point throughput:  {t_pt / t_parse:.1f}x")
    print(f"payload bytes: {nbytes:,} ({nbytes / n:.0f} per line)")
    print(f"encode output byte-identical to Point: {ours == theirs}")
    print(f"parsed back: {good} points, {bad} errors")
    ratio = t_pt / t_enc
    print(
        json.dumps(
            {
                "bench": "codec",
                "points": n,
                "encode_points_per_s": round(n / t_enc),
                "point_points_per_s": round(n / t_pt),
                "parse_points_per_s": round(n / t_parse),
                "encode_ratio": round(ratio, 2),
                "parse_ratio": round(t_pt / t_parse, 2),
                "byte_identical": ours == theirs,
                "parse_errors": bad,
                "goal_ratio": 5.0,
                "met": ratio >= 5.0 and ours == theirs,
            }
        )
    )


if __name__ == "__main__":
    main()
