"""The ingest's per-node seq accounting (ingest/seqtrack.py)."""

from __future__ import annotations

from kwatt.ingest.seqtrack import SeqCounts, SeqTracker


def feed(t: SeqTracker, seqs: list[int], node: str = "n") -> SeqCounts:
    for s in seqs:
        t.observe("s", node, s)
    return t.counts("s", node)


def test_in_order_has_no_gap_or_duplicate() -> None:
    assert feed(SeqTracker(), list(range(1, 101))) == SeqCounts(100, 0, 0, 0)


def test_gaps_are_counted_and_filled_by_late_arrivals() -> None:
    t = SeqTracker()
    assert feed(t, [1, 2, 5, 6, 9]) == SeqCounts(9, 4, 0, 0)  # 3, 4, 7, 8 missing
    assert feed(t, [4, 7]) == SeqCounts(9, 2, 0, 0)
    assert feed(t, [3, 8]) == SeqCounts(9, 0, 0, 0)


def test_duplicates_and_resets() -> None:
    t = SeqTracker(window=10)
    assert feed(t, [1, 2, 3, 3, 2, 4]) == SeqCounts(4, 0, 2, 0)
    assert feed(t, [1]) == SeqCounts(4, 0, 3, 0)  # within the window: a replay of seq 1
    assert feed(t, list(range(5, 51))) == SeqCounts(50, 0, 3, 0)
    # seq 1 long after: an agent without a spool (or with a wiped one) restarted
    assert feed(t, [1, 2]) == SeqCounts(2, 0, 3, 1)


def test_a_worker_joining_mid_stream_sees_no_gap_before_its_first_seq() -> None:
    assert feed(SeqTracker(), [500, 501, 503]) == SeqCounts(503, 1, 0, 0)


def test_old_gaps_leave_the_window_but_stay_counted() -> None:
    t = SeqTracker(window=10)
    c = feed(t, [1, 3, *range(100, 200)])
    assert c.seq_missing == 1 + (99 - 3)  # seq 2 and 4..99 never came
    assert c.seq_last == 199
    # nodes are separate; take_changed reports each node once
    feed(t, [1], node="m")
    assert [(s, n) for s, n, _ in t.take_changed()] == [("s", "m"), ("s", "n")]
    assert t.take_changed() == []
