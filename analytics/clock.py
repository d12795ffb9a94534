"""Nodes whose clock is off: the ingest's per-node offset estimates against the report's skew bound.

Perf-per-watt joins one node's power window with another's work window (an NPU's and a GPU's), so a
node whose wall clock is off shifts its windows and corrupts the verdict without any other sign. The
ingest estimates each node's offset from what it receives (ingest/worker.py ``ClockOffsets``: the
largest ``newest sample timestamp - receive time`` per window, written as ``ingest.clock_offset_s``);
here those estimates are checked against the same bound the analytics uses for window edges
(``--max-skew``, DESIGN §6), and ``kwatt report`` and ``kwatt top`` print a warning per node over it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kwatt.analytics.load import LoadError, SeriesSet, load_lp_file
from kwatt.wire.influx import InfluxError, InfluxQL
from kwatt.wire.settings import InfluxConfig

__all__ = [
    "CLOCK_FIELD",
    "ClockWarning",
    "clock_warnings",
    "load_offsets",
    "offset_warnings",
    "report_warnings",
]

CLOCK_FIELD = "clock_offset_s"


@dataclass(frozen=True, slots=True)
class ClockWarning:
    """One node whose estimated clock offset exceeds the bound."""

    site: str
    node: str
    offset_s: float  # node clock minus ingest clock (the estimate of largest magnitude seen)
    bound_s: float

    def __str__(self) -> str:
        if self.offset_s > 0:
            how = f"{self.offset_s:.1f} s ahead of the receiver's clock"
        else:
            how = f"{-self.offset_s:.1f} s behind the receiver's clock (or its data arrives late)"
        return (
            f"node {self.site}/{self.node}: clock {how}, over the {self.bound_s:g} s skew bound: "
            "its windows are misaligned with other nodes' (fix its NTP/chrony)"
        )


def offset_warnings(
    offsets: Iterable[tuple[str, str, float]], bound_s: float
) -> list[ClockWarning]:
    """A warning per node whose offset estimate of largest magnitude exceeds ``bound_s``."""
    worst: dict[tuple[str, str], float] = {}
    for site, node, offset in offsets:
        key = (site, node)
        if key not in worst or abs(offset) > abs(worst[key]):
            worst[key] = offset
    return [
        ClockWarning(site, node, off, bound_s)
        for (site, node), off in sorted(worst.items())
        if abs(off) > bound_s
    ]


def clock_warnings(series: SeriesSet, bound_s: float) -> list[ClockWarning]:
    """:func:`offset_warnings` of the ``ingest`` series in ``series`` (all workers together)."""
    offsets: list[tuple[str, str, float]] = []
    for s in series.select("ingest", CLOCK_FIELD):
        site, node = s.tag("site"), s.tag("node")
        if not len(s):
            continue
        if site is None or node is None:
            continue
        k = int(np.argmax(np.abs(s.values)))
        offsets.append((site, node, float(s.values[k])))
    return offset_warnings(offsets, bound_s)


def load_offsets(
    url: str, database: str, *, since_ns: int, until_ns: int
) -> list[tuple[str, str, float]]:
    """(site, node, offset s) of the ``ingest`` clock estimates in ``[since_ns, until_ns)``: the
    largest and the smallest per node (one query; a node with none is simply absent)."""
    q = (
        f'SELECT max("{CLOCK_FIELD}"), min("{CLOCK_FIELD}") FROM "ingest" '
        f"WHERE time >= {since_ns} AND time < {until_ns} GROUP BY site, node"
    )
    client = InfluxQL(InfluxConfig(url=url, database=database))
    out: list[tuple[str, str, float]] = []
    try:
        for s in client.query(q):
            site, node = s.tags.get("site"), s.tags.get("node")
            if not site or not node:
                continue
            for row in s.values:
                out.extend((site, node, float(v)) for v in row[1:] if isinstance(v, int | float))
    except InfluxError as e:
        raise LoadError(f"{url} database {database!r}: clock offsets: {e}") from e
    finally:
        client.close()
    return out


def report_warnings(
    bound_s: float,
    *,
    path: Path | None = None,
    influx: tuple[str, str] | None = None,
    since_ns: int = 0,
    until_ns: int = 2**63 - 1,
) -> list[ClockWarning]:
    """The clock warnings of ``kwatt report``'s input: a line-protocol file or (url, database)."""
    if path is not None:
        return clock_warnings(load_lp_file(path, measurements=("ingest",)), bound_s)
    if influx is None:
        return []
    offsets = load_offsets(*influx, since_ns=since_ns, until_ns=until_ns)
    return offset_warnings(offsets, bound_s)
