"""The emulated NVIDIA surfaces: nvidia-smi output (golden files), the NVML library read through the
real nvidia-ml-py, faults, stuck sensors, GPU processes.

Golden files under tests/fixtures/nvidia/ are the emulator's output for the states of
tests/nvidia_states.py (hand-checked against docs/device-interfaces.md §4.2 and public captures of
the real tool; named ``-synthetic``: none was captured from a GPU). Regenerate them after a deliberate
format change with ``KWATT_UPDATE_GOLDENS=1 .venv/bin/python -m pytest tests/emulators/test_nvidia_emulator.py``
and review the diff.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from nvidia_states import (
    FIXTURES,
    GOLDEN_DEVICES,
    GOLDEN_NOW,
    H100,
    P100,
    T4,
    advanced,
    make_node,
    require_library,
    shutdown_nvml,
    snapshot,
    step,
    use_nvml,
)

from kwatt.emulators import libnvml, surfaces
from kwatt.emulators.agentconfig import agent_config
from kwatt.emulators.catalogue import load_catalogue
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.nvidia import (
    DEFAULT_DRIVER,
    MEM_UTIL_SHARE,
    MODELS,
    GpuView,
    NvidiaSurface,
    cuda_version,
    gpu_view,
    load_view,
    nvml_bus_id,
)
from kwatt.emulators.state import DeviceState, ToolFaults
from kwatt.emulators.tools.nvidia_smi import QueryError, render, render_query_csv, render_xml

N = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install kwatt[dev])")

UPDATE = os.environ.get("KWATT_UPDATE_GOLDENS") == "1"

OLD_BOARDS = (dataclasses.replace(T4, index=0), dataclasses.replace(P100, index=1))

# (fixture file, driver, nvidia-smi arguments); the 470 branch predates Hopper: T4 and P100 only
GOLDENS: list[tuple[str, str, list[str]]] = [
    (
        "query-gpu-575.51.02-synthetic.csv",
        "575.51.02",
        [
            "--query-gpu=timestamp,index,name,uuid,serial,pci.bus_id,driver_version,pstate,"
            "power.draw,power.draw.instant,enforced.power.limit,temperature.gpu,"
            "temperature.memory,utilization.gpu,utilization.memory,clocks.sm,clocks.mem,"
            "memory.used,memory.total,fan.speed,clocks_event_reasons.active",
            "--format=csv",
        ],
    ),
    (
        "query-gpu-535.129.03-nounits-synthetic.csv",
        "535.129.03",
        [
            "--query-gpu=index,uuid,power.draw.instant,temperature.gpu,utilization.gpu,"
            "memory.used,memory.total,clocks.current.sm,clocks_event_reasons.active",
            "--format=csv,nounits",
        ],
    ),
    (
        "query-gpu-470.182.03-synthetic.csv",
        "470.182.03",
        [
            "--query-gpu=index,uuid,serial,pci.bus_id,name,driver_version,power.draw,"
            "enforced.power.limit,temperature.gpu,utilization.gpu,clocks.sm,memory.used,"
            "memory.total,clocks_throttle_reasons.active",
            "--format=csv",
        ],
    ),
    ("q-x-575.51.02-synthetic.xml", "575.51.02", ["-q", "-x"]),
    ("q-x-535.129.03-synthetic.xml", "535.129.03", ["-q", "-x"]),
    ("q-x-470.182.03-synthetic.xml", "470.182.03", ["--query", "--xml-format"]),
]


def view_of(
    driver: str = DEFAULT_DRIVER, devices: tuple[DeviceState, ...] = GOLDEN_DEVICES
) -> GpuView:
    return gpu_view(snapshot(devices), driver)


@pytest.fixture(autouse=True)
def _nvml_shut_down() -> Iterator[None]:
    """Every test starts and ends with NVML uninitialised."""
    shutdown_nvml()
    yield
    shutdown_nvml()


@pytest.mark.parametrize(("name", "driver", "args"), GOLDENS, ids=[g[0] for g in GOLDENS])
def test_golden_output(name: str, driver: str, args: list[str]) -> None:
    devices = OLD_BOARDS if driver.startswith("470.") else GOLDEN_DEVICES
    out = render(args, view_of(driver, devices), GOLDEN_NOW)
    path = FIXTURES / name
    if UPDATE:
        path.write_text(out, encoding="utf-8")
    assert out == path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- CSV details


def csv_lines(args: list[str], driver: str = DEFAULT_DRIVER) -> list[str]:
    return render(args, view_of(driver), GOLDEN_NOW).splitlines()


def test_csv_header_units_and_cells() -> None:
    lines = csv_lines(
        ["--query-gpu=power.draw,utilization.gpu,memory.used,temperature.gpu,name", "--format=csv"]
    )
    # §4.2: units in the header, none for temperature.gpu; ", " between cells
    assert (
        lines[0] == "power.draw [W], utilization.gpu [%], memory.used [MiB], temperature.gpu, name"
    )
    assert lines[1] == "512.35 W, 73 %, 40960 MiB, 61, NVIDIA H100 80GB HBM3"
    assert lines[2] == "27.82 W, 0 %, 0 MiB, 38, Tesla T4"
    assert len(lines) == 4


def test_csv_noheader_nounits() -> None:
    lines = csv_lines(["--query-gpu=power.draw,memory.used", "--format=csv,noheader,nounits"])
    assert lines == ["512.35, 40960", "27.82, 0", "231.05, 15360"]


def test_csv_not_available_and_not_supported_cells() -> None:
    lines = csv_lines(
        ["--query-gpu=fan.speed,power.draw.instant,temperature.memory", "--format=csv,nounits"]
    )
    assert lines[0] == "fan.speed, power.draw.instant, temperature.memory"
    assert lines[1] == "[N/A], 512.35, [N/A]"
    assert lines[3] == "[N/A], [Not Supported], [N/A]"  # Pascal: no instant reading


def test_csv_aliases_echo_the_asked_name() -> None:
    lines = csv_lines(["--query-gpu=clocks.sm,clocks.current.sm,gpu_uuid", "--format=csv"])
    assert lines[0] == "clocks.sm [MHz], clocks.current.sm [MHz], gpu_uuid"
    assert lines[1] == f"1755 MHz, 1755 MHz, {H100.uuid}"


def test_csv_throttle_reasons() -> None:
    lines = csv_lines(
        [
            "--query-gpu=clocks_throttle_reasons.active,clocks_event_reasons.sw_power_cap,"
            "clocks_event_reasons.sw_thermal_slowdown,clocks_event_reasons.gpu_idle",
            "--format=csv,noheader",
        ]
    )
    assert lines == [
        "0x0000000000000004, Active, Not Active, Not Active",  # power capped
        "0x0000000000000001, Not Active, Not Active, Active",  # idle
        "0x0000000000000020, Not Active, Active, Not Active",  # thermal
    ]


def test_csv_fields_unknown_to_the_driver_are_refused() -> None:
    with pytest.raises(QueryError, match=r'Field "power.draw.instant" is not a valid field') as e:
        render_query_csv(view_of("470.182.03"), ["power.draw.instant"], ["csv"], GOLDEN_NOW)
    assert e.value.status == 2
    with pytest.raises(QueryError, match=r'Field "clocks_event_reasons.active"'):
        render_query_csv(
            view_of("470.182.03"), ["clocks_event_reasons.active"], ["csv"], GOLDEN_NOW
        )
    with pytest.raises(QueryError, match=r'Field "no.such.field"'):
        render_query_csv(view_of(), ["no.such.field"], ["csv"], GOLDEN_NOW)
    with pytest.raises(QueryError, match="not a valid format"):
        render_query_csv(view_of(), ["index"], ["json"], GOLDEN_NOW)


def test_select_by_id() -> None:
    args = ["--query-gpu=index,uuid", "--format=csv,noheader"]
    assert csv_lines([*args, "-i", "1"]) == [f"1, {T4.uuid}"]
    assert csv_lines([*args, "-i", P100.uuid]) == [f"2, {P100.uuid}"]
    assert csv_lines([*args, "--id=00000000:1B:00.0"]) == [f"0, {H100.uuid}"]
    with pytest.raises(QueryError, match="No devices were found"):
        csv_lines([*args, "-i", "7"])


# ----------------------------------------------------------------------------- XML details


@pytest.mark.parametrize(
    ("driver", "dtd", "power", "reasons"),
    [
        ("575.51.02", "v12", "gpu_power_readings/instant_power_draw", "clocks_event_reasons"),
        ("550.54.15", "v12", "gpu_power_readings/average_power_draw", "clocks_event_reasons"),
        ("535.129.03", "v12", "gpu_power_readings/power_draw", "clocks_event_reasons"),
        ("470.182.03", "v11", "power_readings/power_draw", "clocks_throttle_reasons"),
    ],
)
def test_xml_dialects(driver: str, dtd: str, power: str, reasons: str) -> None:
    text = render_xml(view_of(driver), GOLDEN_NOW)
    assert text.splitlines()[:2] == [
        '<?xml version="1.0" ?>',
        f'<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_{dtd}.dtd">',
    ]
    root = ET.fromstring(text)
    assert root.findtext("driver_version") == driver
    assert root.findtext("cuda_version") == cuda_version(driver)
    assert root.findtext("attached_gpus") == "3"
    gpus = root.findall("gpu")
    assert [g.get("id") for g in gpus] == [
        "00000000:1B:00.0",
        "00000000:AF:00.0",
        "00000000:D8:00.0",
    ]
    assert gpus[0].findtext(power) == "512.35 W"
    assert gpus[0].findtext(f"{reasons}/{reasons[:-1]}_sw_power_cap") == "Active"
    assert gpus[2].findtext(f"{reasons}/{reasons[:-1]}_sw_thermal_slowdown") == "Active"
    assert gpus[1].findtext("temperature/gpu_temp") == "38 C"
    assert gpus[0].findtext("fb_memory_usage/used") == "40960 MiB"
    assert gpus[0].findtext("utilization/gpu_util") == "73 %"
    assert gpus[0].findtext("clocks/sm_clock") == "1755 MHz"
    assert gpus[0].findtext("temperature/memory_temp") == "N/A"


def test_xml_escapes_text() -> None:
    odd = dataclasses.replace(H100, serial="A<B&C")
    root = ET.fromstring(render_xml(view_of(devices=(odd,)), GOLDEN_NOW))
    assert root.findtext("gpu/serial") == "A<B&C"


# ----------------------------------------------------------------------------- the executable


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, NvidiaSurface]]:
    root = tmp_path / "node"
    yield root, make_node(root, (H100, T4))


def run_tool(root: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(root / "bin" / "nvidia-smi"), *args], capture_output=True, timeout=timeout
    )


def test_installed_script_runs_the_module(node: tuple[Path, NvidiaSurface]) -> None:
    root, _ = node
    script = (root / "bin" / "nvidia-smi").read_text()
    assert script.startswith(f"#!{sys.executable}\n")
    assert os.access(root / "bin" / "nvidia-smi", os.X_OK)
    p = run_tool(root, "--query-gpu=index,uuid,power.draw", "--format=csv,noheader")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == f"0, {H100.uuid}, 512.35 W\n1, {T4.uuid}, 27.82 W\n"
    assert run_tool(root, "-L").stdout.decode() == (
        f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {H100.uuid})\nGPU 1: Tesla T4 (UUID: {T4.uuid})\n"
    )
    bad = run_tool(root, "--query-gpu=bogus", "--format=csv")
    assert bad.returncode == 2
    assert bad.stdout.decode().startswith('Field "bogus" is not a valid field to query.')


def test_no_node_means_no_driver(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "kwatt.emulators.tools.nvidia_smi", "--root", str(tmp_path), "-L"],
        capture_output=True,
    )
    assert p.returncode == 9
    assert b"couldn't communicate with the NVIDIA driver" in p.stderr


def test_tool_faults_are_visible(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    args = ("--query-gpu=index,uuid", "--format=csv")
    clean = run_tool(root, *args).stdout

    step(root, surface, (H100, T4), (("nvidia-smi", ToolFaults(garbage=True)),))
    garbage = run_tool(root, *args)
    assert garbage.returncode == 0 and garbage.stdout != clean and len(garbage.stdout) >= 64

    step(root, surface, (H100, T4), (("nvidia-smi", ToolFaults(truncate=True)),))
    assert run_tool(root, *args).stdout == clean[: len(clean) // 2]

    step(root, surface, (H100, T4), (("nvidia-smi", ToolFaults(exit_code=12)),))
    failed = run_tool(root, *args)
    assert failed.returncode == 12 and failed.stdout == clean

    step(root, surface, (H100, T4), (("nvidia-smi", ToolFaults(hang_s=30.0)),))
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(root, *args, timeout=1.0)

    step(root, surface, (H100, T4), (("rbln-smi", ToolFaults(exit_code=1)),))  # another tool's
    assert run_tool(root, *args).stdout == clean


def test_vanished_and_reenumerated_devices(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    args = ("--query-gpu=index,uuid", "--format=csv,noheader")
    step(root, surface, (H100, dataclasses.replace(T4, present=False)))
    assert run_tool(root, *args).stdout.decode() == f"0, {H100.uuid}\n"
    step(root, surface, (dataclasses.replace(H100, index=1), dataclasses.replace(T4, index=0)))
    assert run_tool(root, *args).stdout.decode() == f"0, {T4.uuid}\n1, {H100.uuid}\n"


def test_stuck_sensor_repeats_what_it_showed(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    hotter = dataclasses.replace(H100, power_w=650.0, temp_c=80.0, energy_j=H100.energy_j + 650)
    step(root, surface, (dataclasses.replace(hotter, stuck=True), T4))
    shown = load_view(root).gpus[0]
    assert (shown.power_w, shown.temp_c, shown.energy_j) == (
        H100.power_w,
        H100.temp_c,
        H100.energy_j,
    )
    step(root, surface, (hotter, T4))  # unstuck: live values again
    assert load_view(root).gpus[0].power_w == 650.0


def test_surface_is_registered() -> None:
    factories = surfaces.load_builtin()
    assert factories["nvidia"] is NvidiaSurface


# ----------------------------------------------------------------------------- NVML (the C library)
#
# The emulated libnvidia-ml.so.1 (emulators/libnvml) read through the real nvidia-ml-py (pynvml).


@pytest.fixture
def nvml(node: tuple[Path, NvidiaSurface]) -> Iterator[Path]:
    root, surface = node
    use_nvml(root, surface)
    N.nvmlInit()
    yield root
    N.nvmlShutdown()


def test_nvml_units_and_identity(nvml: Path) -> None:
    assert N.nvmlDeviceGetCount() == 2
    assert N.nvmlSystemGetDriverVersion() == DEFAULT_DRIVER
    assert N.nvmlSystemGetCudaDriverVersion() == 12090  # 575 ships CUDA 12.9
    h = N.nvmlDeviceGetHandleByIndex(0)
    assert N.nvmlDeviceGetUUID(h) == H100.uuid
    assert N.nvmlDeviceGetSerial(h) == H100.serial
    assert N.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
    pci = N.nvmlDeviceGetPciInfo(h)  # nvmlDeviceGetPciInfo_v3 and nvml.h's nvmlPciInfo_t
    assert (pci.busId, pci.domain, pci.bus, pci.device) == ("00000000:1B:00.0", 0, 0x1B, 0)
    assert pci.pciDeviceId == MODELS["h100"].pci_device_id
    assert N.nvmlDeviceGetPowerUsage(h) == 512347  # mW
    assert N.nvmlDeviceGetTotalEnergyConsumption(h) == 48213987  # mJ (floor)
    assert N.nvmlDeviceGetEnforcedPowerLimit(h) == 700000  # mW
    assert N.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200000, 700000]
    assert N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU) == 61
    assert N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM) == 1755
    assert N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM) == MODELS["h100"].mem_clock_mhz
    assert N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_SM) == MODELS["h100"].max_graphics_mhz
    for version in (None, N.nvmlMemory_v2):  # nvmlDeviceGetMemoryInfo and _v2
        mem = N.nvmlDeviceGetMemoryInfo(h, version)
        assert (mem.used, mem.total, mem.free) == (
            H100.mem_used_bytes,
            H100.mem_total_bytes,
            H100.mem_total_bytes - H100.mem_used_bytes,
        )
    util = N.nvmlDeviceGetUtilizationRates(h)
    assert (util.gpu, util.memory) == (73, round(73.4 * MEM_UTIL_SHARE))
    assert N.nvmlDeviceGetCurrentClocksEventReasons(h) == N.nvmlClocksEventReasonSwPowerCap
    assert N.nvmlDeviceGetCurrentClocksThrottleReasons(h) == N.nvmlClocksThrottleReasonSwPowerCap
    assert N.nvmlDeviceGetArchitecture(h) == N.NVML_DEVICE_ARCH_HOPPER
    assert N.nvmlDeviceGetCudaComputeCapability(h) == (9, 0)
    assert N.nvmlDeviceGetPerformanceState(h) == 0
    assert N.nvmlDeviceGetMigMode(h) == [0, 0]  # MIG-capable, disabled
    assert N.nvmlDeviceGetHandleByPciBusId("00000000:1b:00.0").contents  # case-insensitive
    with pytest.raises(N.NVMLError_NotSupported):
        N.nvmlDeviceGetFanSpeed(h)  # a passively cooled board has no fan
    t4 = N.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(N.NVMLError_NotSupported):
        N.nvmlDeviceGetMigMode(t4)  # Turing has no MIG
    assert N.nvmlDeviceGetPerformanceState(t4) == 8  # idle
    assert N.nvmlDeviceGetBrand(t4) == N.NVML_BRAND_NVIDIA


def test_nvml_energy_counter_is_volta_and_later(nvml: Path) -> None:
    t4 = N.nvmlDeviceGetHandleByIndex(1)
    assert N.nvmlDeviceGetArchitecture(t4) == N.NVML_DEVICE_ARCH_TURING
    assert N.nvmlDeviceGetTotalEnergyConsumption(t4) == 3337920  # Turing is after Volta: has it
    root = nvml
    surface = make_node(root, (H100, T4, P100))
    del surface
    p100 = N.nvmlDeviceGetHandleByIndex(2)
    with pytest.raises(N.NVMLError_NotSupported) as e:
        N.nvmlDeviceGetTotalEnergyConsumption(p100)
    assert e.value.value == N.NVML_ERROR_NOT_SUPPORTED
    assert str(e.value) == "Not Supported"
    assert N.nvmlDeviceGetPowerUsage(p100) == 231050


def test_nvml_init_without_a_node(
    node: tuple[Path, NvidiaSurface], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, surface = node
    use_nvml(root, surface)
    monkeypatch.setenv(libnvml.STATE_ENV, str(tmp_path / "no-such-node" / "state"))
    with pytest.raises(N.NVMLError_DriverNotLoaded):
        N.nvmlInit()
    with pytest.raises(N.NVMLError_Uninitialized):
        N.nvmlDeviceGetCount()


def test_nvml_state_file_errors_are_unknown(nvml: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A state file the library cannot parse answers UNKNOWN and says why on stderr; the next good
    file is read again."""
    path = libnvml.state_path(nvml)
    good = path.read_text()
    path.write_text(good.replace("power_mw 512347", "power_mw lots"))
    with pytest.raises(N.NVMLError_Unknown):
        N.nvmlDeviceGetCount()
    line = good.splitlines().index("power_mw 512347") + 1
    assert f"{path}: line {line}: expected an unsigned integer or !CODE" in capfd.readouterr().err
    path.write_text(good + "gpu GPU-x\nname half a section\n")
    with pytest.raises(N.NVMLError_Unknown):
        N.nvmlDeviceGetCount()
    assert "gpu section without 'end'" in capfd.readouterr().err
    path.write_text(good)
    assert N.nvmlDeviceGetCount() == 2


