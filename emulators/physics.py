"""Device physics: offered load → utilization → clock, power, temperature, energy, counters, latency.

One :class:`DevicePhysics` per visible device, built from its catalogue :class:`~kwatt.emulators.catalogue.
ModelSpec`. Over one step of length ``dt`` everything is constant (utilization, clock, power), so the
true energy is integrated exactly: ``energy_j += power_w * dt``. The model (figures from the
catalogue; the shapes are modelling choices, documented in docs/emulators.md):

- capacity(clock) = catalogue throughput of the work class × clock / clock_max;
- utilization = served / (capacity × dt); offered work beyond capacity waits in a backlog (bounded,
  the excess is dropped and counted) and is served in later steps;
- power = idle + (TDP − idle) × util × (clock / clock_max)² (dynamic power ∝ f·V², V ∝ f above the
  floor) + Gaussian noise (0.4 % of TDP, seeded);
- governor: ``performance`` runs at clock_max, ``powersave`` at clock_min (furiosa-smi governor
  profiles "statically highest/lowest", docs/device-interfaces.md §1.1);
- throttling: at or above ``thermal_throttle_c`` the clock drops to the midpoint of the range
  (``throttle_thermal``); when power would exceed the power limit the clock is lowered until it does
  not (``throttle_power``), never below clock_min (furiosa ``APP_POWER_CAP``, NVML ``SwPowerCap``);
- temperature: first-order lag to ambient + R × power, with R set so that TDP settles at the
  catalogue's ``temp_full_load_c`` (25 °C ambient), exact for a constant power over the step;
- latency: an M/M/c queue per device with c = cores and per-server rate capacity / c; p50 and p99 of
  the response time from the Erlang-C waiting-time distribution; above saturation the backlog's
  drain time is added.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from dataclasses import dataclass

from kwatt.emulators.catalogue import ModelSpec
from kwatt.emulators.state import DeviceState

__all__ = [
    "REFERENCE_AMBIENT_C",
    "THERMAL_TAU_S",
    "DeviceIdentity",
    "DevicePhysics",
    "Latency",
    "StepResult",
    "mmc_latency",
]

#: Ambient temperature at which the catalogue's ``temp_full_load_c`` is reached at TDP (assumed).
REFERENCE_AMBIENT_C = 25.0
#: Thermal time constant of a board, s (assumed; heatsink-class value).
THERMAL_TAU_S = 20.0
#: Power noise, share of TDP (assumed).
POWER_NOISE_SHARE = 0.004
#: Longest backlog kept, in seconds of full capacity; beyond it arrivals are dropped.
MAX_BACKLOG_S = 30.0
#: PCI vendor ids (docs/device-interfaces.md §1.0, §2.0; NVIDIA 0x10de) — used to build bus ids
#: deterministically.
#: The PIM vendors' buses (phase 2/3, assumed like their surfaces) sit in blocks no other vendor uses.
_FIRST_BUS = {
    "furiosa": 0x03,
    "rebellions": 0x51,
    "skhynix": 0x61,
    "samsung": 0x71,
    "sapeon": 0x81,
    "ibm": 0x91,
    "nvidia": 0xB1,
}


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Stable identity of one device (survives re-enumeration)."""

    serial: str
    uuid: str
    bus_id: str
    card: int

    @classmethod
    def derive(
        cls, spec: ModelSpec, node: str, seed: int, ordinal: int, card: int
    ) -> DeviceIdentity:
        """``ordinal`` counts this vendor's devices on the node (bus numbers follow it)."""
        h = hashlib.sha256(f"kwatt-dev:{node}:{seed}:{spec.key}:{ordinal}".encode()).digest()
        u = uuid.UUID(bytes=h[:16], version=4)
        num = int.from_bytes(h[16:20], "big")
        serial = {
            "furiosa": f"{'RNGD' if spec.arch == 'rngd' else 'WBYB'}{num % 1_000_000:06d}",
            "rebellions": f"{num % 10**16:016d}",
            "sapeon": f"SPN{spec.arch.upper()}{num % 100_000:05d}",
            "nvidia": f"{1320000000000 + num % 10**9}",
            # assumed serial formats (nothing published): vendor prefix + model + digits
            "skhynix": f"SKH{spec.arch.upper()}{num % 10**8:08d}",
            "samsung": f"SEC{spec.arch.upper().replace('-', '')}{num % 10**8:08d}",
            "ibm": f"IBM{spec.arch.upper()}{num % 10**6:06d}",
        }[spec.vendor]
        bus = _FIRST_BUS[spec.vendor] + ordinal
        return cls(serial=serial, uuid=str(u), bus_id=f"0000:{bus:02x}:00.0", card=card)


@dataclass(frozen=True, slots=True)
class Latency:
    """Response-time quantiles of one step, seconds (NaN when nothing was requested)."""

    p50_s: float
    p99_s: float
    mean_s: float


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a device did in one step (ground truth)."""

    offered_units: float
    served_units: float
    dropped_units: float
    backlog_units: float
    latency: Latency


def _erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load ``a`` = λ/μ erlangs (a < c)."""
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    term *= a / c
    last = term * c / (c - a)
    return last / (total + last)


