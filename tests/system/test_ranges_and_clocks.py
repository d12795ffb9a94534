"""Readings no sensor can give, and clocks that lie (DESIGN §3 plausible ranges, §4 clock offset).

* A collector's reading outside its plausible range (a sensor's failure sentinel: 65535 °C, 1e300 W)
  is absent from the agent's output, counted in ``out_of_range_total`` and warned about.
* The ingest dead-letters a line with such a value (the other lines of the message are kept), and a
  line stamped more than an hour ahead, each with the reason.
* The ingest estimates each node's clock offset and writes it in the ``ingest`` measurement; a node
  whose clock is 5 s ahead (a real ``kwatt agent`` under libfaketime) is named by the analytics'
  clock check, by ``kwatt report`` and by ``kwatt top``; a node with a good clock is not.

Real Mosquitto and InfluxDB throughout; the agent reads a real tool through the ``command``
collector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
import yaml
from conftest import in_ci
from pipeline_helpers import build_agent, uniq, wait_for

from kwatt.agent.config import agent_config_from
from kwatt.analytics.clock import ClockWarning, clock_warnings, offset_warnings
from kwatt.analytics.load import load_influx
from kwatt.ingest.config import BatchConfig, IngestConfig
from kwatt.ingest.worker import ClockOffsets, Ingest
from kwatt.live.state import TopState
from kwatt.wire import lineproto
from kwatt.wire.influx import InfluxQL, InfluxRejected
from kwatt.wire.model import Sample, drop_implausible, range_violations
from kwatt.wire.settings import InfluxConfig, MqttConfig

REPO = Path(__file__).resolve().parents[2]
TS = 1_763_700_000_000_000_000


# ------------------------------------------------------------------ pure logic


def test_drop_implausible_makes_the_field_absent_and_says_why() -> None:
    s = Sample.accel(TS, vendor="v", model="m", device="d", power_w=1e300, temp_c=45.0)
    kept, bad = drop_implausible(s)
    assert kept is not None and kept.field("power_w") is None and kept.field("temp_c") == 45.0
    assert [str(v) for v in bad] == ["power_w=1e+300 outside [0, 10000] W"]
    only_bad = Sample.accel(TS, vendor="v", model="m", device="d", temp_c=65535.0)
    assert drop_implausible(only_bad)[0] is None
    fine = Sample.host(TS, source="rapl", zone="package-0", power_w=95_000.0)
    assert drop_implausible(fine) == (fine, [])
    mem = [("mem_total_bytes", 10), ("mem_used_bytes", 11)]
    assert [v.field for v in range_violations("accel", mem)] == ["mem_used_bytes"]
    assert range_violations("agent", [("collect_errors_total", -1)]) == []


def test_clock_offsets_take_the_largest_per_window() -> None:
    c = ClockOffsets(window_s=10.0)
    c.observe("s", "a", -300_000_000, now_s=0.0)  # 0.3 s of delivery delay
    c.observe("s", "a", -100_000_000, now_s=1.0)  # the quickest message bounds the offset
    c.observe("s", "b", 5_000_000_000, now_s=2.0)
    assert c.take_closed(now_s=5.0) == []
    assert sorted(c.take_closed(now_s=12.5)) == [("s", "a", -0.1), ("s", "b", 5.0)]
    c.observe("s", "a", -200_000_000, now_s=13.0)  # a new window
    assert c.take_closed(now_s=13.5) == []


def test_offset_warnings_name_each_node_over_the_bound_once() -> None:
    got = offset_warnings(
        [("s", "a", 0.1), ("s", "b", 5.2), ("s", "b", 4.9), ("s", "c", -3.0)], 0.8
    )
    assert got == [ClockWarning("s", "b", 5.2, 0.8), ClockWarning("s", "c", -3.0, 0.8)]
    assert "5.2 s ahead" in str(got[0]) and "behind" in str(got[1])


# ------------------------------------------------------------------ the agent: absent, counted

TOOL = """#!/bin/sh
cat <<'EOF'
{"cards": [
  {"serial": "BAD1", "power": 1e300, "temp": 65535, "util": 0.5},
  {"serial": "OK2", "power": 41.5, "temp": 48, "util": 0.25}
]}
EOF
"""


def command_entry(tool: Path) -> dict[str, object]:
    return {
        "type": "command",
        "name": "sentinels",
        "argv": [str(tool)],
        "devices": "cards",
        "vendor": "test",
        "model": "sentinel",
        "device_field": "serial",
        "interval_s": 0.2,
        "fields": [
            {"path": "power", "field": "power_w"},
            {"path": "temp", "field": "temp_c"},
            {"path": "util", "field": "util_ratio"},
        ],
    }


def test_agent_leaves_sentinels_out_counts_and_warns(
    mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tool = tmp_path / "tool.sh"
    tool.write_text(TOOL)
    tool.chmod(0o755)
    site = uniq("range")
    cfg = agent_config_from(
        {
            "site": site,
            "node": "n1",
            "mqtt": {"url": mosquitto.url},
            "publish": {"flush_interval_s": 0.2},
            "collectors": [command_entry(tool)],
        },
        where="test",
    )
    lines: list[lineproto.Point] = []

    async def main() -> None:
        agent = build_agent(cfg)
        stop = asyncio.Event()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("sub")) as sub:
            await sub.subscribe(f"kwatt/v1/{site}/n1/metrics", qos=1)
            run = asyncio.create_task(agent.run(stop))

            async def read() -> None:
                async for msg in sub.messages:
                    assert isinstance(msg.payload, bytes)
                    result = lineproto.parse_payload(msg.payload)
                    assert result.ok, result.errors
                    lines.extend(result.points)

            reader = asyncio.create_task(read())
            await wait_for(lambda: sum(p.measurement == "accel" for p in lines) >= 6, 20, "polls")
            stop.set()
            await run
            reader.cancel()

    with caplog.at_level(logging.WARNING, logger="kwatt.agent"):
        asyncio.run(main())
    bad = [dict(p.fields) for p in lines if ("device", "BAD1") in p.tags]
    ok = [dict(p.fields) for p in lines if ("device", "OK2") in p.tags]
    assert bad and all(f == {"util_ratio": 0.5} for f in bad), bad  # absent, never clamped
    assert ok and all(f == {"power_w": 41.5, "temp_c": 48.0, "util_ratio": 0.25} for f in ok)
    counts = [
        dict(p.fields)["out_of_range_total"]
        for p in lines
        if p.measurement == "agent" and ("collector", "sentinels") in p.tags
    ]
    assert counts == sorted(counts) and counts[-1] >= 2 * len(bad) - 2 and counts[0] >= 2
    warnings = [r.getMessage() for r in caplog.records if "outside" in r.getMessage()]
    assert any("power_w=1e+300 outside [0, 10000] W" in w and "BAD1" in w for w in warnings)
    assert any("temp_c=65535.0 outside [-40, 150] °C" in w for w in warnings)
    # rate-limited: one warning per field per minute, however many polls saw it
    assert len(warnings) == 2, warnings


# ------------------------------------------------------------------ the ingest: dead letters


def ingest_config(
    mosquitto_url: str, influx_url: str, db: str, tmp: Path, **kw: float
) -> IngestConfig:
    return IngestConfig(
        mqtt=MqttConfig(url=mosquitto_url, client_id=uniq("ingest"), reconnect_min_s=0.1),
        influx=InfluxConfig(url=influx_url, database=db),
        batch=BatchConfig(max_delay_s=0.1),
        group=uniq("grp"),
        deadletter_dir=str(tmp / "deadletter"),
        retry_min_s=0.1,
        retry_max_s=0.5,
        **kw,
    )


def test_ingest_deadletters_implausible_and_future_lines_keeps_the_rest(
    mosquitto, influxd, tmp_path: Path
) -> None:
    site, db = uniq("site"), uniq("range")
    now = time.time_ns()
    head = f"accel,device=d1,model=rngd,node=n1,site={site},vendor=furiosa"
    payload = (
        f"{head} power_w=40.5 {now}\n"
        f"{head} power_w=1e300 {now + 1}\n"
        f"{head} temp_c=65535 {now + 2}\n"
        f"{head} power_w=-5 {now + 3}\n"
        f"{head} power_w=41 {now + 7_200 * 10**9}\n"  # two hours ahead
        f"{head} power_w=42.5 {now + 4}\n"
    ).encode()
    cfg = ingest_config(mosquitto.url, influxd.url, db, tmp_path)

    async def main() -> None:
        ingest = Ingest(cfg)
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait_for(ingest.connected.is_set, 10, "ingest subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("pub")) as pub:
            await pub.publish(f"kwatt/v1/{site}/n1/metrics", payload, qos=1)
        await wait_for(lambda: ingest.stats.points_written >= 2, 10, "writes")
        stop.set()
        await run

    asyncio.run(main())
    q = InfluxQL(InfluxConfig(url=influxd.url, database=db))
    try:
        (series,) = q.query(f"SELECT power_w, temp_c FROM accel WHERE site = '{site}'")
    finally:
        q.close()
    assert [row[1:] for row in series.values] == [[40.5, None], [42.5, None]]
    (record,) = [
        json.loads(x)
        for x in (tmp_path / "deadletter" / "deadletter.jsonl").read_text().splitlines()
    ]
    reason = record["reason"]
    assert reason.startswith("4 bad line(s), 2 kept"), reason
    assert "line 2: field 'power_w': 1e+300 is outside its plausible range [0, 10000] W" in reason
    assert "line 3: field 'temp_c': 65535.0 is outside its plausible range [-40, 150] °C" in reason
    assert "line 4: field 'power_w': -5.0 is outside" in reason
    assert "line 5: timestamp" in reason and "in the future" in reason


# ------------------------------------------------------------------ clocks that lie


def faketime_or_skip() -> str:
    exe = shutil.which("faketime")
    if exe is None:
        msg = "faketime not installed (apt-get install faketime; scripts/bootstrap.sh does)"
        if in_ci():
            pytest.fail(f"{msg} [CI is set]", pytrace=False)
        pytest.skip(msg)
    return exe


def test_a_node_5_s_ahead_is_named_by_the_ingest_analytics_and_report(
    mosquitto, influxd, tmp_path: Path
) -> None:
    faketime = faketime_or_skip()
    tool = tmp_path / "tool.sh"
    tool.write_text(TOOL)
    tool.chmod(0o755)
    site, db = uniq("clock"), uniq("clock")
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    t_start = time.time_ns()
    for node, skew in (("ahead", "+5s"), ("good", None)):
        conf = tmp_path / f"{node}.yaml"
        doc = {
            "site": site,
            "node": node,
            "mqtt": {"url": mosquitto.url},
            "publish": {"flush_interval_s": 0.2},
            "collectors": [command_entry(tool)],
        }
        conf.write_text(yaml.safe_dump(doc))
        cmd = [sys.executable, "-m", "kwatt.cli", "agent", "--config", str(conf)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if skew is not None:  # libfaketime: the wall clock only; monotonic time stays true
            cmd = [faketime, "-f", skew, *cmd]
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        log = (tmp_path / f"{node}.log").open("wb")
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log))
    cfg = ingest_config(mosquitto.url, influxd.url, db, tmp_path, clock_window_s=1.0)
    stored: list[tuple[str, str, float]] = []

    async def main() -> None:
        ingest = Ingest(cfg)
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        q = InfluxQL(InfluxConfig(url=influxd.url, database=db))

        def offsets() -> bool:
            stored.clear()
            query = f"SELECT clock_offset_s FROM ingest WHERE site = '{site}' GROUP BY node"
            try:
                for s in q.query(query):
                    stored.extend((site, s.tags["node"], row[1]) for row in s.values)
            except InfluxRejected:  # no write yet: the database does not exist
                return False
            return {n for _, n, _ in stored} == {"ahead", "good"} and len(stored) >= 4

        try:
            await wait_for(offsets, 60, "clock offsets of both nodes in InfluxDB")
        finally:
            q.close()
            stop.set()
            await run

    try:
        asyncio.run(main())
        # kwatt top, receiving the same messages, names the node on screen
        top = subprocess.run(
            [sys.executable, "-m", "kwatt.cli", "top", "--broker", mosquitto.url, "--site", site,
             "--once", "--duration", "4", "--width", "200"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert top.returncode == 0, top.stderr
        screen = top.stdout
        assert (
            f"node {site}/ahead: clock" in screen and "s ahead of the receiver's clock" in screen
        ), screen
        assert f"node {site}/good: clock" not in screen, screen
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        for f in logs:
            f.close()
    ahead = [o for _, n, o in stored if n == "ahead"]
    good = [o for _, n, o in stored if n == "good"]
    assert all(3.5 < o <= 5.05 for o in ahead), ahead  # 5 s less at most the quickest delivery
    assert all(-1.0 < o <= 0.05 for o in good), good
    until = time.time_ns() + 10 * 10**9
    series = load_influx(
        influxd.url, db, since_ns=t_start, until_ns=until, measurements=("ingest",)
    )
    (warning,) = clock_warnings(series, bound_s=0.8)
    assert (warning.site, warning.node) == (site, "ahead") and 3.5 < warning.offset_s <= 5.05
    # kwatt report names the node in its warnings, in every format
    report = [sys.executable, "-m", "kwatt.cli", "report", "--influx", influxd.url,
              "--database", db, "--since", f"{t_start / 1e9:.3f}", "--until", f"{until / 1e9:.3f}",
              "--max-skew", "0.8", "--min-window", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([*report, "--format", "json"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (text,) = json.loads(r.stdout)["warnings"]
    assert f"node {site}/ahead: clock" in text and "s ahead of the receiver's clock" in text
    r = subprocess.run([*report, "--width", "80"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"{site}/ahead" in r.stdout.replace("\n", " ") and f"{site}/good" not in r.stdout


def test_top_state_warns_while_a_node_is_off_and_stops_when_fixed() -> None:
    s = TopState(max_skew_s=0.8)
    line = "accel,device=d1,model=m,node={n},site=s,vendor=v power_w=40.5 {ts}\n"
    recv = TS
    s.feed("kwatt/v1/s/a/metrics", line.format(n="a", ts=recv + 3 * 10**9).encode(), 0.0, recv)
    s.feed("kwatt/v1/s/b/metrics", line.format(n="b", ts=recv - 10**8).encode(), 0.0, recv)
    assert [str(w) for w in s.nodes[("s", "a")].warnings] == [
        "node s/a: clock 3.0 s ahead of the receiver's clock, over the 0.8 s skew bound: its "
        "windows are misaligned with other nodes' (fix its NTP/chrony)"
    ]
    assert s.nodes[("s", "b")].warnings == []
    # fixed: once the window has moved past the bad messages, the warning goes
    s.feed("kwatt/v1/s/a/metrics", line.format(n="a", ts=recv).encode(), 61.0, recv)
    assert s.nodes[("s", "a")].warnings == [] and s.nodes[("s", "a")].clock_offset_s == 0.0
    # without a receive time (replayed captures, tests) there is no clock check
    s.feed("kwatt/v1/s/c/metrics", line.format(n="c", ts=recv + 9 * 10**9).encode(), 62.0)
    assert s.nodes[("s", "c")].clock_offset_s is None
