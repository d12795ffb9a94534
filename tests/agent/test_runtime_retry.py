"""A failing collector backs off: 1, 1, 2, 4 ... intervals, capped at RETRY_MAX_S; success resets."""

from __future__ import annotations

from kwatt.agent.runtime import RETRY_MAX_S, _ticks_until_retry


def test_backoff_doubles_and_is_capped():
    assert [_ticks_until_retry(n, 1.0) for n in range(7)] == [1, 1, 2, 4, 8, 16, 32]
    assert _ticks_until_retry(50, 1.0) == int(RETRY_MAX_S)
    assert _ticks_until_retry(50, 0.25) == int(RETRY_MAX_S / 0.25)
    assert _ticks_until_retry(3, 120.0) == 1  # interval longer than the cap: every tick
