"""The pipeline against the real thing: emulated nodes → real collectors → agent → Mosquitto → ingest →
InfluxDB (influxd 1.6.7) or a /api/v2/write server (VictoriaMetrics). No mocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import yaml
from pipeline_helpers import build_agent, uniq, wait_for

from kwatt.agent.config import AgentConfig, agent_config_from
from kwatt.agent.runtime import AgentStats
from kwatt.demo.services import Influxd
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.ingest.config import BatchConfig, IngestConfig
from kwatt.ingest.worker import Ingest
from kwatt.wire import lineproto
from kwatt.wire.documents import decode_inventory, decode_status
from kwatt.wire.influx import InfluxQL
from kwatt.wire.settings import InfluxConfig, MqttConfig

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def emulated_node(
    root: Path, *, devices: int = 4, seed: int = 0
) -> AsyncIterator[EmulatedNode]:
    node = EmulatedNode(root, devices=devices, seed=seed, serving_port=0, workload="steady")
    await node.start()
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop, period_s=0.1))
    try:
        yield node
    finally:
        stop.set()
        await task
        await node.aclose()


def agent_config(
    broker_url: str,
    site: str,
    node: str,
    root: Path,
    serving_url: str,
    interval_s: float = 0.5,
    extra: list[dict[str, object]] | None = None,
) -> AgentConfig:
    doc = {
        "site": site,
        "node": node,
        "mqtt": {"url": broker_url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "publish": {"flush_interval_s": interval_s},
        "collectors": [
            {"type": "furiosa", "name": "rngd", "root": str(root), "interval_s": interval_s},
            {
                "type": "serving",
                "name": "llm",
                "url": serving_url,
                "service": "chatbot",
                "interval_s": interval_s,
            },
            *(extra or []),
        ],
    }
    return agent_config_from(doc, where="test")


def ingest_config(
    broker_url: str, influx_url: str, database: str, tmp: Path, api: str = "v1"
) -> IngestConfig:
    return IngestConfig(
        mqtt=MqttConfig(
            url=broker_url, client_id=uniq("ingest"), reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        influx=InfluxConfig(url=influx_url, database=database, api=api),  # type: ignore[arg-type]
        batch=BatchConfig(max_delay_s=0.1),
        group=uniq("grp"),
        deadletter_dir=str(tmp / "deadletter"),
        retry_min_s=0.1,
        retry_max_s=0.5,
    )


def stored_points(influx_url: str, database: str, site: str) -> int:
    q = InfluxQL(InfluxConfig(url=influx_url, database=database))
    try:
        return sum(q.count_points(m, f"\"site\" = '{site}'") for m in ("accel", "serving", "agent"))
    finally:
        q.close()


# --------------------------------------------------------------------------- end to end


def test_end_to_end_3_nodes_x_4_devices_15_s_nothing_lost(mosquitto, influxd, tmp_path):
    """The first 3 nodes of the demo fleet (RNGD chatbot, H100 chatbot, Warboy traffic) × 4 cards
    for 15 s, as separate processes (the demo's own orchestration): the number of points in
    InfluxDB equals the number the agents published, exactly."""
    db = uniq("e2e")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kwatt.cli",
            "demo",
            "--nodes",
            "3",
            "--devices",
            "4",
            "--duration",
            "15",
            "--no-live",
            "--json",
            "--broker",
            mosquitto.url,
            "--influx",
            influxd.url,
            "--database",
            db,
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    # per node per second: 4 accel + 1 serving + 2 per-collector agent points + 1 batch point
    assert summary["published"] >= 3 * 8 * 12
    assert summary["stored"] == summary["published"]
    assert summary["lost"] == 0
    assert summary["stored_by_measurement"]["accel"] >= 3 * 4 * 12
    assert summary["fleet"] == {
        "node-01": "rngd:4 chatbot",
        "node-02": "h100:4 chatbot",
        "node-03": "warboy:4 traffic",
    }
    assert set(summary["mean_power_w_by_node"]) == {"node-01", "node-02", "node-03"}
    # 4 cards each between idle and TDP: RNGD 38-150 W, H100 70-700 W, Warboy 8-60 W
    power = summary["mean_power_w_by_node"]
    assert 4 * 30 < power["node-01"] < 4 * 150
    assert 4 * 60 < power["node-02"] < 4 * 700
    assert 4 * 6 < power["node-03"] < 4 * 60
    # every node's serving runtime was read: furiosa-llm, vLLM, Triton
    assert set(summary["requests_by_node"]) == {"node-01", "node-02", "node-03"}


def test_demo_with_private_services_and_live_view(tmp_path):
    """`kwatt demo` starting its own Mosquitto and influxd, with the live view on; all stopped after."""
    state = tmp_path / "demo"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kwatt.cli",
            "demo",
            "--nodes",
            "1",
            "--devices",
            "2",
            "--duration",
            "4",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "lost" in out.stderr and "kwatt demo summary" in out.stderr
    # nothing the demo started is still running: no process mentions its state directory
    time.sleep(0.2)
    leftovers = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if str(state).encode() in cmdline:
                    leftovers.append(cmdline.replace(b"\0", b" ").decode())
    assert leftovers == []


# --------------------------------------------------------------------------- interop


def test_raw_mqtt_payload_is_accepted_unchanged_by_influxdb_write(mosquitto, influxd, tmp_path):
    """A payload taken from kwatt/v1/+/+/metrics with a plain subscriber goes to /write as is."""
    site, db = uniq("site"), uniq("interop")
    payloads: list[bytes] = []

    async def main() -> AgentStats:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("plain")) as sub:
            await sub.subscribe(f"kwatt/v1/{site}/+/metrics", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    payloads.append(m.payload)

            reader = asyncio.create_task(collect())
            async with emulated_node(tmp_path / "n1") as emu:
                cfg = agent_config(mosquitto.url, site, "n1", tmp_path / "n1", emu.serving_url)
                agent = build_agent(cfg)
                stop = asyncio.Event()
                run = asyncio.create_task(agent.run(stop))
                await asyncio.sleep(2.5)
                stop.set()
                stats = await run
            await wait_for(lambda: len(payloads) >= stats.published_batches, 5, "payloads")
            reader.cancel()
            return stats

    stats = asyncio.run(main())
    assert stats.published_batches >= 3 and stats.pending_batches == 0
    req = urllib.request.Request(f"{influxd.url}/query", data=f"q=CREATE DATABASE {db}".encode())
    urllib.request.urlopen(req, timeout=10).read()
    lines = 0
    for payload in payloads:
        req = urllib.request.Request(
            f"{influxd.url}/write?db={db}&precision=ns", data=payload, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204
        lines += payload.count(b"\n")
    assert lines == stats.published_points
    assert stored_points(influxd.url, db, site) == stats.published_points


# --------------------------------------------------------------------------- agent behaviour


def test_failing_collector_never_stops_the_others_and_status_is_retained(mosquitto, tmp_path):
    site = uniq("site")
    seen: list[lineproto.Point] = []
    retained: dict[str, bytes] = {}

    async def main() -> None:
        async with emulated_node(tmp_path / "n1", devices=2) as emu:
            cfg = agent_config(
                mosquitto.url,
                site,
                "n1",
                tmp_path / "n1",
                emu.serving_url,
                extra=[
                    {
                        "type": "furiosa",
                        "name": "ghost",
                        "root": str(tmp_path / "nothing"),
                        "interval_s": 0.5,
                    }
                ],
            )
            agent = build_agent(cfg)
            stop = asyncio.Event()
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("s")) as sub:
                await sub.subscribe(f"kwatt/v1/{site}/n1/#", qos=1)
                run = asyncio.create_task(agent.run(stop))

                async def read() -> None:
                    async for m in sub.messages:
                        assert isinstance(m.payload, bytes)
                        if str(m.topic).endswith("/metrics"):
                            seen.extend(lineproto.parse_payload(m.payload).points)
                        else:
                            retained[str(m.topic).rsplit("/", 1)[1]] = m.payload

                reader = asyncio.create_task(read())
                await asyncio.sleep(2.0)
                assert decode_status(retained["status"]).state == "online"
                stop.set()
                await run
                await wait_for(
                    lambda: decode_status(retained["status"]).state == "offline",
                    5,
                    "status offline",
                )
                reader.cancel()

    asyncio.run(main())
    accel = [p for p in seen if p.measurement == "accel"]
    assert {dict(p.tags)["device"] for p in accel} and len(accel) >= 4
    ghost = [
        dict(p.fields)
        for p in seen
        if p.measurement == "agent" and dict(p.tags).get("collector") == "ghost"
    ]
    assert ghost and all(f["collect_ok"] == 0 for f in ghost)
    assert ghost[-1]["collect_errors_total"] == len(ghost)
    ok = [
        dict(p.fields)
        for p in seen
        if p.measurement == "agent" and dict(p.tags).get("collector") == "rngd"
    ]
    assert ok and all(f["collect_ok"] == 1 for f in ok)
    assert len(ghost) < len(ok)  # the failing collector backs off instead of polling every tick
    seqs = [
        dict(p.fields)["seq"] for p in seen if p.measurement == "agent" and "seq" in dict(p.fields)
    ]
    assert seqs == list(range(1, len(seqs) + 1))
    inventory = decode_inventory(retained["inventory"])
    assert len(inventory) == 2 and {d.vendor for d in inventory} == {"furiosa"}


def test_agent_process_sigterm_flushes_and_sigkill_triggers_last_will(mosquitto, tmp_path):
    site = uniq("site")
    root = tmp_path / "n1"
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kwatt.emulators.node",
            "--root",
            str(root),
            "--devices",
            "2",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert emu.stdout is not None
        ready = json.loads(emu.stdout.readline())
        cfg = {
            "site": site,
            "node": "n1",
            "mqtt": {"url": mosquitto.url},
            "publish": {"flush_interval_s": "300ms"},
            "collectors": [
                {"type": "furiosa", "root": str(root), "interval_s": "300ms"},
                {"type": "serving", "url": ready["serving_url"], "service": "chat"},
            ],
        }
        cfg_path = tmp_path / "agent.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        stats_path = tmp_path / "stats.json"
        argv = [
            sys.executable,
            "-m",
            "kwatt.cli",
            "agent",
            "--config",
            str(cfg_path),
            "--stats-file",
            str(stats_path),
        ]

        def status() -> str | None:
            got: list[str] = []

            async def read() -> None:
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("s")) as c:
                    await c.subscribe(f"kwatt/v1/{site}/n1/status", qos=1)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            async for m in c.messages:
                                doc = decode_status(m.payload)  # type: ignore[arg-type]
                                got.append(doc.state + (f"/{doc.cause}" if doc.cause else ""))
                                return

            asyncio.run(read())
            return got[0] if got else None

        # SIGTERM: flush, publish offline, exit 0, counters written
        agent = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while status() != "online":
            assert time.monotonic() < deadline, "agent never came online"
        time.sleep(1.0)
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=20)
        assert agent.returncode == 0, err
        stats = json.loads(stats_path.read_text())
        assert stats["published_points"] > 0 and stats["pending_batches"] == 0
        assert status() == "offline/stopped"  # a clean stop, not a dead agent

        # SIGKILL: the broker publishes the last will
        agent = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while status() != "online":
            assert time.monotonic() < deadline, "agent never came online"
        agent.kill()
        agent.wait()
        deadline = time.monotonic() + 10
        while status() != "offline/lost":  # the last will: a dead agent
            assert time.monotonic() < deadline, "no last will"
    finally:
        emu.terminate()
        emu.wait(10)
        if emu.stdout is not None:
            emu.stdout.close()


def test_broker_restart_loses_nothing(fresh_mosquitto, influxd, tmp_path):
    """Broker down for ~2 s mid-run: the agent keeps collecting, replays in order, nothing is lost."""
    site, db = uniq("site"), uniq("outage")

    async def main() -> tuple[AgentStats, int]:
        async with emulated_node(tmp_path / "n1", devices=2) as emu:
            cfg = agent_config(
                fresh_mosquitto.url, site, "n1", tmp_path / "n1", emu.serving_url, interval_s=0.25
            )
            agent = build_agent(cfg)
            ingest = Ingest(ingest_config(fresh_mosquitto.url, influxd.url, db, tmp_path))
            stop_i, stop_a = asyncio.Event(), asyncio.Event()
            run_i = asyncio.create_task(ingest.run(stop_i))
            await wait_for(ingest.connected.is_set, 10, "ingest subscribed")
            run_a = asyncio.create_task(agent.run(stop_a))
            await asyncio.sleep(2.0)
            await asyncio.to_thread(fresh_mosquitto.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(fresh_mosquitto.start)
            await asyncio.sleep(2.5)
            stop_a.set()
            stats = await run_a
            await wait_for(
                lambda: ingest.stats.points_written >= stats.published_points,
                20,
                "ingest caught up",
            )
            stop_i.set()
            await run_i
            return stats, agent.stats.connects

    stats, connects = asyncio.run(main())
    assert connects >= 2, "the agent never reconnected"
    assert stats.pending_batches == 0 and stats.dropped_points == 0
    assert stored_points(influxd.url, db, site) == stats.published_points


# --------------------------------------------------------------------------- ingest


def test_ingest_keeps_good_lines_and_deadletters_the_rest(mosquitto, influxd, tmp_path):
    site, db = uniq("site"), uniq("bad")
    now = time.time_ns()
    good = f"accel,device=d1,model=rngd,node=n1,site={site},vendor=furiosa power_w=40.5 {now}"
    cases = {
        f"kwatt/v1/{site}/n1/metrics": f"{good}\n".encode(),
        f"kwatt/v1/{site}/n2/metrics": (
            f"accel,device=d2,model=rngd,node=n2,site={site},vendor=furiosa power_w=41 {now}\n"
            f"accel,device=d2,model=rngd,node=n2,site={site},vendor=furiosa bogus_w=1 {now}\n"
        ).encode(),
        f"kwatt/v1/{site}/n3/metrics": b"\xff\xfe not utf-8\n",
        f"kwatt/v1/{site}/n4/metrics": (  # claims to be n1: a node may only speak for itself
            f"accel,device=d9,model=rngd,node=n1,site={site},vendor=furiosa power_w=1 {now + 1}\n"
        ).encode(),
        f"kwatt/v1/{site}/n5/metrics": f"agent,node=n5,site={site} seq=1i 12\n".encode(),
    }
    cfg = ingest_config(mosquitto.url, influxd.url, db, tmp_path)

    async def main() -> Ingest:
        ingest = Ingest(cfg)
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait_for(ingest.connected.is_set, 10, "ingest subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("pub")) as pub:
            for topic, payload in cases.items():
                await pub.publish(topic, payload, qos=1)
        await wait_for(lambda: ingest.stats.messages >= len(cases), 10, "messages")
        await wait_for(lambda: ingest.stats.points_written >= 2, 10, "writes")
        stop.set()
        await run
        return ingest

    ingest = asyncio.run(main())
    assert ingest.stats.points_written == 2
    assert ingest.stats.lines_rejected == 4
    assert stored_points(influxd.url, db, site) == 2
    records = [
        json.loads(line)
        for line in (tmp_path / "deadletter" / "deadletter.jsonl").read_text().splitlines()
    ]
    reasons = {r["topic"].split("/")[3]: r["reason"] for r in records}
    assert set(reasons) == {"n2", "n3", "n4", "n5"}
    assert "bogus_w" in reasons["n2"] and "1 kept" in reasons["n2"]
    assert "UTF-8" in reasons["n3"]
    assert "differ from topic" in reasons["n4"]
    assert "timestamp" in reasons["n5"]


def test_ingest_v2_write_path_against_a_real_api_v2_write_server(
    mosquitto, victoria_metrics, tmp_path
):
    """api: v2 (influxdb-client write_api) against VictoriaMetrics' /api/v2/write."""
    site = uniq("site")
    now = time.time_ns()
    lines = [
        f"accel,device=d{i},model=rngd,node=n1,site={site},vendor=furiosa power_w={40 + i}.5 {now}"
        for i in range(5)
    ]
    cfg = ingest_config(mosquitto.url, victoria_metrics.url, "kwatt", tmp_path, api="v2")

    async def main() -> Ingest:
        ingest = Ingest(cfg)
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait_for(ingest.connected.is_set, 10, "ingest subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("pub")) as pub:
            await pub.publish(
                f"kwatt/v1/{site}/n1/metrics", ("\n".join(lines) + "\n").encode(), qos=1
            )
        await wait_for(lambda: ingest.stats.points_written >= 5, 10, "write")
        stop.set()
        await run
        return ingest

    ingest = asyncio.run(main())
    assert ingest.stats.writes >= 1 and ingest.stats.lines_rejected == 0
    got = victoria_metrics.series_values("accel_power_w", {"site": site})
    assert sorted(got.values()) == [40.5, 41.5, 42.5, 43.5, 44.5]


def test_ingest_waits_for_influxdb_and_acknowledges_only_after_the_write(mosquitto, tmp_path):
    """InfluxDB down: nothing is acknowledged; a second worker on the same session gets it all."""

    site, db = uniq("site"), uniq("late")
    now = time.time_ns()
    payload = "".join(
        f"accel,device=d{i},model=rngd,node=n1,site={site},vendor=furiosa power_w=40 {now}\n"
        for i in range(10)
    ).encode()
    influx = Influxd(tmp_path / "influx")
    influx.start()
    url = influx.url
    influx.stop()  # a URL where nothing listens yet
    cfg = ingest_config(mosquitto.url, url, db, tmp_path)

    async def main() -> None:
        ingest = Ingest(cfg)
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait_for(ingest.connected.is_set, 10, "ingest subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("pub")) as pub:
            await pub.publish(f"kwatt/v1/{site}/n1/metrics", payload, qos=1)
        await wait_for(lambda: ingest.stats.write_retries >= 2, 10, "retries")
        assert ingest.stats.points_written == 0
        stop.set()
        await run

    asyncio.run(main())
    influx.start()  # same port
    try:

        async def again() -> Ingest:
            ingest = Ingest(cfg)  # same client id: the persistent session redelivers
            stop = asyncio.Event()
            run = asyncio.create_task(ingest.run(stop))
            await wait_for(lambda: ingest.stats.points_written >= 10, 15, "redelivery")
            stop.set()
            await run
            return ingest

        asyncio.run(again())
        assert stored_points(influx.url, db, site) == 10
    finally:
        influx.stop()


def test_agent_holds_batches_while_no_one_subscribes(fresh_mosquitto, tmp_path):
    """MQTT 5 PUBACK "no matching subscribers": the agent keeps the batch instead of letting the
    broker discard it, and delivers everything, in order, once a subscriber appears."""
    site = uniq("site")
    got: list[lineproto.Point] = []

    async def main() -> AgentStats:
        async with emulated_node(tmp_path / "n1", devices=1) as emu:
            agent = build_agent(
                agent_config(
                    fresh_mosquitto.url, site, "n1", tmp_path / "n1", emu.serving_url, 0.25
                )
            )
            stop = asyncio.Event()
            run = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(1.5)
            assert agent.stats.published_points == 0
            assert agent.stats.no_subscriber_retries > 0 and len(agent.outbox) >= 3
            async with aiomqtt.Client(
                "127.0.0.1",
                fresh_mosquitto.port,
                identifier=uniq("late"),
                protocol=aiomqtt.ProtocolVersion.V5,
            ) as sub:
                await sub.subscribe(f"kwatt/v1/{site}/n1/metrics", qos=1)

                async def read() -> None:
                    async for m in sub.messages:
                        assert isinstance(m.payload, bytes)
                        got.extend(lineproto.parse_payload(m.payload).points)

                reader = asyncio.create_task(read())
                await asyncio.sleep(1.0)
                stop.set()
                stats = await run
                await wait_for(lambda: len(got) >= stats.published_points, 5, "delivery")
                reader.cancel()
                return stats

    stats = asyncio.run(main())
    assert stats.pending_batches == 0 and stats.published_points == len(got)
    seqs = [dict(p.fields)["seq"] for p in got if "seq" in dict(p.fields)]
    assert seqs == list(range(1, len(seqs) + 1))
