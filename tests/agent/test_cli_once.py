"""``kwatt agent --config FILE --once`` (issue 13, part 6): poll once, print, touch nothing.

As ``telegraf --test``: every configured collector is polled once and the line protocol the agent
would publish (the collectors' samples, each collector's ``agent`` point and the batch's ``agent``
point) goes to stdout; no MQTT connection is attempted and no spool is created. Exit status 0 when
every collector succeeded, 1 when one failed (the reason on stderr, never a traceback), 2 when the
config names no collector.

Real processes only: ``kwatt emulate node`` prints the config, ``kwatt agent --once`` runs it; the
broker address in the config is a TCP listener of this test that must see no connection, and the
spool directory must not exist afterwards. Every line goes through the ingest's strict parser.
"""

from __future__ import annotations

import copy
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import in_ci

from kwatt.emulators.nvidia import gpu_uuid
from kwatt.emulators.state import DeviceState, read_snapshot
from kwatt.wire import lineproto

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
#: FuriosaAI (sysfs + hwmon), Sapeon (tool) and NVIDIA (the emulated libnvidia-ml.so.1, read by the
#: real nvidia-ml-py, and nvidia-smi) cards, with the host meters and the serving runtimes of chatbot
#: and traffic.
DEVICES = "rngd,warboy,x220-compact,l4"


@dataclass(frozen=True)
class Node:
    root: Path
    tmp: Path
    doc: dict[str, Any]  # the printed agent config
    devices: tuple[DeviceState, ...]
    env: dict[str, str]  # the agent's environment: LD_LIBRARY_PATH at the node's libnvidia-ml.so.1


@dataclass(frozen=True)
class Once:
    rc: int
    stdout: bytes
    stderr: str
    points: list[lineproto.Point]


