"""The emulator's pause control: conformance tests hold a node still while a vendor's tool reads it.

A paused node rewrites nothing (every file under its root keeps its bytes, its serving endpoint its
counters), its emulator time stands still (no jump in counters on resume), a timed pause ends by
itself, and the fleet runner honours a pause per node.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kwatt.emulators.faults import Fault, FaultEngine, FaultError, parse_fault, pause, resume
from kwatt.emulators.state import read_snapshot

REPO = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (but the control directory) and its bytes."""
    out: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and "control.d" not in p.parts:
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def start_node(root: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", "rngd,h100",
           "--service", "chatbot", "--root", str(root), "--period", "0.05", "--speed", "10",
           "--duration", "120", "--print-config", str(root.parent / "agent.yaml"), *extra]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())  # the ready line
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    if proc.stdout is not None:
        proc.stdout.close()


def test_paused_node_changes_nothing_and_time_does_not_jump(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = start_node(root)
    try:
        time.sleep(0.3)
        t_before = read_snapshot(root).t_s
        pause(root)
        frozen = tree(root)
        t_paused = read_snapshot(root).t_s
        assert t_paused >= t_before
        time.sleep(0.6)  # 12 periods: a running node would have rewritten everything by now
        assert tree(root) == frozen
        # the CLI route resumes it
        subprocess.run([sys.executable, "-m", "kwatt.cli", "emulate", "fault", "--root", str(root),
                        "--kind", "resume"], cwd=REPO, check=True, capture_output=True, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 10
        while read_snapshot(root).t_s == t_paused:
            assert time.monotonic() < deadline, "the node did not resume"
            time.sleep(0.02)
        # 0.6 s of wall time paused at --speed 10 would be 6 s of emulator time: it is left out
        assert read_snapshot(root).t_s - t_paused < 3.0
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_timed_pause_ends_by_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = start_node(root)
    try:
        pause(root, duration_s=0.3)
        t_paused = read_snapshot(root).t_s
        deadline = time.monotonic() + 10
        while read_snapshot(root).t_s == t_paused:
            assert time.monotonic() < deadline, "a timed pause did not end"
            time.sleep(0.02)
    finally:
        stop(proc)


def test_fleet_pauses_one_node_only(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "kwatt.emulators.node", "fleet", "--nodes", "2", "--devices", "rngd",
           "--service", "steady", "--root", str(tmp_path), "--duration", "60", "--period", "0.05",
           "--print-config", str(tmp_path / "cfg")]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        a, b = (Path(n["root"]) for n in ready["nodes"])
        pause(a)
        ta, tb = read_snapshot(a).t_s, read_snapshot(b).t_s
        deadline = time.monotonic() + 10
        while read_snapshot(b).t_s == tb:
            assert time.monotonic() < deadline, "the other node stopped too"
            time.sleep(0.02)
        assert read_snapshot(a).t_s == ta
        resume(a)
        while read_snapshot(a).t_s == ta:
            assert time.monotonic() < deadline, "the paused node did not resume"
            time.sleep(0.02)
    finally:
        stop(proc)


def test_pause_needs_a_running_node_and_is_taken_between_steps(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="not applied"):
        pause(tmp_path, timeout_s=0.2)
    # inside a step (poll_commands without pause=True) the command waits for the run loop
    engine = FaultEngine(tmp_path)
    engine.poll_commands()
    assert not engine.paused()
    engine.poll_commands(pause=True)
    assert engine.paused()
    engine.schedule([parse_fault({"kind": "resume"})])
    engine.advance(0.0)
    assert not engine.paused()
    with pytest.raises(FaultError, match="kind"):
        parse_fault({"kind": "pause-please"})
    assert Fault(kind="pause").duration_s is None


def test_paused_serving_endpoint_keeps_its_counters(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", "rngd",
           "--service", "chatbot", "--root", str(root), "--period", "0.05", "--duration", "120",
           "--print-config", str(tmp_path / "agent.yaml")]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["serving"]
        time.sleep(0.5)
        pause(root)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            first = r.read()
        time.sleep(0.3)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            assert r.read() == first
    finally:
        stop(proc)
