"""Phase-2 (DRAM-PIM) and phase-3 (NVM analog PIM) devices and verdicts per phase (issue 16, parts 1-2).

* The catalogue's phase-2/3 classes: every figure with a status and a source, the phase of every
  class agreeing with ``analytics/targets.yaml`` ``device_phases`` (the analytics never read the
  catalogue), the research chip flagged.
* An emulated PIM node read by the real agent (``kwatt agent --config F --once``) through the
  generic ``command`` collector's JSON mapping of the assumed ``pim-smi`` and through ``hwmon``,
  both compared with the emulator's truth while the node is held still; the tool's faults.
* Verdicts per phase from line protocol: each class against its own phase's target, ``--phase``
  judging every class against one phase, the ``efficiency`` lines with their ``phase`` tag.
* ``kwatt demo --phase phase2_dram_pim`` on real Mosquitto and InfluxDB: a phase-2 verdict with its
  target's source, nothing lost, the pipeline's error against the ground truth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kwatt.analytics.findings import build_report
from kwatt.analytics.load import load_lp_file
from kwatt.analytics.render import efficiency_lines, render_json
from kwatt.analytics.targets import PHASES, load_targets
from kwatt.demo.services import Influxd, Mosquitto
from kwatt.emulators.catalogue import BASELINE, load_catalogue
from kwatt.emulators.faults import Fault, pause, resume, send
from kwatt.emulators.pim import PIM_VENDORS, model_tag
from kwatt.emulators.state import read_snapshot
from kwatt.wire import lineproto

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
PIM_MODELS = {"aimx": "phase2_dram_pim", "mi100-pim": "phase2_dram_pim", "hermes": "phase3_nvm_analog_pim"}  # fmt: skip


# ------------------------------------------------------------------------------ catalogue


def test_phase2_and_phase3_classes_carry_their_phase_figures_and_sources() -> None:
    cat = load_catalogue()
    assert {k: m.phase for k, m in cat.items() if m.vendor in PIM_VENDORS} == PIM_MODELS
    for key in PIM_MODELS:
        m = cat[key]
        for name, f in m.figures().items():
            assert f.status in ("sourced", "derived", "assumed") and f.source.strip(), (key, name)
    # what PIM is for: the memory-bound LLM decode; the analog chip's figures allow vision only
    assert set(cat["aimx"].throughput) == {"llm"} and set(cat["mi100-pim"].throughput) == {"llm"}
    assert set(cat["hermes"].throughput) == {"classification", "detection"}
    assert cat["hermes"].research and not cat["aimx"].research
    # HERMES (Nature Electronics 2023): 63.1 TOPS at 9.76 TOPS/W → 6.47 W
    assert cat["hermes"].tdp_w.value == pytest.approx(63.1 / 9.76, abs=0.01)


def test_catalogue_phases_agree_with_the_targets_device_phases() -> None:
    """The analytics judge a class by targets.yaml, the emulators run it by the catalogue: one
    phase for every class, the GPUs the baseline of all."""
    targets = load_targets()
    for key, m in load_catalogue().items():
        cls = f"{m.vendor}/{model_tag(key) if m.vendor in PIM_VENDORS else key}"
        want = None if m.phase == BASELINE else m.phase
        assert targets.phase_of(cls) == want, cls
    assert set(PIM_MODELS.values()) <= set(PHASES)


# ------------------------------------------------------------------------------ the agent reads it


@dataclass(frozen=True)
class Node:
    root: Path
    tmp: Path
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("pim")
    root, printed = tmp / "root", tmp / "printed.yaml"
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices",
           "aimx:2,mi100-pim,hermes", "--service", "chatbot,traffic", "--root", str(root),
           "--period", "0.25", "--name", "pim0", "--print-config", str(printed)]  # fmt: skip
    with (tmp / "node.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # the ready line
        doc = yaml.safe_load(printed.read_text(encoding="utf-8"))
        for c in doc["collectors"]:
            c["timeout_s"] = 20.0  # a loaded 2-core machine must not time a healthy poll out
        yield Node(root, tmp, doc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def once(node: Node, name: str, collectors: list[dict[str, Any]]) -> tuple[int, str, list[Any]]:
    doc = {**node.doc, "collectors": collectors, "spool": {"dir": str(node.tmp / f"sp-{name}")}}
    path = node.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "agent", "--config", str(path), "--once"],
        cwd=REPO, env=ENV, capture_output=True, timeout=180,
    )  # fmt: skip
    parsed = lineproto.parse_payload(r.stdout) if r.stdout else lineproto.ParseResult()
    assert parsed.ok, parsed.errors
    stderr = r.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr
    return r.returncode, stderr, [p for p in parsed.points if p.measurement == "accel"]


def by_device(points: list[Any]) -> dict[str, tuple[dict[str, str], dict[str, float]]]:
    return {dict(p.tags)["device"]: (dict(p.tags), dict(p.fields)) for p in points}


@pytest.mark.slow
def test_printed_config_reads_pim_devices_through_command_and_hwmon(node: Node) -> None:
    """The printed config has one ``command`` entry per PIM vendor and excludes their chips from
    hwmon; held still, both collectors give the emulator's truth in SI units, one device class."""
    entries = {c["name"]: c for c in node.doc["collectors"]}
    assert {f"pim-{v}" for v in PIM_VENDORS} <= set(entries)
    assert {e["type"] for n, e in entries.items() if n.startswith("pim-")} == {"command"}
    assert {f"{v}_*" for v in PIM_VENDORS} <= set(entries["hwmon"]["exclude"])
    commands = [e for n, e in entries.items() if n.startswith("pim-")]
    hwmon = {**entries["hwmon"], "exclude": [], "auto_accel": True}
    pause(node.root, timeout_s=30)
    try:
        truth = {d.bus_id: d for d in read_snapshot(node.root).devices if d.present}
        rc, err, cmd_points = once(node, "cmd", commands)
        assert rc == 0, err
        rc, err, hw_points = once(node, "hw", [hwmon])
        assert rc == 0, err
        held = {d.bus_id: d for d in read_snapshot(node.root).devices if d.present}
        assert held == truth, "the node moved while paused"
    finally:
        resume(node.root)
    cmd, hw = by_device(cmd_points), by_device(hw_points)
    assert set(cmd) == set(truth) and set(truth) <= set(hw)
    for bdf, d in truth.items():
        tags, f = cmd[bdf]
        assert (tags["vendor"], tags["model"]) == (d.vendor, model_tag(d.model))
        assert f["power_w"] == pytest.approx(d.power_w, abs=1e-3)  # mW
        assert f["energy_j"] == pytest.approx(d.energy_j - d.energy_at_reset_j, abs=1e-3)  # mJ
        assert f["temp_c"] == pytest.approx(d.temp_c, abs=1e-3)  # m°C
        assert f["util_ratio"] == pytest.approx(d.util_ratio, abs=1e-4)  # % to 2 decimals
        assert f["clock_hz"] == pytest.approx(d.clock_hz, abs=1e6)  # MHz
        assert f["power_limit_w"] == pytest.approx(d.power_limit_w, abs=1e-3)
        assert f["mem_total_bytes"] == d.mem_total_bytes
        htags, hf = hw[bdf]
        assert (htags["vendor"], htags["model"]) == (tags["vendor"], tags["model"])  # one class
        assert hf["power_w"] == pytest.approx(d.power_w, abs=1e-6)  # µW
        assert hf["energy_j"] == pytest.approx(d.energy_j - d.energy_at_reset_j, abs=1e-6)
        assert hf["temp_c"] == pytest.approx(d.temp_c, abs=1e-3)


