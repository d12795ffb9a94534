"""Rebellions on both sides of the driver boundary: the emulated rbln-smi/sysfs and the collector.

Golden fixtures (tests/fixtures/rebellions/README.md) per tool version, hypothesis fuzzing of every
parse function, and end to end: DeviceStates rendered through the surface into a tmp ROOT, the
collector run against the installed executable, compared with the truth in SI units, under each
tool fault and across re-enumeration. ``KWATT_REGEN_GOLDEN=1`` rewrites the emulator goldens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
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
from kwatt.collectors.rebellions import (
    JSON_RETRY_POLLS,
    PLUGIN,
    Config,
    RblnDevice,
    RebellionsCollector,
    assign_ids,
    parse_json,
    parse_json_report,
    parse_status,
    parse_text,
    parse_text_report,
    read_sysfs,
    throttled_from_pstate,
)
from kwatt.emulators import rebellions as emu
from kwatt.emulators.faults import Fault
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.state import DeviceState, Snapshot, ToolFaults, read_snapshot, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext, load_builtin
from kwatt.wire import units
from kwatt.wire.model import Sample
from kwatt.wire.settings import from_mapping

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rebellions"
CI = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CARD = "0000000022502229"


def as_doc(samples: list[Sample]) -> list[dict[str, object]]:
    return [{"tags": dict(s.tags), "fields": dict(s.fields)} for s in samples]


# ---------------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "ratio"),
    [("98.7", 0.987), ("0.0", 0.0), ("85%", 0.85), (" 12.5 % ", 0.125), ("100", 1.0)],
)
def test_parse_percent(text: str, ratio: float) -> None:
    assert units.parse_percent(text) == pytest.approx(ratio, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "n_bytes"),
    [
        ("16877882368", 16877882368),  # JSON: decimal byte strings (rblnlib-go)
        ("0.0B", 0),
        ("2.4GB", round(2.4 * 2**30)),  # text table: GB is taken as GiB (assumed, §2.1)
        ("15.7GiB", round(15.7 * 2**30)),
        ("140.0GiB", 140 * 2**30),
        ("1024MB", 2**30),  # all-smi: MB as MiB
        ("512.0 KB", 512 * 1024),
    ],
)
def test_parse_rbln_memory(text: str, n_bytes: int) -> None:
    assert units.parse_rbln_memory(text) == n_bytes


def test_units_absent_and_bad() -> None:
    for na in ("N/A", "-", ""):
        assert units.parse_percent(na) is None
        assert units.parse_rbln_memory(na) is None
    for bad in ("-5", "98.7W", "lots", "1e3"):
        with pytest.raises(units.QuantityError):
            units.parse_percent(bad)
    for bad in ("1.5", "15.7GW", "-1", "GiB"):
        with pytest.raises(units.QuantityError):
            units.parse_rbln_memory(bad)


@CI
@given(st.text(max_size=40))
def test_fuzz_units(text: str) -> None:
    for fn in (units.parse_percent, units.parse_rbln_memory):
        try:
            value = fn(text)
        except units.QuantityError:
            continue
        assert value is None or math.isfinite(value)


# ---------------------------------------------------------------------------------- golden


def _fixtures() -> list[Path]:
    return sorted(
        p
        for p in FIXTURES.iterdir()
        if p.suffix in (".txt", ".json")
        and not p.name.endswith(".expected.json")
        and not p.name.startswith("emulator-")
    )


@pytest.mark.parametrize("fixture", _fixtures(), ids=lambda p: p.name)
def test_golden(fixture: Path) -> None:
    parse = parse_json if fixture.suffix == ".json" else parse_text
    expected = json.loads(fixture.with_name(fixture.name + ".expected.json").read_text())
    assert as_doc(parse(fixture.read_bytes(), ts_ns=1)) == expected


def test_golden_fixtures_cover_every_version() -> None:
    names = {p.name for p in _fixtures()}
    assert {"rbln-smi-docs-example.txt", "rbln-stat-1.x-synthetic.txt"} <= names
    assert any("0.12" in n for n in names)
    assert any("-j-1.x" in n for n in names) and any("-j-2.0" in n for n in names)


def test_docs_example_values() -> None:
    """The verbatim docs table, read field by field (§2.1)."""
    report = parse_text_report((FIXTURES / "rbln-smi-docs-example.txt").read_bytes())
    assert report.kmd_version is None  # "KMD ver: N/A"
    d0, d1 = report.devices
    assert (d0.npu, d0.name, d0.bus_id, d0.pstate) == (0, "RBLN-CA12", "0000:51:00.0", "P2")
    assert (d0.temp_c, d0.power_w, d0.util_ratio) == (38.0, 43.9, 0.987)
    assert d0.mem_total_bytes == round(15.7 * 2**30)
    assert (d1.power_w, d1.pstate, d1.util_ratio, d1.mem_used_bytes) == (6.1, "P14", 0.0, 0)


def test_json_variants() -> None:
    r1 = parse_json_report((FIXTURES / "rbln-smi-j-1.x-synthetic.json").read_bytes())
    r2 = parse_json_report((FIXTURES / "rbln-smi-j-2.0-atom-max-synthetic.json").read_bytes())
    assert [d.npu for d in r1.devices] == [0, 1]  # strings in SDK 1.x
    assert [d.npu for d in r2.devices] == [0, 1, 2, 3, 4]  # ints in SDK 2.0
    assert r1.kmd_version is None and r2.kmd_version == "3.0.0"
    assert r1.devices[1].uuid is None and r1.devices[1].util_ratio is None  # "" and "-"
    assert r2.devices[2].temp_c is None and r2.devices[2].power_w is None  # N/A is absent, not 0


def test_throttled_from_pstate() -> None:
    assert throttled_from_pstate("P10") == 1 and throttled_from_pstate("P12") == 1
    assert throttled_from_pstate("P2") == 0 and throttled_from_pstate("P14") == 0
    assert throttled_from_pstate(None) is None


# ---------------------------------------------------------------------------------- parse errors


def test_parse_json_errors_name_the_tool_and_the_key() -> None:
    cases = {
        b"": "expected a JSON document",
        b"[]": "expected a JSON object with a 'devices' list",
        b'{"devices": {}}': "'devices' list",
        b'{"devices": [1]}': r"devices\[0\]: expected an object",
        b'{"devices": [{"npu": "x"}]}': "expected 'npu' as an int or a decimal string",
        b'{"devices": [{"npu": 0, "temperature": "38W"}]}': "temperature: .*not a unit of degC",
        b'{"devices": [{"npu": 0, "card_power": true}]}': "expected a string or number",
        b'{"devices": [{"npu": 0, "memory": {"used": -1}}]}': "expected a byte count",
        b'{"devices": [{"npu": 0, "pstate": "fast"}]}': "expected a P-state",
        b'{"devices": [{"npu": 0, "pci": "0000:01:00.0"}]}': "'pci' to be an object",
        b'{"devices": [{"npu": 0, "card_power": "1W"}]}': "no uuid, sid or PCI address",
        b'{"devices": [{"sid": "a b", "card_power": "1W"}]}': "device 'a b'",
    }
    for raw, message in cases.items():
        with pytest.raises(ParseError, match=message):
            parse_json(raw, ts_ns=1)
    with pytest.raises(ParseError, match="rbln-smi -j"):
        parse_json(b"\xff\xfe garbage", ts_ns=1)


def test_parse_text_errors() -> None:
    docs = (FIXTURES / "rbln-smi-docs-example.txt").read_bytes()
    with pytest.raises(ParseError, match=r"rbln-smi: expected the Device Information table"):
        parse_text(b"Failed to open device\n", ts_ns=1)
    with pytest.raises(ParseError, match="not UTF-8"):
        parse_text(b"\xff" * 10, ts_ns=1)
    lines = docs.decode().splitlines(keepends=True)
    with pytest.raises(ParseError, match="ends inside the device table"):
        parse_text("".join(lines[:7]).encode(), ts_ns=1)  # cut after a complete row
    with pytest.raises(ParseError, match="expected a table row"):
        parse_text("".join(lines[:6]).encode() + lines[6][:33].encode(), ts_ns=1)  # inside a row
    with pytest.raises(ParseError, match="expected 9 cells per row"):
        parse_text(docs.replace(b"| P2   |", b"| P2   | x |"), ts_ns=1)
    with pytest.raises(ParseError, match="expected a P-state"):
        parse_text(docs.replace(b"| P2   |", b"| Q2   |"), ts_ns=1)
    with pytest.raises(ParseError, match=r"Temp: .*not a number"):
        parse_text(docs.replace(b"  38C |", b"  hot |"), ts_ns=1)


# ---------------------------------------------------------------------------------- fuzzing

_TABLE_ALPHABET = st.sampled_from(list("|+-= \n0123456789.CWGBiPN/A:%NPUNameTempPower"))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_field_values = st.one_of(
    st.sampled_from(["38C", "41°C", "43.9W", "N/A", "-", "98.7", "85%", "2.4GB", "P10", "", "0"]),
    st.integers(-5, 2**70),
    st.floats(),
    st.text(max_size=10),
    st.none(),
)
_devices = st.lists(
    st.dictionaries(
        st.sampled_from(
            ["npu", "name", "sid", "uuid", "temperature", "card_power", "util", "pstate", "pci"]
        ),
        _field_values,
    ).map(lambda d: {**d, "memory": {"used": d.get("util"), "total": d.get("name")}}),
    max_size=5,
)


@CI
@given(st.binary(max_size=3000))
def test_fuzz_parse_bytes(raw: bytes) -> None:
    for parse in (parse_json, parse_text):
        try:
            samples = parse(raw, ts_ns=1)
        except ParseError:
            continue
        assert all(isinstance(s, Sample) for s in samples)


@CI
@given(_json_values)
def test_fuzz_parse_json_documents(doc: object) -> None:
    raw = json.dumps(doc).encode()
    with contextlib.suppress(ParseError):
        parse_json(raw, ts_ns=1)


@CI
@given(_devices, st.sampled_from(["3.0.0", None, 5]))
def test_fuzz_parse_json_devices(devices: list[dict[str, object]], kmd: object) -> None:
    raw = json.dumps({"KMD_version": kmd, "devices": devices}).encode()
    try:
        samples = parse_json(raw, ts_ns=1)
    except ParseError:
        return
    for s in samples:
        assert all(math.isfinite(v) for _, v in s.fields)


@CI
@given(st.text(_TABLE_ALPHABET, max_size=600), st.integers(0, 20), st.text(max_size=12))
def test_fuzz_parse_text(noise: str, line: int, cell: str) -> None:
    docs = (FIXTURES / "rbln-smi-docs-example.txt").read_text()
    lines = docs.splitlines()
    lines[line % len(lines)] = lines[line % len(lines)][:20] + cell
    for text in (noise, "\n".join(lines)):
        with contextlib.suppress(ParseError):
            parse_text(text.encode(), ts_ns=1)


@CI
@given(st.text(max_size=10), st.booleans())
def test_fuzz_parse_status(text: str, probing: bool) -> None:
    with contextlib.suppress(ParseError):
        assert parse_status(text, probing_layout=probing) in emu_status_names()


def emu_status_names() -> set[str]:
    return {"READY", "BUSY", "INIT", "FAULT", "FINISH", "PROBING"}


def test_parse_status() -> None:
    assert [parse_status(str(i)) for i in range(5)] == ["READY", "BUSY", "INIT", "FAULT", "FINISH"]
    assert parse_status("2", probing_layout=True) == "PROBING"
    assert parse_status("5\n", probing_layout=True) == "FINISH"
    with pytest.raises(ParseError, match="rbln0/status: expected a status 0-4"):
        parse_status("5", "rbln0/status")


# ---------------------------------------------------------------------------------- identity


def _dev(npu: int, sid: str | None, bus: str, name: str = "RBLN-CA25") -> RblnDevice:
    return RblnDevice(npu, name, sid, None, bus, None, None, 1.0, None, None, None, None)


def test_atom_max_identity_is_card_serial_and_position() -> None:
    dies = [_dev(i, CARD, f"0000:8{6 - i}:00.0") for i in range(4)]  # listed out of PCI order
    subs: dict[tuple[str, str], int] = {}
    assert assign_ids(dies, subs) == [f"{CARD}-3", f"{CARD}-2", f"{CARD}-1", f"{CARD}-0"]
    # re-enumerated (npu indices reversed) and die 0 gone: the other dies keep their ids
    again = [
        dataclasses.replace(d, npu=9 - (d.npu or 0)) for d in dies if d.bus_id != "0000:83:00.0"
    ]
    assert assign_ids(again, subs) == [f"{CARD}-3", f"{CARD}-2", f"{CARD}-1"]
    # a die seen for the first time takes the free position
    assert assign_ids([*again, _dev(7, CARD, "0000:83:00.0")], subs)[-1] == f"{CARD}-0"


def test_other_identities() -> None:
    uuid_dev = dataclasses.replace(_dev(0, "S1", "0000:01:00.0", "RBLN-CA12"), uuid="U1")
    sid_dev = _dev(1, "S2", "0000:02:00.0", "RBLN-CA12")
    bdf_dev = _dev(2, None, "0000:03:00.0", "RBLN-CA12")
    known = {"0000:03:00.0": "learnt-from-json"}
    assert assign_ids([uuid_dev, sid_dev, bdf_dev], {}) == ["U1", "S2", "0000:03:00.0"]
    assert assign_ids([bdf_dev], {}, known) == ["learnt-from-json"]


# ---------------------------------------------------------------------------------- emulator


def state(
    index: int,
    model: str,
    serial: str,
    bus_id: str,
    *,
    util: float,
    power_w: float,
    temp_c: float,
    used: int,
    total: int = 16877882368,
    **kw: object,
) -> DeviceState:
    return DeviceState(
        index=index,
        model=model,
        vendor="rebellions",
        serial=serial,
        uuid=f"uuid-{bus_id}",
        bus_id=bus_id,
        t_s=10.0,
        util_ratio=util,
        power_w=power_w,
        energy_j=100.0,
        temp_c=temp_c,
        clock_hz=1e9,
        mem_used_bytes=used,
        mem_total_bytes=total,
        power_limit_w=65.0,
        **kw,  # type: ignore[arg-type]
    )


def node_devices() -> tuple[DeviceState, ...]:
    """Two ATOMs (the docs example's values), one ATOM-Max card (4 dies), one REBEL-Quad."""
    return (
        state(0, "atom", "A0000001", "0000:51:00.0", util=0.987, power_w=43.9, temp_c=38.2, used=2576980377, card=0),
        state(1, "atom", "A0000002", "0000:d8:00.0", util=0.0, power_w=6.1, temp_c=25.0, used=0, card=1),
        state(2, "atom-max", "D0000002", "0000:84:00.0", util=0.5, power_w=40.26, temp_c=55.4, used=8 << 30, card=2),
        state(3, "atom-max", CARD, "0000:83:00.0", util=0.99, power_w=74.94, temp_c=77.0, used=12 << 30, throttle_thermal=True, card=2),
        state(4, "atom-max", "D0000004", "0000:86:00.0", util=0.0, power_w=7.0, temp_c=44.6, used=0, card=2),
        state(5, "atom-max", "D0000003", "0000:85:00.0", util=0.25, power_w=22.0, temp_c=49.0, used=1 << 20, card=2),
        state(6, "rebel-quad", "R0000001", "0000:03:00.0", util=0.0, power_w=100.0, temp_c=38.0, used=0, total=150323855360, card=3),
    )  # fmt: skip


def expected_id(d: DeviceState, devices: tuple[DeviceState, ...]) -> str:
    """The truth's identity: an ATOM-Max die is <card serial>-<position by PCI address>, where the
    card serial is the serial of the card's lowest-addressed die (the emulator's convention)."""
    if d.model == "atom-max":
        dies = sorted((x for x in devices if x.card == d.card), key=lambda x: x.bus_id)
        return f"{dies[0].serial}-{[x.bus_id for x in dies].index(d.bus_id)}"
    return d.uuid


def make_node(
    root: Path,
    devices: tuple[DeviceState, ...],
    version: str = "2.0",
    faults: tuple[tuple[str, ToolFaults], ...] = (),
    **surface_kw: bool,
) -> emu.RebellionsSurface:
    surface = emu.RebellionsSurface(
        SurfaceContext(root=root, seed=1, tool_versions={"rbln-smi": version}), **surface_kw
    )
    surface.setup(root, devices)
    step(root, surface, devices, faults)
    return surface


def step(
    root: Path,
    surface: emu.RebellionsSurface,
    devices: tuple[DeviceState, ...],
    faults: tuple[tuple[str, ToolFaults], ...] = (),
) -> None:
    snap = Snapshot(
        t_s=10.0, wall_ns=1_700_000_000_000_000_000, devices=devices, host=None, tool_faults=faults
    )
    write_snapshot(root, snap)
    surface.render(snap)


def run_tool_text(root: Path, *args: str, tool: str = "rbln-smi", sdk: str | None = None) -> bytes:
    env = {**os.environ, **({emu.SDK_ENV: sdk} if sdk else {})}
    return subprocess.run(
        [str(root / "bin" / tool), *args], capture_output=True, check=True, env=env
    ).stdout


def test_surface_is_registered() -> None:
    assert load_builtin()["rebellions"] is emu.RebellionsSurface


@pytest.mark.parametrize("version", sorted(emu.VERSIONS))
def test_emulator_golden(tmp_path: Path, version: str) -> None:
    """The emulated tool's bytes per version, fixed (KWATT_REGEN_GOLDEN=1 rewrites them)."""
    make_node(tmp_path, node_devices(), version)
    for suffix, args in ((".txt", ()), (".json", ("-j", "-g"))):
        out = run_tool_text(tmp_path, *args)
        golden = FIXTURES / f"emulator-{version}{suffix}"
        if os.environ.get("KWATT_REGEN_GOLDEN") == "1":
            golden.write_bytes(out)
        assert out == golden.read_bytes()


def test_emulator_reproduces_the_docs_table(tmp_path: Path) -> None:
    """With the docs example's values, the rows and header are the docs' bytes (§2.1)."""
    make_node(tmp_path, node_devices()[:2])
    out = run_tool_text(tmp_path).decode().splitlines()
    docs = (FIXTURES / "rbln-smi-docs-example.txt").read_text().splitlines()
    assert out[2:9] == docs[2:9]  # rules, header, both rows, closing rule, Context title
    assert out[0] == docs[0]
    assert out[1] == "|" + "Device Information KMD ver: 3.0.0".center(97) + "|"


def test_emulator_versions_differ_where_documented(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices())
    legacy = run_tool_text(tmp_path, tool="rbln-stat", sdk="1.x").decode()
    assert "Device Infomation KMD ver: N/A" in legacy and "Perf" not in legacy
    new = run_tool_text(tmp_path, sdk="smi-0.12").decode()
    assert "KMD ver: 3.5.1" in new and "+=====+" in new
    j1 = json.loads(run_tool_text(tmp_path, "-j", sdk="1.x"))
    j2 = json.loads(run_tool_text(tmp_path, "--json"))
    assert j1["devices"][0]["npu"] == "0" and j2["devices"][0]["npu"] == 0
    assert "group_id" not in j2["devices"][0] and "pstate" not in j1["devices"][0]
    assert json.loads(run_tool_text(tmp_path, "-j", "-g"))["devices"][0]["group_id"] == "0"
    assert [d["name"] for d in j2["devices"]].count("RBLN-CA25") == 4  # one card, four devices


def test_emulator_sysfs(tmp_path: Path) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices)
    class_dir = tmp_path / "sys" / "class" / "rebellions"
    assert sorted(p.name for p in class_dir.iterdir()) == [f"rbln{i}" for i in range(7)]
    assert (class_dir / "rbln0" / "status").read_text() == "1\n"  # BUSY
    assert (class_dir / "rbln1" / "status").read_text() == "0\n"  # READY
    assert (class_dir / "rbln0" / "kernel_version").read_text() == "3.0.0\n"
    assert (class_dir / "rbln2" / "device" / "vendor").read_text() == "0x1eff\n"
    assert (class_dir / "rbln2" / "device" / "device").read_text() == "0x1250\n"
    # a device vanishes and the rest re-enumerate: stale entries go, links follow the device
    moved = tuple(dataclasses.replace(d, index=d.index - 1) for d in devices[1:])
    step(tmp_path, surface, (dataclasses.replace(devices[0], present=False), *moved))
    assert sorted(p.name for p in class_dir.iterdir()) == [f"rbln{i}" for i in range(6)]
    assert (class_dir / "rbln0" / "device").resolve().name == "0000:d8:00.0"
    sysfs = read_sysfs(tmp_path)
    assert [(s.name, s.bus_id) for s in sysfs][:2] == [
        ("rbln0", "0000:d8:00.0"),
        ("rbln1", "0000:84:00.0"),
    ]
    assert sysfs[0].status == "READY" and sysfs[1].status == "BUSY"
    assert json.loads(run_tool_text(tmp_path, "-j"))["devices"][0]["device"] == "rbln0"