def device_tag(dev: DeviceState) -> str:
    """The ``device`` tag each vendor's collector gives a card (DESIGN §4 identity rule)."""
    return {
        "furiosa": dev.uuid.upper(),
        "sapeon": dev.bus_id,
        "nvidia": gpu_uuid(dev),
    }[dev.vendor]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("once")
    root, printed = tmp / "root", tmp / "printed.yaml"
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", DEVICES,
           "--service", "chatbot,traffic", "--root", str(root), "--period", "0.25",
           "--name", "once0", "--print-config", str(printed)]  # fmt: skip
    with (tmp / "node.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        if "nvml_lib" not in ready:
            why = "the node could not build its libnvidia-ml.so.1 (no compiler or nvml.h)"
            if in_ci():
                pytest.fail(f"{why} [CI is set]", pytrace=False)
            pytest.skip(why)
        doc = yaml.safe_load(printed.read_text(encoding="utf-8"))
        for c in doc["collectors"]:
            c["timeout_s"] = 20.0  # a loaded 2-core machine must not time a healthy poll out
        devices = tuple(d for d in read_snapshot(root).devices if d.present)
        env = {**ENV, "LD_LIBRARY_PATH": ready["nvml_lib"]}
        env.pop("KWATT_NVML_STATE", None)
        yield Node(root, tmp, doc, devices, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def broker() -> Iterator[socket.socket]:
    """A listening TCP socket standing in for the broker: ``--once`` must never connect to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


def connected(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0.2)
    return bool(readable)


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def once(config: Path, *extra: str, env: dict[str, str] | None = None) -> Once:
    r = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "agent", "--config", str(config), "--once", *extra],
        cwd=REPO, env=ENV if env is None else env, capture_output=True, timeout=180,
    )  # fmt: skip
    parsed = lineproto.ParseResult()
    if r.stdout:
        parsed = lineproto.parse_payload(r.stdout)
        assert parsed.ok, parsed.errors
    stderr = r.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr
    return Once(r.returncode, r.stdout, stderr, parsed.points)


def tags(p: lineproto.Point) -> dict[str, str]:
    return dict(p.tags)


def agent_points(points: list[lineproto.Point]) -> dict[str, dict[str, float | int]]:
    """Per-collector ``agent`` points by collector name (each exactly once)."""
    out: dict[str, dict[str, float | int]] = {}
    for p in points:
        if p.measurement == "agent" and "collector" in tags(p):
            name = tags(p)["collector"]
            assert name not in out, f"two agent points for {name}"
            out[name] = dict(p.fields)
    return out


def on_node(node: Node, broker: socket.socket, name: str) -> dict[str, Any]:
    """The node's printed config, with the broker address of ``broker`` and a spool that must not
    be created."""
    doc: dict[str, Any] = copy.deepcopy(node.doc)
    doc["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker.getsockname()[1]}"}
    doc["spool"] = {"dir": str(node.tmp / f"spool-{name}")}
    return doc


def test_once_prints_what_the_agent_would_publish(node: Node, broker: socket.socket) -> None:
    doc = on_node(node, broker, "ok")
    r = once(write_config(node.tmp / "ok.yaml", doc), env=node.env)
    assert r.rc == 0, r.stderr
    assert not connected(broker), "--once connected to the broker"
    assert not (node.tmp / "spool-ok").exists(), "--once created the spool"
    assert r.stdout.endswith(b"\n")
    for p in r.points:
        assert (tags(p)["site"], tags(p)["node"]) == (doc["site"], "once0")

    # every collector polled once, successfully, with the agent's own per-poll point
    names = [c["name"] for c in doc["collectors"]]
    polls = agent_points(r.points)
    assert sorted(polls) == sorted(names)
    for name, fields in polls.items():
        assert fields["collect_ok"] == 1, name
        assert fields["collect_errors_total"] == 0, name
        assert 0 < float(fields["collect_duration_s"]) < 180, name
    # the batch's own point, as the agent closes every batch
    (batch,) = [p for p in r.points if p.measurement == "agent" and "collector" not in tags(p)]
    assert dict(batch.fields) == {"seq": 1, "dropped_total": 0, "spool_bytes": 0}

    # every card, tagged as its collector tags it, and the host meters and serving runtimes
    accel = {
        (tags(p)["vendor"], tags(p)["model"], tags(p)["device"])
        for p in r.points
        if p.measurement == "accel"
    }
    want = {(d.vendor, d.model, device_tag(d)) for d in node.devices}
    assert want <= accel, (want - accel, accel)
    assert len(node.devices) == len(DEVICES.split(","))
    for p in r.points:
        if p.measurement == "accel":
            fields = dict(p.fields)
            assert "power_w" in fields and fields["power_w"] > 0, p
    sources = {tags(p)["source"] for p in r.points if p.measurement == "host"}
    assert {"rapl", "hwmon", "dcmi", "redfish"} <= sources
    runtimes = {tags(p)["runtime"] for p in r.points if p.measurement == "serving"}
    assert {"furiosa-llm", "triton"} <= runtimes


def test_once_exits_1_when_a_collector_fails(node: Node, broker: socket.socket) -> None:
    doc = on_node(node, broker, "fail")
    empty = node.tmp / "empty-root"
    empty.mkdir()
    doc["collectors"].append({"type": "rapl", "name": "rapl-nowhere", "root": str(empty)})
    r = once(write_config(node.tmp / "fail.yaml", doc), env=node.env)
    assert r.rc == 1, r.stderr
    assert not connected(broker)
    assert not (node.tmp / "spool-fail").exists()
    polls = agent_points(r.points)
    assert polls["rapl-nowhere"]["collect_ok"] == 0
    assert polls["rapl-nowhere"]["collect_errors_total"] == 1
    assert all(f["collect_ok"] == 1 for n, f in polls.items() if n != "rapl-nowhere")
    assert "1 of" in r.stderr and "rapl-nowhere" in r.stderr
    assert f"{empty}/sys/class/powercap" in r.stderr  # the reason names what was not there
    # the others' samples are printed all the same
    assert any(p.measurement == "accel" for p in r.points)


def test_once_runs_the_config_kwatt_doctor_suggests(node: Node, broker: socket.socket) -> None:
    suggested = node.tmp / "doctor.yaml"
    doctor = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "doctor", "--root", str(node.root), "--node", "once0",
         "--broker", f"mqtt://127.0.0.1:{broker.getsockname()[1]}", "--print-config", str(suggested)],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    r = once(suggested, env=node.env)
    assert r.rc == 0, r.stderr
    assert not connected(broker)
    kept = [c["name"] for c in yaml.safe_load(suggested.read_text(encoding="utf-8"))["collectors"]]
    assert sorted(agent_points(r.points)) == sorted(kept)


def test_once_exits_2_when_the_config_names_no_collector(tmp_path: Path) -> None:
    config = write_config(tmp_path / "none.yaml", {"site": "s", "node": "n"})
    r = once(config)
    assert r.rc == 2
    assert r.stdout == b""
    assert "names no collector" in r.stderr and str(config) in r.stderr


def test_once_on_this_machine_says_clearly_what_it_found(tmp_path: Path) -> None:
    """hwmon and RAPL on the real /sys: whatever this machine has (a CI container usually has
    neither), the answer is line protocol and a clear message, never a traceback."""
    doc = {
        "site": "here",
        "node": "this-node",
        "spool": {"dir": str(tmp_path / "spool")},
        "collectors": [
            {"type": "hwmon", "name": "hwmon", "root": "/"},
            {"type": "rapl", "name": "rapl", "root": "/"},
        ],
    }
    r = once(write_config(tmp_path / "here.yaml", doc))
    assert not (tmp_path / "spool").exists()
    polls = agent_points(r.points)
    assert sorted(polls) == ["hwmon", "rapl"]
    failed = sorted(n for n, f in polls.items() if f["collect_ok"] == 0)
    assert r.rc == (1 if failed else 0), r.stderr
    if failed:
        assert f"{len(failed)} of 2 collector(s) failed: {', '.join(failed)}" in r.stderr
        for name in failed:  # the reason is logged once per collector
            assert f"collector {name} failed: " in r.stderr, r.stderr
    if len(failed) == 2:
        assert "nothing could be read with this config" in r.stderr
        assert [p.measurement for p in r.points].count("agent") == 3  # 2 polls + the batch
