"""Seeded, deterministic workloads: what each service offers its devices over time.

A workload answers :meth:`Workload.offer` for consecutive intervals ``[t0, t1)`` of emulator time: how
many work units (frames, images, generated tokens) and requests arrive. Given the same seed and the
same sequence of intervals it returns the same numbers. The K-Cloud phase-1 services
(docs/targets.md §2a: traffic control, construction-site hazard detection, food recognition, LLM
chatbot) are modelled from their public descriptions; their rates, day/night shapes and request sizes
are **assumptions** (no per-service throughput was published, docs/targets.md §0 item 3), chosen to
load a handful of NPUs without saturating them at the average.

Test profiles (``idle``, ``steady``, ``ramp``, ``step``, ``bursty``) offer a share of the devices'
capacity instead of an absolute rate.

Time of day: ``t_s`` is seconds since the node started; the clock starts at ``start_hour`` and a day
lasts ``day_s`` emulator seconds (86 400 by default; shorten it for long-horizon tests, or use
``--speed``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = [
    "PROFILES",
    "SERVICES",
    "WORKLOADS",
    "Offer",
    "Workload",
    "WorkloadParams",
    "make_workload",
    "work_class_of",
]

#: Service → work class (see emulators/catalogue.yaml).
SERVICES: dict[str, str] = {
    "traffic": "detection",
    "construction": "detection",
    "food": "classification",
    "chatbot": "llm",
}
PROFILES = ("idle", "steady", "ramp", "step", "bursty")
WORKLOADS = (*SERVICES, *PROFILES)


@dataclass(frozen=True, slots=True)
class Offer:
    """What arrives during one interval."""

    units: float  # work units (frames, images, generated tokens); profiles: capacity share × dt
    requests: int  # requests (frames, images, chat requests) that arrived
    prompt_tokens: int = 0  # chatbot: prompt tokens of those requests
    share: bool = False  # True: ``units`` is a share of capacity-seconds (test profiles)


@dataclass(frozen=True, slots=True)
class WorkloadParams:
    """Tunables of the services (all assumptions; defaults used by ``kwatt emulate``)."""

    start_hour: float = 9.0
    day_s: float = 86_400.0
    # traffic control: CCTV streams analysed at fps, motion-gated (less at night)
    traffic_streams: int = 64
    traffic_fps: float = 15.0
    traffic_night_share: float = 0.35
    # food recognition: image requests with breakfast/lunch/dinner peaks
    food_base_rps: float = 20.0
    food_peak_rps: float = 400.0
    food_peaks_h: tuple[float, ...] = (7.5, 12.25, 18.5)
    food_peak_width_h: float = 0.75
    # construction-site hazard detection: cameras in working hours, bursts after an alarm
    construction_cameras: int = 48
    construction_fps: float = 10.0
    construction_hours: tuple[float, float] = (7.0, 18.0)
    construction_burst_every_s: float = 300.0
    construction_burst_s: float = 30.0
    construction_burst_factor: float = 3.0
    # chatbot: Poisson arrivals; prompt tokens log-normal, generated tokens exponential (capped)
    chatbot_rps: float = 12.0
    chatbot_night_share: float = 0.3
    chatbot_prompt_tokens_median: float = 256.0
    chatbot_generated_mean: float = 200.0
    chatbot_max_tokens: int = 1024
    #: Decode speed of one sequence, tokens/s (assumed: ~20 ms per output token under continuous
    #: batching). A request's generated tokens are offered over its decode time, not all at arrival.
    chatbot_decode_tokens_per_s: float = 50.0
    # test profiles: share of capacity
    steady_level: float = 0.7
    ramp_period_s: float = 120.0
    step_at_s: float = 30.0
    step_levels: tuple[float, float] = (0.2, 0.9)
    bursty_on_s: float = 5.0
    bursty_off_s: float = 8.0
    bursty_levels: tuple[float, float] = (0.05, 0.95)


def work_class_of(workload: str) -> str | None:
    """The work class of a service (None for a test profile, which fits any device)."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    return SERVICES.get(workload)


