"""Workloads: deterministic for a seed, and shaped as the services are described."""

from __future__ import annotations

import pytest

from kwatt.emulators.workloads import (
    PROFILES,
    SERVICES,
    WORKLOADS,
    WorkloadParams,
    make_workload,
    work_class_of,
)

HOUR = 3600.0


def offers(
    kind: str, seed: int, start_s: float, steps: int, dt: float
) -> list[tuple[float, int, int]]:
    wl = make_workload(kind, seed, WorkloadParams(start_hour=0.0))
    t = 0.0
    if start_s > 0:
        wl.offer(0.0, start_s)
        t = start_s
    out = []
    for _ in range(steps):
        o = wl.offer(t, t + dt)
        out.append((o.units, o.requests, o.prompt_tokens))
        t += dt
    return out


@pytest.mark.parametrize("kind", WORKLOADS)
def test_same_seed_same_arrivals_other_seed_other(kind: str) -> None:
    a = offers(kind, 7, 0.0, 50, 0.5)
    assert a == offers(kind, 7, 0.0, 50, 0.5)
    if kind in SERVICES and kind != "construction":
        assert a != offers(kind, 8, 0.0, 50, 0.5)


def test_work_classes() -> None:
    assert work_class_of("chatbot") == "llm"
    assert work_class_of("food") == "classification"
    assert work_class_of("traffic") == work_class_of("construction") == "detection"
    assert all(work_class_of(p) is None for p in PROFILES)
    with pytest.raises(ValueError, match="expected one of"):
        work_class_of("mining")


def mean_rate(kind: str, hour: float, seconds: float = 600.0) -> float:
    got = offers(kind, 1, hour * HOUR, int(seconds), 1.0)
    return sum(r for _, r, _ in got) / seconds


def test_traffic_follows_day_and_night() -> None:
    assert mean_rate("traffic", 14.0) > 2.0 * mean_rate("traffic", 3.0)


def test_food_peaks_at_meal_times() -> None:
    lunch, afternoon = mean_rate("food", 12.2), mean_rate("food", 15.5)
    assert lunch > 5 * afternoon
    assert mean_rate("food", 18.5) > 5 * afternoon


def test_construction_idle_at_night_with_bursts_by_day() -> None:
    assert mean_rate("construction", 2.0) == 0.0
    day = offers("construction", 3, 9 * HOUR, 3600, 1.0)
    rates = [r for _, r, _ in day]
    base = WorkloadParams().construction_cameras * WorkloadParams().construction_fps
    assert max(rates) > 2.5 * base  # a burst (×3) happened within the hour
    assert min(rates) < 1.2 * base


def test_chatbot_poisson_arrivals_with_tokens() -> None:
    got = offers("chatbot", 5, 12 * HOUR, 2000, 1.0)
    reqs = [r for _, r, _ in got]
    mean = sum(reqs) / len(reqs)
    var = sum((r - mean) ** 2 for r in reqs) / len(reqs)
    assert var == pytest.approx(mean, rel=0.25)  # Poisson: variance = mean
    generated = sum(u for u, _, _ in got) / sum(reqs)
    prompt = sum(p for _, _, p in got) / sum(reqs)
    assert 150 < generated < 250
    assert 200 < prompt < 400


def test_profiles_offer_capacity_shares() -> None:
    p = WorkloadParams()
    steady = make_workload("steady", 0).offer(0.0, 2.0)
    assert steady.share and steady.units == pytest.approx(2 * p.steady_level)
    assert make_workload("idle", 0).offer(0.0, 1.0).units == 0.0
    step = make_workload("step", 0)
    assert step.offer(0.0, 1.0).units == pytest.approx(p.step_levels[0])
    step.offer(1.0, 40.0)
    assert step.offer(40.0, 41.0).units == pytest.approx(p.step_levels[1])
    ramp = make_workload("ramp", 0)
    assert ramp.offer(59.0, 61.0).units == pytest.approx(2 * 0.5)
    bursty = [make_workload("bursty", 2).offer(t, t + 1.0).units for t in range(0, 200)]
    assert {round(x, 2) for x in bursty} == set(p.bursty_levels)


def test_peak_sizing_scale_multiplies_arrivals() -> None:
    wl = make_workload("food", 1, WorkloadParams(start_hour=12.0))
    assert wl.peak_units_per_s() == pytest.approx(wl.rate(0.25 * 3600), rel=0.01)  # 12:15 lunch
    base = sum(wl.offer(t, t + 1.0).requests for t in range(100))
    scaled = make_workload("food", 1, WorkloadParams(start_hour=12.0))
    scaled.scale = 3.0
    assert sum(scaled.offer(t, t + 1.0).requests for t in range(100)) > 2.5 * base


def test_chatbot_tokens_are_offered_over_each_requests_decode_time() -> None:
    """A request's generated tokens are offered at the sequence's decode speed, not all in the step
    it arrives, and every token is offered exactly once."""
    slow = make_workload("chatbot", 3, WorkloadParams(start_hour=12.0))
    # the same draws, decoding (nearly) instantly: all of a request's tokens in its arrival step
    fast = make_workload(
        "chatbot", 3, WorkloadParams(start_hour=12.0, chatbot_decode_tokens_per_s=1e12)
    )
    spread = [slow.offer(k * 0.2, (k + 1) * 0.2) for k in range(600)]
    burst = [fast.offer(k * 0.2, (k + 1) * 0.2) for k in range(600)]
    assert [o.requests for o in spread] == [o.requests for o in burst] and sum(
        o.requests for o in spread
    ) > 1000
    # what is still decoding at 120 s, to the end (no new arrivals: not through offer())
    tail = slow._decoded(120.0, 1e6)
    assert 0 < tail < 0.2 * sum(o.units for o in spread)
    assert sum(o.units for o in spread) + tail == pytest.approx(
        sum(o.units for o in burst), rel=1e-9
    )
    assert fast._decoded(120.0, 1e6) == pytest.approx(0.0, abs=1e-3)

    def rel_sd(offers: list[float]) -> float:
        mean = sum(offers) / len(offers)
        return float((sum((u - mean) ** 2 for u in offers) / len(offers)) ** 0.5 / mean)

    # after the first requests' decode time, per-step tokens are much smoother than in bursts
    assert rel_sd([o.units for o in spread[100:]]) < 0.5 * rel_sd([o.units for o in burst[100:]])
