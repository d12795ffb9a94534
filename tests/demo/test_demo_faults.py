"""``kwatt demo --fault KIND@START[:DURATION]`` (issue 5 item 7): faults injected into the demo's own
processes (broker and InfluxDB stopped and started, the ingest and an agent SIGKILLed and restarted)
and the summary still reports ``lost`` = 0, the agent kill's cost reported separately."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kwatt.demo.faults import Fault, parse_fault
from kwatt.demo.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parents[2]


def test_parse_fault() -> None:
    assert parse_fault("broker@20s:15s") == Fault("broker", 20.0, 15.0)
    assert parse_fault("influxdb@45") == Fault("influxdb", 45.0, 10.0)  # default duration
    assert parse_fault("ingest-kill@1.5m") == Fault("ingest-kill", 90.0, 0.0)
    assert parse_fault("agent-kill@500ms:2s") == Fault("agent-kill", 0.5, 2.0)
    for bad in ("broker", "disk@5s", "broker@", "broker@-1s", "broker@5s:x", "@5s"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def _demo(*extra: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "demo", "--no-live", "--json", *extra],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        ("--broker", "mqtt://127.0.0.1:1", "--fault", "broker@1s:1s"),
        ("--influx", "http://127.0.0.1:1", "--fault", "influxdb@1s"),
        ("--fault", "disk@1s"),
        ("--duration", "5", "--fault", "ingest-kill@6s"),
    ],
)
def test_fault_usage_errors(extra: tuple[str, ...]) -> None:
    out = _demo(*extra, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "--fault" in out.stderr or "fault" in out.stderr


def test_demo_with_faults_loses_nothing(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    """Broker down 4 s, InfluxDB down 4 s, the ingest SIGKILLed, node-01's agent SIGKILLed, all on
    the demo's private services: every published point is stored; the agent kill costs at most
    its open batch (one flush interval), reported as ``lost_to_agent_kill``. (The ``mosquitto`` and
    ``influxd`` fixtures only skip this test where the binaries are missing.)"""
    out = _demo(
        "--nodes", "2", "--devices", "1", "--duration", "25",
        "--state-dir", str(tmp_path / "demo"),
        "--fault", "broker@5s:4s", "--fault", "influxdb@12s:4s",
        "--fault", "ingest-kill@18s", "--fault", "agent-kill@20s",
    )  # fmt: skip
    assert out.stdout, out.stderr[-3000:]
    s = json.loads(out.stdout)
    counts = {k: s.get(k) for k in ("published", "stored", "lost", "lost_to_agent_kill")}
    assert out.returncode == 0, (counts, s.get("agent_kill"), out.stderr[-3000:])
    assert s["published"] > 0
    assert s["lost"] == 0 and s["stored"] == s["published"], s
    assert [(f["kind"], f["start_s"], f["duration_s"]) for f in s["faults"]] == [
        ("broker", 5.0, 4.0),
        ("influxdb", 12.0, 4.0),
        ("ingest-kill", 18.0, 0.0),
        ("agent-kill", 20.0, 0.0),
    ]
    assert all("restored_at_s" in f for f in s["faults"])
    kill = s["agent_kill"]["node-01"]
    assert kill["missing_seqs"] == [] and kill["duplicate_batches"] == 0
    assert kill["stored_batches"] == kill["last_seq"] >= 20
    # the open batch at most: one flush interval (1 s) of a 1-card node's points
    per_batch = kill["stored_points"] / kill["stored_batches"]
    assert 0 <= s["lost_to_agent_kill"] <= per_batch + 1
    assert s["ingest"]["messages_deadlettered"] == 0
