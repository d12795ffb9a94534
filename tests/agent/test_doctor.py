"""``kwatt doctor``: probes an emulated node, suggests a config that the agent runs unchanged."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kwatt import collectors
from kwatt.agent import doctor
from kwatt.agent.config import load_agent_config
from kwatt.agent.runtime import Agent, _PollState
from kwatt.cli import main as cli_main
from kwatt.collectors.base import CollectorUnavailable
from kwatt.emulators import libnvml
from kwatt.emulators.faults import Fault
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.wire.model import Sample

REPO = Path(__file__).resolve().parents[2]
DEVICES = "rngd:1,atom:1,h100:1,x220-compact:1,warboy:1"
SERVICES = ("chatbot", "traffic")
EXPECTED_TYPES = [
    "furiosa",
    "rebellions",
    "sapeon",
    "nvml",
    "rapl",
    "hwmon",
    "ipmi_dcmi",
    "redfish",
    "serving",
]


def node_at(root: Path, devices: str = DEVICES) -> Node:
    return Node(root, NodeOptions(devices=parse_devices(devices), services=SERVICES))


def kwatt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kwatt.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


async def poll_every_collector(config: Path) -> dict[str, list[Sample]]:
    """One poll of each collector through the agent's own poll path: samples per collector."""

    cfg = load_agent_config(config)
    built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
    agent = Agent(cfg, built)
    out: dict[str, list[Sample]] = {}
    try:
        for entry, c in built:
            agent._pending.clear()
            await agent._poll_once(entry, c, _PollState())
            out[entry.name] = list(agent._pending)
    finally:
        for _, c in built:
            await c.aclose()
    return out


def test_doctor_on_emulated_node_prints_a_config_the_agent_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, conf = tmp_path / "node", tmp_path / "agent.yaml"

    async def go() -> None:
        async with node_at(root) as node:
            node.step(0.0)
            node.step(1.0)
            serving = f"{node.endpoints['serving:furiosa-llm']}/metrics=chatbot:furiosa-llm"
            args = ["doctor", "--root", str(root), "--serving", serving, "--site", "emulated"]
            args += ["--node", "node0", "--redfish", node.endpoints["redfish"]]
            r = await asyncio.to_thread(kwatt, *args, "--print-config", str(conf))
            assert r.returncode == 0, r.stderr
            for want in ("rngd", "RBLN-CA12", "x220-compact", "h100", "warboy", "ok"):
                assert want in r.stdout, want
            j = await asyncio.to_thread(kwatt, *args, "--json")
            assert j.returncode == 0, j.stderr
            report = json.loads(j.stdout)

            check = await asyncio.to_thread(kwatt, "agent", "--config", str(conf), "--check")
            assert check.returncode == 0, check.stderr
            node.step(2.0)
            # this process's NVML reads the node, as an agent with LD_LIBRARY_PATH there would
            monkeypatch.setenv(libnvml.STATE_ENV, str(libnvml.state_path(root)))
            libnvml.load_in_process(root)
            polled = await poll_every_collector(conf)

        probes = {p["name"]: p for p in report["probes"]}
        vendors = {
            "furiosa": ("furiosa", "rngd"),
            "rebellions": ("rebellions", "RBLN-CA12"),
            "sapeon": ("sapeon", "x220-compact"),
            "nvml": ("nvidia", "h100"),
        }
        for name, (vendor, model) in vendors.items():
            assert probes[name]["status"] == "ok", probes[name]
            assert (vendor, model) in {(d["vendor"], d["model"]) for d in probes[name]["devices"]}
            assert probes[name]["kept"]
        assert probes["furiosa"]["devices"][0]["driver_version"]
        # the furiosa collector reads the Warboy too; hwmon (still ok and kept) leaves its chip alone
        assert ("furiosa", "warboy") in {
            (d["vendor"], d["model"]) for d in probes["furiosa"]["devices"]
        }
        assert probes["hwmon"]["status"] == "ok" and probes["hwmon"]["kept"]
        assert "warboy" not in {d["model"] for d in probes["hwmon"]["devices"]}
        assert "power_w" in probes["nvml"]["fields"]
        assert probes["nvml"]["cost_ms"] > 0
        # nvidia-smi works too but reads the same GPU as NVML: not in the config (double counting)
        assert probes["nvidia-smi"]["status"] == "ok" and not probes["nvidia-smi"]["kept"]
        doc = yaml.safe_load(conf.read_text(encoding="utf-8"))
        assert doc == report["config"]
        lib_dir = root.resolve() / ".kwatt-emulator" / "nvml"
        assert f"# nvml: start the agent with LD_LIBRARY_PATH={lib_dir}\n" in conf.read_text()
        assert (doc["site"], doc["node"]) == ("emulated", "node0")
        types = [c["type"] for c in doc["collectors"]]
        assert "nvidia_smi" not in types
        assert sorted(types) == sorted(EXPECTED_TYPES)
        (hw,) = (c for c in doc["collectors"] if c["type"] == "hwmon")
        # the vendor collectors report those chips
        assert hw["exclude"] == ["rngd*", "furiosa_warboy", "sapeon_*"]

        assert set(polled) == {c["name"] for c in doc["collectors"]}
        for name, samples in polled.items():
            ok = [dict(s.fields)["collect_ok"] for s in samples if s.measurement == "agent"]
            assert ok == [1], (name, samples)
            assert any(s.measurement != "agent" for s in samples), name
        # no chip is counted twice: hwmon's accelerators are not the vendor collectors' devices
        hw_accel = {
            (dict(s.tags)["vendor"], dict(s.tags)["model"])
            for s in polled["hwmon"]
            if s.measurement == "accel"
        }
        assert hw_accel == set()  # the Warboy is the furiosa collector's now
        furiosa_accel = {
            dict(s.tags)["model"] for s in polled["furiosa"] if s.measurement == "accel"
        }
        assert furiosa_accel == {"rngd", "warboy"}

    asyncio.run(go())