def test_nvml_handle_survives_reenumeration_and_loses_its_gpu(nvml: Path) -> None:
    root = nvml
    surface = make_node(root, (H100, T4))
    t4 = N.nvmlDeviceGetHandleByIndex(1)
    step(root, surface, (dataclasses.replace(H100, index=1), dataclasses.replace(T4, index=0)))
    assert N.nvmlDeviceGetUUID(t4) == T4.uuid  # the handle follows its GPU
    assert N.nvmlDeviceGetUUID(N.nvmlDeviceGetHandleByIndex(0)) == T4.uuid
    assert N.nvmlDeviceGetIndex(t4) == 0
    step(root, surface, (H100, dataclasses.replace(T4, present=False)))
    assert N.nvmlDeviceGetCount() == 1
    with pytest.raises(N.NVMLError_GpuIsLost):
        N.nvmlDeviceGetPowerUsage(t4)
    with pytest.raises(N.NVMLError_InvalidArgument):
        N.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(N.NVMLError_NotFound):
        N.nvmlDeviceGetHandleByUUID(T4.uuid)


def test_xml_shows_nan_sensors_as_nan() -> None:
    """A NaN sensor (the ``nan`` fault) is ``nan <unit>`` in the XML report, as in the CSV; the
    report used to round the NaN first and the tool died with a traceback."""
    nan = ("temp_c", "util_ratio", "clock_hz", "power_w")
    gpu = dataclasses.replace(GOLDEN_DEVICES[0], nan_fields=nan, **{f: float("nan") for f in nan})
    root = ET.fromstring(render_xml(view_of(devices=(gpu, *GOLDEN_DEVICES[1:])), GOLDEN_NOW))
    first = root.findall("gpu")[0]
    assert first.findtext("temperature/gpu_temp") == "nan C"
    assert first.findtext("utilization/gpu_util") == "nan %"
    assert first.findtext("clocks/sm_clock") == "nan MHz"
    assert first.findtext("gpu_power_readings/instant_power_draw") == "nan W"
    assert root.findall("gpu")[1].findtext("temperature/gpu_temp") == "38 C"