def mmc_latency(lam: float, mu: float, c: int, backlog_s: float = 0.0) -> Latency:
    """Response-time p50/p99/mean of M/M/c (arrivals ``lam``/s, ``c`` servers of rate ``mu``).

    Waiting time: P(W > t) = C · exp(−(cμ − λ) t); the response time adds one service time (its mean;
    the quantiles use the exponential service time's quantile combined with the wait's, an upper-bound
    style approximation that is exact for c = 1 at p50 within a few percent). ``backlog_s`` (a queue
    left from saturation) is added in full.
    """
    if lam <= 0 or mu <= 0:
        return Latency(math.nan, math.nan, math.nan)
    a = lam / mu
    if a >= c * 0.999:  # saturated: the queue grows; report the backlog's drain time
        wait = backlog_s + 1.0 / mu
        return Latency(wait + math.log(2) / mu, wait + math.log(100) / mu, wait + 1.0 / mu)
    pw = _erlang_c(c, a)
    gap = c * mu - lam

    def wait_q(p: float) -> float:
        return 0.0 if pw <= 1 - p else math.log(pw / (1 - p)) / gap

    mean = backlog_s + pw / gap + 1.0 / mu
    return Latency(
        p50_s=backlog_s + wait_q(0.5) + math.log(2) / mu,
        p99_s=backlog_s + wait_q(0.99) + math.log(100) / mu,
        mean_s=mean,
    )


