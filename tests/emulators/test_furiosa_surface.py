"""Furiosa sysfs surfaces rendered from DeviceStates: layout and formats (golden), reference rules.

Checks with the reference's own rules (docs/device-interfaces.md §1.3): device-api's ``ne_clk_freq_info``
regex, its ``perf_regs`` key requirements, the literal ``!`` of the RNGD class names, and the same file
layout as the legacy RNGD emulator (whose tree the furiosa collector tests already pin).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from pathlib import Path

from kwatt.emulators.furiosa_surface import FuriosaSurface
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.emulators.state import DeviceState, Snapshot
from kwatt.emulators.surfaces import SurfaceContext

GOLDEN = Path(__file__).parents[1] / "fixtures" / "emulators" / "sysfs" / "furiosa-tree.txt"
UPDATE = os.environ.get("KWATT_UPDATE_GOLDEN") == "1"
NE_CLK = re.compile(r"(?P<name>(\w| )+)\((?P<unit>.*)\): (?P<value>\d+)")  # device-api sysfs.rs


def state(index: int, model: str, **kw: object) -> DeviceState:
    base: dict[str, object] = {
        "index": index,
        "model": model,
        "vendor": "furiosa",
        "serial": "WBYB0000000001" if model == "warboy" else "RNGD000206",
        "uuid": f"{index:08x}-70b7-4996-aac0-7e8e46ffc817",
        "bus_id": f"0000:{0x6D + index:02x}:00.0",
        "t_s": 0.0,
        "util_ratio": 0.5,
        "power_w": 40.123456,
        "energy_j": 0.0,
        "temp_c": 45.5,
        "clock_hz": 2.0e9,
        "mem_used_bytes": 8 << 30,
        "mem_total_bytes": 51_002_736_640 if model == "rngd" else 16 << 30,
        "power_limit_w": 300.0,
        "core_util": (0.5,) * (2 if model == "warboy" else 8),
        "service": "traffic",
        "ambient_c": 30.0,
    }
    base.update(kw)
    return DeviceState(**base)  # type: ignore[arg-type]


def dump(root: Path) -> str:
    lines = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] != "sys":
            continue
        if p.is_symlink():
            lines.append(f"{rel} -> {os.readlink(p)}")
        elif p.is_file():
            lines.append(f"{rel}: {p.read_text(encoding='utf-8')!r}")
    return "\n".join(lines) + "\n"


def render(root: Path, *steps: tuple[DeviceState, ...]) -> FuriosaSurface:
    s = FuriosaSurface(SurfaceContext(root=root, seed=0))
    s.setup(root, steps[0])
    for devices in steps:
        s.render(Snapshot(t_s=devices[0].t_s, wall_ns=0, devices=devices, host=None))
    return s


def test_tree_golden(tmp_path: Path) -> None:
    a = (state(0, "warboy"), state(1, "rngd"))
    b = tuple(dataclasses.replace(d, t_s=1.0, cycles=2.0e9, busy_cycles=1.0e9) for d in a)
    render(tmp_path, a, b)
    got = dump(tmp_path)
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got, encoding="utf-8")
    assert got == GOLDEN.read_text(encoding="utf-8")


def test_reference_rules(tmp_path: Path) -> None:
    a = (state(0, "warboy"), state(1, "rngd"))
    b = tuple(dataclasses.replace(d, t_s=3.0, cycles=6.0e9, busy_cycles=3.0e9) for d in a)
    render(tmp_path, a, b)
    wb = tmp_path / "sys/class/npu_mgmt/npu0_mgmt"
    assert os.readlink(wb) == "../../devices/virtual/npu_mgmt/npu0_mgmt"
    m = NE_CLK.fullmatch((wb / "ne_clk_freq_info").read_text().strip())
    assert m is not None and m["unit"] == "MHz" and m["value"] == "2000"
    assert (wb / "alive").read_text() in ("0\n", "1\n")
    assert len((wb / "atr_error").read_text().splitlines()) == 9
    for devfile in ("npu0pe0", "npu0pe1", "npu0pe0-1"):
        regs = dict(
            line.split(": ")
            for line in (tmp_path / "sys/class/npu_mgmt" / devfile / "perf_regs")
            .read_text()
            .splitlines()
        )
        assert {"TaskExecutionTime", "TensorExecutionTime", "CycleCount", "CycleCountHigh"} <= set(
            regs
        )
        assert all(re.fullmatch(r"0x[0-9a-f]+", v) for v in regs.values())
        cycles = (int(regs["CycleCountHigh"], 16) << 32) | int(regs["CycleCount"], 16)
        assert cycles == 6_000_000_000
    rngd = tmp_path / "sys/class/rngd_mgmt/rngd!npu1mgmt"
    assert os.readlink(rngd) == "../../devices/virtual/rngd_mgmt/rngd!npu1mgmt"
    assert (rngd / "throttle_reason").read_text() == "0x0\n"


def test_same_layout_as_the_legacy_rngd_emulator(tmp_path: Path) -> None:
    async def legacy() -> None:
        async with EmulatedNode(tmp_path / "legacy", devices=1) as node:
            node.step(0.0)

    asyncio.run(legacy())
    render(tmp_path / "new", (state(0, "rngd", bus_id="0000:6d:00.0"),))

    def paths(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in (root / "sys").rglob("*")}

    assert paths(tmp_path / "new") == paths(tmp_path / "legacy")
    old_m = tmp_path / "legacy/sys/class/rngd_mgmt/rngd!npu0mgmt"
    new_m = tmp_path / "new/sys/class/rngd_mgmt/rngd!npu0mgmt"
    for name in (
        "platform_type",
        "device_type",
        "cur_pe_ids",
        "board_revision",
        "npu_governor",
        "power_limit_mw",
    ):
        assert (new_m / name).read_text() == (old_m / name).read_text()