def test_nan_energy_leaves_the_power_reading_alone(nvml: Path) -> None:
    """The 1-s average power comes from the true energy: a NaN energy (the ``nan`` fault) must
    not turn the power into a NaN (it used to crash the surface)."""
    root = nvml
    surface = make_node(root, (H100, T4))
    states = tuple(advanced(d, 0.5, d.power_w) for d in (H100, T4))
    step(root, surface, states)
    faulty = tuple(
        dataclasses.replace(
            advanced(d, 0.5, d.power_w), energy_j=float("nan"), nan_fields=("energy_j",)
        )
        for d in states
    )
    step(root, surface, faulty)
    h = N.nvmlDeviceGetHandleByIndex(0)
    assert N.nvmlDeviceGetPowerUsage(h) == 512347
    with pytest.raises(N.NVMLError_NoData):
        N.nvmlDeviceGetTotalEnergyConsumption(h)
    text = render(["--query-gpu=power.draw", "--format=csv,noheader"], load_view(root), GOLDEN_NOW)
    assert text.splitlines()[0] == "512.35 W"


def test_nvml_na_fields_are_not_supported(nvml: Path) -> None:
    root = nvml
    surface = make_node(root, (H100, T4))
    faulty = dataclasses.replace(H100, na_fields=("power_w", "temp_c"), nan_fields=("clock_hz",))
    step(root, surface, (faulty, T4))
    h = N.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(N.NVMLError_NotSupported):
        N.nvmlDeviceGetPowerUsage(h)
    with pytest.raises(N.NVMLError_NotSupported):
        N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU)
    with pytest.raises(N.NVMLError_NoData):
        N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM)
    assert N.nvmlDeviceGetUtilizationRates(h).gpu == 73  # the rest is there


