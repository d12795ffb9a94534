"""Energy over a window, from an energy counter or by integrating power (DESIGN §6).

* **Counter** (``energy_j``): the sum of the counter's deltas; a negative delta is a wrap when the
  counter's range (``wrap_j``) is known and the wrapped delta is a plausible energy for the interval,
  otherwise a reset, and that interval is left out (its energy is unknown). A delta whose implied power
  is implausible (more than ``SPIKE_FACTOR`` times the median) is left out as well.
* **Power** (``power_w``): the trapezoid rule over the samples (the rule MLPerf Power's
  ``avg_power`` approximates with 1 Hz samples: mlcommons/inference
  tools/submission/submission_checker/checks/power_check.py).

Both: an interval longer than ``gap_factor`` × the median sampling interval is a *gap* and is never
bridged; the time it spans is not covered. An interval that straddles a window edge contributes its
energy pro rata of the time inside the window. Curves (:class:`EnergyCurve`) hold the energy and the
covered time per interval, so any number of windows cost one pairwise-summed pass. Every :class:`EnergyResult` carries the method, the covered
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
    "median_interval",
    "power_curve",
    "power_energy_matrix",
    "prefix_at",
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


def prefix_at(x: F64, j: npt.NDArray[np.intp]) -> F64:
    """``x[:j].sum()`` for every ``j`` (clipped to ``0..x.size``) with one pairwise-summed pass
    (``np.add.reduceat``), no running sum over the whole array."""
    n = x.size
    jj = np.clip(j, 0, n)
    if n == 0:
        return np.zeros(jj.shape, dtype=np.float64)
    u, inv = np.unique(jj, return_inverse=True)
    starts = u[u < n]
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
    seg = np.add.reduceat(x, starts)
    pref = np.concatenate(([0.0], np.cumsum(seg)))
    return np.asarray(pref[np.searchsorted(starts, u)][inv.reshape(jj.shape)], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class EnergyCurve:
    """Energy per sampling interval of one device (gaps, resets and spikes hold 0 and are flagged),
    so any window's energy is a pairwise sum plus the pro-rata parts of the two edge intervals:
    :meth:`window`, :meth:`windows`. Within an interval the energy is spread uniformly in time.

    ``covered_s`` is ``None`` when every interval is covered (then it equals ``dt_s``); the flag
    arrays (``gaps``, ``resets``, ``wraps``: 1.0 per flagged interval) are ``None`` when none is set.
    """

    method: EnergyMethod
    t_s: F64
    dt_s: F64
    energy_j: F64
    covered_s: F64 | None
    gaps: F64 | None
    resets: F64 | None
    wraps: F64 | None

    @classmethod
    def empty(cls, method: EnergyMethod) -> EnergyCurve:
        z = np.zeros(0, dtype=np.float64)
        return cls(method, z, z, z, None, None, None, None)

    def _at(self, x: F64, per_interval: F64) -> F64:
        """Cumulative ``per_interval`` from the first sample to each time in ``x``."""
        t = self.t_s
        xc = np.clip(x, t[0], t[-1])
        j = np.clip(np.searchsorted(t, xc, side="right") - 1, 0, t.size - 2)
        dt = self.dt_s[j]
        frac = np.clip((xc - t[j]) / np.where(dt > 0, dt, 1.0), 0.0, 1.0)
        return prefix_at(per_interval, j) + per_interval[j] * frac

    def _count(self, flags: F64 | None, start_s: F64, end_s: F64) -> F64:
        """Flagged intervals overlapping each ``[start_s, end_s]``."""
        if flags is None:
            return np.zeros(start_s.shape, dtype=np.float64)
        n = self.t_s.size
        first = np.clip(np.searchsorted(self.t_s, start_s, side="right") - 1, 0, n - 1)
        stop = np.clip(np.searchsorted(self.t_s, end_s, side="left"), 0, n - 1)
        stop = np.maximum(stop, first)
        return prefix_at(flags, stop) - prefix_at(flags, first)

    def windows(self, start_s: F64, end_s: F64) -> tuple[F64, F64, F64, F64, F64]:
        """Per window ``[start_s[k], end_s[k]]``: energy (J), covered (s), gaps, resets, wraps."""
        if self.t_s.size < 2:
            z = np.zeros(start_s.shape, dtype=np.float64)
            return z, z.copy(), z.copy(), z.copy(), z.copy()
        e = self._at(end_s, self.energy_j) - self._at(start_s, self.energy_j)
        if self.covered_s is None:
            t0, t1 = self.t_s[0], self.t_s[-1]
            c = np.maximum(np.minimum(end_s, t1) - np.maximum(start_s, t0), 0.0)
        else:
            c = self._at(end_s, self.covered_s) - self._at(start_s, self.covered_s)
        return (
            e,
            c,
            self._count(self.gaps, start_s, end_s),
            self._count(self.resets, start_s, end_s),
            self._count(self.wraps, start_s, end_s),
        )

    def window(self, start_s: float, end_s: float) -> EnergyResult:
        a = np.array([start_s], dtype=np.float64)
        b = np.array([end_s], dtype=np.float64)
        e, c, g, r, w = self.windows(a, b)
        lo = int(np.searchsorted(self.t_s, start_s, side="left"))
        hi = int(np.searchsorted(self.t_s, end_s, side="right"))
        return EnergyResult(
            self.method,
            float(e[0]),
            float(max(end_s - start_s, 0.0)),
            float(c[0]),
            gaps=int(g[0]),
            resets=int(r[0]),
            wraps=int(w[0]),
            samples=max(hi - lo, 0),
        )


def _flags(mask: npt.NDArray[np.bool_]) -> F64 | None:
    return mask.astype(np.float64) if mask.any() else None


def power_curve(t_s: F64, power_w: F64, *, gap_factor: float = DEFAULT_GAP_FACTOR) -> EnergyCurve:
    """Trapezoid energy curve of ``power_w`` samples; non-finite samples are dropped (absent)."""
    t, p = _finite(t_s, power_w)
    if t.size < 2:
        return EnergyCurve.empty(EnergyMethod.POWER_TRAPEZOID)
    dt = np.diff(t)
    gap = _gap_mask(dt, gap_factor)
    any_gap = bool(gap.any())
    e = p[1:] + p[:-1]
    e *= dt
    e *= 0.5
    covered = None
    if any_gap:
        e[gap] = 0.0
        covered = np.where(gap, 0.0, dt)
    return EnergyCurve(EnergyMethod.POWER_TRAPEZOID, t, dt, e, covered, _flags(gap), None, None)


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
    unused = gap | resets
    any_unused = bool(unused.any())
    return EnergyCurve(
        EnergyMethod.COUNTER,
        t,
        dt,
        np.where(unused, 0.0, d) if any_unused else d,
        np.where(unused, 0.0, dt) if any_unused else None,
        _flags(gap),
        _flags(resets),
        _flags(wraps),
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
