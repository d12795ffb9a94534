"""Transport security (issue #5 §5): the shipped Mosquitto config (deploy/mosquitto/) run for real
with certificates made by openssl, password files, the per-node ACL, the ingest's own check, the
agent's certificate-identity check, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
import yaml

from kwatt.agent.config import agent_config_from, load_agent_config
from kwatt.agent.runtime import Agent
from kwatt.demo.services import find_binary, free_port
from kwatt.ingest.config import BatchConfig, IngestConfig, load_ingest_config
from kwatt.ingest.worker import Ingest
from kwatt.wire.influx import InfluxQL
from kwatt.wire.mqtt import (
    NOT_AUTHORIZED,
    cert_common_name,
    check_node_identity,
    make_client,
    tls_context,
)
from kwatt.wire.settings import ConfigError, InfluxConfig, MqttConfig, TlsConfig

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
INGEST_SECRET = "ingest-" + uuid.uuid4().hex


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d,
    )  # fmt: skip


def make_cert(d: Path, ca: str, cn: str, ext: str) -> None:
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{cn}.key",
        "-out", f"{cn}.csr", cwd=d,
    )  # fmt: skip
    (d / f"{cn}.ext").write_text(ext)
    openssl(
        "x509", "-req", "-in", f"{cn}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{cn}.ext", "-out", f"{cn}.crt", cwd=d,
    )  # fmt: skip
    (d / f"{cn}.key").chmod(0o600)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Broker:
    plain_port: int
    tls_port: int
    certs: Path
    passwd_file: Path
    log: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        find_binary("openssl")
    except Exception as e:
        pytest.skip(str(e))
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "kwatt-ca")
    make_ca(d, "other-ca")
    make_cert(d, "kwatt-ca", "broker", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for cn in ("node-a", "node-b"):
        make_cert(d, "kwatt-ca", cn, "extendedKeyUsage=clientAuth\n")
    make_cert(d, "other-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    return d


@pytest.fixture(scope="module")
def production_broker(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """mosquitto started with deploy/mosquitto/mosquitto.conf and kwatt.acl, only paths, ports
    and the log destination substituted."""
    try:
        binary = find_binary("mosquitto")
        passwd_bin = find_binary("mosquitto_passwd")
    except Exception as e:
        pytest.skip(str(e))
    d = tmp_path_factory.mktemp("prod-broker")
    (d / "data").mkdir()
    passwd = d / "kwatt.passwd"
    subprocess.run([passwd_bin, "-c", "-b", str(passwd), "kwatt-ingest", INGEST_SECRET], check=True)
    acl = d / "kwatt.acl"
    acl.write_text((DEPLOY / "kwatt.acl").read_text())
    plain, tls = free_port(), free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    for old, new in {
        "/var/lib/mosquitto/": f"{d / 'data'}/",
        "/etc/mosquitto/kwatt.passwd": str(passwd),
        "/etc/mosquitto/kwatt.acl": str(acl),
        "/etc/mosquitto/certs/kwatt-ca.crt": str(certs / "kwatt-ca.crt"),
        "/etc/mosquitto/certs/broker.crt": str(certs / "broker.crt"),
        "/etc/mosquitto/certs/broker.key": str(certs / "broker.key"),
        "listener 1883 127.0.0.1": f"listener {plain} 127.0.0.1",
        "listener 8883\n": f"listener {tls} 127.0.0.1\n",
        "log_dest syslog": "log_dest stderr",
    }.items():
        assert old in conf, f"deploy/mosquitto/mosquitto.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    if os.geteuid() == 0:  # the broker would drop to user 'mosquitto' (mosquitto.conf(5), user)
        conf += "user root\n"
    (d / "mosquitto.conf").write_text(conf)
    log = d / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stderr=out)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            if listening(tls) and listening(plain):
                break
            assert time.monotonic() < deadline, "broker never listened"
            time.sleep(0.02)
        yield Broker(plain, tls, certs, passwd_file=d / "ingest.secret", log=log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def node_mqtt(b: Broker, cn: str, ca: str = "kwatt-ca") -> MqttConfig:
    c = b.certs
    return MqttConfig(
        url=f"mqtts://127.0.0.1:{b.tls_port}",
        tls=TlsConfig(
            ca_file=str(c / f"{ca}.crt"),
            cert_file=str(c / f"{cn}.crt"),
            key_file=str(c / f"{cn}.key"),
        ),
        connect_timeout_s=5,
    )


def ingest_mqtt(b: Broker) -> MqttConfig:
    b.passwd_file.write_text(INGEST_SECRET + "\n")
    b.passwd_file.chmod(0o600)
    return MqttConfig(
        url=f"mqtt://127.0.0.1:{b.plain_port}",
        client_id=uniq("ingest"),
        username="kwatt-ingest",
        password_file=str(b.passwd_file),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


def line(site: str, node: str, i: int) -> bytes:
    ts = time.time_ns() - 10**9 + i
    return f"accel,site={site},node={node},vendor=v,model=m,device=d{i} power_w=1.5 {ts}\n".encode()


# --------------------------------------------------------------------------- TLS


# paho leaves the TLS socket of a refused connection to the garbage collector: see below
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_wrong_ca_is_refused_both_ways(production_broker: Broker) -> None:
    b = production_broker

    async def connect(cfg: MqttConfig) -> None:
        async with make_client(cfg, identifier=uniq("c")):
            pass

    # the agent does not trust a broker certificate from another CA
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(connect(node_mqtt(b, "node-a", ca="other-ca")))
    # the broker does not accept a client certificate from another CA (refused during or right
    # after the handshake, depending on the TLS version)
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(connect(node_mqtt(b, "rogue")))
    # anonymous and wrong-password clients on the plain listener are refused
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(connect(MqttConfig(url=f"mqtt://127.0.0.1:{b.plain_port}")))
    b.passwd_file.write_text("wrong\n")
    bad = MqttConfig(
        url=f"mqtt://127.0.0.1:{b.plain_port}",
        username="kwatt-ingest",
        password_file=str(b.passwd_file),
    )
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(connect(bad))
    # positive control: the right CA and a kwatt client certificate connect
    asyncio.run(connect(node_mqtt(b, "node-a")))
    gc.collect()  # the refused connections' sockets: their warnings belong to this test


# paho leaves the TLS socket of a connection the broker closed for garbage collection; collected
# inside this test (gc.collect below), its ResourceWarning is ignored here and not blamed on another.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_acl_drops_a_node_writing_another_nodes_topic(
    production_broker: Broker, influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """node-a (certificate CN) publishes to its own topic and to node-b's: the real ingest,
    logged in with a password from a file over the same ACL, stores only node-a's points."""
    b, site, db = production_broker, uniq("site"), uniq("acl")
    caplog.set_level(logging.DEBUG)

    async def main() -> Ingest:
        ingest = Ingest(
            IngestConfig(
                mqtt=ingest_mqtt(b),
                influx=InfluxConfig(url=influxd.url, database=db),
                batch=BatchConfig(max_delay_s=0.1),
                group=uniq("g"),
                deadletter_dir=str(tmp_path / "dl"),
            )
        )
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait(ingest.connected.is_set, "ingest subscribed")
        async with make_client(node_mqtt(b, "node-a"), identifier=uniq("a")) as pub:
            for i in range(5):
                own = f"kwatt/v1/{site}/node-a/metrics"
                assert await pub.publish_acked(own, line(site, "node-a", i), 1) == 0
        # Mosquitto 2.0.11 answers the forged publish with PUBACK 0x87 "Not authorized"
        # (MQTT 5.0 §3.4.2.1) and then closes the connection
        other = f"kwatt/v1/{site}/node-b/metrics"
        with contextlib.suppress(aiomqtt.MqttError):  # the close may race the context's exit
            async with make_client(node_mqtt(b, "node-a"), identifier=uniq("a")) as pub:
                reasons.append(await pub.publish_acked(other, line(site, "node-b", 9), 1))
        await wait(lambda: ingest.stats.points_written >= 5, "node-a's points")
        await asyncio.sleep(0.5)  # anything else that was going to arrive has arrived
        stop.set()
        await run
        return ingest

    reasons: list[int] = []
    ingest = asyncio.run(main())
    gc.collect()
    assert reasons == [NOT_AUTHORIZED]
    q = InfluxQL(InfluxConfig(url=influxd.url, database=db))
    try:
        a = q.count_points("accel", "\"node\" = 'node-a'")
        n_forged = q.count_points("accel", "\"node\" = 'node-b'")
    finally:
        q.close()
    assert (a, n_forged) == (5, 0)
    assert ingest.stats.messages == 5  # the broker never delivered the forged ones
    assert ingest.stats.messages_deadlettered == 0
    assert INGEST_SECRET not in caplog.text


