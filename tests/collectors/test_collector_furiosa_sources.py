"""The furiosa collector's Warboy sysfs reader and its ``furiosa-smi`` fallback.

Golden files: tests/fixtures/emulators/furiosa-smi/<version>/ (the emulated tool's output for two RNGD
cards and one Warboy per documented tool version) and …/reference/ (verbatim docs examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.collectors import furiosa
from kwatt.collectors.base import CollectorTimeout, CollectorUnavailable, ParseError
from kwatt.collectors.furiosa import (
    U32,
    Config,
    PerfRegs,
    SmiDevice,
    device_tag,
    merge_smi,
    parse_perf_regs,
    parse_smi_info_json,
    parse_smi_info_table,
    parse_smi_status_json,
    parse_smi_status_table,
    parse_table,
    warboy_utilization,
)
from kwatt.emulators.agentconfig import agent_config
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.state import DeviceState, read_snapshot
from kwatt.wire.model import Sample

SMI = Path(__file__).parents[1] / "fixtures" / "emulators" / "furiosa-smi"
VERSIONS = ("2024.1.0", "2025.1.0", "2025.2.0", "2026.3.0")
GIB = 2**30
NPU0 = "007741DA-70B7-4996-AAC0-7E8E46FFC817"
NPU1 = "0A000001-0000-4000-8000-000000000000"
WARBOY_UUID = "AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA"
NPU0_UTIL = (60 + 61 + 63 + 64 + 62 + 60 + 63 + 65) / 800

# the reference's perf_regs fixture subset (§1.3), verbatim values
PERF_REGS = """ProgramCounter: 0x4010
TaskExecutionTime: 0x8a035bf
TensorExecutionTime: 0x88c229e
CycleCount: 0x35f8bf98
CycleCountHigh: 0x0
"""


def golden(version: str, name: str) -> str:
    return (SMI / version / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- Warboy perf_regs


def test_parse_perf_regs_of_the_reference_fixture() -> None:
    assert parse_perf_regs(PERF_REGS) == PerfRegs(0x35F8BF98, 0x8A035BF, 0x88C229E)
    high = PERF_REGS.replace("CycleCountHigh: 0x0", "CycleCountHigh: 0x2")
    assert parse_perf_regs(high).cycles == (2 << 32) | 0x35F8BF98
    with pytest.raises(
        ParseError, match=r"npu0pe0/perf_regs: expected a 'TensorExecutionTime: 0xHEX'"
    ):
        parse_perf_regs("CycleCount: 0x1\nTaskExecutionTime: 0x1\n", "npu0pe0/perf_regs")
    with pytest.raises(ParseError, match="does not fit 32 bits"):
        parse_perf_regs(PERF_REGS.replace("0x8a035bf", "0x100000000"))
    with pytest.raises(ParseError, match="expected 'Key: 0xHEX' lines"):
        parse_perf_regs("no counters here")


def regs(cycles: int, task: int) -> dict[int, PerfRegs]:
    return {0: PerfRegs(cycles, task % U32, 0), 1: PerfRegs(cycles, task % U32, 0)}


def test_warboy_utilization_wraps_the_u32_task_time_and_applies_the_045_rule() -> None:
    second = 1_000_000_000
    prev = (0, regs(10 * U32, U32 - 100))  # task time about to wrap
    cur = (second, regs(10 * U32 + 2_000_000_000, U32 - 100 + 500_000_000))  # wrapped
    assert warboy_utilization(None, cur) is None
    assert warboy_utilization(prev, cur) == pytest.approx(0.25)
    # 2e9 cycles over 10 s = 0.2 cycles/ns < 0.45: device-api discards the delta
    assert warboy_utilization(prev, (10 * second, cur[1])) is None
    # cycles backwards: NPU restarted
    assert warboy_utilization(prev, (second, regs(5, 1))) is None
    # 2^32 cycles or more: the u32 task time may have wrapped more than once
    assert warboy_utilization(prev, (10 * second, regs(11 * U32, 0))) is None
    assert warboy_utilization(prev, (second, {0: cur[1][0]})) is None  # PE set changed
    assert warboy_utilization(prev, prev) is None  # no time, no cycles


# --------------------------------------------------------------------------- furiosa-smi goldens


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_json_per_tool_version(version: str) -> None:
    devices = merge_smi(
        parse_smi_info_json(golden(version, "info-format-json.txt")),
        parse_smi_status_json(golden(version, "status-format-json.txt")),
    )
    by_tag = {d.tag: d for d in devices}
    assert list(by_tag) == [NPU0, NPU1, WARBOY_UUID]
    n0, n1, wb = by_tag[NPU0], by_tag[NPU1], by_tag[WARBOY_UUID]
    assert (n0.arch, n0.name, n0.serial, n0.bdf) == ("rngd", "npu0", "RNGD000206", "0000:03:00.0")
    # JSON power is quantised to 1 W from 2026.1 (field notes), the tables keep 2 decimals
    assert n0.power_w == (121.0 if version.startswith("2026") else 121.3)
    assert n0.temp_c == 63.42
    assert n0.clock_hz == 2.0e9  # the JSON has core_clock in every version (the tables: "N/A")
    assert n0.util_ratio == pytest.approx(NPU0_UTIL)
    assert (n0.mem_used_bytes, n0.mem_total_bytes) == (45_902_462_976, 51_002_736_640)
    assert n1.util_ratio == 0.0  # JSON prints 0.0 for an idle card
    assert (wb.arch, wb.mem_used_bytes) == ("warboy", None)
    assert wb.util_ratio == pytest.approx(0.51)


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_tables_per_tool_version(version: str) -> None:
    full = parse_smi_info_table(golden(version, "info-format-full.txt"))
    status = parse_smi_status_table(golden(version, "status.txt"))
    by_tag = {d.tag: d for d in merge_smi(full, status)}
    assert list(by_tag) == [NPU0, NPU1, WARBOY_UUID]  # the same tags as the JSON gives
    n0, n1, wb = by_tag[NPU0], by_tag[NPU1], by_tag[WARBOY_UUID]
    assert (n0.power_w, n0.temp_c, n1.power_w, wb.power_w) == (121.3, 63.42, 37.44, 31.5)
    assert n0.clock_hz == (2.0e9 if version.startswith("2026") else None)  # "N/A" before 2026
    assert (
        n0.firmware
        == {
            "2024.1.0": "0.0.15+af1daaa",
            "2025.1.0": "0.0.21+d6cada3",
            "2025.2.0": "2025.1.0+696efad",
            "2026.3.0": "1.7.0, 4dfed1852e7b",
        }[version]
    )
    assert n0.util_ratio == pytest.approx(NPU0_UTIL)
    assert n1.util_ratio is None  # "Core N: -": not in use, absent
    assert wb.util_ratio == pytest.approx(0.51)
    if version != "2026.3.0":  # Cores column, no Memory (docs of 2024.1 to 2025.3)
        assert n0.mem_used_bytes is None and n0.mem_total_bytes is None
    else:
        assert n0.mem_used_bytes == round(42.75 * GIB)
        assert n0.mem_total_bytes == round(47.5 * GIB)
        assert (wb.mem_used_bytes, wb.mem_total_bytes) == (round(1.6 * GIB), 16 * GIB)
    # plain `info`: no UUID or S/N, so the tag falls back to the PCI address
    plain = parse_smi_info_table(golden(version, "info.txt"))
    assert [d.tag for d in plain] == ["0000:03:00.0", "0000:04:00.0", "0000:6d:00.0"]
    assert [d.power_w for d in plain] == [121.3, 37.44, 31.5]


def test_documented_examples() -> None:
    ref = SMI / "reference"
    info = parse_smi_info_table((ref / "info-2026.3.0.txt").read_text())
    assert [(d.name, d.temp_c, d.power_w, d.bdf) for d in info] == [
        ("npu0", 40.98, 38.4, "0000:03:00.0"),
        ("npu1", 41.34, 37.44, "0000:04:00.0"),
    ]
    # the docs' --format full example is printed without rules: one row per line
    (full,) = parse_smi_info_table((ref / "info-full-2026.3.0.txt").read_text())
    assert (full.tag, full.serial, full.clock_hz, full.temp_c) == (NPU0, "RNGD000206", 2e9, 40.8)
    # the status excerpt: the row is elided by the docs after Core 4 (no closing rule)
    status = parse_smi_status_table((ref / "status-2026.3.0.txt").read_text())
    assert status["npu0"].util_ratio == 0.0 and status["npu0"].mem_total_bytes == round(47.5 * GIB)
    # the third-party JSON sample, with its 8 pe_utilizations entries
    pes = [{"pe_core": m, "pe_occupancy": False, "pe_utilization": 0.0} for m in range(8)]
    doc = [
        {
            "arch": "rngd",
            "device": "npu0",
            "liveness": "alive",
            "memory": {"DRAM": {"used_size": 0, "total_size": 51002736640, "used_ratio": 0.0}},
            "pe_utilizations": pes,
        }
    ]
    s = parse_smi_status_json(json.dumps(doc))["npu0"]
    assert (s.util_ratio, s.mem_used_bytes, s.mem_total_bytes) == (0.0, 0, 51002736640)
    # the trimmed info sample: no power or temperature: absent
    (d,) = parse_smi_info_json(
        '[{"arch":"rngd","dev_name":"npu0","device_uuid":"C0413086-0708-4606",'
        '"device_sn":"RNG26040100181Q","firmware":"2026.3.0, 2d3f72a","pci_bdf":"0000:03:00.0"}]'
    )
    assert (d.tag, d.power_w, d.temp_c, d.clock_hz) == ("C0413086-0708-4606", None, None, None)


def test_smi_parse_errors() -> None:
    with pytest.raises(ParseError, match="not JSON"):
        parse_smi_info_json("{oops")
    with pytest.raises(ParseError, match="expected a JSON array of objects"):
        parse_smi_info_json('{"arch": "rngd"}')
    with pytest.raises(ParseError, match=r"power: .*not a unit of W"):
        parse_smi_info_json('[{"arch":"rngd","dev_name":"npu0","power":"38 MHz"}]')
    with pytest.raises(ParseError, match="unknown arch 'h100'"):
        parse_smi_info_json('[{"arch":"h100","dev_name":"npu0"}]')
    with pytest.raises(ParseError, match="expected a number"):
        parse_smi_status_json('[{"device":"npu0","pe_utilizations":[{"pe_utilization":"x"}]}]')
    with pytest.raises(ParseError, match="not a percentage"):
        parse_smi_status_json('[{"device":"npu0","pe_utilizations":[{"pe_utilization":250}]}]')
    with pytest.raises(ParseError, match="expected bytes"):
        parse_smi_status_json('[{"device":"npu0","memory":{"DRAM":{"used_size":-1}}}]')
    with pytest.raises(ParseError, match="expected a table line"):
        parse_table("Error: no NPU device found\n")
    with pytest.raises(ParseError, match="cells where the header has"):
        parse_table("| a | b |\n| 1 |\n")
    with pytest.raises(ParseError, match=r"expected 'Core N: x\.xx%'"):
        parse_smi_status_table("| Device | Core Utilization |\n| npu0 | busy |\n")
    assert device_tag("abc-def", "SN", "0000:01:00.0") == "ABC-DEF"
    assert device_tag("N/A", "", "0000:01:00.0") == "0000:01:00.0"
    assert device_tag(None, None, None) is None


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "arch",
        "dev_name",
        "device",
        "device_uuid",
        "power",
        "temperature",
        "core_clock",
        "memory",
        "pe_utilizations",
        "DRAM",
        "used_size",
        "total_size",
        "pe_utilization",
        "utilization",
    ]
)
_smi_json = st.lists(st.dictionaries(_keys, _json | st.sampled_from(["rngd", "-", "1 W"])))
_table_line = st.lists(
    st.sampled_from(["Arch", "Device", "Power", "rngd", "npu0", "38 W", "-", "Core 0: 1%", " "])
    | st.text(max_size=8),
    max_size=5,
).map(lambda cells: "|" + "|".join(cells) + "|")
_table = st.lists(_table_line | st.just("+--+--+") | st.text(max_size=20), max_size=6).map(
    "\n".join
)


def _fuzz(parse: object, data: str | bytes) -> None:
    assert callable(parse)
    with contextlib.suppress(ParseError):
        parse(data)


@FUZZ
@given(st.binary(max_size=200) | _smi_json.map(json.dumps).map(str.encode))
def test_fuzz_json_parsers(data: bytes) -> None:
    _fuzz(parse_smi_info_json, data)
    _fuzz(parse_smi_status_json, data)


@FUZZ
@given(st.text(max_size=300) | _table)
def test_fuzz_table_parsers(text: str) -> None:
    for parse in (parse_table, parse_smi_info_table, parse_smi_status_table):
        _fuzz(parse, text)


@FUZZ
@given(
    st.text(max_size=200)
    | st.lists(
        st.tuples(
            st.sampled_from(
                ["CycleCount", "CycleCountHigh", "TaskExecutionTime", "TensorExecutionTime", "X"]
            ),
            st.integers(min_value=-5, max_value=2**40).map(hex) | st.text(max_size=6),
        )
    ).map(lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))
)
def test_fuzz_perf_regs(text: str) -> None:
    try:
        regs = parse_perf_regs(text)
    except ParseError:
        return
    assert 0 <= regs.task < U32 and 0 <= regs.tensor < U32 and regs.cycles >= 0


@FUZZ
@given(
    st.text(max_size=200)
    | st.lists(
        st.tuples(
            st.sampled_from(
                ["dram_usage", "shared_usage", "dram_capacity", "shared_capacity", "CycleCount",
                 "TaskCycleCount", "x"]
            ),
            st.integers(min_value=-5, max_value=2**40).map(hex) | st.text(max_size=6),
        )
    ).map(lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))
)  # fmt: skip
def test_fuzz_pe_files(text: str) -> None:
    for parse in (furiosa.parse_alloc_bytes, furiosa.parse_alloc_status, furiosa.parse_pe_metrics):
        _fuzz(parse, text)


# --------------------------------------------------------------------------- emulated node


def node_options(tool_version: str = "2026.3.0") -> NodeOptions:
    return NodeOptions(
        devices=parse_devices("warboy,rngd"),
        services=("steady",),
        seed=5,
        tool_versions=(("furiosa-smi", tool_version),),
    )


def surface_util(d: DeviceState) -> float:
    """What the surface's counters show over one step: the mean of the per-core utilization
    (the truth log's ``util_ratio`` is the physics' value, which the cores jitter around)."""
    return sum(d.core_util) / len(d.core_util) if d.core_util else d.util_ratio


def by_tag(samples: list[Sample]) -> dict[str, dict[str, float | int]]:
    return {s.tag("device") or "": dict(s.fields) for s in samples}


def test_warboy_and_rngd_through_sysfs_against_the_truth(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options()) as node:
            c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), source="sysfs"))
            node.step(0.0)
            node.step(0.5)  # the runtime holds the RNGD's PEs from here (pe_occupancy 1)
            first = await c.collect()
            assert all(s.field("util_ratio") is None for s in first)
            truth = node.step(1.0)
            samples = await c.collect()
            assert c.last_source == "sysfs"
            got = by_tag(samples)
            models = {s.tag("device"): s.tag("model") for s in samples}
            assert len(got) == 2
            for dev in read_snapshot(tmp_path).devices:
                tag = dev.uuid.upper()
                assert models[tag] == dev.model
                g = got[tag]
                assert g["power_w"] == pytest.approx(dev.power_w, abs=1e-6)
                assert g["temp_c"] == pytest.approx(dev.temp_c, abs=1e-3)
                assert g["clock_hz"] == pytest.approx(dev.clock_hz, rel=1e-3)
                assert g["util_ratio"] == pytest.approx(surface_util(dev), abs=1e-6)
                assert abs(g["util_ratio"] - truth.devices[dev.index].util_ratio) < 0.05
            inventory = {d.id: d for d in await c.inventory()}
            wb = next(d for d in truth.devices if d.model == "warboy")
            info = inventory[wb.uuid.upper()]
            assert (info.model, info.bus_id, info.firmware_version) == (
                "warboy",
                wb.bus_id,
                "1.6.0, c1bebfd",
            )

    asyncio.run(go())


@pytest.mark.parametrize("version", ["2024.1.0", "2026.3.0"])
def test_smi_gives_the_same_tags_and_values_as_sysfs(tmp_path: Path, version: str) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options(version)) as node:
            sysfs = furiosa.PLUGIN.create("a", Config(root=str(tmp_path), source="sysfs"))
            smi = furiosa.PLUGIN.create("b", Config(root=str(tmp_path), source="smi", timeout_s=30))
            truth = node.step(1.0)
            from_sysfs = by_tag(await sysfs.collect())
            from_smi = by_tag(await smi.collect())
            assert smi.last_source == "smi"
            assert set(from_smi) == set(from_sysfs)
            power_abs = 0.5 if version.startswith("2026") else 0.005  # 1 W quantised JSON
            assert len(truth.devices) == len(from_smi) == 2
            for dev in read_snapshot(tmp_path).devices:
                g = from_smi[dev.uuid.upper()]
                assert g["power_w"] == pytest.approx(dev.power_w, abs=power_abs)
                assert g["temp_c"] == pytest.approx(dev.temp_c, abs=0.005)
                assert g["util_ratio"] == pytest.approx(surface_util(dev), abs=1e-9)
                assert g["clock_hz"] == pytest.approx(dev.clock_hz, abs=1e6)
                if dev.model == "rngd":
                    assert g["mem_used_bytes"] == dev.mem_used_bytes
                    assert g["mem_total_bytes"] == dev.mem_total_bytes
            assert {d.id for d in await smi.inventory()} == set(from_sysfs)

    asyncio.run(go())


def test_auto_falls_back_to_smi_when_sysfs_is_missing(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options()) as node:
            c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), timeout_s=30))
            node.step(1.0)
            with_sysfs = by_tag(await c.collect())
            assert c.last_source == "sysfs"
            shutil.rmtree(tmp_path / "sys" / "class" / "rngd_mgmt")
            shutil.rmtree(tmp_path / "sys" / "class" / "npu_mgmt")
            fallback = by_tag(await c.collect())
            assert c.last_source == "smi"
            assert set(fallback) == set(with_sysfs)
            sysfs_only = furiosa.PLUGIN.create("s", Config(root=str(tmp_path), source="sysfs"))
            with pytest.raises(CollectorUnavailable, match="no such directory"):
                await sysfs_only.collect()

    asyncio.run(go())


# --------------------------------------------------------------------------- tool faults


def fake_tool(root: Path, body: str) -> Path:
    """``ROOT/bin/furiosa-smi``: a Python script with ``body`` (``args`` = its arguments)."""
    path = root / "bin" / "furiosa-smi"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys, time\nargs = sys.argv[1:]\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_hung_tool_is_killed(tmp_path: Path) -> None:
    fake_tool(tmp_path, "time.sleep(30)")
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), timeout_s=0.5))
    with pytest.raises(CollectorTimeout, match=r"no answer within 0\.5 s"):
        asyncio.run(c.collect())
    assert c._smi.json_ok is None  # a hang says nothing about the tool's JSON support


def test_garbage_from_the_tool_is_a_parse_error(tmp_path: Path) -> None:
    fake_tool(tmp_path, "sys.stdout.buffer.write(bytes(range(256)) * 3)")
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), source="smi"))
    with pytest.raises(ParseError):
        asyncio.run(c.collect())
    fake_tool(tmp_path, 'print(\'[{"arch": "rngd", "dev_name": 7}]\')')
    with pytest.raises(ParseError, match="dev_name: expected a string"):
        asyncio.run(
            furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), source="smi")).collect()
        )


def test_a_tool_without_json_is_read_through_its_tables(tmp_path: Path) -> None:
    fixtures = SMI / "2025.1.0"
    fake_tool(
        tmp_path,
        f"d = {str(fixtures)!r}\n"
        "if 'json' in args:\n"
        "    sys.stderr.write(\"error: invalid value 'json' for '--format <FORMAT>'\\n\")\n"
        "    sys.exit(2)\n"
        "name = 'info-format-full.txt' if args[0] == 'info' else 'status.txt'\n"
        "sys.stdout.write(open(f'{d}/{name}', encoding='utf-8').read())",
    )
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), source="smi"))
    for _ in range(2):  # the second poll goes straight to the tables
        got = by_tag(asyncio.run(c.collect()))
        assert set(got) == {NPU0, NPU1, WARBOY_UUID}
        assert got[NPU0]["util_ratio"] == pytest.approx(NPU0_UTIL)
        assert "util_ratio" not in got[NPU1]
    assert c._smi.json_ok is False


def test_the_tool_is_found_in_root_bin_then_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(tmp_path / "node", "print('[]')")
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path / "node"), source="smi"))
    assert asyncio.run(c.collect()) == []
    monkeypatch.setenv("PATH", str(tmp_path / "node" / "bin") + os.pathsep + os.environ["PATH"])
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path / "empty"), source="smi"))
    assert asyncio.run(c.collect()) == []
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), tool="no-such-smi-tool"))
    with pytest.raises(CollectorUnavailable, match=r"no such directory.*executable not found"):
        asyncio.run(c.collect())


def test_smi_device_tag_prefers_uuid() -> None:
    d = SmiDevice("rngd", "npu0", uuid="abc", serial="SN", bdf="0000:01:00.0")
    assert d.tag == "ABC"


def test_the_printed_config_reads_warboy_once(tmp_path: Path) -> None:
    """furiosa reads the Warboy now: hwmon must leave its chip alone (no double counting)."""

    async def go() -> dict[str, set[tuple[str | None, str | None]]]:
        async with Node(tmp_path, node_options()) as node:
            node.step(0.0)
            cfg = agent_config_from(yaml.safe_load(agent_config(node)), where="printed")
            node.step(1.0)
            seen: dict[str, set[tuple[str | None, str | None]]] = {}
            for e in cfg.collectors:
                if e.type in ("furiosa", "hwmon"):
                    c = collectors.load(e.type).create(e.name, e.options)
                    samples = await c.collect()
                    seen[e.type] = {(s.tag("model"), s.tag("device")) for s in samples}
            return seen

    seen = asyncio.run(go())
    assert {m for m, _ in seen["furiosa"]} == {"warboy", "rngd"}
    assert "hwmon" in seen  # it runs (host chips), without the furiosa cards
    assert not {m for m, _ in seen["hwmon"]} & {"warboy", "rngd"}


def test_perf_regs_not_readable_means_no_utilization(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options()) as node:
            c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path), source="sysfs"))
            node.step(0.0)
            node.step(0.5)  # the runtime holds the RNGD's PEs from here (pe_occupancy 1)
            await c.collect()
            node.step(1.0)
            (tmp_path / "sys/class/npu_mgmt/npu0pe1/perf_regs").unlink()
            got = {s.tag("model"): dict(s.fields) for s in await c.collect()}
            assert "util_ratio" not in got["warboy"] and "power_w" in got["warboy"]
            assert "util_ratio" in got["rngd"]

    asyncio.run(go())
