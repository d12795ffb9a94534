"""kwatt.analytics.load: line-protocol files into typed numpy series; times for --since/--until."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kwatt.analytics.load import LoadError, load_lp_file, parse_time

NOW = 1_800_000_000 * 10**9
LINE = "accel,device=d0,model=rngd,node=n1,site=s,vendor=furiosa power_w={p},util_ratio=0.5 {ts}"


def test_series_are_sorted_deduplicated_and_typed(tmp_path: Path) -> None:
    f = tmp_path / "x.lp"
    f.write_text(
        "\n".join(
            [
                "# a comment",
                LINE.format(p=30.0, ts=3 * 10**18),
                LINE.format(p=10.0, ts=1 * 10**18),
                "",
                LINE.format(p=20.0, ts=2 * 10**18),
                LINE.format(p=21.0, ts=2 * 10**18),  # same point again: the last write wins
                "agent,site=s,node=n1 seq=1i 1000000000000000000",  # not an input: skipped
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    ss = load_lp_file(f)
    assert ss.source == str(f) and ss.n_samples == 6
    [power] = ss.select("accel", "power_w")
    assert power.key.tag("vendor") == "furiosa" and power.tag("site") == "s"
    assert power.t_ns.dtype == np.int64 and power.values.dtype == np.float64
    assert power.t_ns.tolist() == [10**18, 2 * 10**18, 3 * 10**18]
    assert power.values.tolist() == [10.0, 21.0, 30.0]
    assert power.t_s.tolist() == [1e9, 2e9, 3e9]
    assert ss.span_ns() == (10**18, 3 * 10**18)
    assert ss.select("accel", "util_ratio", where=lambda k: k.tag("node") == "n2") == []


def test_bad_lines_name_file_line_and_expectation(tmp_path: Path) -> None:
    f = tmp_path / "bad.lp"
    f.write_text(LINE.format(p=1.0, ts=10**18) + "\n" + LINE.format(p="1.0.0", ts=10**18) + "\n")
    with pytest.raises(LoadError, match=r"bad\.lp:2: .*power_w"):
        load_lp_file(f)
    assert load_lp_file(f, strict=False).n_samples == 2
    g = tmp_path / "bin.lp"
    g.write_bytes(b"\xff\xfe\n")
    with pytest.raises(LoadError, match=r"bin\.lp:1: not UTF-8"):
        load_lp_file(g)
    with pytest.raises(LoadError, match=r"missing\.lp: cannot read"):
        load_lp_file(tmp_path / "missing.lp")


def test_parse_time() -> None:
    assert parse_time("now", now_ns=NOW) == NOW
    assert parse_time("15m", now_ns=NOW) == NOW - 900 * 10**9
    assert parse_time("1.5h", now_ns=NOW) == NOW - 5400 * 10**9
    assert parse_time("1700000000", now_ns=NOW) == 1_700_000_000 * 10**9
    assert parse_time("2023-11-14T22:13:20Z", now_ns=NOW) == 1_700_000_000 * 10**9
    assert parse_time("2023-11-14T22:13:20", now_ns=NOW) == 1_700_000_000 * 10**9
    assert parse_time("2023-11-15T07:13:20+09:00", now_ns=NOW) == 1_700_000_000 * 10**9
    with pytest.raises(LoadError, match="expected 'now', a duration ago"):
        parse_time("yesterday", now_ns=NOW)