def test_without_acl_the_ingest_rejects_a_forged_node(mosquitto, influxd, tmp_path: Path) -> None:
    """On a broker with no ACL, node-a writing node-a's data to node-b's topic reaches the ingest,
    which dead-letters it (the tags differ from the topic) and keeps the honest message."""
    site, db = uniq("site"), uniq("noacl")

    async def main() -> Ingest:
        ingest = Ingest(
            IngestConfig(
                mqtt=MqttConfig(url=mosquitto.url, client_id=uniq("ingest")),
                influx=InfluxConfig(url=influxd.url, database=db),
                batch=BatchConfig(max_delay_s=0.1),
                group=uniq("g"),
                deadletter_dir=str(tmp_path / "dl"),
            )
        )
        stop = asyncio.Event()
        run = asyncio.create_task(ingest.run(stop))
        await wait(ingest.connected.is_set, "ingest subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=uniq("a")) as pub:
            await pub.publish(f"kwatt/v1/{site}/node-b/metrics", line(site, "node-a", 1), 1)
            await pub.publish(f"kwatt/v1/{site}/node-a/metrics", line(site, "node-a", 2), 1)
        await wait(lambda: ingest.stats.messages >= 2, "both messages")
        stop.set()
        await run
        return ingest

    ingest = asyncio.run(main())
    assert ingest.stats.messages_deadlettered == 1 and ingest.stats.points_written == 1
    text = (tmp_path / "dl" / "deadletter.jsonl").read_text()
    assert f"kwatt/v1/{site}/node-b/metrics" in text
    assert "differ from topic" in text


# --------------------------------------------------------------------------- identity


def test_certificate_cn_is_the_node_identity(certs: Path) -> None:
    assert cert_common_name(str(certs / "node-a.crt")) == "node-a"
    cfg = MqttConfig(
        url="mqtts://127.0.0.1:8883",
        tls=TlsConfig(
            ca_file=str(certs / "kwatt-ca.crt"),
            cert_file=str(certs / "node-a.crt"),
            key_file=str(certs / "node-a.key"),
        ),
    )
    check_node_identity(cfg, "node-a")
    with pytest.raises(ConfigError, match=r"node-a\.crt.*CN='node-a'.*'node-b'"):
        check_node_identity(cfg, "node-b")
    # the agent refuses to start with a mismatch
    doc = {
        "site": "s",
        "node": "node-b",
        "mqtt": {
            "url": "mqtts://127.0.0.1:8883",
            "tls": {
                "ca_file": str(certs / "kwatt-ca.crt"),
                "cert_file": str(certs / "node-a.crt"),
                "key_file": str(certs / "node-a.key"),
            },
        },
    }
    with pytest.raises(ConfigError, match="node-a"):
        Agent(agent_config_from(doc, where="t"), [])
    with pytest.raises(ConfigError, match="cannot read certificate"):
        cert_common_name(str(certs / "missing.crt"))


# --------------------------------------------------------------------------- secrets


def test_readable_secret_files_are_warned_about_without_their_content(
    certs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    pw, token = tmp_path / "mqtt.pw", tmp_path / "influx.token"
    for p in (pw, token):
        p.write_text(secret + "\n")
        p.chmod(0o644)
    key = tmp_path / "node-a.key"
    key.write_bytes((certs / "node-a.key").read_bytes())
    key.chmod(0o640)
    mqtt = {
        "url": "mqtts://127.0.0.1:8883",
        "username": "node-a",
        "password_file": str(pw),
        "tls": {
            "ca_file": str(certs / "kwatt-ca.crt"),
            "cert_file": str(certs / "node-a.crt"),
            "key_file": str(key),
        },
    }
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(yaml.safe_dump({"site": "s", "node": "node-a", "mqtt": mqtt}))
    ingest_yaml = tmp_path / "ingest.yaml"
    ingest_yaml.write_text(yaml.safe_dump({"mqtt": mqtt, "influx": {"token_file": str(token)}}))
    with caplog.at_level(logging.WARNING):
        load_agent_config(agent_yaml)
        load_ingest_config(ingest_yaml)
    warned = [
        r.getMessage() for r in caplog.records if "readable by group/others" in r.getMessage()
    ]
    assert sum(str(pw) in m for m in warned) == 2
    assert sum(str(key) in m for m in warned) == 2
    assert sum(str(token) in m for m in warned) == 1
    assert secret not in caplog.text
    # 0600 files: no warning
    caplog.clear()
    for p in (pw, token, key):
        p.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        load_ingest_config(ingest_yaml)
    assert "readable by group/others" not in caplog.text


def test_ingest_process_never_logs_its_secrets(production_broker: Broker, tmp_path: Path) -> None:
    """`kwatt ingest --log-level debug` connecting with a password and an InfluxDB token from files:
    neither appears anywhere in its log."""
    b = production_broker
    token = "tok-" + uuid.uuid4().hex
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    m = ingest_mqtt(b)
    cfg = {
        "mqtt": {
            "url": m.url,
            "client_id": uniq("ingest"),
            "username": m.username,
            "password_file": m.password_file,
        },
        # nothing listens here: the ingest logs its write retries (with URLs) at debug level
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "token_file": str(token_file)},
        "group": uniq("g"),
        "deadletter_dir": str(tmp_path / "dl"),
    }
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kwatt.cli",
            "ingest",
            "--config",
            str(path),
            "--log-level",
            "debug",
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )

    # publish one message as node-a so the ingest tries (and fails) to write it with the token
    async def publish() -> None:
        async with make_client(node_mqtt(b, "node-a"), identifier=uniq("a")) as pub:
            await pub.publish_acked("kwatt/v1/s/node-a/metrics", line("s", "node-a", 1), 1)

    time.sleep(1.5)
    asyncio.run(publish())
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    log = err.decode()
    assert "subscribed to" in log  # it did log in
    assert re.search(r"InfluxDB unavailable", log)  # and did try to write
    assert INGEST_SECRET not in log
    assert token not in log


async def wait(predicate: object, what: str, timeout_s: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_tls_context_verifies_hostname_by_default(certs: Path) -> None:
    ctx = tls_context(node_mqtt(Broker(1, 2, certs, certs / "x", certs / "y"), "node-a"))
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