def applied(root: Path, fault: Fault) -> None:
    """Send ``fault`` and return once the node has rendered a few steps with it."""
    path = send(root, fault)
    deadline = time.monotonic() + 30.0
    while not path.with_suffix(".applied").exists():
        assert not path.with_suffix(".rejected").exists(), fault
        assert time.monotonic() < deadline, f"{fault} not applied"
        time.sleep(0.05)
    time.sleep(1.0)  # four steps of 0.25 s: every surface shows it


@pytest.mark.slow
def test_pim_smi_faults_cost_that_poll_with_a_reason_never_a_wrong_value(node: Node) -> None:
    commands = [c for c in node.doc["collectors"] if c["name"] == "pim-skhynix"]
    aimx = next(d for d in read_snapshot(node.root).devices if d.model == "aimx")
    # a field the device does not report is absent, never 0
    applied(node.root, Fault(kind="na", device=aimx.bus_id, fields=("power_w",), duration_s=60.0))
    pause(node.root, timeout_s=30)
    try:
        rc, err, points = once(node, "na", commands)
    finally:
        resume(node.root)
    assert rc == 0, err
    fields = by_device(points)[aimx.bus_id][1]
    assert "power_w" not in fields and fields["energy_j"] > 0
    # garbage from the tool: the poll fails naming the tool, no sample
    applied(node.root, Fault(kind="tool_garbage", tool="pim-smi", duration_s=60.0))
    pause(node.root, timeout_s=30)
    try:
        rc, err, points = once(node, "garbage", commands)
    finally:
        resume(node.root)
    assert rc == 1 and "pim-smi" in err and not points


