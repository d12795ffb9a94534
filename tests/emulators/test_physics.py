"""Device physics: exact energy, wrapping counters, determinism, throttling, queueing latency, speed."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from pathlib import Path

import pytest

from kwatt.emulators.catalogue import load_catalogue, model
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.physics import DeviceIdentity, DevicePhysics, mmc_latency
from kwatt.emulators.truth import TruthRecord
from kwatt.emulators.workloads import WorkloadParams

U32 = 2**32


def device(key: str, work: str | None = "llm", seed: int = 1) -> DevicePhysics:
    spec = model(key)
    cls = work if work is None or work in spec.throughput else next(iter(spec.throughput))
    return DevicePhysics(
        spec, DeviceIdentity.derive(spec, "n", seed, 0, 0), index=0, seed=seed, work_class=cls
    )


@pytest.mark.parametrize("key", list(load_catalogue()))
def test_energy_is_the_exact_integral_of_power_over_any_window(key: str) -> None:
    d = device(key)
    rng = random.Random(3)
    cap = d.capacity(d.clock_max_hz)
    t = 0.0
    trace: list[tuple[float, float, float]] = []  # (dt, power, energy after)
    for _ in range(400):
        dt = rng.choice([0.01, 0.1, 0.5, 1.0, 2.5])
        t += dt
        d.step(t, dt, cap * dt * rng.uniform(0, 1.3), 3)
        trace.append((dt, d.power_w, d.energy_j))
    for _ in range(50):
        i, j = sorted(rng.sample(range(len(trace)), 2))
        integral = sum(dt * p for dt, p, _ in trace[i + 1 : j + 1])
        assert trace[j][2] - trace[i][2] == pytest.approx(integral, rel=1e-12, abs=1e-9)


def test_idle_and_full_power_follow_the_catalogue() -> None:
    d = device("rngd")
    d.step(1.0, 1.0, 0.0)
    assert d.power_w == pytest.approx(d.idle_w, abs=3.0)
    assert 0.97 * 38.0 - 3 < d.power_w < 1.03 * 38.0 + 3  # idle_w 38 W (furiosa-smi tables)
    cap = d.capacity(d.clock_max_hz)
    for k in range(2, 5):
        d.step(float(k), 1.0, cap * 2)
    assert d.util == 1.0
    assert d.power_w == pytest.approx(150.0, abs=3.0)  # TDP at full load and max clock


def test_governor_powersave_lowers_clock_power_and_capacity() -> None:
    perf, save = device("rngd"), device("rngd")
    save.governor = "powersave"
    cap = perf.capacity(perf.clock_max_hz)
    for k in range(1, 4):
        perf.step(float(k), 1.0, cap * 0.2)
        save.step(float(k), 1.0, cap * 0.2)
    assert save.clock_hz == save.clock_min_hz < perf.clock_hz
    assert save.util > perf.util  # the same work takes longer at the lower clock
    assert save.power_w < perf.power_w


def test_thermal_throttling_engages_at_the_limit() -> None:
    d = device("rngd")
    d.ambient_c = 70.0  # a hot inlet: TDP would settle at 70 + 47 K, above the 95 °C limit
    cap = d.capacity(d.clock_max_hz)
    flags, temps = [], []
    for k in range(1, 600):
        d.step(float(k), 1.0, cap)
        flags.append(d.throttle_thermal)
        temps.append(d.temp_c)
        if d.throttle_thermal:
            assert d.clock_hz < d.clock_max_hz
    limit = model("rngd").thermal_throttle_c.value
    first = flags.index(True)
    assert temps[first - 1] >= limit  # engages the step after the sensor reached the limit
    assert all(t < limit for t in temps[: first - 1])
    assert max(temps) < limit + 3.0  # and holds the die near the limit


def test_power_cap_throttles_with_the_flag() -> None:
    d = device("rngd")
    cap = d.capacity(d.clock_max_hz)
    d.step(1.0, 1.0, cap)
    assert not d.throttle_power and d.power_w > 140
    d.power_limit_w = 100.0
    for k in range(2, 6):
        d.step(float(k), 1.0, cap)
    assert d.throttle_power
    assert d.clock_hz < d.clock_max_hz
    assert d.power_w == pytest.approx(100.0, abs=3 * 0.004 * 150)


def test_counters_advance_at_the_clock_and_reset() -> None:
    d = device("warboy", "detection")
    d.step(1.0, 1.0, d.capacity(d.clock_max_hz) * 0.5)
    assert d.cycles == pytest.approx(2.0e9)
    assert 0 < d.busy_cycles <= d.cycles
    d.reset_counters()
    assert d.cycles == 0 and d.reset_count == 1 and d.energy_at_reset_j == d.energy_j


def test_latency_rises_near_saturation() -> None:
    p99 = [mmc_latency(rho * 8 * 10.0, 10.0, 8).p99_s for rho in (0.1, 0.5, 0.8, 0.95, 0.99)]
    assert p99 == sorted(p99)
    assert p99[-1] > 5 * p99[0]
    low = mmc_latency(1.0, 10.0, 8)
    assert low.p50_s == pytest.approx(math.log(2) / 10.0, rel=0.01)  # no wait: one service time
    assert math.isnan(mmc_latency(0.0, 10.0, 8).p50_s)


def test_backlog_beyond_capacity_is_served_later_or_dropped() -> None:
    d = device("l4", "classification")
    cap = d.capacity(d.clock_max_hz)
    r = d.step(1.0, 1.0, cap * 1.5, 100)
    assert r.served_units == pytest.approx(cap) and r.backlog_units == pytest.approx(cap * 0.5)
    r2 = d.step(2.0, 1.0, 0.0)
    assert r2.served_units == pytest.approx(cap * 0.5) and r2.backlog_units == 0
    r3 = d.step(3.0, 1.0, cap * 100)
    assert r3.dropped_units > 0


def run_node(root: Path, seed: int, times: list[float]) -> list[TruthRecord]:
    opts = NodeOptions(
        devices=parse_devices("warboy,rngd:2,atom-max,h100,x220-compact"),
        services=("chatbot", "traffic"),
        seed=seed,
    )

    async def go() -> list[TruthRecord]:
        async with Node(root, opts) as node:
            return [node.step(t) for t in times]

    return [dataclasses.replace(r, wall_ns=0) for r in asyncio.run(go())]


def test_same_seed_same_run(tmp_path: Path) -> None:
    times = [0.0, 0.5, 1.0, 2.5, 4.0, 10.0]
    a = run_node(tmp_path / "a", 4, times)
    assert a == run_node(tmp_path / "b", 4, times)
    assert a != run_node(tmp_path / "c", 5, times)


def test_speed_runs_emulator_time_faster(tmp_path: Path) -> None:
    opts = NodeOptions(
        devices=parse_devices("rngd"), services=("steady",), speed=50.0, period_s=0.02
    )

    async def go() -> float:
        async with Node(tmp_path, opts) as node:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stop.set)
            await node.run(stop)
            return node.physics[0].t_s

    t = asyncio.run(go())
    assert 10.0 < t < 25.0  # 0.3 s of wall time at 50×


def test_warboy_task_time_wraps_at_32_bits_and_reconstructs(tmp_path: Path) -> None:
    opts = NodeOptions(devices=parse_devices("warboy"), services=("traffic",), load=0.9)

    def regs(root: Path) -> dict[str, int]:
        text = (root / "sys/class/npu_mgmt/npu0pe0/perf_regs").read_text(encoding="utf-8")
        return {k: int(v, 16) for k, v in (line.split(": ") for line in text.splitlines())}

    async def go() -> None:
        async with Node(tmp_path, opts) as node:
            node.step(0.0)
            prev = regs(tmp_path)
            task = cycles = 0
            wrapped = False
            for k in range(1, 40):
                node.step(k * 0.5)
                cur = regs(tmp_path)
                wrapped |= cur["TaskExecutionTime"] < prev["TaskExecutionTime"]
                task += (cur["TaskExecutionTime"] - prev["TaskExecutionTime"]) % U32  # device-api
                c0 = (prev["CycleCountHigh"] << 32) | prev["CycleCount"]
                c1 = (cur["CycleCountHigh"] << 32) | cur["CycleCount"]
                cycles += c1 - c0
                assert c1 >= c0
                prev = cur
                assert all(v < U32 for v in cur.values())
            p = node.physics[0]
            assert wrapped
            assert cycles == pytest.approx(p.cycles, abs=2)
            assert task == pytest.approx(p.busy_cycles, rel=0.05)
            assert cycles > 0.45 * 1e9 * 19.5  # >= 0.45 cycles/ns, else device-api drops deltas

    asyncio.run(go())


def test_truth_latency_rises_with_load(tmp_path: Path) -> None:
    def p99(load: float) -> float:
        opts = NodeOptions(
            devices=parse_devices("warboy:2"), services=("food",), seed=1, load=load,
            workload=WorkloadParams(start_hour=12.25),
        )  # fmt: skip

        async def go() -> list[TruthRecord]:
            async with Node(tmp_path / str(load), opts) as node:
                return [node.step(t * 0.5) for t in range(1, 40)]

        recs = asyncio.run(go())
        values = [r.services["food"].latency_p99_s for r in recs]
        assert all(v is not None and v > 0 for v in values)
        assert all(d.latency_p50_s is not None for d in recs[-1].devices)
        return float(sorted(values)[len(values) // 2])

    low, high = p99(0.3), p99(0.97)
    assert high > 2 * low
