"""Accuracy of the analytics pipeline against ground truth (issue #6).

* The real path: an emulated RNGD node (bursty workload, physics stepped every 0.25 s) read at 1 Hz by
  the real furiosa and serving collectors, encoded as the agent encodes, parsed back from a
  line-protocol file, reduced by :mod:`analytics`; compared with the emulator's truth log
  (exact energy integral, true generated tokens). Power samples only (RNGD has no energy counter):
  energy and perf-per-watt error ≤ 2%.
* A synthetic device whose truth is integrated exactly on a 0.1 s grid, with a wrapping energy
  counter sampled at 1 Hz: energy error ≤ 0.5% from the counter, ≤ 2% from its power samples alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kwatt.analytics.energy import EnergyMethod, energy_from_counter, energy_from_power
from kwatt.analytics.load import load_lp_file
from kwatt.analytics.ppw import Level, Options, analyze
from kwatt.analytics.work import WorkUnit, counter_increase
from kwatt.collectors import furiosa, serving
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.emulators.truth import RngdTruthRecord
from kwatt.emulators.truth import encode as encode_truth
from kwatt.wire.lineproto import encode

T0_S = 1_750_000_000
SAMPLE_S = 1.0
STEP_S = 0.25


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """The emulator rewrites ~20 files per card per step: keep them on tmpfs when there is one."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base, prefix="kwatt-acc-") as d:
        yield Path(d)


def run_emulated(
    root: Path, seconds: int, devices: int, seed: int
) -> tuple[Path, list[RngdTruthRecord]]:
    """Step the emulator every STEP_S, poll both collectors every SAMPLE_S; return the LP file the
    agent would have published (timestamps = the schedule's) and the truth records at the polls."""
    lp = root / "node.lp"
    truth: list[RngdTruthRecord] = []

    async def go() -> None:
        async with EmulatedNode(
            root / "node", devices=devices, seed=seed, workload="bursty"
        ) as node:
            npu = furiosa.PLUGIN.create("npu", furiosa.Config(root=str(root / "node")))
            srv = serving.PLUGIN.create("llm", serving.Config(url=node.serving_url, service="chat"))
            steps_per_sample = round(SAMPLE_S / STEP_S)
            with lp.open("wb") as out:
                for k in range(seconds + 1):
                    t = k * SAMPLE_S
                    if k == 0:
                        rec = node.step(0.0)
                    else:
                        for j in range(1, steps_per_sample + 1):
                            rec = node.step(t - SAMPLE_S + j * STEP_S)
                    truth.append(rec)
                    samples = [*await npu.collect(), *await srv.collect()]
                    ts = int((T0_S + t) * 1e9)
                    samples = [dataclasses.replace(s, ts_ns=ts) for s in samples]
                    out.write(encode(samples, site="acc", node="n1"))

    asyncio.run(go())
    return lp, truth


def test_real_emulator_and_collectors_power_only(shm_dir: Path) -> None:
    seconds = 900
    lp, truth = run_emulated(shm_dir, seconds, devices=2, seed=7)
    (shm_dir / "truth.jsonl").write_text("".join(encode_truth(r) for r in truth))
    ss = load_lp_file(lp)
    a = analyze(ss, T0_S, T0_S + seconds, Options(min_window_s=60))
    first, last = truth[0], truth[-1]
    assert len(a.devices) == 2
    for d in a.devices:
        t_first = next(x for x in first.devices if x.device == d.device.device)
        t_last = next(x for x in last.devices if x.device == d.device.device)
        true_j = t_last.energy_j - t_first.energy_j
        assert d.method is EnergyMethod.POWER_TRAPEZOID
        assert d.coverage == pytest.approx(1.0)
        err = abs(d.energy_j - true_j) / true_j
        assert err <= 0.02, f"{d.device.device}: energy error {err:.3%}"
    # the workload really is bursty: the power spans idle to near TDP
    powers = np.concatenate([s.values for s in ss.select("accel", "power_w")])
    assert powers.min() < 60 and powers.max() > 120

    node = a.select(Level.NODE, service="chat")
    assert len(node) == 1
    true_tokens = last.serving.tokens_total - first.serving.tokens_total
    true_j = sum(
        lt.energy_j - ft.energy_j for ft, lt in zip(first.devices, last.devices, strict=True)
    )
    true_ppw = true_tokens / true_j
    row = node[0]
    assert row.work == pytest.approx(int(true_tokens), abs=1.0)
    err = abs(row.work_per_j - true_ppw) / true_ppw
    assert err <= 0.02, f"perf-per-watt error {err:.3%}"
    assert row.aligned and row.skew_s == 0.0