def test_emulator_sysfs_fault_and_probing_layout(tmp_path: Path) -> None:
    hot = dataclasses.replace(node_devices()[0], temp_c=86.0)
    make_node(tmp_path, (hot,), probing_layout=True)
    status = (tmp_path / "sys" / "class" / "rebellions" / "rbln0" / "status").read_text()
    assert status == "4\n" and parse_status(status, probing_layout=True) == "FAULT"
    assert json.loads(run_tool_text(tmp_path, "-j"))["devices"][0]["pstate"] == "P12"


def test_emulator_stuck_sensor_repeats_the_last_values(tmp_path: Path) -> None:
    devices = node_devices()[:1]
    surface = make_node(tmp_path, devices)
    stuck = dataclasses.replace(devices[0], power_w=60.0, temp_c=70.0, stuck=True)
    step(tmp_path, surface, (stuck,))
    shown = json.loads(run_tool_text(tmp_path, "-j"))["devices"][0]
    assert (shown["card_power"], shown["temperature"]) == ("43.9W", "38C")
    step(tmp_path, surface, (dataclasses.replace(stuck, stuck=False),))
    shown = json.loads(run_tool_text(tmp_path, "-j"))["devices"][0]
    assert (shown["card_power"], shown["temperature"]) == ("60.0W", "70C")


