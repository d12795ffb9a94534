"""Benchmark: per-device energy and perf-per-watt from a day of 1 Hz samples (issue #6).

1,000 devices × 86,400 s = 86.4 M power samples (float64, ``devices × time``) plus a work counter of
the same shape; 1% of the devices miss samples (NaN) and 1% have a counter reset, so the slow paths
run too. Timed (excluding the generation, i.e. the fetch):

* ``matrix``: :func:`kwatt.analytics.energy.power_energy_matrix` + :func:`kwatt.analytics.work.counter_increase_matrix`
  + work / energy: the fast path for devices sampled at the same instants;
* ``curves``: one :func:`kwatt.analytics.energy.power_curve` per device and a window query (the path
  ``analyze`` takes for series with their own timestamps);
* ``analyze``: :func:`kwatt.analytics.ppw.analyze` on the same data as 1,000 ``accel`` power series and one
  ``serving`` token counter per 10-device node (device, node, class, service and fleet rows, 30 chart
  windows): what ``kwatt report`` runs after the fetch;
* ``floor``: one numpy pass over the same arrays (``np.sum`` of each), the memory-bandwidth floor.

Prints samples/s and the ratio to the floor. Never asserts on time.

    .venv/bin/python bench/bench_analytics.py [--devices 1000] [--seconds 86400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from kwatt.analytics.energy import power_curve, power_energy_matrix
from kwatt.analytics.load import Series, SeriesKey, SeriesSet
from kwatt.analytics.ppw import Level, analyze
from kwatt.analytics.work import counter_increase_matrix


def make(devices: int, seconds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1.75e9 + np.arange(seconds, dtype=np.float64)
    t += rng.normal(0.0, 0.005, seconds)  # poll jitter
    base = rng.uniform(40.0, 150.0, size=(devices, 1))
    power = np.empty((devices, seconds), dtype=np.float64)
    chunk = 50
    for i in range(0, devices, chunk):  # keep the temporaries small
        power[i : i + chunk] = base[i : i + chunk] + rng.normal(
            0.0, 5.0, (min(chunk, devices - i), seconds)
        )
    work = np.cumsum(np.full((devices, seconds), 10.0), axis=1)
    bad = rng.choice(devices, size=max(devices // 100, 1), replace=False)
    power[bad, seconds // 3 : seconds // 3 + 5] = np.nan  # missing samples
    reset = rng.choice(devices, size=max(devices // 100, 1), replace=False)
    work[reset, seconds // 2 :] -= work[reset, seconds // 2 : seconds // 2 + 1]  # restart at 0
    return t, power, work


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=86400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-curves", action="store_true", help="skip the per-device curve path")
    ap.add_argument("--no-analyze", action="store_true", help="skip the analyze() path")
    args = ap.parse_args()
    n = args.devices * args.seconds
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}; "
        f"{args.devices} devices × {args.seconds} s = {n / 1e6:.1f} M power samples (+ as many counter samples)"
    )
    t0 = time.perf_counter()
    t, power, work = make(args.devices, args.seconds)
    print(f"generated in {time.perf_counter() - t0:.1f} s (not timed below)")

    def best(fn: object) -> float:
        times = []
        for _ in range(args.repeat):
            s = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - s)
        return min(times)

    def floor() -> None:
        np.sum(power)
        np.sum(work)

    def matrix() -> None:
        e = power_energy_matrix(t, power)
        w, _ = counter_increase_matrix(work)
        _ = w / e.energy_j

    def curves() -> None:
        a, b = float(t[0]), float(t[-1])
        out = np.empty(args.devices)
        for i in range(args.devices):
            out[i] = power_curve(t, power[i]).window(a, b).energy_j

    f = best(floor)
    m = best(matrix)
    summary: dict[str, object] = {
        "bench": "analytics",
        "samples": n,
        "floor_s": round(f, 4),
        "matrix_s": round(m, 4),
        "matrix_ratio_to_floor": round(m / f, 2),
        "matrix_samples_per_s": round(n / m),
    }
    print(f"floor  (np.sum over power and counter):   {f:6.3f} s  {n / f / 1e6:8.1f} M samples/s")
    print(
        f"matrix (energy + work + perf-per-watt):   {m:6.3f} s  {n / m / 1e6:8.1f} M samples/s  ratio to floor {m / f:.2f}"
    )
    if not args.no_curves:
        c = best(curves)
        summary["curves_s"] = round(c, 4)
        summary["curves_ratio_to_floor"] = round(c / f, 2)
        print(
            f"curves (per-device energy curves):        {c:6.3f} s  {n / c / 1e6:8.1f} M samples/s  ratio to floor {c / f:.2f}"
        )
    if not args.no_analyze:
        t_ns = (t * 1e9).astype(np.int64)
        series = []
        for i in range(args.devices):
            node = f"n{i // 10:04d}"
            tags = (
                ("device", f"d{i}"),
                ("model", "rngd"),
                ("node", node),
                ("site", "b"),
                ("vendor", "furiosa"),
            )
            series.append(Series(SeriesKey("accel", tags, "power_w"), t_ns, power[i]))
            if i % 10 == 0:
                stags = (("node", node), ("runtime", "vllm"), ("service", "chat"), ("site", "b"))
                tok = work[i : i + 10].sum(axis=0)
                series.append(Series(SeriesKey("serving", stags, "tokens_total"), t_ns, tok))
        ss = SeriesSet(tuple(series), "bench")
        result = []

        def run_analyze() -> None:
            result[:] = [analyze(ss, float(t[0]), float(t[-1]))]

        z = best(run_analyze)
        summary["analyze_s"] = round(z, 4)
        summary["analyze_ratio_to_floor"] = round(z / f, 2)
        summary["analyze_samples_per_s"] = round(n / z)
        print(
            f"analyze (all levels, 30 chart windows):   {z:6.3f} s  {n / z / 1e6:8.1f} M samples/s  ratio to floor {z / f:.2f}"
        )
        fleet = result[0].select(Level.FLEET)[0]
        print(
            f"  fleet: {fleet.devices} devices, {fleet.mean_power_w / 1e3:.1f} kW mean, {fleet.work_per_j:.4f} tokens/J"
        )
    # sanity: the matrix result equals the per-row reference on a few rows
    e = power_energy_matrix(t, power)
    for i in (0, args.devices // 2, args.devices - 1):
        ref = power_curve(t, power[i]).window(float(t[0]), float(t[-1])).energy_j
        assert abs(e.energy_j[i] - ref) <= 1e-9 * abs(ref) + 1e-6, (i, e.energy_j[i], ref)
    # issue 6: ≤ 3 s for the reduction on the 2-core machine, excluding the fetch; the full
    # `kwatt report` analysis (analyze) is what a user waits for, so the goal is judged on it
    slowest = max(m, float(summary.get("analyze_s", 0.0)))  # type: ignore[arg-type]
    summary.update(goal_s=3.0, met=slowest <= 3.0)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