class DevicePhysics:
    """The physical state of one device, advanced step by step (deterministic for a seed)."""

    def __init__(
        self,
        spec: ModelSpec,
        identity: DeviceIdentity,
        *,
        index: int,
        seed: int,
        work_class: str | None,
        service: str = "",
        ambient_c: float | None = None,
    ) -> None:
        if work_class is not None and work_class not in spec.throughput:
            raise ValueError(f"{spec.key} cannot run {work_class!r} work (catalogue throughput)")
        self.spec = spec
        self.identity = identity
        self.index = index
        self.work_class = work_class
        self.service = service
        self._rng = random.Random(f"kwatt-physics:{seed}:{identity.uuid}")
        self.ambient_c = self._rng.uniform(23.0, 27.0) if ambient_c is None else ambient_c
        # nominal figures; the idle power of each unit varies ±3 % (assumed manufacturing spread)
        self.idle_w = spec.idle_w.value * self._rng.uniform(0.97, 1.03)
        self.tdp_w = spec.tdp_w.value
        self.clock_max_hz = spec.clock_max_mhz.value * 1e6
        self.clock_min_hz = spec.clock_min_mhz.value * 1e6
        self.r_k_per_w = (spec.temp_full_load_c.value - REFERENCE_AMBIENT_C) / self.tdp_w
        #: Settable at run time (faults, governor CLI, power capping).
        self.power_limit_w = spec.power_limit_w.value
        self.governor = "performance"
        self.mem_total_bytes = int(spec.memory_bytes.value)
        self.mem_used_bytes = 0
        # state
        self.util = 0.0
        self.core_util: tuple[float, ...] = (0.0,) * spec.core_count
        self.clock_hz = self.clock_max_hz
        self.power_w = self.idle_w
        self.temp_c = self.ambient_c + self.r_k_per_w * self.idle_w
        self.energy_j = 0.0
        self.cycles = 0.0
        self.busy_cycles = 0.0
        self.reset_count = 0
        self.energy_at_reset_j = 0.0
        self.throttle_thermal = False
        self.throttle_power = False
        self.backlog_units = 0.0
        self.t_s = 0.0

    # ----------------------------------------------------------------------------- model
    def capacity(self, clock_hz: float) -> float:
        """Units/s at full utilization and ``clock_hz`` (profiles: capacity share/s = clock ratio)."""
        ratio = clock_hz / self.clock_max_hz
        if self.work_class is None:
            return ratio
        return self.spec.capacity(self.work_class) * ratio

    def power_at(self, util: float, clock_hz: float) -> float:
        """Noise-free board power for ``util`` at ``clock_hz``."""
        r = clock_hz / self.clock_max_hz
        return self.idle_w + (self.tdp_w - self.idle_w) * util * r * r

    def _governed_clock(self) -> float:
        clock = self.clock_max_hz if self.governor == "performance" else self.clock_min_hz
        self.throttle_thermal = self.temp_c >= self.spec.thermal_throttle_c.value
        if self.throttle_thermal:
            clock = min(clock, (self.clock_max_hz + self.clock_min_hz) / 2)
        return clock

    def step(self, t_s: float, dt_s: float, offered_units: float, requests: int = 0) -> StepResult:
        """Advance by ``dt_s`` ending at ``t_s`` with ``offered_units`` arriving in the step."""
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        self.t_s = t_s
        if dt_s == 0:
            return StepResult(
                0.0, 0.0, 0.0, self.backlog_units, Latency(math.nan, math.nan, math.nan)
            )
        demand = self.backlog_units + offered_units
        clock = self._governed_clock()

        def util_at(f: float) -> float:
            cap = self.capacity(f) * dt_s
            return min(1.0, demand / cap) if cap > 0 else 0.0

        util = util_at(clock)
        self.throttle_power = self.power_at(util, clock) > self.power_limit_w
        if self.throttle_power:
            lo, hi = self.clock_min_hz, clock
            if self.power_at(util_at(lo), lo) > self.power_limit_w:
                clock = lo
            else:
                for _ in range(40):  # power is monotonic in the clock: bisect to the limit
                    mid = (lo + hi) / 2
                    if self.power_at(util_at(mid), mid) > self.power_limit_w:
                        hi = mid
                    else:
                        lo = mid
                clock = lo
            util = util_at(clock)
        capacity = self.capacity(clock)
        served = min(demand, capacity * dt_s)
        backlog = demand - served
        max_backlog = capacity * MAX_BACKLOG_S
        dropped = max(0.0, backlog - max_backlog)
        self.backlog_units = backlog - dropped
        noise = self._rng.gauss(0.0, POWER_NOISE_SHARE * self.tdp_w)
        self.util = util
        self.clock_hz = clock
        self.power_w = max(0.0, self.power_at(util, clock) + noise)
        self.energy_j += self.power_w * dt_s
        steady = self.ambient_c + self.r_k_per_w * self.power_w
        self.temp_c = steady + (self.temp_c - steady) * math.exp(-dt_s / THERMAL_TAU_S)
        n = self.spec.core_count
        spread = [self._rng.gauss(0.0, 0.02) for _ in range(n)] if util > 0 else [0.0] * n
        self.core_util = tuple(min(1.0, max(0.0, util + s)) if util > 0 else 0.0 for s in spread)
        self.mem_used_bytes = self._memory_in_use(util)
        cycles = clock * dt_s
        self.cycles += cycles
        self.busy_cycles += cycles * sum(self.core_util) / n
        latency = self._latency(offered_units, requests, dt_s, capacity)
        return StepResult(offered_units, served, dropped, self.backlog_units, latency)

    def _memory_in_use(self, util: float) -> int:
        """Device memory in use (assumed model): an LLM runtime reserves weights + KV cache up front
        (vLLM-style ``gpu_memory_utilization`` 0.9), a vision model holds ~1.5 GiB plus
        activations that follow the load; a test profile uses half the memory at full load."""
        total = self.mem_total_bytes
        if self.work_class == "llm":
            return int(total * 0.9)
        if self.work_class is None:
            return int(total * 0.5 * util)
        return min(total, int((1.5 + 0.5 * util) * 2**30))

    def _latency(self, units: float, requests: int, dt_s: float, capacity: float) -> Latency:
        if requests <= 0 or units <= 0 or capacity <= 0:
            return Latency(math.nan, math.nan, math.nan)
        per_request = units / requests  # units per request (1 frame, or the generated tokens)
        c = self.spec.core_count
        mu = capacity / per_request / c  # requests/s per server
        lam = requests / dt_s
        return mmc_latency(lam, mu, c, backlog_s=self.backlog_units / capacity)

    def reset_counters(self) -> None:
        """A device reset (or a counter-reset fault): cycle and energy counters restart from 0."""
        self.cycles = 0.0
        self.busy_cycles = 0.0
        self.reset_count += 1
        self.energy_at_reset_j = self.energy_j

    def state(
        self,
        *,
        present: bool = True,
        stuck: bool = False,
        na_fields: tuple[str, ...] = (),
        nan_fields: tuple[str, ...] = (),
    ) -> DeviceState:
        return DeviceState(
            index=self.index,
            model=self.spec.key,
            vendor=self.spec.vendor,
            serial=self.identity.serial,
            uuid=self.identity.uuid,
            bus_id=self.identity.bus_id,
            t_s=self.t_s,
            util_ratio=self.util,
            power_w=self.power_w,
            energy_j=self.energy_j,
            temp_c=self.temp_c,
            clock_hz=self.clock_hz,
            mem_used_bytes=self.mem_used_bytes,
            mem_total_bytes=self.mem_total_bytes,
            power_limit_w=self.power_limit_w,
            throttle_thermal=self.throttle_thermal,
            throttle_power=self.throttle_power,
            present=present,
            stuck=stuck,
            governor=self.governor,
            ambient_c=self.ambient_c,
            core_util=self.core_util,
            cycles=self.cycles,
            busy_cycles=self.busy_cycles,
            reset_count=self.reset_count,
            energy_at_reset_j=self.energy_at_reset_j,
            na_fields=na_fields,
            nan_fields=nan_fields,
            card=self.identity.card,
            service=self.service,
        )