def test_nvml_faults(nvml: Path) -> None:
    root = nvml
    surface = make_node(root, (H100, T4))
    h = N.nvmlDeviceGetHandleByIndex(0)
    step(root, surface, (H100, T4), (("nvml", ToolFaults(exit_code=N.NVML_ERROR_UNKNOWN)),))
    with pytest.raises(N.NVMLError_Unknown):
        N.nvmlDeviceGetPowerUsage(h)
    step(root, surface, (H100, T4), (("nvml", ToolFaults(hang_s=0.3)),))
    t0 = time.monotonic()
    assert N.nvmlDeviceGetPowerUsage(h) == 512347
    assert time.monotonic() - t0 >= 0.3
    step(root, surface, (H100, T4))
    assert N.nvmlDeviceGetPowerUsage(h) == 512347


def test_gpu_processes_are_real_processes(nvml: Path) -> None:
    """Each GPU with memory in use lists its worker process, a live PID, using that memory."""
    root = nvml
    surface = make_node(root, (H100, T4))
    surface.start_workers()
    try:
        step(root, surface, (H100, T4))
        pids = surface.worker_pids
        (proc,) = N.nvmlDeviceGetComputeRunningProcesses(N.nvmlDeviceGetHandleByIndex(0))
        assert (proc.pid, proc.usedGpuMemory) == (pids[H100.uuid], H100.mem_used_bytes)
        assert Path(f"/proc/{proc.pid}").is_dir()
        # the T4 holds no memory: no process
        assert N.nvmlDeviceGetComputeRunningProcesses(N.nvmlDeviceGetHandleByIndex(1)) == []
        assert N.nvmlDeviceGetGraphicsRunningProcesses(N.nvmlDeviceGetHandleByIndex(0)) == []
    finally:
        asyncio.run(surface.aclose())
    for pid in pids.values():
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_bus_id_format() -> None:
    assert nvml_bus_id("0000:6d:00.0") == "00000000:6D:00.0"
    assert nvml_bus_id("0001:af:1f.7") == "00000001:AF:1F.7"


