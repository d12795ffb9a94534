"""demo/services.py against the real Debian binaries: Mosquitto, influxd, VictoriaMetrics."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import start_or_skip
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from kwatt.demo import services
from kwatt.demo.services import (
    Influxd,
    MissingBinaryError,
    Mosquitto,
    ServiceError,
    find_binary,
    free_port,
)
from kwatt.demo.victoriametrics import VictoriaMetrics

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- paho 2.x client


class Paho:
    """A connected paho-mqtt 2.x client on its own network thread, with blocking helpers."""

    def __init__(self, port: int, client_id: str = "", clean_session: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._subacks: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        self.client.on_connect = lambda c, u, flags, rc, props: self._connected.set()
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self._subacks.put(mid)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(5):
            self.close()
            raise AssertionError(f"no CONNACK from 127.0.0.1:{port}")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        assert self._subacks.get(timeout=5) == mid

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def paho(port: int, client_id: str = "", clean_session: bool = True) -> Iterator[Paho]:
    c = Paho(port, client_id, clean_session)
    try:
        yield c
    finally:
        c.close()


# --------------------------------------------------------------------------- Mosquitto


def test_mosquitto_qos1_publish_and_receive(mosquitto):
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}" and mosquitto.running
    prefix = uniq("t")
    topic = f"{prefix}/x"
    with paho(mosquitto.port) as sub, paho(mosquitto.port) as pub:
        sub.subscribe(f"{prefix}/#", qos=1)
        pub.publish(topic, b"hello", qos=1)
        msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"hello", 1)


def test_mosquitto_never_drops_qos1_for_a_lagging_subscriber(mosquitto):
    """2500 QoS1 messages queued for an offline durable session all arrive: with Mosquitto's
    default max_queued_messages (1000) all but ~1000 would be dropped after the PUBACK."""
    n = 2500
    topic, cid = uniq("lag"), uniq("lagging-sub")
    with paho(mosquitto.port, cid, clean_session=False) as sub:
        sub.subscribe(f"{topic}/#", qos=1)
    with paho(mosquitto.port) as pub:
        infos = [pub.client.publish(f"{topic}/m", str(i).encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)
    got: list[int] = []
    with paho(mosquitto.port, cid, clean_session=False) as sub:
        try:
            while len(got) < n:
                got.append(int(sub.get(timeout=5).payload))
        except queue.Empty:
            pass
        # leave no durable session behind on the shared broker
        sub.client.unsubscribe(f"{topic}/#")
    assert sorted(got) == list(range(n)), f"received {len(got)}/{n}"
    log = mosquitto.log_path.read_text()
    assert "dropped" not in log.lower()


def test_mosquitto_restart_with_persistence_keeps_port_and_retained_message(fresh_mosquitto):
    m = fresh_mosquitto
    assert m.persistence
    port, old_pid = m.port, m.pid
    topic = uniq("retained")
    with paho(port) as pub:
        pub.publish(topic, b"kept", qos=1, retain=True)

    m.stop()
    assert m.pid is None and not m.running and m.returncode == 0
    assert old_pid is not None and not pid_alive(old_pid)
    assert (m.persistence_dir / "mosquitto.db").is_file()
    m.start()
    assert m.port == port and m.pid not in (None, old_pid)

    with paho(port) as sub:
        sub.subscribe(topic, qos=1)
        msg = sub.get()
    assert (msg.payload, msg.retain) == (b"kept", True)

    m.restart()
    assert m.port == port
    with paho(port) as sub:
        sub.subscribe(topic, qos=1)
        assert sub.get().payload == b"kept"


def test_mosquitto_without_persistence_forgets_retained_messages_on_restart(tmp_path):
    with Mosquitto(tmp_path / "m") as m:
        topic = uniq("retained")
        with paho(m.port) as pub:
            pub.publish(topic, b"gone", qos=1, retain=True)
        m.restart()
        with paho(m.port) as sub:
            sub.subscribe(topic, qos=1)
            with pytest.raises(queue.Empty):
                sub.get(timeout=0.3)


def test_mosquitto_config_and_log_in_the_state_dir(tmp_path):
    state = tmp_path / "does" / "not" / "exist"
    with Mosquitto(state, extra_conf="max_packet_size 1000000") as m:
        conf = m.conf_path.read_text()
        assert m.conf_path.parent == state and m.log_path.parent == state
        assert f"listener {m.port} 127.0.0.1" in conf
        assert "max_queued_messages 0" in conf
        assert conf.rstrip().endswith("max_packet_size 1000000")
        assert ("user root" in conf) == (os.geteuid() == 0)
    assert m.log_path.is_file()


# --------------------------------------------------------------------------- influxd


def test_influxd_create_database_write_ns_and_count(influxd):
    db = uniq("db")
    influxd.create_database(db)
    t0 = 1_700_000_000_000_000_000
    body = "".join(f"cpu,node=n{i} load={i}.5,temp={40 + i}i {t0 + i}\n" for i in range(3))
    qs = urllib.parse.urlencode({"db": db, "precision": "ns"})
    req = urllib.request.Request(f"{influxd.url}/write?{qs}", data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    assert influxd.count(db, "cpu", "load") == 3
    assert influxd.count(db, "nothing_here", "load") == 0
    (series,) = influxd.query(db, "SELECT load, node FROM cpu ORDER BY time")
    assert series.name == "cpu"
    assert series.rows() == [
        {"time": t0, "load": 0.5, "node": "n0"},
        {"time": t0 + 1, "load": 1.5, "node": "n1"},
        {"time": t0 + 2, "load": 2.5, "node": "n2"},
    ]


def test_influxd_write_helper_maps_precision_us_to_u(influxd):
    """influxd 1.6 silently reads precision=us as ns; the helper sends u."""
    db = uniq("db")
    influxd.create_database(db)
    influxd.write(db, "m v=1 1700000000000001\n", precision="us")
    (series,) = influxd.query(db, "SELECT v FROM m")
    assert series.values == [[1_700_000_000_000_001_000, 1]]
    with pytest.raises(ValueError, match="precision"):
        influxd.write(db, "m v=1 1\n", precision="h")


def test_influxd_query_errors_raise(influxd):
    with pytest.raises(ServiceError, match="error parsing query"):
        influxd.query(None, "SELEKT 1")
    with pytest.raises(ServiceError, match="database not found"):
        influxd.query(uniq("missing"), "SELECT * FROM cpu")


def test_influxd_start_stop_start_keeps_port_and_data(tmp_path):
    svc = Influxd(tmp_path / "influx")
    with svc:
        svc.create_database("keep")
        svc.write("keep", "m v=1 1\n")
        port, rpc = svc.port, svc.rpc_port
    assert not svc.running
    with svc:
        assert (svc.port, svc.rpc_port) == (port, rpc)
        assert svc.count("keep", "m", "v") == 1
    conf = svc.conf_path.read_text()
    assert "reporting-enabled = false" in conf and f'"127.0.0.1:{rpc}"' in conf


# --------------------------------------------------------------------------- VictoriaMetrics


def test_victoria_metrics_accepts_influxdb_client_v2_write(victoria_metrics):
    vm = victoria_metrics
    node = uniq("n")
    now = time.time_ns()
    points = [
        Point("accel")
        .tag("node", node)
        .tag("device", f"d{i}")
        .field("power_w", 40.5 + i)
        .time(now, WritePrecision.NS)
        for i in range(3)
    ]
    with (
        InfluxDBClient(url=vm.url, token="unused", org="-") as client,
        client.write_api(write_options=SYNCHRONOUS) as write_api,
    ):
        write_api.write(bucket="kwatt", record=points)
    got = vm.series_values("accel_power_w", {"node": node})
    assert sorted(got.values()) == [40.5, 41.5, 42.5]
    assert f'accel_power_w{{device="d0",node="{node}"}}' in got
    assert vm.series_count(f'accel_power_w{{node="{node}"}}') == 3
    assert vm.query(f'sum(accel_power_w{{node="{node}"}})') == pytest.approx(124.5)
    with pytest.raises(ServiceError, match="gave 3 series"):
        vm.query(f'accel_power_w{{node="{node}"}}')


def test_victoria_metrics_reads_back_old_samples_via_export(victoria_metrics):
    vm = victoria_metrics
    node = uniq("n")
    req = urllib.request.Request(
        f"{vm.url}/write?db=telemetry",
        data=f"cpu,node={node} load=0.5 1700000000000000000\n".encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    assert vm.series_values("cpu_load", {"node": node}) == {
        f'cpu_load{{db="telemetry",node="{node}"}}': 0.5
    }
    assert vm.sample_count(f'cpu_load{{node="{node}"}}') == 1


# --------------------------------------------------------------------------- missing binaries


@pytest.mark.parametrize(
    ("binary", "package"),
    [("mosquitto", "mosquitto"), ("influxd", "influxdb"), ("victoria-metrics", "victoria-metrics")],
)
def test_missing_binary_message_gives_the_apt_command(binary, package, tmp_path, monkeypatch):
    with pytest.raises(MissingBinaryError) as ei:
        find_binary(binary, search_path=str(tmp_path))
    assert ei.value.package == package
    assert f"apt-get install -y {package}" in str(ei.value)
    assert isinstance(ei.value, ServiceError)
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    with pytest.raises(MissingBinaryError, match=f"sudo apt-get install -y {package}"):
        find_binary(binary, search_path=str(tmp_path))


def test_find_binary_looks_in_sbin_when_path_lacks_it(monkeypatch):
    try:
        expected = find_binary("mosquitto")
    except MissingBinaryError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("PATH", "/nonexistent")
    if Path(expected).parent.as_posix() in services._SBIN_DIRS:
        assert find_binary("mosquitto") == expected


def test_start_with_a_missing_binary_raises_before_spawning(tmp_path):
    svc = Influxd(tmp_path / "i", binary=str(tmp_path / "no-such-influxd"))
    with pytest.raises(MissingBinaryError, match="apt-get install -y influxdb"):
        svc.start()
    assert svc.pid is None
    svc.stop()  # harmless


def test_conftest_skips_locally_and_fails_in_ci(tmp_path, monkeypatch):
    svc = Mosquitto(tmp_path / "m", binary=str(tmp_path / "no-such-mosquitto"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y mosquitto"):
        start_or_skip(svc)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y mosquitto"):
        start_or_skip(svc)


# --------------------------------------------------------------------------- process handling


def test_stop_kills_the_process_by_pid_and_is_idempotent(tmp_path):
    svc = Mosquitto(tmp_path / "m").start()
    pid = svc.pid
    assert pid is not None and pid_alive(pid)
    assert svc.start() is svc and svc.pid == pid  # start() while running: no-op
    assert os.getpgid(pid) == pid  # its own session / process group
    svc.stop()
    assert not pid_alive(pid) and svc.pid is None and svc.returncode == 0
    svc.stop()
    svc.stop(timeout_s=0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", svc.port), timeout=0.5).close()


def fake_server(tmp_path: Path, body: str) -> str:
    """An executable Python script standing in for a server binary (gets the same argv)."""
    path = tmp_path / "fake-server"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_a_server_that_dies_at_start_raises_with_the_log_tail(tmp_path):
    binary = fake_server(
        tmp_path,
        """
        import sys
        print("Error: boom, cannot open the frobnicator", file=sys.stderr)
        sys.exit(3)
        """,
    )
    svc = Mosquitto(tmp_path / "m", binary=binary)
    with pytest.raises(ServiceError, match=r"(?s)exited with status 3.*boom, cannot open"):
        svc.start()
    assert svc.pid is None and svc.returncode == 3


def test_a_server_that_never_gets_ready_times_out_and_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    binary = fake_server(
        tmp_path,
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print("starting up, slowly", flush=True)
        time.sleep(60)
        """,
    )
    svc = Influxd(tmp_path / "i", binary=binary, ready_timeout_s=0.5)
    with pytest.raises(ServiceError, match=r"(?s)not ready .* within 0.5 s.*starting up, slowly"):
        svc.start()
    assert not pid_alive(int(pid_file.read_text()))
    assert svc.pid is None


