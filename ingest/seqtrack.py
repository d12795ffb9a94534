"""Per-node batch ``seq`` accounting for the ingest: gaps, duplicates, resets (DESIGN §4 ``ingest``).

Every agent batch carries an ``agent`` point with ``seq`` = 1, 2, 3, ... per node (persisted by the
spool, so it continues across agent restarts). A worker that sees every batch of a node can tell:

* a **gap**: seqs skipped. They stay *missing* until they arrive late (a replay after an outage may
  come after newer batches reached another path) — ``missing`` is the number outstanding now;
  a missing seq older than the window is given up and stays counted.
* a **duplicate**: a seq seen before (redelivery after a lost PUBACK, an agent killed after publishing
  but before recording the ack). Harmless in storage (idempotent writes), counted here.
* a **reset**: seq back to 1 (an agent without a spool restarted, or its spool was wiped), told
  from a replay of seq 1 by being older than the window.

With several workers on one shared subscription each sees only a share of a node's batches, so
per-worker ``missing`` counts the batches the other workers took; the fleet-wide figure is then
a query over the stored seqs, which InfluxDB deduplicates: a node has a gap exactly when
``count("seq") < max("seq") - min("seq") + 1`` in its ``agent`` series (docs/delivery.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SeqCounts", "SeqTracker"]

#: How far back a late seq still fills a gap or is recognised as a duplicate.
WINDOW = 65536


@dataclass(frozen=True, slots=True)
class SeqCounts:
    """One node's figures, as written in the ``ingest`` measurement."""

    seq_last: int
    seq_missing: int
    seq_duplicates_total: int
    seq_resets_total: int


class _Node:
    __slots__ = ("duplicates", "given_up", "highest", "missing", "resets", "seen")

    def __init__(self) -> None:
        self.highest = 0
        self.seen: set[int] = set()
        self.missing: set[int] = set()
        self.given_up = 0
        self.duplicates = 0
        self.resets = 0


class SeqTracker:
    """Seq accounting for every (site, node) one worker sees."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._changed: set[tuple[str, str]] = set()

    def observe(self, site: str, node: str, seq: int) -> None:
        key = (site, node)
        n = self._nodes.get(key)
        if n is None:
            n = self._nodes[key] = _Node()
            if seq > 1:  # joined mid-stream (a new worker, or an ingest restart): no gap before
                n.highest = seq - 1
        self._changed.add(key)
        if seq in n.seen:
            n.duplicates += 1
        elif seq > n.highest:
            lo = max(n.highest + 1, seq - self.window)
            n.given_up += (lo - (n.highest + 1)) if n.highest else 0
            n.missing.update(range(lo, seq))
            n.highest = seq
            n.seen.add(seq)
            self._trim(n)
        elif seq in n.missing:
            n.missing.discard(seq)
            n.seen.add(seq)
        elif seq == 1:
            n.resets += 1
            n.highest, n.seen, n.missing = 1, {1}, set()
        else:  # older than the window: most likely a replay of something long done
            n.duplicates += 1

    def _trim(self, n: _Node) -> None:
        if len(n.seen) + len(n.missing) <= 2 * self.window:
            return
        floor = n.highest - self.window
        n.seen = {s for s in n.seen if s > floor}
        old = {s for s in n.missing if s <= floor}
        n.given_up += len(old)
        n.missing -= old

    def counts(self, site: str, node: str) -> SeqCounts:
        n = self._nodes[(site, node)]
        return SeqCounts(n.highest, len(n.missing) + n.given_up, n.duplicates, n.resets)

    def take_changed(self) -> list[tuple[str, str, SeqCounts]]:
        """The nodes observed since the last call, with their figures (for the ``ingest`` points)."""
        out = [(s, nd, self.counts(s, nd)) for s, nd in sorted(self._changed)]
        self._changed.clear()
        return out

    def totals(self) -> tuple[int, int]:
        """(missing, duplicates) summed over nodes."""
        missing = sum(len(n.missing) + n.given_up for n in self._nodes.values())
        return missing, sum(n.duplicates for n in self._nodes.values())