def test_permission_problem_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """energy_uj root-only (tests run as root, so chmod 000 would not stop a read: refuse it)."""
    real = os.open

    def refuse(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if str(path).endswith("/energy_uj"):  # as the OS answers a non-root reader of a 0400 file
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *a, **kw)

    async def go() -> tuple[list[doctor.Probe], dict[str, object] | None]:
        async with node_at(tmp_path, "rngd:1") as node:
            node.step(0.0)
            monkeypatch.setattr(os, "open", refuse)
            probes = await doctor.probe_all(doctor.candidates(tmp_path))
            monkeypatch.undo()
            return probes, doctor.suggest(probes, site="s", node="n", broker="mqtt://b:1883")

    probes, doc = asyncio.run(go())
    (rapl,) = (p for p in probes if p.type == "rapl")
    assert rapl.status == "unavailable"
    assert rapl.message is not None and "permission denied" in rapl.message
    assert rapl.fix is not None and "udev" in rapl.fix and "CVE-2020-8694" in rapl.fix
    assert not rapl.kept
    assert doc is not None
    entries = doc["collectors"]
    assert isinstance(entries, list)
    kept = [c["type"] for c in entries]
    assert "rapl" not in kept and "furiosa" in kept
    text = doctor.render_table(probes, tmp_path, width=400)
    assert "fix: energy_uj is root-only" in text


def test_permission_fix_per_collector() -> None:
    try:
        try:
            raise PermissionError(13, "Permission denied", "/dev/ipmi0")
        except PermissionError as e:
            raise CollectorUnavailable("ipmitool: cannot open the BMC") from e
    except CollectorUnavailable as e:
        fix = doctor.permission_fix("ipmi_dcmi", e)
    assert fix is not None and "/dev/ipmi0" in fix and "GROUP=" in fix
    assert "video" in (doctor.permission_fix("nvml", PermissionError("x")) or "")
    assert doctor.permission_fix("rapl", CollectorUnavailable("no such file")) is None


class BadEq(Exception):
    """Like pynvml's NVMLError: ``==`` against another exception type raises."""

    def __eq__(self, other: object) -> bool:
        raise AttributeError("value")

    __hash__ = Exception.__hash__


def test_error_chain_with_a_raising_eq_is_walked() -> None:
    try:
        try:
            raise BadEq("nvmlInit")
        except BadEq as e:
            raise CollectorUnavailable("no NVML on this node") from e
    except CollectorUnavailable as e:
        assert doctor.permission_fix("nvml", e) is None


def test_failing_collector_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "rbln-smi"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho 'rbln-smi: driver not loaded' >&2\nexit 3\n")
    tool.chmod(0o755)
    (probe,) = asyncio.run(doctor.probe_all(doctor.candidates(tmp_path)))
    assert (probe.type, probe.status, probe.kept) == ("rebellions", "error", False)
    assert probe.message is not None and "driver not loaded" in probe.message
    assert doctor.suggest([probe], site="s", node="n", broker="mqtt://b:1883") is None


def test_empty_root_finds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.candidates(tmp_path) == []
    conf = tmp_path / "out.yaml"
    assert cli_main(["doctor", "--root", str(tmp_path), "--print-config", str(conf)]) == 1
    out = capsys.readouterr().out
    assert "no surface found" in out and "no agent config to suggest" in out
    assert not conf.exists()
    assert cli_main(["doctor", "--root", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "root": str(tmp_path),
        "probes": [],
        "config": None,
    }


def test_a_slow_but_working_nvml_is_kept_over_its_fallback(tmp_path: Path) -> None:
    """A first NVML poll slower than one poll timeout (1 s from the 1 s interval) is still a working
    surface: doctor probes under its own budget (--timeout) and keeps nvml, not nvidia-smi. (Under
    load the imports, library load and init of the first call took over 1 s, and doctor preferred
    the fallback now and then.)"""
    root = tmp_path / "node"

    async def go() -> dict[str, Any]:
        async with node_at(root, "h100:1") as node:
            # every NVML device call takes 0.1 s: one poll (tens of calls) takes well over 1 s
            node.faults.schedule([Fault("tool_hang", tool="nvml", value=0.1)])
            node.step(0.0)
            node.step(1.0)
            r = await asyncio.to_thread(kwatt, "doctor", "--root", str(root), "--json")
            assert r.returncode == 0, r.stderr
            report: dict[str, Any] = json.loads(r.stdout)
            return report

    report = asyncio.run(go())
    probes = {p["name"]: p for p in report["probes"]}
    nvml = probes["nvml"]
    assert nvml["status"] == "ok" and nvml["kept"], nvml
    assert nvml["cost_ms"] > 1000, nvml  # slower than the 1 s poll timeout, and kept
    assert probes["nvidia-smi"]["status"] == "ok" and not probes["nvidia-smi"]["kept"]
    (entry,) = (c for c in report["config"]["collectors"] if c["type"] == "nvml")
    assert "timeout_s" not in entry  # the probe's budget is not written into the config
