"""`kwatt top`: the reducer and renderer on synthetic payloads, then against a live Mosquitto with
emulated nodes and real agents (rich's recording console shows what an operator would see)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from rich.console import Console

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.agent.runtime import Agent
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.live.render import render, sparkline
from kwatt.live.state import TopState
from kwatt.live.top import follow, subscriptions
from kwatt.live.view import ViewOptions, summarize
from kwatt.wire import lineproto
from kwatt.wire.settings import MqttConfig

REPO = Path(__file__).resolve().parents[2]
NOW = time.time_ns()


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def accel(site: str, node: str, dev: str, ts: int, **fields: float) -> str:
    body = ",".join(f"{k}={int(v)}i" if k == "throttled" else f"{k}={v}" for k, v in fields.items())
    return f"accel,device={dev},model=rngd,node={node},site={site},vendor=furiosa {body} {ts}"


def serving(site: str, node: str, ts: int, tokens: int, service: str = "chat") -> str:
    return (
        f"serving,node={node},runtime=furiosa-llm,service={service},site={site} "
        f"tokens_total={tokens}i,requests_total={tokens // 10}i {ts}"
    )


def status(state: str) -> bytes:
    return json.dumps({"state": state, "agent": "0.1.0", "since": NOW}).encode()


def screen(state: TopState, opts: ViewOptions | None = None, now: float = 100.0) -> str:
    console = Console(record=True, width=200, color_system=None, force_terminal=False)
    console.print(render(state, opts or ViewOptions(), now))
    return console.export_text()


def feed_lines(state: TopState, site: str, node: str, lines: list[str], now: float = 100.0) -> None:
    state.feed(f"kwatt/v1/{site}/{node}/metrics", ("\n".join(lines) + "\n").encode(), now)


# --------------------------------------------------------------------------- reducer + renderer


def test_values_published_are_the_values_shown() -> None:
    s = TopState()
    s.feed("kwatt/v1/dc1/n1/status", status("online"), 99.0)
    feed_lines(
        s,
        "dc1",
        "n1",
        [
            accel(
                "dc1",
                "n1",
                "card-a",
                NOW,
                power_w=123.4,
                util_ratio=0.52,
                temp_c=61.0,
                clock_hz=2.0e9,
                throttled=0,
            ),
            accel(
                "dc1",
                "n1",
                "card-b",
                NOW,
                power_w=40.25,
                util_ratio=0.0,
                temp_c=88.0,
                clock_hz=1.5e9,
                throttled=1,
            ),
            serving("dc1", "n1", NOW, 1000),
        ],
    )
    feed_lines(s, "dc1", "n1", [serving("dc1", "n1", NOW + 2 * 10**9, 1400)])
    out = screen(s, ViewOptions(target_work_per_j=1.0))
    assert "n1" in out and "card-a" in out and "card-b" in out
    assert "123.4 W" in out and "40.2 W" in out
    assert "163.7 W" in out  # node total
    assert "52%" in out and "2.00 GHz" in out and "1.50 GHz" in out and "88°C" in out
    assert "THR" in out  # card-b throttles
    assert "200.0 tok/s" in out  # (1400 - 1000) tokens / 2 s
    assert f"{200 / 163.65:.2f} tok/J" in out  # node perf/W
    assert "1 online" in out and "0 offline" in out


def test_offline_node_is_shown_offline_never_idle() -> None:
    s = TopState()
    for node in ("n1", "n2"):
        s.feed(f"kwatt/v1/dc1/{node}/status", status("online"), 99.0)
        feed_lines(s, "dc1", node, [accel("dc1", node, "d0", NOW, power_w=50.0, util_ratio=0.5)])
    s.feed("kwatt/v1/dc1/n2/status", status("offline"), 100.0)
    out = screen(s)
    row = next(line for line in out.splitlines() if line.strip().startswith("n2"))
    assert "OFFLINE" in row and "W" not in row and "%" not in row
    assert "1 online" in out and "1 offline" in out
    assert "power 50.0 W" in out  # the offline node's last power is not counted


def test_stale_node_and_unknown_status() -> None:
    s = TopState()
    feed_lines(s, "dc1", "n1", [accel("dc1", "n1", "d0", NOW, power_w=50.0)], now=10.0)
    out = screen(s, ViewOptions(stale_s=5.0), now=100.0)
    assert "STALE" in out and "1 stale" in out


def test_top_n_aggregates_the_rest_and_lists_offline_nodes() -> None:
    s = TopState()
    for i in range(50):
        node = f"n{i:02d}"
        s.feed(f"kwatt/v1/dc1/{node}/status", status("online"), 99.0)
        feed_lines(s, "dc1", node, [accel("dc1", node, "d0", NOW, power_w=float(100 + i))])
    s.feed("kwatt/v1/dc1/n03/status", status("offline"), 100.0)
    out = screen(s, ViewOptions(limit=5))
    rows = [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("n") and not line.startswith("node")
    ]
    assert rows == ["n49", "n48", "n47", "n46", "n45"]  # highest power first
    assert "+ 45 more nodes" in out and "1 offline" in out
    assert "offline: n03" in out
    out = screen(s, ViewOptions(limit=3, sort="power", reverse=True, devices="none"))
    rows = [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("n") and not line.startswith("node")
    ]
    assert rows == ["n00", "n01", "n02"]


def test_filters_by_node_vendor_throttled_and_offline() -> None:
    s = TopState()
    feed_lines(s, "dc1", "a1", [accel("dc1", "a1", "d0", NOW, power_w=10.0, throttled=1)])
    feed_lines(s, "dc1", "b1", [accel("dc1", "b1", "d0", NOW, power_w=20.0, throttled=0)])
    s.feed("kwatt/v1/dc1/c1/status", status("offline"), 100.0)
    assert "b1" not in screen(s, ViewOptions(node_pattern="^a"))
    out = screen(s, ViewOptions(only_throttled=True))
    assert "a1" in out and "b1" not in out
    out = screen(s, ViewOptions(only_offline=True))
    assert "c1" in out and "a1" not in out
    out = screen(s, ViewOptions(vendor="nvidia"))
    assert "a1" not in out and "0 online" in out


def test_rates_survive_counter_resets_and_replayed_batches() -> None:
    s = TopState()
    feed_lines(s, "dc1", "n1", [serving("dc1", "n1", NOW, 500)])
    feed_lines(s, "dc1", "n1", [serving("dc1", "n1", NOW + 10**9, 600)])
    assert s.nodes[("dc1", "n1")].work_per_s("tokens") == pytest.approx(100.0)
    feed_lines(s, "dc1", "n1", [serving("dc1", "n1", NOW + 2 * 10**9, 5)])  # runtime restarted
    assert s.nodes[("dc1", "n1")].work_per_s("tokens") is None
    feed_lines(s, "dc1", "n1", [accel("dc1", "n1", "d0", NOW + 5, power_w=70.0)])
    feed_lines(s, "dc1", "n1", [accel("dc1", "n1", "d0", NOW, power_w=10.0)])  # older, replayed
    assert s.nodes[("dc1", "n1")].devices["d0"].power_w == 70.0


def test_seq_gaps_failing_collectors_and_bad_input_are_counted() -> None:
    s = TopState()
    for seq in (1, 2, 5):
        feed_lines(s, "dc1", "n1", [f"agent,node=n1,site=dc1 seq={seq}i {NOW + seq}"])
    assert s.nodes[("dc1", "n1")].seq_gaps == 2
    assert "gap 2" in screen(s)
    feed_lines(s, "dc1", "n1", [f"agent,collector=rngd,node=n1,site=dc1 collect_ok=0i {NOW}"])
    assert s.nodes[("dc1", "n1")].failing_collectors == {"rngd"}
    s.feed("kwatt/v1/dc1/n1/metrics", b"not line protocol\n", 1.0)
    s.feed("somewhere/else", b"x", 1.0)
    s.feed("kwatt/v1/dc1/n1/status", b"{bad json", 1.0)
    assert s.bad_messages == 3


def test_sparkline_and_subscriptions() -> None:
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([50, 50], top=100) == "▅▅"  # a common scale: half-height, not full
    assert sparkline([]) == ""
    assert len(sparkline(range(100), width=12)) == 12
    assert subscriptions(None) == ["kwatt/v1/+/+/metrics", "kwatt/v1/+/+/status"]
    assert subscriptions("dc1") == ["kwatt/v1/dc1/+/metrics", "kwatt/v1/dc1/+/status"]
    with pytest.raises(ValueError):
        subscriptions("a/b")


def test_summary_of_an_offline_node_has_no_figures() -> None:
    s = TopState()
    feed_lines(s, "dc1", "n1", [accel("dc1", "n1", "d0", NOW, power_w=50.0, util_ratio=0.3)])
    s.feed("kwatt/v1/dc1/n1/status", status("offline"), 100.0)
    summary = summarize(s.nodes[("dc1", "n1")], ViewOptions(), 100.0)
    assert summary.label == "offline"
    assert summary.power_w is None and summary.util_ratio is None


# --------------------------------------------------------------------------- live broker


@contextlib.asynccontextmanager
async def running_node(
    broker: str, site: str, node: str, root: Path, devices: int
) -> AsyncIterator[tuple[EmulatedNode, asyncio.Event, asyncio.Task[object]]]:
    emu = EmulatedNode(root, devices=devices, seed=hash(node) % 1000, serving_port=0)
    await emu.start()
    emu_stop = asyncio.Event()
    emu_task = asyncio.create_task(emu.run(emu_stop, period_s=0.1))
    cfg = agent_config_from(
        {
            "site": site,
            "node": node,
            "mqtt": {"url": broker, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "publish": {"flush_interval_s": 0.3},
            "collectors": [
                {"type": "furiosa", "name": "rngd", "root": str(root), "interval_s": 0.3},
                {
                    "type": "serving",
                    "name": "llm",
                    "url": emu.serving_url,
                    "service": "chatbot",
                    "interval_s": 0.3,
                },
            ],
        },
        where="test",
    )
    built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
    agent = Agent(cfg, built, drain_timeout_s=5.0)
    stop = asyncio.Event()
    task: asyncio.Task[object] = asyncio.create_task(agent.run(stop))
    try:
        yield emu, stop, task
    finally:
        stop.set()
        await task
        emu_stop.set()
        await emu_task
        await emu.aclose()


pytestmark_services = pytest.mark.services


@pytest.mark.services
def test_live_view_against_a_broker_shows_published_values_and_offline_node(mosquitto, tmp_path):
    site = uniq("site")
    published: dict[tuple[str, str], dict[str, float]] = {}
    screens: list[str] = []

    async def main() -> None:
        state = TopState()
        cfg = MqttConfig(url=mosquitto.url)
        follower = asyncio.create_task(follow(cfg, site, state, identifier=uniq("top")))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("spy")) as spy:
            await spy.subscribe(f"kwatt/v1/{site}/+/metrics", qos=0)

            async def record() -> None:
                async for m in spy.messages:
                    assert isinstance(m.payload, bytes)
                    for p in lineproto.parse_payload(m.payload).points:
                        if p.measurement == "accel":
                            tags = dict(p.tags)
                            published[(tags["node"], tags["device"])] = {
                                k: float(v) for k, v in p.fields
                            }

            recorder = asyncio.create_task(record())
            async with (
                running_node(mosquitto.url, site, "tn1", tmp_path / "tn1", 2) as (emu1, _, _),
                running_node(mosquitto.url, site, "tn2", tmp_path / "tn2", 3) as (_, stop2, t2),
            ):
                deadline = time.monotonic() + 15
                while not (
                    len(state.nodes) == 2
                    and all(
                        len(v.devices) == n
                        for v, n in zip(
                            (state.nodes[(site, "tn1")], state.nodes[(site, "tn2")]),
                            (2, 3),
                            strict=True,
                        )
                    )
                    and state.nodes[(site, "tn1")].work_per_s("tokens") is not None
                ):
                    assert time.monotonic() < deadline, "live view never saw both nodes"
                    await asyncio.sleep(0.1)
                # freeze: stop following, then compare the screen with the last published values
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
                await asyncio.sleep(0.3)
                screens.append(screen(state, ViewOptions(), time.monotonic()))
                snapshot = {
                    (node, dev.device): dev.power_w
                    for (_, node), view in state.nodes.items()
                    for dev in view.devices.values()
                }
                follower = asyncio.create_task(follow(cfg, site, state, identifier=uniq("top")))
                # tn2's agent stops cleanly: it publishes status offline
                stop2.set()
                await t2
                deadline = time.monotonic() + 10
                while state.nodes[(site, "tn2")].status != "offline":
                    assert time.monotonic() < deadline, "offline status never arrived"
                    await asyncio.sleep(0.05)
                screens.append(screen(state, ViewOptions(), time.monotonic()))
                devices1 = [d.identity.uuid for d in emu1.devices]
            recorder.cancel()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        # every device the live view drew carries a power value that an agent published
        for (node, dev), watts in snapshot.items():
            assert watts is not None
            assert (node, dev) in published
        first, second = screens
        for dev in devices1:
            assert dev[:20] in first
        for (node, dev), watts in snapshot.items():
            assert f"{watts:.1f} W" in first, (node, dev, watts)
        assert "2 online" in first and "tok/s" in first
        row = next(line for line in second.splitlines() if line.startswith("tn2"))
        assert "OFFLINE" in row
        assert "1 online" in second and "1 offline" in second

    asyncio.run(main())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_says_clearly_when_the_broker_cannot_be_reached() -> None:
    port = _closed_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kwatt.cli",
            "top",
            "--once",
            "--duration",
            "1.5",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1, out.stderr
    assert f"cannot reach the MQTT broker mqtt://127.0.0.1:{port}" in out.stdout
    assert f"kwatt top: cannot reach the MQTT broker mqtt://127.0.0.1:{port}" in out.stderr


@pytest.mark.services
def test_cli_once_prints_the_fleet(mosquitto, tmp_path) -> None:
    site = uniq("site")

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("pub")) as pub:
            await pub.publish(f"kwatt/v1/{site}/cli1/status", status("online"), qos=1, retain=True)
            await pub.publish(f"kwatt/v1/{site}/cli2/status", status("offline"), qos=1, retain=True)
            for i in range(12):
                ts = time.time_ns()
                line = accel(site, "cli1", "card-7", ts, power_w=77.7, util_ratio=0.25)
                await pub.publish(f"kwatt/v1/{site}/cli1/metrics", line.encode(), qos=1)
                await asyncio.sleep(0.25 if i else 1.0)
            for node in ("cli1", "cli2"):  # clear the retained messages
                await pub.publish(f"kwatt/v1/{site}/{node}/status", b"", qos=1, retain=True)

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kwatt.cli",
            "top",
            "--once",
            "--duration",
            "2.5",
            "--broker",
            mosquitto.url,
            "--site",
            site,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    asyncio.run(publish())
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "card-7" in stdout and "77.7 W" in stdout and "25%" in stdout
    row = next(line for line in stdout.splitlines() if line.startswith("cli2"))
    assert "OFFLINE" in row
