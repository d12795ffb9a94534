"""kwatt.analytics.energy and kwatt.analytics.work: integration, counters (wrap, reset, spikes), gaps, windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwatt.analytics.energy import (
    EnergyMethod,
    counter_curve,
    energy_from_counter,
    energy_from_power,
    power_curve,
    power_energy_matrix,
    prefix_at,
)
from kwatt.analytics.work import WorkUnit, counter_increase, counter_increase_matrix

T = np.arange(0.0, 11.0)


def test_constant_power_whole_and_partial_windows() -> None:
    p = np.full(11, 100.0)
    r = energy_from_power(T, p, 0.0, 10.0)
    assert r.method is EnergyMethod.POWER_TRAPEZOID
    assert r.energy_j == pytest.approx(1000.0)
    assert r.coverage == pytest.approx(1.0) and r.mean_power_w == pytest.approx(100.0)
    half = energy_from_power(T, p, 2.5, 7.5)
    assert half.energy_j == pytest.approx(500.0) and half.window_s == 5.0
    # a window reaching past the data: covered only where there are samples
    past = energy_from_power(T, p, 5.0, 20.0)
    assert past.energy_j == pytest.approx(500.0)
    assert past.coverage == pytest.approx(5.0 / 15.0)
    assert past.window_energy_j == pytest.approx(1500.0)


def test_linear_power_is_integrated_exactly() -> None:
    p = 10.0 + 3.0 * T
    assert energy_from_power(T, p, 0.0, 10.0).energy_j == pytest.approx(100.0 + 150.0)


def test_a_gap_is_not_bridged_and_is_reported() -> None:
    keep = np.ones(11, dtype=bool)
    keep[[4, 5, 6]] = False  # 3..7 is a 4 s interval among 1 s ones
    p = np.where(T < 3.5, 100.0, 50.0)
    r = energy_from_power(T[keep], p[keep], 0.0, 10.0)
    assert r.gaps == 1
    assert r.covered_s == pytest.approx(6.0) and r.coverage == pytest.approx(0.6)
    assert r.energy_j == pytest.approx(3 * 100.0 + 3 * 50.0)
    # one missed poll (2 s) is bridged with the default gap factor
    keep2 = np.ones(11, dtype=bool)
    keep2[5] = False
    r2 = energy_from_power(T[keep2], np.full(10, 10.0), 0.0, 10.0)
    assert r2.gaps == 0 and r2.energy_j == pytest.approx(100.0)


def test_missing_values_are_absent_not_zero() -> None:
    p = np.full(11, 100.0)
    p[5] = np.nan
    r = energy_from_power(T, p, 0.0, 10.0)
    assert r.energy_j == pytest.approx(1000.0) and r.samples == 10


def test_counter_wrap_reset_and_spike() -> None:
    true = np.cumsum(np.full(11, 100.0)) - 100.0  # 0, 100, ..., 1000 J
    wrapped = true % 350.0
    r = energy_from_counter(T, wrapped, 0.0, 10.0, wrap_j=350.0)
    assert r.method is EnergyMethod.COUNTER
    assert r.energy_j == pytest.approx(1000.0) and r.wraps == 2 and r.resets == 0
    # the same drops without a known range are resets: those intervals are left out
    r2 = energy_from_counter(T, wrapped, 0.0, 10.0)
    assert r2.resets == 2 and r2.energy_j == pytest.approx(800.0)
    assert r2.coverage == pytest.approx(0.8)
    # a reset to 0 in the middle is not a wrap even when the range is known
    reset = np.concatenate((true[:6], true[6:] - true[6] + 5.0))
    r3 = energy_from_counter(T, reset, 0.0, 10.0, wrap_j=1e9)
    assert r3.resets == 1 and r3.wraps == 0
    assert r3.energy_j == pytest.approx(900.0)
    # a glitch that implies an absurd power is left out, not counted as energy
    spiky = true.copy()
    spiky[7:] += 1e7
    r4 = energy_from_counter(T, spiky, 0.0, 10.0)
    assert r4.resets == 1 and r4.energy_j == pytest.approx(900.0)


def test_counter_partial_window_is_pro_rata() -> None:
    true = np.cumsum(np.full(11, 100.0)) - 100.0
    assert energy_from_counter(T, true, 0.5, 2.25).energy_j == pytest.approx(175.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 700.0), min_size=3, max_size=60),
    st.floats(1000.0, 1e6),
    st.floats(0.0, 1.0),
)
def test_counter_recovers_truth_through_wraps(power: list[float], wrap_j: float, lo: float) -> None:
    # each interval's energy stays below the wrap range, so every wrap is unambiguous
    p = np.minimum(np.asarray(power), wrap_j * 0.9)
    t = np.arange(p.size + 1, dtype=np.float64)
    true = np.concatenate(([0.0], np.cumsum(p)))
    counter = (true + lo * wrap_j) % wrap_j
    r = energy_from_counter(t, counter, 0.0, float(p.size), wrap_j=wrap_j)
    if r.resets == 0:
        assert r.energy_j == pytest.approx(true[-1], rel=1e-9, abs=1e-6)
    else:  # a delta judged implausible (spike rule) is left out, never invented
        assert r.energy_j <= true[-1] + 1e-6


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1000.0), min_size=2, max_size=50),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_windows_add_up(power: list[float], a: float, b: float) -> None:
    p = np.asarray(power)
    t = np.arange(p.size, dtype=np.float64)
    span = float(p.size - 1)
    cut = min(a, b) * span
    curve = power_curve(t, p)
    whole = curve.window(0.0, span).energy_j
    parts = curve.window(0.0, cut).energy_j + curve.window(cut, span).energy_j
    assert parts == pytest.approx(whole, rel=1e-9, abs=1e-9)


def test_matrix_matches_rows_including_missing_samples() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(200.0) + rng.normal(0, 0.01, 200)
    t[120:] += 10.0  # one gap for everybody
    power = rng.uniform(40, 150, (5, 200))
    power[2, 50] = np.nan
    m = power_energy_matrix(t, power)
    for i in range(5):
        ref = energy_from_power(t, power[i], float(t[0]), float(t[-1]))
        assert m.energy_j[i] == pytest.approx(ref.energy_j, rel=1e-12)
        assert m.covered_s[i] == pytest.approx(ref.covered_s)
        assert m.gaps[i] == 1
    assert np.all(m.coverage < 1.0)
    m32 = power_energy_matrix(t, power.astype(np.float32))
    assert np.allclose(m32.energy_j[[0, 1, 3, 4]], m.energy_j[[0, 1, 3, 4]], rtol=1e-5)
    with pytest.raises(ValueError, match="devices"):
        power_energy_matrix(t, power[:, :10])


def test_counter_curve_windows_vectorised() -> None:
    true = np.cumsum(np.full(11, 10.0)) - 10.0
    c = counter_curve(T, true)
    e, cov, *_ = c.windows(np.array([0.0, 5.0]), np.array([5.0, 10.0]))
    assert e.tolist() == pytest.approx([50.0, 50.0]) and cov.tolist() == pytest.approx([5.0, 5.0])


def test_work_counter_reset_aware() -> None:
    c = np.array([0, 10, 20, 30, 5, 15, 25, 35, 45, 55, 65], dtype=np.float64)
    r = counter_increase(WorkUnit.TOKENS, T, c, 0.0, 10.0)
    assert r.work == pytest.approx(30 + 5 + 60) and r.resets == 1
    assert r.rate_per_s == pytest.approx(9.5)
    assert WorkUnit.TOKENS.field == "tokens_total"
    part = counter_increase(WorkUnit.TOKENS, T, c, 0.5, 2.0)
    assert part.work == pytest.approx(15.0) and part.resets == 0
    inc, resets = counter_increase_matrix(np.vstack([c, np.arange(11.0) * 2]))
    assert inc.tolist() == [95.0, 20.0] and resets.tolist() == [1, 0]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=40),
    st.lists(st.integers(-3, 45), min_size=1, max_size=10),
)
def test_prefix_at_equals_plain_sums(xs: list[float], js: list[int]) -> None:
    x = np.asarray(xs, dtype=np.float64)
    j = np.asarray(js, dtype=np.intp)
    want = [x[: min(max(k, 0), x.size)].sum() for k in js]
    assert prefix_at(x, j) == pytest.approx(want, rel=1e-9, abs=1e-6)
