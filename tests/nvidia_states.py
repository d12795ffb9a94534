"""Device states shared by the NVIDIA tests (tests/test_nvidia*.py) and their golden fixtures."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pynvml
import pytest
from conftest import in_ci

from kwatt.emulators import libnvml
from kwatt.emulators.nvidia import NvidiaSurface
from kwatt.emulators.state import DeviceState, Snapshot, ToolFaults, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia"
#: The wall time the golden outputs were rendered at.
GOLDEN_NOW = datetime(2026, 11, 21, 5, 30, 0, 250000, tzinfo=UTC)
GOLDEN_WALL_NS = int(GOLDEN_NOW.timestamp() * 1e9)

H100 = DeviceState(
    index=0,
    model="h100",
    vendor="nvidia",
    serial="1654922006536",
    uuid="GPU-5a1c3f6e-0d2b-4c1a-9e77-2b8f1d4c6a01",
    bus_id="0000:1b:00.0",
    t_s=120.0,
    util_ratio=0.734,
    power_w=512.347,
    energy_j=48213.9876,
    temp_c=61.4,
    clock_hz=1.755e9,
    mem_used_bytes=40 * 2**30,
    mem_total_bytes=81559 * 2**20,
    power_limit_w=700.0,
    throttle_power=True,
)
T4 = DeviceState(
    index=1,
    model="t4",
    vendor="nvidia",
    serial="1324019055432",
    uuid="GPU-0e3d6c2a-77b4-4f0e-8a21-c93d5b7e1f42",
    bus_id="0000:af:00.0",
    t_s=120.0,
    util_ratio=0.0,
    power_w=27.816,
    energy_j=3337.92,
    temp_c=38.0,
    clock_hz=300e6,
    mem_used_bytes=0,
    mem_total_bytes=15360 * 2**20,
    power_limit_w=70.0,
)
P100 = DeviceState(
    index=2,
    model="p100",
    vendor="nvidia",
    serial="0323617004212",
    uuid="GPU-9b2e0f41-3c5d-4a7e-b1f0-6d8c2e4a9f13",
    bus_id="0000:d8:00.0",
    t_s=120.0,
    util_ratio=0.98,
    power_w=231.05,
    energy_j=27726.0,
    temp_c=84.6,
    clock_hz=1.189e9,
    mem_used_bytes=15 * 2**30,
    mem_total_bytes=16280 * 2**20,
    power_limit_w=250.0,
    throttle_thermal=True,
)
GOLDEN_DEVICES = (H100, T4, P100)


def snapshot(
    devices: tuple[DeviceState, ...],
    wall_ns: int = GOLDEN_WALL_NS,
    faults: tuple[tuple[str, ToolFaults], ...] = (),
) -> Snapshot:
    return Snapshot(
        t_s=devices[0].t_s if devices else 0.0,
        wall_ns=wall_ns,
        devices=devices,
        host=None,
        tool_faults=faults,
    )


def make_node(
    root: Path,
    devices: tuple[DeviceState, ...] = (H100, T4),
    driver: str | None = None,
) -> NvidiaSurface:
    """An emulated node's NVIDIA surface under ``root`` with ``devices`` written to the snapshot."""
    versions = None if driver is None else {"nvidia-smi": driver}
    surface = NvidiaSurface(SurfaceContext(root=root, seed=0, tool_versions=versions))
    surface.setup(root, devices)
    write_snapshot(root, snapshot(devices))
    surface.render(snapshot(devices))
    return surface


def step(
    root: Path,
    surface: NvidiaSurface,
    devices: tuple[DeviceState, ...],
    faults: tuple[tuple[str, ToolFaults], ...] = (),
) -> None:
    """One node step: write the snapshot, then let the surface render it (the node's order)."""
    snap = snapshot(devices, faults=faults)
    write_snapshot(root, snap)
    surface.render(snap)


def advanced(dev: DeviceState, dt_s: float, power_w: float) -> DeviceState:
    """``dev`` after ``dt_s`` seconds at ``power_w`` (energy integrates power)."""
    return dataclasses.replace(
        dev, t_s=dev.t_s + dt_s, power_w=power_w, energy_j=dev.energy_j + power_w * dt_s
    )


def shutdown_nvml() -> None:
    """Balance every nvmlInit made through nvidia-ml-py (a collector left open keeps NVML
    initialised, and the emulated library reads ``KWATT_NVML_STATE`` only at the first init)."""
    if pynvml.nvmlLib is None:
        return
    while True:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            return


def require_library(surface: NvidiaSurface) -> Path:
    """The node's emulated ``libnvidia-ml.so.1`` directory; without a compiler or ``nvml.h`` the
    test skips (fails with CI set), with what is missing."""
    if surface.library_dir is None:
        why = surface.library_error or "the emulated NVML library was not installed"
        if in_ci():
            pytest.fail(f"{why} [CI is set, so a missing tool is an error]", pytrace=False)
        pytest.skip(why)
    return surface.library_dir


def use_nvml(root: Path, surface: NvidiaSurface) -> None:
    """Point this process's NVML (nvidia-ml-py over the emulated library) at the node ``root``.

    The first call loads the library into the process (pynvml's later ``dlopen`` of the soname
    finds it); each call names the node's state file, which the library reads at ``nvmlInit``.
    """
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install kwatt[dev])")
    require_library(surface)
    shutdown_nvml()
    libnvml.load_in_process(root)