@dataclass(slots=True)
class Workload:
    """One service's (or profile's) arrivals; call :meth:`offer` with consecutive intervals."""

    kind: str
    seed: int
    params: WorkloadParams = field(default_factory=WorkloadParams)
    #: Multiplies the services' arrival rates (a node sizes it to its devices' capacity).
    scale: float = 1.0
    _rng: random.Random = field(init=False)
    _burst_until_s: float = field(init=False, default=-1.0)
    _next_burst_s: float = field(init=False, default=0.0)
    _on: bool = field(init=False, default=False)
    _switch_s: float = field(init=False, default=0.0)
    #: Chatbot requests still decoding: (start s, end s, generated tokens), offered evenly in between.
    _decoding: list[tuple[float, float, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        work_class_of(self.kind)
        self._rng = random.Random(f"kwatt-workload:{self.kind}:{self.seed}")
        p = self.params
        self._next_burst_s = self._rng.expovariate(1.0 / p.construction_burst_every_s)
        self._switch_s = self._rng.expovariate(1.0 / p.bursty_off_s)

    @property
    def work_class(self) -> str | None:
        return SERVICES.get(self.kind)

    def hour(self, t_s: float) -> float:
        """Hour of day (0–24) at emulator time ``t_s``."""
        p = self.params
        return (p.start_hour + 24.0 * t_s / p.day_s) % 24.0

    def daylight(self, t_s: float) -> float:
        """0 at 03:00, 1 at 15:00, cosine in between."""
        return 0.5 - 0.5 * math.cos(2 * math.pi * (self.hour(t_s) - 3.0) / 24.0)

    def rate(self, t_s: float) -> float:
        """Mean arrival rate at ``t_s``: requests/s (services) or capacity share (profiles)."""
        p, k = self.params, self.kind
        if k == "traffic":
            active = p.traffic_night_share + (1 - p.traffic_night_share) * self.daylight(t_s)
            return p.traffic_streams * p.traffic_fps * active
        if k == "food":
            h = self.hour(t_s)
            peaks = sum(
                math.exp(-0.5 * (_hour_gap(h, c) / p.food_peak_width_h) ** 2)
                for c in p.food_peaks_h
            )
            return p.food_base_rps + p.food_peak_rps * peaks
        if k == "construction":
            lo, hi = p.construction_hours
            if not lo <= self.hour(t_s) < hi:
                return 0.0
            factor = p.construction_burst_factor if t_s < self._burst_until_s else 1.0
            return p.construction_cameras * p.construction_fps * factor
        if k == "chatbot":
            return p.chatbot_rps * (
                p.chatbot_night_share + (1 - p.chatbot_night_share) * self.daylight(t_s)
            )
        if k == "idle":
            return 0.0
        if k == "steady":
            return p.steady_level
        if k == "ramp":
            return (t_s % p.ramp_period_s) / p.ramp_period_s
        if k == "step":
            return p.step_levels[1] if t_s >= p.step_at_s else p.step_levels[0]
        # bursty
        return p.bursty_levels[1] if self._on else p.bursty_levels[0]

    def units_per_request(self) -> float:
        """Mean work units per request (generated tokens for the chatbot, else one frame/image)."""
        if self.kind != "chatbot":
            return 1.0
        p = self.params
        m = p.chatbot_generated_mean  # mean of ceil(Exp(m)) capped at max_tokens, ≈ m(1−e^(−cap/m))
        return m * (1 - math.exp(-p.chatbot_max_tokens / m)) + 0.5

    def peak_units_per_s(self, samples: int = 288) -> float:
        """The highest unscaled mean offered load over one day, units/s (bursts excluded)."""
        day = self.params.day_s
        peak = max(self.rate(day * k / samples) for k in range(samples))
        return peak * self.units_per_request()

    def offer(self, t0_s: float, t1_s: float) -> Offer:
        """Arrivals in ``[t0_s, t1_s)``; intervals must be consecutive and non-decreasing."""
        dt = t1_s - t0_s
        if dt < 0:
            raise ValueError(f"interval goes backwards: {t0_s} > {t1_s}")
        if dt == 0:
            return Offer(0.0, 0, share=self.work_class is None)
        p, k, mid = self.params, self.kind, (t0_s + t1_s) / 2
        if k == "construction":
            while self._next_burst_s < mid:
                self._burst_until_s = self._next_burst_s + p.construction_burst_s
                self._next_burst_s += self._rng.expovariate(1.0 / p.construction_burst_every_s)
        if k == "bursty":
            while self._switch_s < mid:
                self._on = not self._on
                mean = p.bursty_on_s if self._on else p.bursty_off_s
                self._switch_s += self._rng.expovariate(1.0 / mean)
        lam = self.rate(mid)
        if self.work_class is None:  # a profile: a share of capacity, no requests
            return Offer(lam * dt, 0, share=True)
        n = _poisson(self._rng, lam * self.scale * dt)
        if k != "chatbot":
            return Offer(float(n), n)  # one frame / image per request
        prompt = 0
        sigma = 0.6
        mu = math.log(p.chatbot_prompt_tokens_median)
        for i in range(n):
            generated = min(
                p.chatbot_max_tokens,
                max(1, math.ceil(self._rng.expovariate(1.0 / p.chatbot_generated_mean))),
            )
            prompt += max(1, round(self._rng.lognormvariate(mu, sigma)))
            # arrivals spread evenly over the interval; each decodes at the sequence's speed
            start = t0_s + dt * (i + 0.5) / n
            self._decoding.append(
                (start, start + generated / p.chatbot_decode_tokens_per_s, generated)
            )
        return Offer(self._decoded(t0_s, t1_s), n, prompt)

    def _decoded(self, t0_s: float, t1_s: float) -> float:
        """Tokens the decoding requests produce in ``[t0_s, t1_s)``; finished ones are dropped."""
        tokens = 0.0
        still: list[tuple[float, float, int]] = []
        for start, end, generated in self._decoding:
            if end <= t1_s:  # the rest of it, exactly (the sum over intervals is the whole request)
                done_before = max(0.0, min(t0_s, end) - start) / (end - start)
                tokens += generated * (1.0 - done_before)
            else:
                overlap = max(0.0, t1_s - max(t0_s, start))
                tokens += generated * overlap / (end - start)
                still.append((start, end, generated))
        self._decoding = still
        return tokens


def make_workload(kind: str, seed: int, params: WorkloadParams | None = None) -> Workload:
    return Workload(kind, seed, params or WorkloadParams())


def _hour_gap(h: float, centre: float) -> float:
    d = abs(h - centre) % 24.0
    return min(d, 24.0 - d)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal above 50)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k