def test_emulator_without_a_node_fails_like_a_tool(tmp_path: Path) -> None:
    emu.install_tools(tmp_path)
    proc = subprocess.run([str(tmp_path / "bin" / "rbln-smi")], capture_output=True)
    assert proc.returncode == 1 and b"failed to get device information" in proc.stderr


# ---------------------------------------------------------------------------------- end to end


def collector(root: Path, tool: str = "rbln-smi", timeout_s: float = 10.0) -> RebellionsCollector:
    return PLUGIN.create(
        "rbln", Config(tool=str(root / "bin" / tool), root=str(root), timeout_s=timeout_s)
    )


def collect(c: RebellionsCollector) -> dict[str, Sample]:
    return {s.tag("device") or "": s for s in asyncio.run(c.collect())}


def check_against_truth(
    samples: dict[str, Sample],
    devices: tuple[DeviceState, ...],
    *,
    text: bool = False,
    perf: bool = True,
) -> None:
    present = [d for d in devices if d.present]
    assert set(samples) == {expected_id(d, devices) for d in present}
    for d in present:
        s = dict(samples[expected_id(d, devices)].fields)
        assert s["power_w"] == pytest.approx(d.power_w, abs=0.05 + 1e-9)
        assert s["temp_c"] == pytest.approx(d.temp_c, abs=0.5 + 1e-9)
        assert s["util_ratio"] == pytest.approx(d.util_ratio, abs=0.0005 + 1e-9)
        mem_tol = 0.05 * 2**30 if text else 0
        assert s["mem_used_bytes"] == pytest.approx(d.mem_used_bytes, abs=mem_tol)
        assert s["mem_total_bytes"] == pytest.approx(d.mem_total_bytes, abs=mem_tol)
        if perf:
            assert s["throttled"] == int(d.throttle_thermal or d.throttle_power)