# ------------------------------------------------------------------------------ verdicts per phase

T0 = 1_700_000_000


def mixed_fleet_lines(seconds: int = 600) -> list[str]:
    """One phase-1 NPU (furiosa/rngd, 2 tok/J), one phase-2 PIM card (skhynix/aimx, 5 tok/J) and
    the GPU (nvidia/h100, 1 tok/J) serving ``chat``, exactly."""
    out = []
    for k in range(seconds + 1):
        ts = (T0 + k) * 10**9
        for node, vendor, model, watts, tok in (
            ("npu1", "furiosa", "rngd", 100.0, 200.0),
            ("pim1", "skhynix", "aimx", 80.0, 400.0),
            ("gpu1", "nvidia", "h100", 400.0, 400.0),
        ):
            out.append(
                f"accel,device={node}d0,model={model},node={node},site=s1,vendor={vendor} "
                f"energy_j={watts * k},power_w={watts} {ts}"
            )
            out.append(
                f"serving,node={node},runtime=vllm,service=chat,site=s1 "
                f"tokens_total={int(tok * k)}i,requests_total={k}i {ts}"
            )
    return out


def test_each_class_is_judged_in_its_own_phase_unless_one_is_chosen(tmp_path: Path) -> None:
    lp = tmp_path / "mixed.lp"
    lp.write_text("\n".join(mixed_fleet_lines()) + "\n", encoding="utf-8")
    ss = load_lp_file(lp)
    targets = load_targets()
    r = build_report(ss, T0, T0 + 600, targets)
    assert r.phases == ("phase1_npu", "phase2_dram_pim")
    got = {v.device_class: (v.phase, v.class_phase, v.target_ratio) for v in r.verdicts}
    assert got == {
        "furiosa/rngd": ("phase1_npu", "phase1_npu", 1.0),
        "skhynix/aimx": ("phase2_dram_pim", "phase2_dram_pim", 4.0),
    }
    aimx = next(v for v in r.verdicts if v.device_class == "skhynix/aimx")
    assert aimx.ratio_vs_baseline == pytest.approx(5.0) and aimx.meets_target is True
    assert aimx.target.source  # every verdict says where its target is from
    doc = json.loads(render_json(r))
    assert doc["phases"] == ["phase1_npu", "phase2_dram_pim"]
    # the efficiency measurement carries the verdict's phase (DESIGN §4)
    eff = lineproto.parse_payload(efficiency_lines(r))
    assert eff.ok, eff.errors
    phase_of = {dict(p.tags).get("node"): dict(p.tags).get("phase") for p in eff.points}
    assert phase_of["npu1"] == "phase1_npu" and phase_of["pim1"] == "phase2_dram_pim"
    assert phase_of["gpu1"] is None  # the baseline has no verdict
    # --phase: every class against that phase's target
    r3 = build_report(ss, T0, T0 + 600, targets, phase="phase3_nvm_analog_pim")
    assert {v.phase for v in r3.verdicts} == {"phase3_nvm_analog_pim"}
    assert {v.device_class: v.class_phase for v in r3.verdicts}["skhynix/aimx"] == (
        "phase2_dram_pim"
    )
    assert r3.phase == "phase3_nvm_analog_pim" and r3.phase_chosen