def test_board_table_agrees_with_the_catalogue() -> None:
    nvidia = {k: s for k, s in load_catalogue().items() if s.vendor == "nvidia"}
    assert nvidia, "the catalogue has NVIDIA models"
    for key, spec in nvidia.items():
        board = MODELS[key]  # every catalogue GPU has its surface facts
        assert board.product_name == spec.name
        assert board.default_power_limit_w == spec.tdp_w.value
        assert board.max_graphics_mhz == spec.clock_max_mhz.value
        assert board.energy_counter  # all catalogue GPUs are Volta or later (§4.1)


def test_uuid_is_printed_the_nvidia_way(tmp_path: Path) -> None:
    bare = dataclasses.replace(H100, uuid="9c5220f9-381e-425c-b69d-8f0492fc2675")
    lines = render(
        ["--query-gpu=uuid", "--format=csv,noheader"], view_of(devices=(bare,)), GOLDEN_NOW
    )
    assert lines == "GPU-9c5220f9-381e-425c-b69d-8f0492fc2675\n"
    root = tmp_path / "node"
    surface = make_node(root, (bare,))
    use_nvml(root, surface)
    N.nvmlInit()
    try:
        h = N.nvmlDeviceGetHandleByUUID("GPU-9c5220f9-381e-425c-b69d-8f0492fc2675")
        assert N.nvmlDeviceGetUUID(h) == "GPU-9c5220f9-381e-425c-b69d-8f0492fc2675"
        assert N.nvmlDeviceGetPowerUsage(h) == 512347
    finally:
        N.nvmlShutdown()


