"""NVIDIA's own clients judge the emulated ``libnvidia-ml.so.1`` (issue 13, part 2).

An emulated node with every NVIDIA model of ``emulators/catalogue.yaml`` runs as its own process;
held still with the emulator's ``pause`` control (:func:`kwatt.emulators.faults.pause`), it is read by
programs no one here wrote, unmodified, each started with ``LD_LIBRARY_PATH`` at the node's
library directory (the ready line's ``nvml_lib``), as an operator would start them:

* kwatt's ``nvml`` collector through the real nvidia-ml-py (``kwatt agent --config … --once`` on the
  node's printed config, every line through the ingest's strict parser);
* ``gpustat --json`` (gpustat, https://github.com/wookayin/gpustat);
* nvitop: ``nvitop --once`` (its one-shot screen) and its Python API ``nvitop.Device``
  (https://github.com/XuehaiPan/nvitop).

Each must agree with the truth, the node's state (``load_view``: the snapshot with what the
NVIDIA surface adds, the 1-s average power of Ampere-and-newer boards and the board facts of
``kwatt.emulators.nvidia.MODELS``), on every field it reports, within its display resolution: NVML's
integers (mW, mJ, °C, MHz, %, bytes), gpustat's whole watts (``mW // 1000``) and MiB
(``bytes // 2**20``), nvitop's screen (whole watts, whole °C). The GPU processes the tools list are
the node's worker processes (real PIDs, children of the node), with the GPU's used memory.

With ``CI`` set, a missing compiler, ``nvml.h``, gpustat or nvitop fails; elsewhere the test skips.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import in_ci

from kwatt.collectors.nvidia_common import model_slug
from kwatt.emulators.catalogue import load_catalogue
from kwatt.emulators.faults import pause, resume
from kwatt.emulators.nvidia import (
    GpuView,
    energy_counter_j,
    gpu_util_pct,
    gpu_uuid,
    load_view,
    mem_util_pct,
    model_of,
    nvml_bus_id,
    pstate,
    reasons_mask,
)
from kwatt.emulators.state import DeviceState, read_snapshot
from kwatt.wire import lineproto

# nvitop's formatting of the truth's bytes (nvitop is a dev dependency; see the module docstring)
bytes2human = pytest.importorskip("nvitop.api.utils", reason="nvitop not installed").bytes2human

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
#: Every NVIDIA model of the catalogue.
MODELS = tuple(k for k, spec in load_catalogue().items() if spec.vendor == "nvidia")
#: nvitop's Python API, unmodified: every per-device value it offers, as JSON.
NVITOP_API = """
import json, nvitop
out = []
for d in nvitop.Device.all():
    procs = d.processes()
    out.append({
        "index": d.index, "name": d.name(), "uuid": d.uuid(), "bus_id": d.bus_id(),
        "temperature": d.temperature(), "power_usage": d.power_usage(),
        "power_limit": d.power_limit(), "memory_total": d.memory_total(),
        "memory_used": d.memory_used(), "memory_free": d.memory_free(),
        "gpu_utilization": d.gpu_utilization(), "memory_utilization": d.memory_utilization(),
        "encoder_utilization": d.encoder_utilization(),
        "decoder_utilization": d.decoder_utilization(),
        "graphics_clock": d.graphics_clock(), "sm_clock": d.sm_clock(),
        "memory_clock": d.memory_clock(), "video_clock": d.video_clock(),
        "max_graphics_clock": d.max_graphics_clock(), "max_sm_clock": d.max_sm_clock(),
        "max_memory_clock": d.max_memory_clock(), "max_video_clock": d.max_video_clock(),
        "fan_speed": d.fan_speed(), "performance_state": d.performance_state(),
        "persistence_mode": d.persistence_mode(), "compute_mode": d.compute_mode(),
        "display_active": d.display_active(), "display_mode": d.display_mode(),
        "mig_mode": d.mig_mode(), "cuda_compute_capability": d.cuda_compute_capability(),
        "ecc_errors": d.total_volatile_uncorrected_ecc_errors(),
        "processes": {str(pid): p.gpu_memory() for pid, p in procs.items()},
    })
print(json.dumps({"driver": nvitop.Device.driver_version(),
                  "cuda_driver": nvitop.Device.cuda_driver_version(), "devices": out}, default=str))