# ------------------------------------------------------------------------------ synthetic device


def bursty_truth(seconds: int, seed: int, dt_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Power on a fine grid (piecewise constant over dt_s) for an on/off workload: 5 s on, 8 s off
    on average (the emulator's bursty model), idle 40 W, TDP 150 W, and its exact integral."""
    rng = np.random.default_rng(seed)
    n = round(seconds / dt_s)
    on = np.zeros(n, dtype=bool)
    i, state = 0, False
    while i < n:
        length = int(rng.exponential(5.0 if state else 8.0) / dt_s) + 1
        on[i : i + length] = state
        state, i = not state, i + length
    util = np.clip(np.where(on, 0.95, 0.05) + rng.normal(0, 0.02, n), 0, 1)
    power = 40.0 + 110.0 * util**1.2
    return power, np.concatenate(([0.0], np.cumsum(power * dt_s)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synthetic_counter_and_power_against_exact_integral(seed: int) -> None:
    seconds, dt = 3600, 0.1
    power, cum = bursty_truth(seconds, seed, dt)
    per = round(SAMPLE_S / dt)
    idx = np.arange(0, seconds * per + 1, per)
    t = T0_S + idx * dt
    wrap_j = 65_536.0  # a 16-bit counter of J: wraps several times in the hour
    counter = np.floor(cum[idx] * 1000) / 1000 % wrap_j  # mJ resolution, wrapped
    sampled_power = power[np.minimum(idx, power.size - 1)]  # instantaneous reading at the poll
    # a window that does not fall on sample instants
    start, end = T0_S + 100.3, T0_S + 3500.7
    true_j = float(np.interp(end - T0_S, np.arange(cum.size) * dt, cum)) - float(
        np.interp(start - T0_S, np.arange(cum.size) * dt, cum)
    )
    c = energy_from_counter(t, counter, start, end, wrap_j=wrap_j)
    assert c.wraps >= 3 and c.resets == 0
    assert abs(c.energy_j - true_j) / true_j <= 0.005
    p = energy_from_power(t, sampled_power, start, end)
    assert abs(p.energy_j - true_j) / true_j <= 0.02
    assert p.coverage == pytest.approx(1.0) and c.coverage == pytest.approx(1.0)
    # perf-per-watt: tokens at 50/s per unit of utilisation above idle, integrated on the fine grid,
    # read at 1 Hz as an integer counter; error within the same bounds as the energy
    tokens = np.concatenate(([0.0], np.cumsum((power - 40.0) / 110.0 * 50.0 * dt)))
    grid = np.arange(cum.size) * dt
    true_ppw = (
        np.interp(end - T0_S, grid, tokens) - np.interp(start - T0_S, grid, tokens)
    ) / true_j
    work = counter_increase(WorkUnit.TOKENS, t, np.floor(tokens[idx]), start, end)
    assert abs(work.work / c.energy_j - true_ppw) / true_ppw <= 0.005
    assert abs(work.work / p.energy_j - true_ppw) / true_ppw <= 0.02
    # without the range the wraps are resets: the energy is then short, and says so
    unknown = energy_from_counter(t, counter, start, end)
    assert unknown.resets == c.wraps and unknown.energy_j < c.energy_j