_ENTRY = re.compile(
    r"^(?:EXPORT nvmlReturn_t|EXPORT const char \*|UINT_GETTER\(|ENUM_GETTER\(|NOT_SUPPORTED\()"
    r"\s*(nvml\w+)",
    re.M,
)


def test_every_entry_point_is_nvidias_and_exported(node: tuple[Path, NvidiaSurface]) -> None:
    """Each function the C source defines is declared by nvml.h under that name, and exported."""
    _, surface = node
    lib_dir = require_library(surface)
    declared = set(
        re.findall(
            r"\bDECLDIR\s+(?:char\s*\*\s*)?(nvml\w+)\s*\(", libnvml.find_header().read_text()
        )
    )
    defined = set(_ENTRY.findall(libnvml.SOURCE.read_text()))
    assert len(defined) > 90
    assert defined <= declared, sorted(defined - declared)
    lib = ctypes.CDLL(str(lib_dir / libnvml.LIBRARY_NAME))
    for name in sorted(defined):
        assert hasattr(lib, name), name
    # the versioned entry points nvidia-ml-py 13 calls
    for name in ("nvmlInitWithFlags", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
                 "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetMemoryInfo_v2",
                 "nvmlDeviceGetComputeRunningProcesses_v3"):  # fmt: skip
        assert name in defined


