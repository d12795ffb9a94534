"""Work over a window from the serving counters (DESIGN §3: ``requests_total``, ``inferences_total``,
``tokens_total``), reset-aware.

A counter that goes down was reset (process restart): the interval contributes the value after the
reset (the work counted since the restart), as Prometheus' ``increase()`` does. Work counters are
bridged across sampling gaps (the server kept counting while the poller was away), so work is the
total over the window; :class:`WorkResult` still reports the gaps. Intervals straddling a window edge
contribute pro rata.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kwatt.analytics.energy import DEFAULT_GAP_FACTOR, EnergyCurve, EnergyMethod, median_interval

__all__ = [
    "WORK_FIELDS",
    "WorkCurve",
    "WorkResult",
    "WorkUnit",
    "counter_increase",
    "counter_increase_matrix",
]

F64 = npt.NDArray[np.float64]


class WorkUnit(enum.StrEnum):
    """A unit of work and the counter field that counts it."""

    TOKENS = "tokens"
    INFERENCES = "inferences"
    REQUESTS = "requests"

    @property
    def field(self) -> str:
        return f"{self.value}_total"


#: Counter fields in order of preference for a perf-per-watt figure (tokens for LLM serving).
WORK_FIELDS = tuple(u.field for u in WorkUnit)


@dataclass(frozen=True, slots=True)
class WorkResult:
    """Increase of a work counter over a window."""

    unit: WorkUnit
    work: float
    window_s: float
    first_s: float
    last_s: float
    resets: int = 0
    gaps: int = 0
    samples: int = 0

    @property
    def rate_per_s(self) -> float:
        return self.work / self.window_s if self.window_s > 0 else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class WorkCurve:
    """Reset-corrected work per sampling interval of one counter series (see
    :class:`kwatt.analytics.energy.EnergyCurve`: windows are pairwise sums plus pro-rata edges)."""

    unit: WorkUnit
    curve: EnergyCurve  # the same interval arithmetic; its "energy" is work

    @property
    def t_s(self) -> F64:
        return self.curve.t_s

    @classmethod
    def build(
        cls, unit: WorkUnit, t_s: F64, counter: F64, *, gap_factor: float = DEFAULT_GAP_FACTOR
    ) -> WorkCurve:
        ok = np.isfinite(counter) & np.isfinite(t_s)
        t, c = (t_s, counter) if ok.all() else (t_s[ok], counter[ok])
        if t.size < 2:
            return cls(unit, EnergyCurve.empty(EnergyMethod.NONE))
        d = np.diff(c)
        resets = d < 0
        if resets.any():
            d = np.where(resets, c[1:], d)
        dt = np.diff(t)
        median = median_interval(dt)
        gaps = np.ones(dt.shape, dtype=bool) if math.isnan(median) else dt > gap_factor * median
        flags = (None if not m.any() else m.astype(np.float64) for m in (gaps, resets))
        g, r = flags
        return cls(unit, EnergyCurve(EnergyMethod.NONE, t, dt, d, None, g, r, None))

    def windows(self, start_s: F64, end_s: F64) -> tuple[F64, F64, F64]:
        """Per window: work, resets, gaps."""
        w, _, g, r, _ = self.curve.windows(start_s, end_s)
        return w, r, g

    def window(self, start_s: float, end_s: float) -> WorkResult:
        w, r, g = self.windows(np.array([start_s]), np.array([end_s]))
        t = self.t_s
        lo = int(np.searchsorted(t, start_s, side="left"))
        hi = int(np.searchsorted(t, end_s, side="right"))
        return WorkResult(
            self.unit,
            float(w[0]),
            float(max(end_s - start_s, 0.0)),
            float(t[lo]) if hi > lo else float("nan"),
            float(t[hi - 1]) if hi > lo else float("nan"),
            resets=int(r[0]),
            gaps=int(g[0]),
            samples=max(hi - lo, 0),
        )


def counter_increase(
    unit: WorkUnit,
    t_s: F64,
    counter: F64,
    start_s: float,
    end_s: float,
    *,
    gap_factor: float = DEFAULT_GAP_FACTOR,
) -> WorkResult:
    """Reset-aware increase of ``counter`` over ``[start_s, end_s]``."""
    return WorkCurve.build(unit, t_s, counter, gap_factor=gap_factor).window(start_s, end_s)


def counter_increase_matrix(
    counter: npt.NDArray[np.floating[npt.NBitBase]] | npt.NDArray[np.integer[npt.NBitBase]],
) -> tuple[F64, npt.NDArray[np.int64]]:
    """Reset-aware increase of every row of a ``devices × time`` counter array over its span, and
    the number of resets per row.

    Fast path: ``last - first`` for rows that never go down (one comparison pass over the array);
    rows with a reset are redone with ``np.diff`` (one vectorised call per affected row).
    """
    if counter.ndim != 2:
        raise ValueError(f"counter must be devices × time, got shape {counter.shape}")
    increase = (counter[:, -1] - counter[:, 0]).astype(np.float64)
    n_resets = np.zeros(counter.shape[0], dtype=np.int64)
    decreasing = np.any(counter[:, 1:] < counter[:, :-1], axis=1)
    for i in np.flatnonzero(decreasing):
        row = counter[i].astype(np.float64)
        d = np.diff(row)
        down = d < 0
        n_resets[i] = int(np.count_nonzero(down))
        increase[i] = float(np.sum(np.where(down, row[1:], d)))
    return increase, n_resets
