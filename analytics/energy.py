"""Energy over a window, from an energy counter or by integrating power (DESIGN §6).

* **Counter** (``energy_j``): the sum of the counter's deltas; a negative delta is a wrap when the
  counter's range (``wrap_j``) is known and the wrapped delta is a plausible energy for the interval,
  otherwise a reset, and that interval is left out (its energy is unknown). A delta whose implied power
  is implausible (more than ``SPIKE_FACTOR`` times the median) is left out as well.
* **Power** (``power_w``): the trapezoid rule over the samples (the rule MLPerf Power's
  ``avg_power`` approximates with 1 Hz samples: prior-art §6).

Both: an interval longer than ``gap_factor`` × the median sampling interval is a *gap* and is never
bridged; the time it spans is not covered. An interval that straddles a window edge contributes its
energy pro rata of the time inside the window. Curves (:class:`EnergyCurve`) hold cumulative energy
and covered time per sample, so any number of windows cost two interpolations each. Every :class:`EnergyResult` carries the method, the covered
time and the coverage (covered / window), the number of gaps, resets and wraps.

:func:`power_energy_matrix` and :func:`counter_increase_matrix` are the fast paths for many devices
sampled at the same instants (a ``devices × time`` array): one matrix-vector product over the
samples, no Python loop per sample.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_GAP_FACTOR",
    "SPIKE_FACTOR",
    "EnergyCurve",
    "EnergyMatrix",
    "EnergyMethod",
    "EnergyResult",
    "counter_curve",
    "energy_from_counter",
    "energy_from_power",
    "interval_overlap",
    "median_interval",
    "power_curve",
    "power_energy_matrix",
    "trapezoid_weights",
]

F64 = npt.NDArray[np.float64]

#: An interval longer than this many median intervals is a gap (not bridged): one missed 1 Hz poll
#: (a 2 s interval) is still bridged, two missed polls in a row (3 s) are not.
DEFAULT_GAP_FACTOR = 2.5
#: A counter delta implying more than this many times the median power is a glitch, not energy.
SPIKE_FACTOR = 50.0


class EnergyMethod(enum.StrEnum):
    COUNTER = "counter"
    POWER_TRAPEZOID = "power_trapezoid"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class EnergyResult:
    """Energy measured over the covered part of a window (J), with how it was obtained."""

    method: EnergyMethod
    energy_j: float
    window_s: float
    covered_s: float
    gaps: int = 0
    resets: int = 0
    wraps: int = 0
    samples: int = 0

    @property
    def coverage(self) -> float:
        """Share of the window with samples on both sides (0-1)."""
        return self.covered_s / self.window_s if self.window_s > 0 else 0.0

    @property
    def mean_power_w(self) -> float:
        """Mean power over the covered time (NaN when nothing was covered)."""
        return self.energy_j / self.covered_s if self.covered_s > 0 else math.nan

    @property
    def window_energy_j(self) -> float:
        """Energy of the whole window at the covered mean power (MLPerf: mean power × duration)."""
        return self.mean_power_w * self.window_s if self.covered_s > 0 else math.nan


def interval_overlap(t_s: F64, start_s: float, end_s: float) -> tuple[F64, F64, F64]:
    """For the intervals between consecutive samples: ``(dt, lo, hi)`` where ``[lo, hi]`` is the
    part inside ``[start_s, end_s]`` (``hi <= lo`` when none)."""
    t0, t1 = t_s[:-1], t_s[1:]
    return t1 - t0, np.maximum(t0, start_s), np.minimum(t1, end_s)


#: The median sampling interval is estimated from at most this many evenly spaced intervals.
MEDIAN_SAMPLE = 4096


def median_interval(dt: F64) -> float:
    """Median of the positive intervals (of an even subsample for long series); NaN when none."""
    step = max(dt.size // MEDIAN_SAMPLE, 1)
    sub = dt[::step]
    positive = sub[sub > 0]
    if positive.size == 0:
        positive = dt[dt > 0]
    return float(np.median(positive)) if positive.size else math.nan


def _gap_mask(dt: F64, gap_factor: float) -> npt.NDArray[np.bool_]:
    median = median_interval(dt)
    if math.isnan(median):
        return np.ones(dt.shape, dtype=bool)
    return (dt > gap_factor * median) | (dt <= 0)


def _finite(t_s: F64, values: F64) -> tuple[F64, F64]:
    ok = np.isfinite(values) & np.isfinite(t_s)
    return (t_s, values) if ok.all() else (t_s[ok], values[ok])


def _cum(x: npt.NDArray[np.float64] | npt.NDArray[np.bool_]) -> F64:
    out = np.zeros(x.size + 1, dtype=np.float64)
    np.cumsum(x, out=out[1:])
    return out


@dataclass(frozen=True, slots=True, eq=False)
class EnergyCurve:
    """Cumulative energy and covered time at every sample of one device (gaps, resets and spikes
    add nothing), so that any window's energy is two interpolations: :meth:`window`, :meth:`windows`.

    Within an interval that straddles a window edge the interval's energy is spread uniformly.
    """

    method: EnergyMethod
    t_s: F64
    energy_cum_j: F64
    covered_cum_s: F64
    gaps_cum: F64  # cumulative counts per interval, with a leading 0 (length = samples)
    resets_cum: F64
    wraps_cum: F64

    @classmethod
    def empty(cls, method: EnergyMethod) -> EnergyCurve:
        z = np.zeros(1, dtype=np.float64)
        return cls(method, np.zeros(0, dtype=np.float64), z, z, z, z, z)

    def _count(self, cum: F64, lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> F64:
        return cum[hi] - cum[lo]

    def windows(self, start_s: F64, end_s: F64) -> tuple[F64, F64, F64, F64, F64]:
        """Per window ``[start_s[k], end_s[k]]``: energy (J), covered (s), gaps, resets, wraps."""
        n = self.t_s.size
        if n < 2:
            z = np.zeros(start_s.shape, dtype=np.float64)
            return z, z.copy(), z.copy(), z.copy(), z.copy()
        e = np.interp(end_s, self.t_s, self.energy_cum_j) - np.interp(
            start_s, self.t_s, self.energy_cum_j
        )
        c = np.interp(end_s, self.t_s, self.covered_cum_s) - np.interp(
            start_s, self.t_s, self.covered_cum_s
        )
        # intervals overlapping [a, b]: indices searchsorted(a, right)-1 .. searchsorted(b, left)-1
        lo = np.clip(np.searchsorted(self.t_s, start_s, side="right") - 1, 0, n - 1)
        hi = np.clip(np.searchsorted(self.t_s, end_s, side="left"), 0, n - 1)
        hi = np.maximum(hi, lo)
        return (
            e,
            c,
            self._count(self.gaps_cum, lo, hi),
            self._count(self.resets_cum, lo, hi),
            self._count(self.wraps_cum, lo, hi),
        )

    def window(self, start_s: float, end_s: float) -> EnergyResult:
        a = np.array([start_s], dtype=np.float64)
        b = np.array([end_s], dtype=np.float64)
        e, c, g, r, w = self.windows(a, b)
        inside = int(np.count_nonzero((self.t_s >= start_s) & (self.t_s <= end_s)))
        return EnergyResult(
            self.method,
            float(e[0]),
            float(max(end_s - start_s, 0.0)),
            float(c[0]),
            gaps=int(g[0]),
            resets=int(r[0]),
            wraps=int(w[0]),
            samples=inside,
        )


def power_curve(t_s: F64, power_w: F64, *, gap_factor: float = DEFAULT_GAP_FACTOR) -> EnergyCurve:
    """Trapezoid energy curve of ``power_w`` samples; non-finite samples are dropped (absent)."""
    t, p = _finite(t_s, power_w)
    if t.size < 2:
        return EnergyCurve.empty(EnergyMethod.POWER_TRAPEZOID)
    dt = np.diff(t)
    gap = _gap_mask(dt, gap_factor)
    any_gap = bool(gap.any())
    use_dt = np.where(gap, 0.0, dt) if any_gap else dt
    zeros = np.zeros(t.size, dtype=np.float64)
    e = p[1:] + p[:-1]
    e *= use_dt
    e *= 0.5
    return EnergyCurve(
        EnergyMethod.POWER_TRAPEZOID,
        t,
        _cum(e),
        _cum(use_dt),
        _cum(gap) if any_gap else zeros,
        zeros,
        zeros,
    )


def counter_curve(
    t_s: F64,
    energy_j: F64,
    *,
    wrap_j: float | None = None,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> EnergyCurve:
    """Energy curve from an energy counter: wraps at ``wrap_j`` corrected; resets, implausible
    spikes and gaps add nothing (and are counted)."""
    t, c = _finite(t_s, energy_j)
    if t.size < 2:
        return EnergyCurve.empty(EnergyMethod.COUNTER)
    dt = np.diff(t)
    gap = _gap_mask(dt, gap_factor)
    d = np.diff(c)
    safe_dt = np.where(dt > 0, dt, 1.0)
    normal = (d >= 0) & ~gap
    median_w = median_interval(d[normal] / safe_dt[normal]) if np.any(normal) else math.nan
    plausible_w = SPIKE_FACTOR * median_w if median_w > 0 else math.inf
    wraps = np.zeros(d.shape, dtype=bool)
    if wrap_j is not None:
        wrapped = d + wrap_j
        wraps = (d < 0) & (wrapped >= 0) & (wrapped / safe_dt <= plausible_w) & ~gap
        d = np.where(wraps, wrapped, d)
    resets = ((d < 0) | (d / safe_dt > plausible_w)) & ~gap
    use = ~gap & ~resets
    return EnergyCurve(
        EnergyMethod.COUNTER,
        t,
        _cum(np.where(use, d, 0.0)),
        _cum(np.where(use, dt, 0.0)),
        _cum(gap),
        _cum(resets),
        _cum(wraps),
    )


def energy_from_power(
    t_s: F64,
    power_w: F64,
    start_s: float,
    end_s: float,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> EnergyResult:
    """Trapezoid integral of ``power_w`` over ``[start_s, end_s]``, gaps not bridged."""
    return power_curve(t_s, power_w, gap_factor=gap_factor).window(start_s, end_s)


def energy_from_counter(
    t_s: F64,
    energy_j: F64,
    start_s: float,
    end_s: float,
    *,
    wrap_j: float | None = None,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> EnergyResult:
    """Energy from counter deltas over ``[start_s, end_s]``: wraps at ``wrap_j`` corrected, resets
    and gaps left out (and counted)."""
    return counter_curve(t_s, energy_j, wrap_j=wrap_j, gap_factor=gap_factor).window(start_s, end_s)


def trapezoid_weights(
    t_s: F64, *, gap_factor: float = DEFAULT_GAP_FACTOR
) -> tuple[F64, float, int]:
    """Per-sample weights ``w`` so that ``power @ w`` is the trapezoid integral over the samples'
    span with gaps not bridged; also the covered seconds and the number of gaps."""
    dt = np.diff(t_s)
    gap = _gap_mask(dt, gap_factor)
    dt_used = np.where(gap, 0.0, dt)
    w = np.zeros(t_s.shape, dtype=np.float64)
    w[:-1] += 0.5 * dt_used
    w[1:] += 0.5 * dt_used
    return w, float(dt_used.sum()), int(np.count_nonzero(gap))


@dataclass(frozen=True, slots=True, eq=False)
class EnergyMatrix:
    """Per-device results of :func:`power_energy_matrix` (arrays of length ``devices``)."""

    energy_j: F64
    covered_s: F64
    window_s: float
    gaps: npt.NDArray[np.int64]

    @property
    def mean_power_w(self) -> F64:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.covered_s > 0, self.energy_j / self.covered_s, np.nan)

    @property
    def coverage(self) -> F64:
        return (
            self.covered_s / self.window_s if self.window_s > 0 else np.zeros_like(self.covered_s)
        )


def power_energy_matrix(
    t_s: F64,
    power_w: npt.NDArray[np.floating[npt.NBitBase]],
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> EnergyMatrix:
    """Trapezoid energy of every row of ``power_w`` (``devices × len(t_s)``, float32 or float64)
    over the span of ``t_s``, with gaps (in the shared time axis) not bridged.

    One pass: ``power_w @ w``. Rows holding non-finite values (missing samples) are redone one by
    one with :func:`energy_from_power` (one vectorised call per affected row).
    """
    if power_w.ndim != 2 or power_w.shape[1] != t_s.shape[0]:
        raise ValueError(f"power_w must be devices × {t_s.shape[0]}, got {power_w.shape}")
    window_s = float(t_s[-1] - t_s[0]) if t_s.size else 0.0
    w, covered, gaps = trapezoid_weights(t_s, gap_factor=gap_factor)
    energy = np.asarray(power_w @ w.astype(power_w.dtype), dtype=np.float64)
    covered_s = np.full(power_w.shape[0], covered)
    gap_counts = np.full(power_w.shape[0], gaps, dtype=np.int64)
    for i in np.flatnonzero(~np.isfinite(energy)):
        r = energy_from_power(
            t_s, power_w[i].astype(np.float64), float(t_s[0]), float(t_s[-1]), gap_factor=gap_factor
        )
        energy[i], covered_s[i], gap_counts[i] = r.energy_j, r.covered_s, r.gaps
    return EnergyMatrix(energy, covered_s, window_s, gap_counts)