def test_kwatt_report_lists_the_phases_with_data_and_phase_chooses_one(tmp_path: Path) -> None:
    lp = tmp_path / "mixed.lp"
    lp.write_text("\n".join(mixed_fleet_lines()) + "\n", encoding="utf-8")
    base = [sys.executable, "-m", "kwatt.cli", "report", "--input", str(lp), "--since", str(T0),
            "--until", str(T0 + 600)]  # fmt: skip
    md = subprocess.run(
        [*base, "--format", "md"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert md.returncode == 0, md.stderr
    assert "phases phase1_npu, phase2_dram_pim" in md.stdout
    assert "skhynix/aimx: phase2_dram_pim target ≥4×" in md.stdout  # with its source after it
    js = subprocess.run(
        [*base, "--format", "json", "--phase", "phase2_dram_pim"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["phase"] == "phase2_dram_pim"
    assert doc["phases"] == ["phase1_npu", "phase2_dram_pim"]
    rows = {(v["phase"], v["device_class"]): v["class_phase"] for v in doc["verdicts"]}
    assert rows[("phase2_dram_pim", "furiosa/rngd")] == "phase1_npu"
    assert rows[("phase2_dram_pim", "skhynix/aimx")] == "phase2_dram_pim"


def test_a_device_phases_entry_of_a_user_file_adds_a_real_device(tmp_path: Path) -> None:
    user = tmp_path / "targets.yaml"
    user.write_text(
        "device_phases:\n"
        "  acme/pim9: {phase: phase2_dram_pim, status: assumption, why: a test card}\n",
        encoding="utf-8",
    )
    t = load_targets(user)
    assert t.phase_of("acme/pim9") == "phase2_dram_pim"
    assert t.phase_of("skhynix/aimx") == "phase2_dram_pim"  # the defaults are kept
    user.write_text("device_phases:\n  acme/pim9: {phase: phase9, status: sourced, source: x}\n")
    with pytest.raises(ValueError, match=r"device_phases\.acme/pim9\.phase"):
        load_targets(user)
    user.write_text(
        "device_phases:\n  nvidia/h100: {phase: phase2_dram_pim, status: sourced, source: x}\n"
    )
    with pytest.raises(ValueError, match=r"device_phases\.nvidia/h100: expected a class not of"):
        load_targets(user)


# ------------------------------------------------------------------------------ the demo


@pytest.mark.slow
@pytest.mark.services
def test_demo_phase2_gives_a_phase2_verdict_with_sources(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    db = f"demo_phase2_{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "demo", "--phase", "phase2_dram_pim", "--nodes", "2",
         "--duration", "20", "--no-live", "--json", "--broker", mosquitto.url, "--influx",
         influxd.url, "--database", db, "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    demo = json.loads(out.stdout)
    assert demo["lost"] == 0 and demo["stored"] == demo["published"] > 0
    assert demo["phase"] == "phase2_dram_pim" and demo["phases"] == ["phase2_dram_pim"]
    assert demo["fleet"] == {"node-01": "aimx:4 chatbot", "node-02": "h100:4 chatbot"}
    chat = demo["services"]["chatbot"]
    assert set(chat["classes"]) == {"skhynix/aimx", "nvidia/h100"}
    for cls, c in chat["classes"].items():
        assert c["energy_method"] == "counter", cls  # pim-smi energy_mj, NVML energy
        assert abs(c["energy_error_pct"]) < 2.0, (cls, c)
        assert abs(c["perf_per_watt_error_pct"]) < 3.0, (cls, c)
    [v] = chat["verdicts"]
    assert v["device_class"] == "skhynix/aimx" and v["class_phase"] == "phase2_dram_pim"
    assert v["baseline_kind"] == "measured" and v["baseline"] == "nvidia/h100"
    assert v["target_ratio"] == 4.0 and v["meets_target"] in (True, False)
    assert v["target_status"] == "assumption" and "memory-bound" in v["target_source"]
    gpu = chat["classes"]["nvidia/h100"]["work_per_j"]
    assert v["ratio_vs_baseline"] == pytest.approx(
        chat["classes"]["skhynix/aimx"]["work_per_j"] / gpu, rel=1e-3
    )
