"""systemd integration: the units verify, sd_notify speaks the protocol, and `kwatt agent` / `kwatt
ingest` say READY, ping the watchdog, reload on SIGHUP (keeping a bad config out) and say STOPPING."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from kwatt.agent.sdnotify import JournalFormatter, Notifier, journal_logging_wanted

REPO = Path(__file__).resolve().parents[2]
UNITS = ("kwatt-agent.service", "kwatt-ingest.service")


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------- units


def unit_lines(name: str) -> list[str]:
    return (REPO / "systemd" / name).read_text(encoding="utf-8").splitlines()


def directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_lines(name):
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", UNITS)
def test_unit_hardening_and_notify(name: str) -> None:
    d = directives(name)
    stem = name.removesuffix(".service")
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] and d["Restart"] == ["on-failure"]
    assert d["DynamicUser"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["ReadOnlyPaths"] == ["/sys"]
    assert d["EnvironmentFile"] == [f"-/etc/default/{stem}"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["StateDirectory"] == (["kwatt"] if stem == "kwatt-agent" else ["kwatt-ingest"])
    assert (REPO / "systemd" / f"{stem}.defaults").is_file()
    # every capability line is explained by the comment block right above it
    lines = unit_lines(name)
    for i, line in enumerate(lines):
        if line.startswith(("CapabilityBoundingSet=", "AmbientCapabilities=")):
            j = i - 1
            while lines[j].startswith(("CapabilityBoundingSet=", "AmbientCapabilities=")):
                j -= 1
            assert lines[j].startswith("#"), f"{name}: {line} has no comment"
    caps = d["CapabilityBoundingSet"][0].split()
    if stem == "kwatt-agent":
        assert caps == ["CAP_DAC_READ_SEARCH"] and d["SupplementaryGroups"] == ["video render"]
    else:
        assert caps == [] and "SupplementaryGroups" not in d


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        reason = "systemd-analyze not installed (Debian: apt-get install -y systemd)"
        if in_ci():
            pytest.fail(f"{reason}; scripts/bootstrap.sh --for test installs it")
        pytest.skip(reason)
    return exe


def verify(tmp_path: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )


def installed_copy(tmp_path: Path, name: str, text: str | None = None) -> Path:
    """The unit as installed, with /usr/bin/kwatt pointing at an executable that exists here
    (verify checks that ExecStart= programs exist)."""
    stub = tmp_path / "bin" / "kwatt"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    src = text if text is not None else (REPO / "systemd" / name).read_text(encoding="utf-8")
    dst = tmp_path / name
    dst.write_text(src.replace("/usr/bin/kwatt", str(stub)), encoding="utf-8")
    return dst


def test_systemd_analyze_verify_passes_on_both_units(tmp_path: Path) -> None:
    out = verify(tmp_path, [installed_copy(tmp_path, n) for n in UNITS])
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_systemd_analyze_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    text = (REPO / "systemd" / UNITS[0]).read_text(encoding="utf-8")
    text = text.replace("ProtectSystem=strict", "ProtectSystem=stricter\nRestartt=always")
    out = verify(tmp_path, [installed_copy(tmp_path, "kwatt-bad.service", text)])
    assert "Restartt" in out.stderr and "protect system" in out.stderr.lower()


# --------------------------------------------------------------------------- sd_notify


@contextlib.contextmanager
def notify_socket(path: Path | None = None) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if path is None:
        name = f"kwatt-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        sock.bind(str(path))
        address = str(path)
    sock.settimeout(0.2)
    try:
        yield sock, address
    finally:
        sock.close()


def test_notifier_sends_the_protocol_messages(tmp_path: Path) -> None:
    with notify_socket(tmp_path / "n.sock") as (sock, address):
        n = Notifier({"NOTIFY_SOCKET": address})
        assert n.enabled and n.ready("up") and n.watchdog() and n.stopping()
        assert n.reloading()
        got = [sock.recv(4096).decode() for _ in range(4)]
        n.close()
    assert got[0] == "READY=1\nSTATUS=up"
    assert got[1] == "WATCHDOG=1"
    assert got[2] == "STOPPING=1"
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", got[3])


def test_notifier_abstract_socket_and_no_socket() -> None:
    with notify_socket() as (sock, address):
        n = Notifier({"NOTIFY_SOCKET": address})
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
        n.close()
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready() and quiet.watchdog_interval_s is None
    gone = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert gone.ready() is False  # logged, never raised
    gone.close()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid_only() -> None:
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": me}).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "x"}).watchdog_interval_s is None


def test_journal_formatter_sets_the_priority_and_folds_lines(tmp_path: Path) -> None:
    fmt = JournalFormatter()
    rec = logging.LogRecord("kwatt.agent", logging.WARNING, __file__, 1, "a\nb", None, None)
    assert fmt.format(rec) == "<4>WARNING kwatt.agent: a | b"
    rec = logging.LogRecord("kwatt.ingest", logging.ERROR, __file__, 1, "x", None, None)
    assert fmt.format(rec).startswith("<3>ERROR kwatt.ingest")
    with (tmp_path / "f").open("w") as f:
        st = os.fstat(f.fileno())
        assert journal_logging_wanted({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not journal_logging_wanted({"JOURNAL_STREAM": "1:2"}, f.fileno())
        assert not journal_logging_wanted({}, f.fileno())


# --------------------------------------------------------------------------- the daemons


class Listener:
    """Collects sd_notify datagrams from the daemon under test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[str] = []

    def wait_for(self, key: str, timeout: float = 20.0, after: int = 0) -> int:
        """Index of the first message at or after ``after`` that has the line ``key``."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if key in self.messages[i].split("\n"):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key} within {timeout} s; got {self.messages}")
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())


def first_metrics(port: int, topic: str, timeout: float = 10.0) -> bytes | None:
    async def main() -> bytes | None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=uniq("probe")) as c:
            await c.subscribe(topic, qos=0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    async for m in c.messages:
                        assert isinstance(m.payload, bytes)
                        return m.payload
        return None

    return asyncio.run(main())


def start(argv: list[str], notify: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify,
        "WATCHDOG_USEC": "400000",  # ping every 0.2 s
    }
    env.pop("WATCHDOG_PID", None)
    with (tmp_path / "stderr.log").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "kwatt.cli", *argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


@pytest.mark.services
def test_agent_ready_watchdog_reload_and_stopping(mosquitto, tmp_path: Path) -> None:
    site = uniq("site")

    def config(node: str) -> dict[str, object]:
        return {
            "site": site,
            "node": node,
            "mqtt": {"url": mosquitto.url},
            "publish": {"flush_interval_s": "200ms", "require_subscriber": False},
            "collectors": [
                {
                    "type": "furiosa",
                    "name": "rngd",
                    "root": str(tmp_path / "none"),
                    "interval_s": "200ms",
                },
            ],
        }

    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump(config("before")))
    stats = tmp_path / "stats.json"
    with notify_socket(tmp_path / "notify.sock") as (sock, address):
        listen = Listener(sock)
        proc = start(["agent", "--config", str(cfg), "--stats-file", str(stats)], address, tmp_path)
        try:
            ready = listen.wait_for("READY=1")
            dog = listen.wait_for("WATCHDOG=1", after=ready)
            listen.wait_for("WATCHDOG=1", after=dog + 1)
            assert first_metrics(mosquitto.port, f"kwatt/v1/{site}/before/metrics")

            # a bad config: logged, the agent keeps running with the old one
            cfg.write_text(yaml.safe_dump({**config("after"), "bogus_key": 1}))
            n = len(listen.messages)
            proc.send_signal(signal.SIGHUP)
            failed = listen.wait_for(
                "STATUS=kwatt agent running; last reload failed: " + _status_tail(listen, n),
                after=n,
            )
            assert proc.poll() is None
            assert first_metrics(mosquitto.port, f"kwatt/v1/{site}/before/metrics")

            # a good one: RELOADING, READY, and the new node name on the wire
            cfg.write_text(yaml.safe_dump(config("after")))
            proc.send_signal(signal.SIGHUP)
            reloading = listen.wait_for("RELOADING=1", after=failed + 1)
            listen.wait_for("READY=1", after=reloading)
            assert first_metrics(mosquitto.port, f"kwatt/v1/{site}/after/metrics")

            proc.send_signal(signal.SIGTERM)
            listen.wait_for("STOPPING=1")
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "stderr.log").read_text()
    assert "reload failed, still running with the previous configuration" in log
    assert "bogus_key" in log
    doc = json.loads(stats.read_text())
    assert doc["published_points"] > 0 and doc["pending_batches"] == 0


def _status_tail(listen: Listener, after: int) -> str:
    """The reason text of the first STATUS= line at or after ``after`` (whatever the config
    loader says), so the test waits for the message without pinning its wording."""
    deadline = time.monotonic() + 20
    prefix = "STATUS=kwatt agent running; last reload failed: "
    while time.monotonic() < deadline:
        for msg in listen.messages[after:]:
            for line in msg.split("\n"):
                if line.startswith(prefix):
                    return line.removeprefix(prefix)
        with contextlib.suppress(TimeoutError):
            listen.messages.append(listen.sock.recv(4096).decode())
    raise AssertionError(f"no failed-reload STATUS; got {listen.messages[after:]}")


@pytest.mark.services
def test_ingest_ready_reload_and_stopping(mosquitto, influxd, tmp_path: Path) -> None:
    doc = {
        "mqtt": {"url": mosquitto.url, "client_id": uniq("ingest")},
        # its own share group: a stopped worker's persistent session keeps its share of the
        # session broker's default group, which would starve other tests' ingests
        "group": uniq("grp"),
        "influx": {"url": influxd.url, "database": uniq("sd")},
        "deadletter_dir": str(tmp_path / "dead"),
    }
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    with notify_socket(tmp_path / "notify.sock") as (sock, address):
        listen = Listener(sock)
        proc = start(["ingest", "--config", str(cfg)], address, tmp_path)
        try:
            ready = listen.wait_for("READY=1")
            listen.wait_for("WATCHDOG=1", after=ready)
            proc.send_signal(signal.SIGHUP)
            reloading = listen.wait_for("RELOADING=1", after=ready)
            listen.wait_for("READY=1", after=reloading)
            proc.send_signal(signal.SIGTERM)
            listen.wait_for("STOPPING=1")
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
