"""The general emulated node: every catalogue model, Furiosa surfaces, faults, truth, CLI, fleet.

Surfaces are read with the real tools' conventions (cat the files, run the executable); the Furiosa
collector is run over the node once to show the new RNGD surface still parses as before.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.cli import _emulator_collector_check
from kwatt.collectors import furiosa
from kwatt.collectors.furiosa import Config as FuriosaConfig
from kwatt.emulators import libnvml
from kwatt.emulators.agentconfig import agent_config
from kwatt.emulators.catalogue import load_catalogue
from kwatt.emulators.faults import Fault, FaultError, load_schedule, parse_fault, send
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.state import read_snapshot
from kwatt.emulators.truth import TruthRecord, read_log

REPO = Path(__file__).resolve().parents[2]
EVERY_MODEL = ",".join(load_catalogue())


def options(
    devices: str = "rngd:2", services: tuple[str, ...] = ("chatbot",), **kw: Any
) -> NodeOptions:
    return NodeOptions(devices=parse_devices(devices), services=services, **kw)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mgmt(root: Path, n: int) -> Path:
    return root / "sys" / "class" / "rngd_mgmt" / f"rngd!npu{n}mgmt"


def hwmon(root: Path, n: int) -> Path:
    bdf = read(mgmt(root, n) / "busname").strip()
    (d,) = (root / "sys" / "bus" / "pci" / "devices" / bdf / "hwmon").iterdir()
    return d


def smi(root: Path, *args: str) -> str:
    r = subprocess.run(
        [str(root / "bin" / "furiosa-smi"), *args], capture_output=True, timeout=20, check=True
    )
    return r.stdout.decode()


def test_parse_devices() -> None:
    got = parse_devices("rngd:2,atom-max,h100:1")
    assert [(d.model, d.cards) for d in got] == [("rngd", 2), ("atom-max", 1), ("h100", 1)]
    for bad in ("", "rngd:0", "rngd:x", "b200:1"):
        with pytest.raises(ValueError, match="--devices"):
            parse_devices(bad)


def test_device_that_runs_no_service_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="warboy runs none"):
        Node(tmp_path, options("warboy", ("chatbot",)))


def test_node_with_every_model_renders_furiosa_surfaces(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options(EVERY_MODEL, ("chatbot", "traffic"), seed=2)) as node:
            for t in range(0, 12):
                truth = node.step(float(t))
            assert len(truth.devices) == 19  # ATOM-Max: one card, four devices
            assert {d.model for d in truth.devices} == set(load_catalogue())
            assert all(d.util_ratio > 0 for d in truth.devices)
            # Warboy = npu0 (npu_mgmt), RNGD = npu1 (rngd_mgmt); one furiosa numbering
            wb = tmp_path / "sys" / "class" / "npu_mgmt" / "npu0_mgmt"
            assert read(wb / "device_type") == "Warboy\n" and read(wb / "alive") == "1\n"
            assert read(wb / "ne_clk_freq_info") == "ne tensor (MHz): 2000\n"
            regs = read(tmp_path / "sys/class/npu_mgmt/npu0pe0-1/perf_regs").splitlines()
            assert [line.split(": ")[0] for line in regs][-2:] == ["CycleCount", "CycleCountHigh"]
            assert all(line.split(": ")[1].startswith("0x") for line in regs)
            m = mgmt(tmp_path, 1)
            assert read(m / "device_type") == "RNGD\n"
            assert read(m / "fw_version") == "1.7.0, 4dfed1852e7b\n"
            assert (m.parent / "rngd!npu1pe7" / "metrics").is_file()
            h = hwmon(tmp_path, 1)
            assert (
                read(h / "power1_label") == "RMS_TOTAL\n" and int(read(h / "power1_average")) > 30e6
            )
            info = smi(tmp_path, "info")
            assert "| warboy | npu0 " in info and "| rngd   | npu1 " in info
            assert json.loads(smi(tmp_path, "status", "--format", "json"))[1]["device"] == "npu1"
            snap = read_snapshot(tmp_path)
            assert {d.vendor for d in snap.devices} == {
                *("furiosa", "rebellions", "sapeon", "nvidia"),
                *("skhynix", "samsung", "ibm"),  # phase 2/3 PIM (issue 16)
            }
            assert snap.host is not None and snap.host.system_power_w > sum(
                d.power_w for d in snap.devices
            )

    asyncio.run(go())


def test_furiosa_collector_reads_the_new_rngd_surface(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd:2", ("steady",), seed=3)) as node:
            c = furiosa.PLUGIN.create("npu", FuriosaConfig(root=str(tmp_path)))
            node.step(0.0)
            node.step(0.5)  # the runtime holds the PEs from here (pe_occupancy 1)
            await c.collect()
            truth = [node.step(t) for t in (1.0, 2.0)][-1]
            got = {s.tag("device"): dict(s.fields) for s in await c.collect()}
            for d in truth.devices:
                f = got[d.uuid.upper()]
                assert f["power_w"] == pytest.approx(d.power_w, abs=1e-6)
                assert f["temp_c"] == pytest.approx(d.temp_c, abs=1e-3)
                assert f["util_ratio"] == pytest.approx(d.util_ratio, abs=0.05)
                assert f["clock_hz"] == d.clock_hz

    asyncio.run(go())


def test_truth_log_has_energy_per_device_and_work_per_service(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"

    async def go() -> None:
        async with Node(tmp_path / "root", options("rngd,l4", ("chatbot",)), truth_log=log) as node:
            for t in range(6):
                node.step(float(t))

    asyncio.run(go())
    lines = list(read_log(log))
    assert len(lines) == 6
    last = lines[-1]
    for d in last.devices:
        energy = sum(
            rec.devices[i].power_w * rec.dt_s
            for rec in lines
            for i in range(2)
            if rec.devices[i].uuid == d.uuid
        )
        assert d.energy_j == pytest.approx(energy, rel=1e-12)
    svc = last.services["chatbot"]
    assert svc.work_class == "llm" and svc.served_units_total > 0
    assert last.serving is not None and last.serving.tokens_total <= svc.served_units_total
    assert last.host is not None and last.host.system_energy_j > 0


# ------------------------------------------------------------------------------------ faults
def run_with(
    tmp_path: Path, opts: NodeOptions, script: list[tuple[float, Fault | None]]
) -> list[TruthRecord]:
    """Step at each time, sending the fault (by command file) just before the step."""

    async def go() -> list[TruthRecord]:
        out = []
        async with Node(tmp_path, opts) as node:
            for t, fault in script:
                if fault is not None:
                    send(tmp_path, fault)
                out.append(node.step(t))
        return out

    return asyncio.run(go())


def test_device_disappears_and_reenumerates_with_stable_identity(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd:3")) as node:
            node.step(0.0)
            sn0 = read(mgmt(tmp_path, 0) / "device_sn")
            bdf0 = read(mgmt(tmp_path, 0) / "busname")
            send(tmp_path, Fault("disappear", device=bdf0.strip(), duration_s=2.0))
            node.step(1.0)
            names = sorted(p.name for p in (tmp_path / "sys/class/rngd_mgmt").iterdir())
            assert not any(n.startswith("rngd!npu0") for n in names)
            assert not (tmp_path / "sys/bus/pci/devices" / bdf0.strip()).exists()
            assert "npu0" not in smi(tmp_path, "info")
            node.step(3.5)  # back, last: npu1 → npu0, npu2 → npu1, the returning card → npu2
            assert read(mgmt(tmp_path, 2) / "device_sn") == sn0
            assert read(mgmt(tmp_path, 2) / "busname") == bdf0
            assert read(mgmt(tmp_path, 0) / "device_sn") != sn0
            assert read(hwmon(tmp_path, 2) / "name") == "rngd2\n"
            assert sn0.strip() in smi(tmp_path, "info", "--format", "full").splitlines()[7]

    asyncio.run(go())


def test_counter_reset_restarts_the_pe_counters(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd", ("steady",))) as node:
            for t in (0.0, 5.0, 10.0):
                node.step(t)
            pe0 = mgmt(tmp_path, 0).parent / "rngd!npu0pe0" / "metrics"
            before = int(read(pe0).split()[1], 16)  # hex, as furiosa-smi 2026.4 reads it
            send(tmp_path, Fault("counter_reset", device="furiosa:0"))
            node.step(10.5)
            after = int(read(pe0).split()[1], 16)
            assert before > 9e9 and after == pytest.approx(1e9, rel=0.01)  # 0.5 s at 2 GHz

    asyncio.run(go())


def test_stuck_sensor_repeats_its_value_while_truth_moves(tmp_path: Path) -> None:
    opts = options("rngd", ("ramp",))

    async def go() -> None:
        async with Node(tmp_path, opts) as node:
            node.step(0.0)
            node.step(20.0)
            send(tmp_path, Fault("stuck", device="*", duration_s=30.0))
            node.step(21.0)
            shown = read(hwmon(tmp_path, 0) / "power1_average")
            smi_before = smi(tmp_path, "info")
            truth = [node.step(t).devices[0].power_w for t in (40.0, 50.0)]
            assert truth[0] != truth[1]
            assert read(hwmon(tmp_path, 0) / "power1_average") == shown
            assert smi(tmp_path, "info") == smi_before
            node.step(60.0)  # the fault is over
            assert read(hwmon(tmp_path, 0) / "power1_average") != shown

    asyncio.run(go())


def test_na_removes_the_sensor_and_nan_writes_nan(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd")) as node:
            node.step(0.0)
            send(tmp_path, Fault("na", device="*", fields=("power_w",), duration_s=5.0))
            send(tmp_path, Fault("nan", device="*", fields=("temp_c",), duration_s=5.0))
            node.step(1.0)
            h = hwmon(tmp_path, 0)
            assert not (h / "power1_average").exists()
            assert read(h / "temp1_input") == "nan\n"
            row = smi(tmp_path, "info").splitlines()[3]
            assert "| N/A " in row and "NaN°C" in row
            node.step(7.0)
            assert int(read(h / "power1_average")) > 0

    asyncio.run(go())


def test_power_limit_and_governor_commands(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd", ("steady",), load=1.0)) as node:
            node.step(0.0)
            send(tmp_path, Fault("power_limit", device="*", value=60.0))
            node.step(1.0)
            m = mgmt(tmp_path, 0)
            assert read(m / "power_limit_mw") == "60000\n"
            assert int(read(m / "throttle_reason"), 16) & 0x4  # APP_POWER_CAP
            send(tmp_path, Fault("governor", device="*", value=1))
            node.step(2.0)
            assert read(m / "npu_governor") == "powersave\n"
            assert "| PowerSave " in smi(tmp_path, "info", "--format", "full")

    asyncio.run(go())


def test_clock_step_and_tool_faults_reach_the_snapshot(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd")) as node:
            node.step(0.0)
            wall0 = read_snapshot(tmp_path).wall_ns
            send(tmp_path, Fault("clock_step", value=-3600.0))
            send(tmp_path, Fault("tool_truncate", tool="furiosa-smi", duration_s=2.0))
            node.step(1.0)
            snap = read_snapshot(tmp_path)
            assert snap.wall_ns < wall0 - 3000 * 10**9
            assert snap.faults_for("furiosa-smi").truncate
            full = smi(tmp_path, "status")
            node.step(4.0)
            assert (
                len(smi(tmp_path, "status")) == 2 * len(full)
                or len(smi(tmp_path, "status")) == 2 * len(full) + 1
            )

    asyncio.run(go())


def test_schedule_file_and_bad_commands(tmp_path: Path) -> None:
    sched = tmp_path / "faults.yaml"
    sched.write_text(
        yaml.safe_dump(
            {"faults": [{"kind": "disappear", "device": "*", "at_s": 2.0, "duration_s": 1.0}]}
        )
    )
    faults = load_schedule(sched)
    opts = options("rngd", faults=tuple(faults))
    root = tmp_path / "root"

    async def go() -> None:
        async with Node(root, opts) as node:
            node.step(1.0)
            assert mgmt(root, 0).exists()
            node.step(2.0)
            assert not mgmt(root, 0).exists()
            node.step(3.5)
            assert mgmt(root, 0).exists()
            bad = root / ".kwatt-emulator" / "control.d" / "x.json"
            bad.write_text('{"kind": "explode"}')
            node.step(4.0)
            assert bad.with_suffix(".rejected").exists() and "explode" in read(
                bad.with_suffix(".error")
            )

    asyncio.run(go())
    for doc in (
        {"kind": "na", "device": "*"},
        {"kind": "tool_hang", "tool": "x"},
        {"kind": "stuck"},
    ):
        with pytest.raises(FaultError):
            parse_fault(doc)


# ----------------------------------------------------------------------------- config and CLI
def test_agent_config_validates_and_points_at_the_node(tmp_path: Path) -> None:
    async def go() -> str:
        async with Node(tmp_path, options("rngd,h100", ("chatbot",))) as node:
            node.step(0.0)
            return agent_config(node)

    doc = yaml.safe_load(asyncio.run(go()))

    doc["collectors"] = [c for c in doc["collectors"] if c["type"] in collectors.REGISTRY]
    cfg = agent_config_from(doc, where="printed")
    kinds = {e.type for e in cfg.collectors}
    assert {"furiosa", "serving"} <= kinds
    (fur,) = [e for e in cfg.collectors if e.type == "furiosa"]
    assert isinstance(fur.options, FuriosaConfig)
    assert fur.options.root == str(tmp_path.resolve())


def test_kwatt_emulate_node_cli_prints_a_checked_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", "rngd,warboy", "--service", "chatbot,food",
           "--root", str(root), "--seed", "3", "--speed", "10", "--print-config", str(cfg), "--duration", "30"]  # fmt: skip
    with subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["root"] == str(root.resolve())
            assert ready["serving"].startswith("http://127.0.0.1:")
            check = subprocess.run([sys.executable, "-m", "kwatt.cli", "agent", "--config", str(cfg), "--check"],
                                   cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
            assert check.returncode == 0, check.stdout + check.stderr
            t0 = read_snapshot(root).t_s
            time.sleep(1.0)
            assert read_snapshot(root).t_s >= t0 + 5.0  # --speed 10
            info = smi(root, "info")
            assert "| rngd   | npu0 " in info and "| warboy | npu1 " in info
            send_cmd = [sys.executable, "-m", "kwatt.emulators.node", "fault", "--root", str(root),
                        "--kind", "disappear", "--device", "furiosa:0", "--duration", "1000"]  # fmt: skip
            subprocess.run(send_cmd, cwd=REPO, check=True, capture_output=True, timeout=30)
            deadline = time.monotonic() + 10
            while mgmt(root, 0).exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not mgmt(root, 0).exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert proc.returncode == 0


def test_fleet_runs_many_nodes_in_one_process(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "kwatt.emulators.node", "fleet", "--nodes", "3", "--devices", "rngd,l4", "--service", "traffic",
           "--root", str(tmp_path), "--print-config", str(tmp_path / "cfg"), "--duration", "1.5", "--period", "0.1"]  # fmt: skip
    r = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert r.returncode == 0, r.stderr
    ready = json.loads(r.stdout.strip().splitlines()[-1])
    assert [n["node"] for n in ready["nodes"]] == ["node000", "node001", "node002"]
    serials = set()
    for k in range(3):
        root = tmp_path / f"node{k:03d}"
        serials.add(read(mgmt(root, 0) / "device_sn"))
        cfg = yaml.safe_load(read(tmp_path / "cfg" / f"node{k:03d}.yaml"))
        assert cfg["node"] == f"node{k:03d}"
        assert not math.isnan(read_snapshot(root).t_s)
    assert len(serials) == 3


def test_legacy_module_cli_still_prints_the_ready_line(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "kwatt.emulators.node",
        "--root",
        str(tmp_path),
        "--devices",
        "1",
        "--duration",
        "0.3",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert set(json.loads(r.stdout.splitlines()[0])) == {"root", "serving_url"}


def test_chatbot_devices_are_served_by_their_vendors_runtime(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd,atom,h100", ("chatbot",))) as node:
            for t in range(4):
                node.step(float(t) * 5)
            urls = node.serving_urls
            assert set(urls) == {"furiosa-llm", "vllm-rbln", "vllm"}

            def body(url: str) -> str:
                with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
                    return str(r.read().decode())

            texts = {name: await asyncio.to_thread(body, url) for name, url in urls.items()}
            assert "furiosa_llm_generation_tokens_total{" in texts["furiosa-llm"]
            assert "vllm:generation_tokens_total{" in texts["vllm"]
            assert 'model_name="meta-llama/Llama-3.1-8B-Instruct"' in texts["vllm"]
            assert "vllm:e2e_request_latency_seconds_bucket{" in texts["vllm-rbln"]
            entries = [
                e
                for e in yaml.safe_load(agent_config(node))["collectors"]
                if e["type"] == "serving"
            ]
            assert {e["runtime"] for e in entries} == set(urls)

    asyncio.run(go())


def test_every_collector_of_the_printed_config_reads_a_node_of_every_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Done-when of issue #3: a node with every catalogue model, read by the agent's collectors."""

    async def go() -> dict[str, int]:
        async with Node(tmp_path, options(EVERY_MODEL, ("chatbot", "traffic"), seed=5)) as node:
            node.step(0.0)
            if "nvml_lib" in node.endpoints:  # as an agent started with LD_LIBRARY_PATH there
                monkeypatch.setenv(libnvml.STATE_ENV, str(libnvml.state_path(tmp_path)))
                libnvml.load_in_process(tmp_path)
            text = agent_config(node, check=_emulator_collector_check)
            cfg = agent_config_from(yaml.safe_load(text), where="printed")
            built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
            counts: dict[str, int] = {}
            for t in (1.0, 2.0):
                node.step(t)
                for e, c in built:
                    counts[e.name] = len(await c.collect())
            for _, c in built:
                await c.aclose()
            return counts

    counts = asyncio.run(go())
    assert counts["furiosa"] == 2  # the RNGD card and the Warboy (hwmon excludes furiosa_warboy)
    for name in ("rebellions", "sapeon", "nvml", "nvidia-smi"):
        if name in counts:
            assert counts[name] >= 3, name
    assert all(n > 0 for n in counts.values()), counts


def test_furiosa_smi_governor_switches_the_node(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, options("rngd:2", ("steady",))) as node:
            node.step(0.0)
            out = await asyncio.to_thread(smi, tmp_path, "governor", "-p", "powersave", "-i", "1")
            assert out == "npu1's governor profile is set to PowerSave\n"
            node.step(1.0)
            assert read(mgmt(tmp_path, 1) / "npu_governor") == "powersave\n"
            assert read(mgmt(tmp_path, 0) / "npu_governor") == "performance\n"
            clocks = read(mgmt(tmp_path, 1) / "npu_clocks").splitlines()
            assert clocks[0] == "500000000"  # Hz; PowerSave: statically lowest (§1.1)

    asyncio.run(go())