def test_no_compiler_or_header_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWATT_NVML_INCLUDE", "/nonexistent")
    with pytest.raises(
        libnvml.LibraryUnavailable, match=r"KWATT_NVML_INCLUDE=/nonexistent: no nvml\.h"
    ):
        libnvml.find_header()
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(libnvml.LibraryUnavailable, match=r"no C compiler .*apt-get install gcc"):
        libnvml.find_compiler()


def test_power_is_averaged_over_one_second_where_the_board_does(
    tmp_path: Path,
) -> None:
    """§4.1: 1-s average on Ampere (except GA100) and newer, instantaneous on GA100 and older."""
    a100 = dataclasses.replace(H100, model="a100", uuid="GPU-a100", bus_id="0000:2a:00.0", index=2)
    boards = (dataclasses.replace(H100, power_w=300.0), dataclasses.replace(T4, power_w=30.0), a100)
    root = tmp_path / "node"
    surface = make_node(root, boards)
    states = boards
    for watts in (300.0, 300.0, 700.0):  # 0.5 s steps: the last second is half 300 W, half 700 W
        states = tuple(advanced(d, 0.5, watts if d.model != "t4" else watts / 10) for d in states)
        step(root, surface, states)
    view = load_view(root)
    h100, t4, a100_now = view.gpus
    assert view.average_power_w(h100) == pytest.approx(500.0)
    assert view.draw_power_w(h100) == pytest.approx(500.0)  # Hopper: averaged
    assert view.draw_power_w(a100_now) == 700.0  # GA100: instantaneous
    assert view.average_power_w(a100_now) == pytest.approx(500.0)
    assert view.draw_power_w(t4) == 70.0  # Turing: instantaneous
    lines = render(
        ["--query-gpu=power.draw,power.draw.average,power.draw.instant", "--format=csv,noheader"],
        view,
        GOLDEN_NOW,
    ).splitlines()
    assert lines == [
        "500.00 W, 500.00 W, 700.00 W",
        "70.00 W, 50.00 W, 70.00 W",
        "700.00 W, 500.00 W, 700.00 W",
    ]
    use_nvml(root, surface)
    N.nvmlInit()
    try:
        assert N.nvmlDeviceGetPowerUsage(N.nvmlDeviceGetHandleByIndex(0)) == 500000
        assert N.nvmlDeviceGetPowerUsage(N.nvmlDeviceGetHandleByIndex(2)) == 700000
    finally:
        N.nvmlShutdown()