def test_stop_sigkills_a_server_that_ignores_sigterm(tmp_path):
    # a fake "mosquitto": reads the listener line of its config and answers CONNECT with CONNACK
    binary = fake_server(
        tmp_path,
        """
        import signal, socket, sys, threading
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        conf = open(sys.argv[2]).read().split()
        port = int(conf[conf.index("listener") + 1])
        srv = socket.create_server(("127.0.0.1", port))
        while True:
            c, _ = srv.accept()
            c.recv(64)
            c.sendall(bytes([0x20, 2, 0, 0]))
            c.close()
        """,
    )
    svc = Mosquitto(tmp_path / "m", binary=binary).start()
    pid = svc.pid
    assert pid is not None
    t0 = time.monotonic()
    svc.stop(timeout_s=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert svc.returncode == -signal.SIGKILL and not pid_alive(pid)


def test_first_start_moves_to_another_port_when_its_port_was_taken(tmp_path):
    svc = Mosquitto(tmp_path / "m")
    squatter = socket.create_server(("127.0.0.1", svc.port))  # listens, never speaks MQTT
    try:
        taken = svc.port
        with svc:
            assert svc.port != taken
            with paho(svc.port) as c:
                c.publish(uniq("t"), b"x")
    finally:
        squatter.close()


def test_atexit_stops_services_left_running(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from kwatt.demo.services import Influxd, Mosquitto
        m = Mosquitto({str(tmp_path / "m")!r}).start()
        i = Influxd({str(tmp_path / "i")!r}).start()
        print(m.pid, i.pid, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        assert not pid_alive(pid), f"pid {pid} survived its parent's exit"


def test_free_port_is_bindable():
    port = free_port()
    assert 0 < port < 65536
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_repr_and_json_friendly_attributes(tmp_path):
    svc = VictoriaMetrics(tmp_path / "vm")
    assert "stopped" in repr(svc)
    with svc:
        assert f"pid {svc.pid}" in repr(svc)
        assert json.dumps({"url": svc.url, "port": svc.port, "log": str(svc.log_path)})
