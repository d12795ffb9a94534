"""Loading telemetry into numpy: one :class:`Series` (sorted ``t_ns`` and ``values`` arrays) per
measurement + tag set + field, from a line-protocol file or from InfluxDB over InfluxQL ``/query``.

InfluxDB ranges are fetched in time slices (``chunk_s`` each, InfluxQL ``chunked=true`` within a
slice), so a long range never becomes one huge response; ``progress`` is called after each slice.
Line-protocol files are parsed with :func:`kwatt.wire.lineproto.parse_line` (the wire's own validator); a
bad line raises :class:`LoadError` naming the file, the line number and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kwatt.wire.influx import InfluxError, InfluxQL
from kwatt.wire.lineproto import LineProtocolError, parse_line
from kwatt.wire.settings import InfluxConfig

__all__ = [
    "MEASUREMENTS_LOADED",
    "LoadError",
    "Series",
    "SeriesKey",
    "SeriesSet",
    "from_points",
    "load_influx",
    "load_lp_file",
    "parse_time",
]

#: The measurements analytics reads (DESIGN §4); ``agent`` and ``efficiency`` are not inputs.
MEASUREMENTS_LOADED = ("accel", "host", "serving")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class LoadError(ValueError):
    """Input that cannot be loaded: the message names the file (or URL), the place and the reason."""


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of one series: measurement, sorted tag pairs (site/node included), field name."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True, eq=False)
class Series:
    """One field of one tag set over time: ``t_ns`` strictly increasing, ``values`` float64."""

    key: SeriesKey
    t_ns: I64
    values: F64

    def __post_init__(self) -> None:
        if self.t_ns.shape != self.values.shape or self.t_ns.ndim != 1:
            raise ValueError(f"{self.key}: t_ns and values must be 1-D arrays of equal length")

    @property
    def t_s(self) -> F64:
        """Times in seconds (float64; ns precision is kept to ~0.1 µs for 2020s epochs)."""
        return np.divide(self.t_ns, 1e9, dtype=np.float64)

    def tag(self, key: str) -> str | None:
        return self.key.tag(key)

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass(frozen=True, slots=True)
class SeriesSet:
    """All series of one load, with where they came from."""

    series: tuple[Series, ...]
    source: str

    def select(
        self,
        measurement: str,
        field: str,
        *,
        where: Callable[[SeriesKey], bool] | None = None,
    ) -> list[Series]:
        return [
            s
            for s in self.series
            if s.key.measurement == measurement
            and s.key.field == field
            and (where is None or where(s.key))
        ]

    def filter(self, *, service: str | None = None, node: str | None = None) -> SeriesSet:
        """Keep series of ``node`` (when given) and, for ``service``, the serving/accel series of
        that service plus the accel/host series of the nodes that serve it."""
        out: Iterable[Series] = self.series
        if node is not None:
            out = [s for s in out if s.tag("node") == node]
        if service is not None:
            nodes = {
                s.tag("node")
                for s in self.series
                if s.key.measurement == "serving" and s.tag("service") == service
            }
            out = [
                s
                for s in out
                if s.tag("service") == service
                or (
                    (s.tag("service") is None and s.key.measurement != "serving")
                    and s.tag("node") in nodes
                )
            ]
        return SeriesSet(tuple(out), self.source)

    @property
    def n_samples(self) -> int:
        return sum(len(s) for s in self.series)

    def span_ns(self) -> tuple[int, int] | None:
        firsts = [int(s.t_ns[0]) for s in self.series if len(s)]
        lasts = [int(s.t_ns[-1]) for s in self.series if len(s)]
        return (min(firsts), max(lasts)) if firsts else None


class _Builder:
    """Accumulates (ts, value) pairs per key, then sorts and de-duplicates (last write wins, as in
    InfluxDB: a point is identified by measurement + tags + timestamp)."""

    def __init__(self) -> None:
        self._ts: dict[SeriesKey, list[int]] = {}
        self._vs: dict[SeriesKey, list[float]] = {}

    def add(self, key: SeriesKey, ts_ns: int, value: float) -> None:
        ts = self._ts.get(key)
        if ts is None:
            ts = self._ts[key] = []
            self._vs[key] = []
        ts.append(ts_ns)
        self._vs[key].append(value)

    def build(self, source: str) -> SeriesSet:
        out = []
        for key in sorted(self._ts, key=lambda k: (k.measurement, k.tags, k.field)):
            t = np.asarray(self._ts[key], dtype=np.int64)
            v = np.asarray(self._vs[key], dtype=np.float64)
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            if t.size > 1:
                # keep the last of equal timestamps
                keep = np.append(t[1:] != t[:-1], True)
                t, v = t[keep], v[keep]
            out.append(Series(key, t, v))
        return SeriesSet(tuple(out), source)


def from_points(
    points: Iterable[tuple[str, tuple[tuple[str, str], ...], Sequence[tuple[str, float]], int]],
    source: str,
) -> SeriesSet:
    """Series from ``(measurement, tags, fields, ts_ns)`` tuples (e.g. parsed lines)."""
    b = _Builder()
    for measurement, tags, fields, ts_ns in points:
        for name, value in fields:
            b.add(SeriesKey(measurement, tags, name), ts_ns, float(value))
    return b.build(source)


def load_lp_file(
    path: Path, *, measurements: Sequence[str] = MEASUREMENTS_LOADED, strict: bool = True
) -> SeriesSet:
    """Series from a line-protocol file (one point per line; blank and ``#`` lines are skipped).

    With ``strict`` (the default) the first bad line raises :class:`LoadError`
    ``"<file>:<line>: <what was expected>"``; otherwise bad lines are skipped.
    """
    b = _Builder()
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError as e:
        raise LoadError(f"{path}: cannot read: {e.strerror or e}") from e
    wanted = frozenset(measurements)
    with fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\n").rstrip("\r")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    p = parse_line(line)
                except LineProtocolError as e:
                    if strict:
                        key = f" (key {e.key!r})" if e.key else ""
                        raise LoadError(f"{path}:{lineno}: {e.reason}{key}") from e
                    continue
                if p.measurement not in wanted:
                    continue
                for name, value in p.fields:
                    b.add(SeriesKey(p.measurement, p.tags, name), p.ts_ns, float(value))
        except UnicodeDecodeError as e:
            raise LoadError(f"{path}:{lineno + 1}: not UTF-8 ({e.reason})") from e
    return b.build(str(path))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w)$")
_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}


def parse_time(text: str, *, now_ns: int) -> int:
    """A time for ``--since``/``--until``: ``now``, a duration ago (``15m``, ``2h``, ``1d``),
    epoch seconds, or an ISO 8601 date-time (UTC when no offset is given). Returns ns."""

    s = text.strip()
    if s == "now":
        return now_ns
    m = _DURATION.match(s)
    if m:
        return now_ns - int(float(m.group(1)) * _UNIT_NS[m.group(2)])
    try:
        return int(float(s) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise LoadError(
            f"time {text!r}: expected 'now', a duration ago like '15m'/'2h'/'1d', epoch seconds "
            "or an ISO 8601 date-time"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _slices(since_ns: int, until_ns: int, chunk_ns: int) -> Iterator[tuple[int, int]]:
    t = since_ns
    while t < until_ns:
        yield t, min(t + chunk_ns, until_ns)
        t += chunk_ns


def load_influx(
    url: str,
    database: str,
    *,
    since_ns: int,
    until_ns: int,
    measurements: Sequence[str] = MEASUREMENTS_LOADED,
    chunk_s: float = 3600.0,
    progress: Callable[[int, int, int], None] | None = None,
    where: str = "",
) -> SeriesSet:
    """Series of ``measurements`` in ``[since_ns, until_ns)`` from InfluxDB over InfluxQL.

    The range is fetched in slices of ``chunk_s``; ``progress(done_slices, total_slices, points)``
    is called after each. ``where`` is an extra InfluxQL condition (already quoted).
    """

    if until_ns <= since_ns:
        raise LoadError(f"{url}: empty time range (until {until_ns} <= since {since_ns})")
    client = InfluxQL(InfluxConfig(url=url, database=database))
    b = _Builder()
    chunk_ns = max(int(chunk_s * 1e9), 1)
    slices = list(_slices(since_ns, until_ns, chunk_ns))
    points = 0
    extra = f" AND ({where})" if where else ""
    try:
        for i, (lo, hi) in enumerate(slices, start=1):
            for m in measurements:
                q = f'SELECT * FROM "{m}" WHERE time >= {lo} AND time < {hi}{extra} GROUP BY *'
                for s in client.query(q):
                    tags = tuple(sorted((k, v) for k, v in s.tags.items() if v))
                    cols = s.columns
                    if not cols or cols[0] != "time":
                        raise LoadError(f"{url}: {m}: expected 'time' as the first column")
                    for row in s.values:
                        ts = int(row[0])
                        for name, value in zip(cols[1:], row[1:], strict=True):
                            if isinstance(value, int | float) and not isinstance(value, bool):
                                b.add(SeriesKey(s.name, tags, name), ts, float(value))
                                points += 1
            if progress is not None:
                progress(i, len(slices), points)
    except InfluxError as e:
        raise LoadError(f"{url} database {database!r}: {e}") from e
    finally:
        client.close()
    return b.build(f"{url}/{database}")