@pytest.mark.parametrize("version", sorted(emu.VERSIONS))
def test_end_to_end_every_version(tmp_path: Path, version: str) -> None:
    devices = node_devices()
    make_node(tmp_path, devices, version)
    c = collector(tmp_path)
    assert isinstance(c, Collector)
    samples = collect(c)
    check_against_truth(samples, devices, perf=emu.VERSIONS[version].perf_column)
    for s in samples.values():
        assert s.tag("vendor") == "rebellions" and (s.tag("model") or "").startswith("RBLN-C")
    inventory = asyncio.run(c.inventory())
    assert {i.id for i in inventory} == set(samples)
    kmd = emu.VERSIONS[version]
    assert {i.driver_version for i in inventory} == {kmd.kmd_sysfs}  # tool's, else sysfs (N/A)
    assert all(i.bus_id for i in inventory)


def test_end_to_end_legacy_name_and_text_fallback(tmp_path: Path) -> None:
    """A tool that refuses -j: the text table is used, then -j is no longer tried."""
    devices = node_devices()
    make_node(tmp_path, devices, "1.x")
    wrapper = tmp_path / "bin" / "old-rbln-stat"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-j" ]; then echo "rbln-stat: invalid option -- j" >&2; echo x >> {tmp_path}/j-calls; exit 2; fi\n'
        f'exec {tmp_path}/bin/rbln-stat "$@"\n'
    )
    wrapper.chmod(0o755)
    c = collector(tmp_path, "old-rbln-stat")
    first = collect(c)
    second = collect(c)
    assert (tmp_path / "j-calls").read_text() == "x\n"  # -j tried once only
    c._text_polls = JSON_RETRY_POLLS - 1
    collect(c)
    assert (tmp_path / "j-calls").read_text() == "x\nx\n"  # ... and again after a while
    assert set(first) == set(second) == {d.bus_id for d in devices}  # no sid/uuid in text
    for d in devices:
        f = dict(first[d.bus_id].fields)
        assert f["power_w"] == pytest.approx(d.power_w, abs=0.05 + 1e-9)
        assert f["mem_total_bytes"] == pytest.approx(d.mem_total_bytes, abs=0.05 * 2**30)
        assert "throttled" not in f  # no Perf column in 1.x


