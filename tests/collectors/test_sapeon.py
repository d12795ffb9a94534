"""Sapeon on both sides of the (ASSUMED, reference §3) driver boundary: the emulated hwmon chips and
``sapeon-smi``, and the collector that reads them — golden fixtures, fuzzing, end to end, faults."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kwatt.collectors import load
from kwatt.collectors.base import (
    Collector,
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
)
from kwatt.collectors.sapeon import (
    PLUGIN,
    Config,
    SapeonCollector,
    parse_hwmon,
    parse_json,
    parse_json_report,
)
from kwatt.emulators import sapeon as emu
from kwatt.emulators.faults import Fault
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.state import DeviceState, Snapshot, ToolFaults, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext, load_builtin
from kwatt.wire.model import Sample
from kwatt.wire.settings import from_mapping

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sapeon"
CI = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_doc(samples: list[Sample]) -> list[dict[str, object]]:
    return [{"tags": dict(s.tags), "fields": dict(s.fields)} for s in samples]


def hwmon_files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


# ---------------------------------------------------------------------------------- golden


def test_golden_json() -> None:
    fixture = FIXTURES / "sapeon-smi-json-synthetic.json"
    expected = json.loads(fixture.with_name(fixture.name + ".expected.json").read_text())
    assert as_doc(parse_json(fixture.read_bytes(), ts_ns=1)) == expected


def test_golden_hwmon() -> None:
    files = hwmon_files(FIXTURES / "hwmon-x330-synthetic")
    expected = json.loads((FIXTURES / "hwmon-x330-synthetic.expected.json").read_text())
    assert as_doc(parse_hwmon(files, bus_id="0000:83:00.0", ts_ns=1)) == expected


def test_golden_values() -> None:
    report = parse_json_report((FIXTURES / "sapeon-smi-json-synthetic.json").read_bytes())
    compact, enterprise, x330 = report.devices
    assert report.driver_version == "1.0.0"
    assert (compact.power_w, compact.temp_c, compact.util_ratio) == (41.23, 52.0, 0.615)
    assert (compact.energy_j, compact.clock_hz) == (123456.789, 1e9)
    assert enterprise.power_w is None and enterprise.energy_j is None  # null and NaN: absent
    assert enterprise.throttled == 1 and x330.temp_c is None


def test_parse_errors() -> None:
    ok = {"schema": "kwatt-assumed-sapeon-smi/1", "devices": []}
    cases: dict[bytes, str] = {
        b"": "expected a JSON document",
        b'{"devices": []}': "expected a JSON object with schema kwatt-assumed-sapeon-smi/N",
        json.dumps({**ok, "devices": [1]}).encode(): r"devices\[0\]: expected an object",
        json.dumps({**ok, "devices": [{}]}).encode(): "expected 'pci_bus_id'",
        json.dumps({**ok, "devices": [{"pci_bus_id": "b", "power_mw": "40 W"}]}).encode(): (
            "expected a number for 'power_mw'"
        ),
        json.dumps({**ok, "devices": [{"pci_bus_id": "b", "memory_used_bytes": 1.5}]}).encode(): (
            "whole number of bytes"
        ),
        json.dumps({**ok, "devices": [{"pci_bus_id": "b", "throttled": 1}]}).encode(): (
            "true/false"
        ),
        b'{"schema": "kwatt-assumed-sapeon-smi/1", "devices": [{"pci_bus_id": "b", "power_mw": Infinity}]}': (
            "not finite"
        ),
        json.dumps({**ok, "devices": [{"pci_bus_id": "a b", "power_mw": 1}]}).encode(): (
            "device 'a b'"
        ),
    }
    for raw, message in cases.items():
        with pytest.raises(ParseError, match=message):
            parse_json(raw, ts_ns=1)
    assert parse_json(json.dumps(ok).encode(), ts_ns=1) == []
    with pytest.raises(ParseError, match=r"hwmon/power1_input: expected an integer"):
        parse_hwmon({"name": "sapeon_x330", "power1_input": "lots"}, bus_id="b", ts_ns=1)
    with pytest.raises(ParseError, match="counter cannot be negative"):
        parse_hwmon({"name": "sapeon_x330", "energy1_input": "-1"}, bus_id="b", ts_ns=1)
    assert parse_hwmon({"name": "k10temp", "power1_input": "5"}, bus_id="b", ts_ns=1) == []


# ---------------------------------------------------------------------------------- fuzzing

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = [
    "pci_bus_id",
    "model",
    "power_mw",
    "energy_mj",
    "temperature_mc",
    "utilization_pct",
    "memory_used_bytes",
    "throttled",
]


@CI
@given(st.binary(max_size=3000))
def test_fuzz_parse_json_bytes(raw: bytes) -> None:
    with contextlib.suppress(ParseError):
        assert all(isinstance(s, Sample) for s in parse_json(raw, ts_ns=1))


@CI
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _json_values), max_size=4))
def test_fuzz_parse_json_devices(devices: list[dict[str, object]]) -> None:
    raw = json.dumps({"schema": "kwatt-assumed-sapeon-smi/1", "devices": devices}).encode()
    with contextlib.suppress(ParseError):
        for s in parse_json(raw, ts_ns=1):
            assert all(math.isfinite(v) for _, v in s.fields)


@CI
@given(
    st.dictionaries(
        st.sampled_from(["name", "power1_input", "power1_cap", "energy1_input", "temp1_input"]),
        st.text(max_size=24) | st.integers(-(2**70), 2**70).map(str),
    ),
    st.text(max_size=16),
)
def test_fuzz_parse_hwmon(files: dict[str, str], bus_id: str) -> None:
    files = {**files, "name": "sapeon_" + files.get("name", "")}
    with contextlib.suppress(ParseError):
        parse_hwmon(files, bus_id=bus_id, ts_ns=1)


# ---------------------------------------------------------------------------------- emulator


def state(index: int, model: str, bus_id: str, **kw: object) -> DeviceState:
    fields: dict[str, object] = {
        "util_ratio": 0.5,
        "power_w": 40.0,
        "energy_j": 5000.0,
        "temp_c": 50.0,
        "clock_hz": 1e9,
        "mem_used_bytes": 1 << 30,
        "mem_total_bytes": 8 << 30,
        "power_limit_w": 60.0,
    }
    fields.update(kw)
    return DeviceState(
        index=index,
        model=model,
        vendor="sapeon",
        serial=f"SPN{index:05d}",
        uuid=f"uuid-{bus_id}",
        bus_id=bus_id,
        t_s=10.0,
        **fields,  # type: ignore[arg-type]
    )


def node_devices() -> tuple[DeviceState, ...]:
    return (
        state(0, "x220-compact", "0000:81:00.0", power_w=41.2345, temp_c=52.25, util_ratio=0.6151),
        state(
            1,
            "x220-enterprise",
            "0000:82:00.0",
            power_w=118.0,
            temp_c=91.0,
            throttle_thermal=True,
            clock_hz=4e8,
            mem_total_bytes=16 << 30,
            power_limit_w=120.0,
            energy_j=1.5e6,
            energy_at_reset_j=1.0e6,
        ),
        state(2, "x330", "0000:83:00.0", power_w=30.0, util_ratio=0.0, mem_used_bytes=0),
    )


def make_node(
    root: Path,
    devices: tuple[DeviceState, ...],
    faults: tuple[tuple[str, ToolFaults], ...] = (),
) -> emu.SapeonSurface:
    surface = emu.SapeonSurface(SurfaceContext(root=root, seed=1))
    surface.setup(root, devices)
    step(root, surface, devices, faults)
    return surface


def step(
    root: Path,
    surface: emu.SapeonSurface,
    devices: tuple[DeviceState, ...],
    faults: tuple[tuple[str, ToolFaults], ...] = (),
) -> None:
    snap = Snapshot(
        t_s=10.0, wall_ns=1_700_000_000_000_000_000, devices=devices, host=None, tool_faults=faults
    )
    write_snapshot(root, snap)
    surface.render(snap)


def tool_json(root: Path) -> dict[str, object]:
    out = subprocess.run(
        [str(root / "bin" / "sapeon-smi"), "--json"], capture_output=True, check=True
    )
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def test_surface_is_registered() -> None:
    assert load_builtin()["sapeon"] is emu.SapeonSurface


def test_emulator_hwmon_layout(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices())
    hwmon = tmp_path / "sys" / "class" / "hwmon"
    chips = sorted(p.name for p in hwmon.iterdir())
    assert chips == ["hwmon64", "hwmon65", "hwmon66"]
    chip = hwmon / "hwmon64"
    assert (chip / "name").read_text() == "sapeon_x220_compact\n"
    assert (chip / "device").resolve().name == "0000:81:00.0"
    assert (chip / "power1_input").read_text() == "41234500\n"  # µW
    assert (chip / "temp1_input").read_text() == "52250\n"  # m°C
    assert (chip / "energy1_input").read_text() == "5000000000\n"  # µJ
    assert (chip / "power1_cap").read_text() == "60000000\n"
    assert (hwmon / "hwmon65" / "energy1_input").read_text() == "500000000000\n"  # since reset
    assert (hwmon / "hwmon66" / "name").read_text() == "sapeon_x330\n"


def test_emulator_tool_json_and_summary(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices())
    doc = tool_json(tmp_path)
    assert doc["schema"] == emu.SCHEMA
    devices = doc["devices"]
    assert isinstance(devices, list)
    assert [d["model"] for d in devices] == ["X220-compact", "X220-enterprise", "X330"]
    assert devices[0]["power_mw"] == 41234 and devices[0]["temperature_mc"] == 52250
    assert devices[1]["throttled"] is True and devices[1]["energy_mj"] == 500_000_000
    summary = subprocess.run(
        [str(tmp_path / "bin" / "sapeon-smi")], capture_output=True, check=True
    )
    assert b"assumed" in summary.stdout and b"0000:83:00.0" in summary.stdout


def test_emulator_na_nan_vanish_and_stuck(tmp_path: Path) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices)
    chip = tmp_path / "sys" / "class" / "hwmon" / "hwmon64"
    faulty = (
        dataclasses.replace(devices[0], na_fields=("power_w",), nan_fields=("temp_c",)),
        dataclasses.replace(devices[1], present=False),
        dataclasses.replace(devices[2], power_w=99.0, stuck=True),
    )
    step(tmp_path, surface, faulty)
    assert not (chip / "power1_input").exists() and (chip / "temp1_input").read_text() == "nan\n"
    assert not (tmp_path / "sys" / "class" / "hwmon" / "hwmon65").exists()
    held = tmp_path / "sys" / "class" / "hwmon" / "hwmon66" / "power1_input"
    assert held.read_text() == "30000000\n"  # stuck: the last value before it stuck
    devs = tool_json(tmp_path)["devices"]
    assert isinstance(devs, list) and len(devs) == 2
    assert devs[0]["power_mw"] is None and math.isnan(devs[0]["temperature_mc"])
    assert devs[1]["power_mw"] == 30000
    step(tmp_path, surface, devices)  # faults over: everything back
    assert (chip / "power1_input").exists() and held.read_text() == "30000000\n"
    assert (tmp_path / "sys" / "class" / "hwmon" / "hwmon65" / "name").exists()


def test_emulator_nan_energy_is_shown_as_nan(tmp_path: Path) -> None:
    """The ``nan`` fault of ``energy_j``: ``nan`` in hwmon, NaN in the tool's JSON (the counter
    used to be converted with int() and the whole node stopped rendering)."""
    devices = node_devices()
    surface = make_node(tmp_path, devices)
    faulty = (
        dataclasses.replace(devices[0], energy_j=math.nan, nan_fields=("energy_j",)),
        *devices[1:],
    )
    step(tmp_path, surface, faulty)
    chip = tmp_path / "sys" / "class" / "hwmon" / "hwmon64"
    assert (chip / "energy1_input").read_text() == "nan\n"
    assert (chip / "power1_input").read_text() == "41234500\n"
    devs = tool_json(tmp_path)["devices"]
    assert isinstance(devs, list) and math.isnan(devs[0]["energy_mj"])
    assert devs[1]["energy_mj"] == 500_000_000


# ---------------------------------------------------------------------------------- end to end


def collector(root: Path, tool: str = "sapeon-smi", timeout_s: float = 10.0) -> SapeonCollector:
    return PLUGIN.create(
        "sapeon", Config(tool=str(root / "bin" / tool), root=str(root), timeout_s=timeout_s)
    )


def collect(c: SapeonCollector) -> dict[str, Sample]:
    return {s.tag("device") or "": s for s in asyncio.run(c.collect())}


def check_against_truth(
    samples: dict[str, Sample], devices: tuple[DeviceState, ...], *, tool: bool
) -> None:
    present = [d for d in devices if d.present]
    assert set(samples) == {d.bus_id for d in present}
    for d in present:
        s = samples[d.bus_id]
        assert s.tag("model") == d.model  # same tag from either path
        f = dict(s.fields)
        assert f["power_w"] == pytest.approx(d.power_w, abs=1e-3 if tool else 1e-6)
        assert f["temp_c"] == pytest.approx(d.temp_c, abs=1e-3)
        assert f["energy_j"] == pytest.approx(d.energy_j - d.energy_at_reset_j, abs=1e-3)
        assert f["power_limit_w"] == pytest.approx(d.power_limit_w, abs=1e-3)
        if tool:
            assert f["util_ratio"] == pytest.approx(d.util_ratio, abs=5e-5)
            assert f["clock_hz"] == pytest.approx(d.clock_hz, abs=1e6)
            assert (f["mem_used_bytes"], f["mem_total_bytes"]) == (
                d.mem_used_bytes,
                d.mem_total_bytes,
            )
            assert f["throttled"] == int(d.throttle_thermal or d.throttle_power)
        else:  # hwmon has no utilization, clock, memory or throttle files
            assert set(f) == {"power_w", "temp_c", "energy_j", "power_limit_w"}


def test_end_to_end_tool(tmp_path: Path) -> None:
    devices = node_devices()
    make_node(tmp_path, devices)
    c = collector(tmp_path)
    assert isinstance(c, Collector)
    check_against_truth(collect(c), devices, tool=True)
    inventory = asyncio.run(c.inventory())
    assert [(i.id, i.model, i.driver_version) for i in inventory] == [
        (d.bus_id, d.model, emu.DRIVER_VERSION) for d in devices
    ]


def test_end_to_end_hwmon_when_the_tool_is_missing(tmp_path: Path) -> None:
    devices = node_devices()
    make_node(tmp_path, devices)
    c = collector(tmp_path, "no-such-sapeon-smi")
    check_against_truth(collect(c), devices, tool=False)
    assert {i.id for i in asyncio.run(c.inventory())} == {d.bus_id for d in devices}


def test_nothing_there_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable, match="Sapeon publishes no monitoring interface"):
        asyncio.run(collector(tmp_path).collect())


def test_reenumeration_keeps_identity(tmp_path: Path) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices)
    before_tool = set(collect(collector(tmp_path)))
    moved = tuple(dataclasses.replace(d, index=2 - d.index) for d in devices)
    step(tmp_path, surface, moved)
    assert set(collect(collector(tmp_path))) == before_tool
    check_against_truth(collect(collector(tmp_path, "missing")), moved, tool=False)


def test_generic_hwmon_collector_covers_the_assumed_surface(tmp_path: Path) -> None:
    devices = node_devices()
    make_node(tmp_path, devices)
    module = load("hwmon")
    generic = module.create(
        "hwmon", from_mapping(module.config, {"root": str(tmp_path)}, where="t")
    )
    samples = {
        s.tag("device"): s for s in asyncio.run(generic.collect()) if s.measurement == "accel"
    }
    assert set(samples) == {d.bus_id for d in devices}
    for d in devices:
        assert samples[d.bus_id].field("power_w") == pytest.approx(d.power_w, abs=1e-6)


# ---------------------------------------------------------------------------------- faults


def test_fault_hang_is_killed_within_the_timeout(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices(), (("sapeon-smi", ToolFaults(hang_s=60.0)),))
    t0 = time.monotonic()
    with pytest.raises(CollectorTimeout, match="killed"):
        asyncio.run(collector(tmp_path, timeout_s=1.0).collect())
    assert time.monotonic() - t0 < 4.0


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        (ToolFaults(garbage=True), ParseError, "expected a JSON document"),
        (ToolFaults(truncate=True), ParseError, "expected a JSON document"),
        (ToolFaults(exit_code=2), CollectorError, "exit status 2"),
    ],
)
def test_faults_are_errors_not_silent_fallbacks(
    tmp_path: Path, faults: ToolFaults, error: type[Exception], message: str
) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices, (("sapeon-smi", faults),))
    c = collector(tmp_path)
    with pytest.raises(error, match=message) as info:
        asyncio.run(c.collect())
    assert type(info.value) is error
    step(tmp_path, surface, devices)  # fault cleared: the next poll recovers
    check_against_truth(collect(c), devices, tool=True)


def test_registered_and_configurable() -> None:
    module = load("sapeon")
    cfg = from_mapping(module.config, {"tool": "/opt/sapeon-smi", "timeout_s": 3}, where="c")
    assert cfg == Config(tool="/opt/sapeon-smi", timeout_s=3.0)


def test_against_an_emulated_node(tmp_path: Path) -> None:
    """The real node (catalogue → physics → surfaces), both paths against its truth."""

    options = NodeOptions(
        devices=parse_devices("x220-compact:1,x220-enterprise:1,x330:1"),
        services=("steady",),
        seed=5,
        faults=(Fault("na", at_s=25.0, device="sapeon:0", fields=("power_w",)),),
    )

    async def run() -> None:
        node = Node(tmp_path, options)
        await node.start()
        try:
            for t in (10.0, 30.0):
                snap, _ = node.advance(t)
                node.render(snap)
                truth = tuple(d for d in snap.devices if d.vendor == "sapeon")
                for tool in (True, False):
                    c = collector(tmp_path, "sapeon-smi" if tool else "missing")
                    samples = {s.tag("device") or "": s for s in await c.collect()}
                    if t == 10.0:
                        check_against_truth(samples, truth, tool=tool)
                    else:  # the na fault: that device's power is absent, the rest unchanged
                        na = next(d for d in truth if d.index == 0)
                        assert samples[na.bus_id].field("power_w") is None
                        assert samples[na.bus_id].field("energy_j") is not None
        finally:
            await node.aclose()

    asyncio.run(run())