"""


def missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} [CI is set, so a missing tool is an error]", pytrace=False)
    pytest.skip(reason)


def console_script(name: str) -> str:
    """The installed console script of a dev dependency (next to this interpreter)."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        missing(f"{name} is not installed (pip install 'kwatt[dev]')")
    return str(path)


@dataclass(frozen=True)
class Reading:
    root: Path
    node_pid: int
    view: GpuView
    kwatt: list[lineproto.Point]
    gpustat: dict[str, object]
    nvitop_api: dict[str, object]
    nvitop_once: str

    def truth(self, uuid: str) -> DeviceState:
        (dev,) = [d for d in self.view.gpus if gpu_uuid(d) == uuid]
        return dev


def run(argv: list[str], env: dict[str, str]) -> str:
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{argv[:3]}: exit {p.returncode}: {p.stderr[-2000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def reading(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reading]:
    gpustat, nvitop = console_script("gpustat"), console_script("nvitop")
    tmp = tmp_path_factory.mktemp("nvml-conformance")
    root, printed = tmp / "root", tmp / "printed.yaml"
    base = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "KWATT_NVML_STATE")}
    base["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "kwatt.cli", "emulate", "node", "--devices", ",".join(MODELS),
           "--service", "chatbot", "--root", str(root), "--period", "0.25", "--seed", "13",
           "--name", "nv0", "--print-config", str(printed)]  # fmt: skip
    with (tmp / "node.log").open("wb") as log:
        node = subprocess.Popen(
            cmd, cwd=REPO, env=base, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        assert node.stdout is not None
        ready = json.loads(node.stdout.readline())
        if "nvml_lib" not in ready:
            missing(re.sub(r"\s+", " ", (tmp / "node.log").read_text(errors="replace"))[-400:])
        env = {**base, "LD_LIBRARY_PATH": ready["nvml_lib"]}
        # a second of steps, so the 1-s power average has its history, then hold still
        deadline = time.monotonic() + 60
        while read_snapshot(root).t_s < 1.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        text = printed.read_text(encoding="utf-8")
        assert f"# nvml: start the agent with LD_LIBRARY_PATH={ready['nvml_lib']} " in text
        doc = yaml.safe_load(text)
        doc["collectors"] = [c for c in doc["collectors"] if c["type"] == "nvml"]
        assert [(c["type"], c["name"]) for c in doc["collectors"]] == [("nvml", "nvml")]
        assert "module" not in doc["collectors"][0]  # no emulator-only option: LD_LIBRARY_PATH
        doc["collectors"][0]["timeout_s"] = 20.0  # a loaded 2-core machine
        config = tmp / "agent.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        pause(root, timeout_s=30)
        try:
            view = load_view(root)
            once = run([sys.executable, "-m", "kwatt.cli", "agent", "--config", str(config),
                        "--once"], env)  # fmt: skip
            parsed = lineproto.parse_payload(once.encode())
            assert parsed.ok, parsed.errors
            yield Reading(
                root=root,
                node_pid=node.pid,
                view=view,
                kwatt=parsed.points,
                gpustat=json.loads(run([gpustat, "--json"], env)),
                nvitop_api=json.loads(run([sys.executable, "-c", NVITOP_API], env)),
                nvitop_once=run([nvitop, "--once"], env),
            )
            assert load_view(root) == view, "the node moved while paused"
        finally:
            resume(root, timeout_s=30)
    finally:
        node.terminate()
        node.wait(30)
        if node.stdout is not None:
            node.stdout.close()


# ------------------------------------------------------------------ truth, as each tool shows it


def draw_mw(view: GpuView, dev: DeviceState) -> int:
    """NVML's nvmlDeviceGetPowerUsage: the 1-s average (Ampere except GA100, newer) in mW."""
    return round(view.draw_power_w(dev) * 1000)


def worker_of(pid: int) -> tuple[int, str]:
    """(parent PID, command line) of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()
    return ppid, cmdline


def check_processes(r: Reading, got: dict[int, int], dev: DeviceState, unit: int) -> None:
    """A GPU with memory in use lists exactly its worker (a child of the node) using that memory."""
    if dev.mem_used_bytes <= 0:
        assert got == {}, got
        return
    ((pid, used),) = got.items()
    assert worker_of(pid) == (r.node_pid, "kwatt-gpu-worker")
    assert used == min(dev.mem_used_bytes, dev.mem_total_bytes) // unit


def test_the_node_has_every_nvidia_model(reading: Reading) -> None:
    assert sorted(d.model for d in reading.view.gpus) == sorted(MODELS)
    assert len(MODELS) >= 5
    busy = [d for d in reading.view.gpus if d.mem_used_bytes > 0]
    assert busy, "the chatbot service puts memory (and a process) on the GPUs"


def test_kwatt_nvml_collector(reading: Reading) -> None:
    """kwatt through nvidia-ml-py: every field, NVML's integer units the only tolerance."""
    points = [p for p in reading.kwatt if p.measurement == "accel"]
    assert len(points) == len(MODELS)
    for p in points:
        tags, fields = dict(p.tags), dict(p.fields)
        dev = reading.truth(tags["device"])
        board = model_of(dev)
        assert (tags["vendor"], tags["model"]) == ("nvidia", model_slug(board.product_name))
        assert tags["model"] == dev.model
        assert abs(fields["power_w"] - draw_mw(reading.view, dev) / 1000) < 1e-9
        assert abs(fields["power_w"] - reading.view.draw_power_w(dev)) <= 0.0005 + 1e-9
        assert 0 <= energy_counter_j(dev) - fields["energy_j"] < 0.001  # mJ, floored
        assert fields["util_ratio"] == gpu_util_pct(dev) / 100
        assert abs(fields["util_ratio"] - dev.util_ratio) <= 0.005 + 1e-9
        assert fields["temp_c"] == round(dev.temp_c)
        assert fields["clock_hz"] == round(dev.clock_hz / 1e6) * 1e6
        assert (fields["mem_used_bytes"], fields["mem_total_bytes"]) == (
            dev.mem_used_bytes,
            dev.mem_total_bytes,
        )
        assert fields["power_limit_w"] == round(dev.power_limit_w * 1000) / 1000
        assert fields["throttled"] == int(dev.throttle_power or dev.throttle_thermal)
    inventory = [p for p in reading.kwatt if p.measurement == "agent"]
    assert inventory, "the agent's own per-collector line"


def test_gpustat_json(reading: Reading) -> None:
    doc = reading.gpustat
    assert doc["driver_version"] == reading.view.driver_version
    gpus = doc["gpus"]
    assert isinstance(gpus, list) and len(gpus) == len(MODELS)
    for g in gpus:
        dev = reading.truth(g["uuid"])
        board = model_of(dev)
        assert g["index"] == dev.index
        assert g["name"] == board.product_name
        assert g["temperature.gpu"] == round(dev.temp_c)
        assert g["fan.speed"] is None  # passively cooled boards: NOT_SUPPORTED
        assert g["utilization.gpu"] == gpu_util_pct(dev)
        assert (g["utilization.enc"], g["utilization.dec"]) == (0, 0)  # no video work
        assert g["power.draw"] == draw_mw(reading.view, dev) // 1000  # whole W, floored
        assert 0 <= reading.view.draw_power_w(dev) - g["power.draw"] < 1.0005
        assert g["enforced.power.limit"] == round(dev.power_limit_w * 1000) // 1000
        assert g["memory.used"] == dev.mem_used_bytes // MIB
        assert g["memory.total"] == dev.mem_total_bytes // MIB
        for p in g["processes"]:
            assert (p["command"], p["full_command"]) == ("kwatt-gpu-worker", ["kwatt-gpu-worker"])
        procs = {p["pid"]: p["gpu_memory_usage"] for p in g["processes"]}
        check_processes(reading, procs, dev, MIB)


def test_nvitop_api(reading: Reading) -> None:
    doc = reading.nvitop_api
    view = reading.view
    assert doc["driver"] == view.driver_version
    assert doc["cuda_driver"] == view.cuda_version
    devices = doc["devices"]
    assert isinstance(devices, list) and len(devices) == len(MODELS)
    for d in devices:
        dev = reading.truth(d["uuid"])
        board = model_of(dev)
        mhz = round(dev.clock_hz / 1e6)
        assert d["index"] == dev.index
        assert (d["name"], d["bus_id"]) == (board.product_name, nvml_bus_id(dev.bus_id))
        assert d["temperature"] == round(dev.temp_c)
        assert d["power_usage"] == draw_mw(view, dev)  # mW
        assert d["power_limit"] == round(dev.power_limit_w * 1000)
        assert (d["memory_total"], d["memory_used"]) == (dev.mem_total_bytes, dev.mem_used_bytes)
        assert d["memory_free"] == dev.mem_total_bytes - dev.mem_used_bytes
        assert d["gpu_utilization"] == gpu_util_pct(dev)
        assert d["memory_utilization"] == mem_util_pct(dev)
        assert (d["encoder_utilization"], d["decoder_utilization"]) == (0, 0)
        assert (d["graphics_clock"], d["sm_clock"]) == (mhz, mhz)
        assert d["video_clock"] == round(mhz * board.video_clock_ratio)
        assert d["memory_clock"] == d["max_memory_clock"] == board.mem_clock_mhz
        assert d["max_graphics_clock"] == d["max_sm_clock"] == board.max_graphics_mhz
        assert d["max_video_clock"] == round(board.max_graphics_mhz * board.video_clock_ratio)
        assert d["fan_speed"] == "N/A"
        assert d["performance_state"] == f"P{pstate(dev)}"
        assert (d["persistence_mode"], d["compute_mode"]) == ("Enabled", "Default")
        assert (d["display_active"], d["display_mode"]) == ("Disabled", "Disabled")
        assert d["mig_mode"] == ("Disabled" if board.mig_capable else "N/A")
        assert d["cuda_compute_capability"] == list(board.compute_capability)
        assert d["ecc_errors"] == 0
        procs = {int(pid): used for pid, used in d["processes"].items()}
        check_processes(reading, procs, dev, 1)


_ROW = re.compile(r"│\s+(\d+)\s+(.+?)\s+On │ ([0-9A-F:.]+) Off │\s+(Disabled|N/A)\s+(\d+) │")
_VALUES = re.compile(
    r"│ N/A\s+(\d+)C\s+P(\d+)\s+(\d+)W / (\d+)W │\s+(\S+) / (\S+) │\s+(\d+)%\s+Default │"
)


def test_nvitop_once(reading: Reading) -> None:
    """nvitop's one-shot screen: one card per GPU in index order (persistence On, display Off, MIG
    mode, uncorrected ECC errors; fan N/A, temperature, P-state, power usage / limit in whole W,
    memory used / total in nvitop's own units, GPU utilization, compute mode), and one process
    row per worker."""

    text = reading.nvitop_once
    rows = _ROW.findall(text)
    values = _VALUES.findall(text)
    gpus = sorted(reading.view.gpus, key=lambda d: d.index)
    assert len(rows) == len(values) == len(gpus), text
    for dev, (index, _name, bus, mig, ecc), value in zip(gpus, rows, values, strict=True):
        temp, pst, watts, cap, used, total, util = value
        assert (int(index), bus) == (dev.index, nvml_bus_id(dev.bus_id))
        assert mig == ("Disabled" if model_of(dev).mig_capable else "N/A")
        assert int(ecc) == 0
        assert int(temp) == round(dev.temp_c)
        assert int(pst) == pstate(dev)
        assert abs(int(watts) - reading.view.draw_power_w(dev)) <= 0.5 + 0.0005
        assert int(cap) == round(dev.power_limit_w)
        assert (used, total) == (bytes2human(dev.mem_used_bytes), bytes2human(dev.mem_total_bytes))
        assert int(util) == gpu_util_pct(dev)
    busy = [d for d in gpus if d.mem_used_bytes > 0]
    process_rows = re.findall(r"│\s+(\d+)\s+(\d+) C\s+\S+\s+(\S+)", text)
    assert sorted(int(i) for i, _, _ in process_rows) == sorted(d.index for d in busy), text
    for index, pid, gpu_mem in process_rows:
        assert worker_of(int(pid)) == (reading.node_pid, "kwatt-gpu-worker")
        (dev,) = [d for d in gpus if d.index == int(index)]
        assert gpu_mem == bytes2human(dev.mem_used_bytes)


def test_clock_event_reasons_and_throttling_agree(reading: Reading) -> None:
    """kwatt's ``throttled`` is the power/thermal bits of the reasons mask NVML reports."""
    for p in reading.kwatt:
        if p.measurement != "accel":
            continue
        dev = reading.truth(dict(p.tags)["device"])
        assert dict(p.fields)["throttled"] == int(reasons_mask(dev) & 0x24 != 0)
        assert math.isfinite(dict(p.fields)["power_w"])