def test_text_fallback_keeps_identity_learnt_from_json(tmp_path: Path) -> None:
    devices = node_devices()
    make_node(tmp_path, devices)
    flag = tmp_path / "no-json"
    wrapper = tmp_path / "bin" / "flaky-rbln-smi"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-j" ] && [ -e {flag} ]; then echo "{{\\"devices\\": ["; exit 0; fi\n'
        f'exec {tmp_path}/bin/rbln-smi "$@"\n'
    )
    wrapper.chmod(0o755)
    c = collector(tmp_path, "flaky-rbln-smi")
    via_json = collect(c)
    flag.touch()  # -j now prints half a document: ParseError, text table used for this poll
    via_text = collect(c)
    assert set(via_text) == set(via_json)
    check_against_truth(via_text, devices, text=True)
    flag.unlink()
    assert set(collect(c)) == set(via_json)  # -j is tried again (a parse error is not "no -j")


def test_reenumeration_keeps_identity(tmp_path: Path) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices)
    c = collector(tmp_path)
    before = collect(c)
    # reboot: indices shuffled, the die at 0000:83:00.0 (position 0 on the card) is gone
    order = [5, 6, 4, 0, 1, 2, 3]
    moved = tuple(
        dataclasses.replace(d, index=order[i], present=d.bus_id != "0000:83:00.0")
        for i, d in enumerate(devices)
    )
    step(tmp_path, surface, moved)
    after = collect(c)
    assert set(after) == set(before) - {f"{CARD}-0"}
    check_against_truth(after, moved)
    assert f"{CARD}-1" in after  # the die at 0000:84:00.0 kept its position


@pytest.mark.parametrize("version", sorted(emu.VERSIONS))
def test_na_and_nan_faults_are_absent_never_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    dev = node_devices()[0]
    devices = (
        dataclasses.replace(dev, na_fields=("power_w", "mem_used_bytes")),
        dataclasses.replace(node_devices()[1], nan_fields=("temp_c", "util_ratio")),
    )
    make_node(tmp_path, devices)
    monkeypatch.setenv(emu.SDK_ENV, version)
    shown = run_tool_text(tmp_path).decode()
    assert "N/A" in shown and "nanC" in shown
    for text in (False, True):
        c = collector(tmp_path)
        c._text_only = text  # the text table as well (devices known by PCI address there)
        samples = collect(c)
        na, nan = (samples[d.bus_id if text else d.uuid] for d in devices)
        assert na.field("power_w") is None and na.field("mem_used_bytes") is None
        assert na.field("util_ratio") == pytest.approx(0.987) and na.field("temp_c") == 38.0
        assert nan.field("temp_c") is None and nan.field("util_ratio") is None
        assert nan.field("power_w") == pytest.approx(6.1)


# ---------------------------------------------------------------------------------- faults


def test_fault_hang_is_killed_within_the_timeout(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices(), faults=(("rbln-smi", ToolFaults(hang_s=60.0)),))
    c = collector(tmp_path, timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(CollectorTimeout, match="no answer within 1 s, killed"):
        asyncio.run(c.collect())
    assert time.monotonic() - t0 < 4.0  # one timeout, no text fallback after a hang


def test_fault_garbage_is_a_parse_error(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices(), faults=(("rbln-smi", ToolFaults(garbage=True)),))
    with pytest.raises(ParseError, match=r"rbln-smi.*expected .*and with -j: .*expected"):
        asyncio.run(collector(tmp_path).collect())


def test_fault_truncate_is_a_parse_error(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices(), faults=(("rbln-smi", ToolFaults(truncate=True)),))
    with pytest.raises(ParseError, match=r"rbln-smi.*(truncated|table row)"):
        asyncio.run(collector(tmp_path).collect())


def test_fault_exit_code_is_a_collector_error(tmp_path: Path) -> None:
    make_node(tmp_path, node_devices(), faults=(("rbln-smi", ToolFaults(exit_code=3)),))
    with pytest.raises(CollectorError, match="exit status 3") as info:
        asyncio.run(collector(tmp_path).collect())
    assert type(info.value) is CollectorError


def test_faults_apply_to_the_legacy_name_and_recover(tmp_path: Path) -> None:
    devices = node_devices()
    surface = make_node(tmp_path, devices, faults=(("rbln-smi", ToolFaults(exit_code=1)),))
    c = collector(tmp_path, "rbln-stat")
    with pytest.raises(CollectorError):
        asyncio.run(c.collect())
    step(tmp_path, surface, devices, (("rbln-stat", ToolFaults()),))  # own entry wins
    check_against_truth(collect(c), devices)


def test_missing_tool_is_unavailable(tmp_path: Path) -> None:
    c = PLUGIN.create("rbln", Config(tool="rbln-smi-not-installed", root=str(tmp_path)))
    with pytest.raises(CollectorUnavailable, match="not found"):
        asyncio.run(c.collect())
    make_node(tmp_path, node_devices()[:1])  # ROOT/bin/rbln-smi found from root when not in PATH
    if not any(Path(p, "rbln-smi").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        samples = asyncio.run(PLUGIN.create("rbln", Config(root=str(tmp_path))).collect())
        assert len(samples) == 1


def test_registered_and_configurable() -> None:
    module = load("rebellions")
    cfg = from_mapping(
        module.config, {"tool": "/opt/rbln-smi", "root": "/host", "timeout_s": 2}, where="c"
    )
    assert cfg == Config(tool="/opt/rbln-smi", root="/host", timeout_s=2.0)


# ---------------------------------------------------------------------------------- a whole node


def test_against_an_emulated_node_with_faults(tmp_path: Path) -> None:
    """The real node (catalogue → physics → surfaces): truth, a die that disappears and comes back
    re-enumerated, and a hung tool scheduled by the node's fault engine."""

    options = NodeOptions(
        devices=parse_devices("atom:1,atom-max:1,rebel-quad:1"),
        services=("steady",),
        seed=7,
        faults=(
            Fault("disappear", at_s=15.0, duration_s=10.0, device="0000:53:00.0"),
            Fault("tool_hang", at_s=40.0, duration_s=10.0, tool="rbln-smi", value=60.0),
        ),
    )

    async def run() -> None:
        node = Node(tmp_path, options)
        await node.start()
        try:
            c = collector(tmp_path, timeout_s=2.0)
            snaps: dict[float, Snapshot] = {}
            ids: dict[float, set[str]] = {}
            for t in (10.0, 20.0, 30.0):
                snap, _ = node.advance(t)
                node.render(snap)
                snaps[t] = snap
                samples = {s.tag("device") or "": s for s in await c.collect()}
                ids[t] = set(samples)
                rbln = tuple(d for d in snap.devices if d.vendor == "rebellions")
                check_against_truth(samples, rbln)
            assert len(ids[10.0]) == 6 and ids[30.0] == ids[10.0]
            assert len(ids[20.0]) == 5 and ids[20.0] < ids[10.0]  # the die is gone meanwhile
            back = {d.bus_id: d.index for d in snaps[30.0].devices}
            assert back["0000:53:00.0"] == 5  # it came back last: a new index, the same id
            snap, _ = node.advance(45.0)
            node.render(snap)
            with pytest.raises(CollectorTimeout):
                await c.collect()
        finally:
            await node.aclose()

    asyncio.run(run())


def test_a_reenumerated_die_is_listed_under_its_cards_name(tmp_path: Path) -> None:
    """A die that vanished and came back takes the next free NPU index, so the KMD 3.x table lists it
    apart from its card: it starts a row group of its own with the card's name (an empty Name cell
    after a rule would leave the parser no card to take the name from: model ``rbln``), and the
    card's power stays on the card's first row."""
    root = tmp_path / "node"

    async def go() -> bytes:
        opts = NodeOptions(devices=parse_devices("atom-max:2"), services=("chatbot",))
        async with Node(root, opts) as node:
            node.step(0.0)
            dies = sorted(
                (d for d in read_snapshot(root).devices if d.model == "atom-max"),
                key=lambda d: d.bus_id,
            )
            node.faults.schedule([Fault("disappear", device=dies[1].bus_id, duration_s=1.0)])
            for t in (0.5, 2.0, 2.5):
                node.step(t)
            done = await asyncio.to_thread(
                subprocess.run,
                [str(root / "bin" / "rbln-smi")],
                capture_output=True,
                check=True,
                timeout=60,
            )
            return done.stdout

    out = asyncio.run(go())
    samples = parse_text(out, ts_ns=1_700_000_000_000_000_000)
    assert len(samples) == 8
    assert {s.tag("model") for s in samples} == {"RBLN-CA25"}, out.decode()
    powered = [s for s in samples if s.field("power_w") is not None]
    assert len(powered) == 2  # one card power per card, shown once