def test_without_nvml_h_the_node_runs_and_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """No header (or no compiler): the node runs on, nvidia-smi included, and its printed config
    leaves NVML out with the reason instead of naming a collector that cannot work."""
    monkeypatch.setenv("KWATT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KWATT_NVML_INCLUDE", str(tmp_path / "no-header"))

    async def go() -> tuple[dict[str, str], str]:
        options = NodeOptions(devices=parse_devices("h100"), services=("steady",))
        async with Node(tmp_path / "node", options) as node:
            node.step(0.0)
            return node.endpoints, agent_config(node)

    endpoints, text = asyncio.run(go())
    assert "nvml_lib" not in endpoints
    reason = f"KWATT_NVML_INCLUDE={tmp_path / 'no-header'}: no nvml.h there"
    assert f"# left out nvml: emulated NVML (libnvidia-ml.so.1) not available: {reason}" in text
    kinds = [c["type"] for c in yaml.safe_load(text)["collectors"]]
    assert "nvml" not in kinds and "nvidia_smi" in kinds
    assert reason in capfd.readouterr().err
    assert not (tmp_path / "node" / ".kwatt-emulator" / "nvml" / libnvml.LIBRARY_NAME).exists()


def test_faults_through_gpustat(node: tuple[Path, NvidiaSurface]) -> None:
    """The faults as an unmodified NVML client shows them: a GPU that fell off the bus is not
    listed, ``na`` is null, an injected GPU_IS_LOST is gpustat's ``((GPU is lost))``, a hang
    hangs it."""
    root, surface = node
    lib_dir = require_library(surface)
    gpustat = Path(sys.executable).with_name("gpustat")
    if not gpustat.is_file():
        pytest.skip("gpustat is not installed (pip install 'kwatt[dev]')")
    env = {k: v for k, v in os.environ.items() if k != libnvml.STATE_ENV}
    env["LD_LIBRARY_PATH"] = str(lib_dir)

    def gpus(timeout: float = 60) -> list[dict[str, object]]:
        p = subprocess.run(
            [str(gpustat), "--json"], env=env, capture_output=True, text=True, timeout=timeout
        )
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert isinstance(doc["gpus"], list)
        return doc["gpus"]

    assert [g["uuid"] for g in gpus()] == [H100.uuid, T4.uuid]
    step(root, surface, (H100, dataclasses.replace(T4, present=False)))
    assert [g["uuid"] for g in gpus()] == [H100.uuid]
    step(root, surface, (dataclasses.replace(H100, na_fields=("power_w",)), T4))
    shown = gpus()
    assert (shown[0]["power.draw"], shown[1]["power.draw"]) == (None, 27)
    step(root, surface, (H100, T4), (("nvml", ToolFaults(exit_code=15)),))
    assert [g["name"] for g in gpus()] == ["((GPU is lost))", "((GPU is lost))"]
    step(root, surface, (H100, T4), (("nvml", ToolFaults(hang_s=30.0)),))
    with pytest.raises(subprocess.TimeoutExpired):
        gpus(timeout=2.0)
