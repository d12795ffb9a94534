"""The furiosa collector: pure parsers, a hand-built sysfs tree, and a live emulated node."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwatt.collectors import furiosa
from kwatt.collectors.base import Collector, CollectorUnavailable, ParseError
from kwatt.collectors.furiosa import (
    Config,
    card_utilization,
    is_throttled,
    parse_alloc_status,
    parse_int,
    parse_ne_clk_freq_info,
    parse_npu_clocks,
    parse_pe_metrics,
    parse_pe_occupancy,
    parse_throttle_reason,
    utilization,
)
from kwatt.collectors.furiosa import parse as furiosa_parse
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.wire.model import Sample
from kwatt.wire.settings import from_mapping

FIXTURE = Path(__file__).parents[1] / "fixtures" / "furiosa" / "rngd-2cards-synthetic"
CARD0 = "007741DA-70B7-4996-AAC0-7E8E46FFC817"
CARD1 = "RNG26040100181Q"


def collect(c: furiosa.FuriosaCollector) -> dict[str, Sample]:
    return {s.tag("device") or "": s for s in asyncio.run(c.collect())}


def fields(s: Sample) -> dict[str, float | int]:
    return dict(s.fields)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the hand-built fixture tree."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    return root


def class_dir(root: Path) -> Path:
    return root / "sys" / "class" / "rngd_mgmt"


# --------------------------------------------------------------------------------- pure parsing


def test_parse_pe_metrics() -> None:
    # hexadecimal with or without 0x, as furiosa-smi 2026.4 reads them ("100" is 0x100 = 256)
    assert parse_pe_metrics("CycleCount: 100\nTaskCycleCount: 0x80\n") == (256, 128)
    assert parse_pe_metrics("CycleCount: 0x3f5476a00\nTaskCycleCount: 0x1faa3b500\n") == (
        17_000_000_000,
        8_500_000_000,
    )
    assert parse_pe_metrics("TaskCycleCount: 0x10\nCycleCount: 0x20\nOther: 3") == (32, 16)
    with pytest.raises(ParseError, match=r"pe3/metrics: expected a 'TaskCycleCount: 0x<hex>'"):
        parse_pe_metrics("CycleCount: 5\n", "npu0pe3/metrics")
    with pytest.raises(
        ParseError, match=r"m: CycleCount: expected a hexadecimal integer, got '-5'"
    ):
        parse_pe_metrics("CycleCount: -5\nTaskCycleCount: 1\n", "m")
    with pytest.raises(ParseError, match="expected 'Key: 0x<hex>' lines"):
        parse_pe_metrics("performance counter unavailable", "m")


def test_parse_alloc_status_accepts_hex_and_decimal() -> None:
    text = "dram_capacity: 0x13c000000\ndram_usage: 4294967296\nshared_capacity=0x40000000\n"
    assert parse_alloc_status(text) == {
        "dram_capacity": 0x13C000000,
        "dram_usage": 4294967296,
        "shared_capacity": 0x40000000,
    }
    with pytest.raises(ParseError, match=r"alloc_status: dram_usage: expected an integer"):
        parse_alloc_status("dram_usage: lots\n")


def test_parse_throttle_reason_and_what_counts_as_throttled() -> None:
    assert parse_throttle_reason("0x4\n") == 4
    assert parse_throttle_reason("0x0") == 0
    assert parse_throttle_reason("6") == 6
    with pytest.raises(ParseError, match="throttle_reason: expected a bitmask such as 0x4"):
        parse_throttle_reason("APP_POWER_CAP")
    assert not is_throttled(0)
    assert not is_throttled(1)  # IDLE only: nothing to run is not a slowdown
    assert is_throttled(0x2) and is_throttled(0x4) and is_throttled(0x5) and is_throttled(0x80)


def test_parse_npu_clocks() -> None:
    # one integer in Hz per PE (furiosa-smi 2026.4 rejects "pe0 (MHz): 2000" lines)
    assert parse_npu_clocks("2000000000\n1700000000\n") == [2.0e9, 1.7e9]
    assert parse_npu_clocks("0\n" * 8) == [0.0] * 8  # device-api's fixture: eight 0 lines
    with pytest.raises(ParseError, match=r"npu_clocks: PE 0: expected an integer in Hz"):
        parse_npu_clocks("pe0 (MHz): 2000")
    with pytest.raises(ParseError, match=r"npu_clocks: PE 1: expected an integer in Hz"):
        parse_npu_clocks("2000000000\n2e9\n")


def test_parse_ne_clk_freq_info() -> None:
    assert parse_ne_clk_freq_info("ne tensor (MHz): 2000") == [2.0e9]  # Warboy, device-api's form
    assert parse_ne_clk_freq_info("core (kHz): 500000") == [5.0e8]
    assert parse_ne_clk_freq_info("0\n" * 8) == []  # bare numbers, no unit: skipped
    with pytest.raises(ParseError, match=r"ne_clk_freq_info: expected 'name \(MHz\): <int>'"):
        parse_ne_clk_freq_info("pe0 2000 MHz")
    with pytest.raises(ParseError, match=r"ne_clk_freq_info: .*not a unit of Hz"):
        parse_ne_clk_freq_info("pe0 (W): 2000")


def test_parse_pe_occupancy() -> None:
    assert parse_pe_occupancy("0\n1\n0\n1\n") == [False, True, False, True]
    with pytest.raises(ParseError, match=r"pe_occupancy: PE 2: expected 0 or 1, got '2'"):
        parse_pe_occupancy("0\n1\n2\n")


def test_card_utilization_counts_free_pes_as_idle() -> None:
    prev = {0: (1000, 100), 1: (1000, 500)}
    cur = {0: (2000, 600), 1: (2000, 1500)}  # the two occupied PEs: 0.5 and 1.0 busy
    assert card_utilization(prev, cur, 2) == pytest.approx(0.75)
    assert card_utilization(prev, cur, 8) == pytest.approx(0.75 * 2 / 8)
    assert card_utilization(None, cur, 8) is None  # first poll
    assert card_utilization(prev, {}, 8) == 0.0  # no PE occupied: nothing can run
    assert card_utilization(None, {}, 8) is None
    assert card_utilization({}, cur, 8) is None  # the occupied PEs changed


def test_parse_int() -> None:
    assert parse_int(" 0x1F\n", "f") == 31
    assert parse_int("42", "f") == 42
    for bad in ("", "4.2", "1e3", "0x", "twelve"):
        with pytest.raises(ParseError, match="f: expected"):
            parse_int(bad, "f")


def test_utilization_is_a_ratio_of_counter_deltas() -> None:
    prev = {0: (1000, 100), 1: (1000, 900)}
    cur = {0: (2000, 600), 1: (2000, 1400)}
    assert utilization(None, cur) is None  # first poll: absent, not 0
    assert utilization(prev, cur) == pytest.approx(0.5)
    assert utilization(prev, prev) is None  # no cycle elapsed
    assert utilization(prev, {0: (10, 1), 1: (2000, 1400)}) is None  # reset
    assert utilization(prev, {0: (2000, 600)}) is None  # PE set changed
    assert utilization(prev, {0: (2000, 2000), 1: (2000, 2000)}) is None  # busy > cycles


# --------------------------------------------------------------------------------- fixture tree


def test_config_and_protocol() -> None:
    cfg = from_mapping(Config, {"root": "/srv/node"}, where="t")
    assert cfg == Config(root="/srv/node")
    assert Config().root == "/"
    c = furiosa.PLUGIN.create("npu", cfg)
    assert isinstance(c, Collector)
    assert c.name == "npu"


def test_inventory_from_the_fixture_tree() -> None:
    c = furiosa.PLUGIN.create("npu", Config(root=str(FIXTURE)))
    inventory = asyncio.run(c.inventory())
    assert [d.id for d in inventory] == [CARD0, CARD1]
    d0 = inventory[0]
    assert (d0.vendor, d0.model, d0.collector) == ("furiosa", "rngd", "npu")
    assert d0.firmware_version == "1.7.0, 4dfed1852e7b"
    assert d0.driver_version == "2026.3.1, 1a2b3c4"
    assert d0.bus_id == "0000:03:00.0"
    assert inventory[1].driver_version is None  # no version file: absent


def test_collect_from_the_fixture_tree() -> None:
    c = furiosa.PLUGIN.create("npu", Config(root=str(FIXTURE)))
    samples = collect(c)
    assert set(samples) == {CARD0, CARD1}
    s0 = samples[CARD0]
    assert s0.tag("vendor") == "furiosa" and s0.tag("model") == "rngd"
    assert fields(s0) == {
        "power_w": 38.4,
        "temp_c": 40.8,
        "clock_hz": 1.7e9,
        "power_limit_w": 225.0,
        "throttled": 1,
        "mem_used_bytes": 8 * (0x100000000 + 0x20000000),  # the fused pe0-3 entry is not counted
        "mem_total_bytes": 8 * (0x13C000000 + 0x40000000),
    }  # util_ratio absent on the first poll
    # card 1: identified by its serial; IDLE only; eight 0 Hz clock lines (what the library reads
    # too); no pe_occupancy, no PEs, no hwmon: absent
    assert fields(samples[CARD1]) == {"throttled": 0, "clock_hz": 0.0}
    # the counters of a static tree do not move: still no utilization
    assert "util_ratio" not in fields(collect(c)[CARD0])


def test_utilization_between_two_polls(tree: Path) -> None:
    c = furiosa.PLUGIN.create("npu", Config(root=str(tree)))
    collect(c)
    for m in range(8):
        path = class_dir(tree) / f"rngd!npu0pe{m}" / "metrics"
        cycles, busy = parse_pe_metrics(path.read_text())
        busy_delta = 1_000_000 * (m + 1)  # 1/16 … 8/16 of 16 M cycles
        path.write_text(
            f"CycleCount: {cycles + 16_000_000:#x}\nTaskCycleCount: {busy + busy_delta:#x}\n"
        )
    util = fields(collect(c)[CARD0])["util_ratio"]
    assert util == pytest.approx(sum(range(1, 9)) / (8 * 16))
    # a counter going backwards is a device reset: absent for one poll, then known again
    (class_dir(tree) / "rngd!npu0pe0" / "metrics").write_text(
        "CycleCount: 0x5\nTaskCycleCount: 1\n"
    )
    assert "util_ratio" not in fields(collect(c)[CARD0])
    (class_dir(tree) / "rngd!npu0pe0" / "metrics").write_text(
        "CycleCount: 0x105\nTaskCycleCount: 0x1\n"
    )
    assert "util_ratio" in fields(collect(c)[CARD0])


def test_missing_files_give_absent_fields(tree: Path) -> None:
    hwmon = tree / "sys/bus/pci/devices/0000:03:00.0/hwmon/hwmon3"
    (hwmon / "power1_average").unlink()
    (hwmon / "power1_max").unlink()
    (class_dir(tree) / "rngd!npu0pe5" / "alloc_status").unlink()
    got = fields(collect(furiosa.PLUGIN.create("npu", Config(root=str(tree))))[CARD0])
    assert got == {"temp_c": 40.8, "clock_hz": 1.7e9, "throttled": 1}


def test_a_power_input_is_used_when_there_is_no_average(tree: Path) -> None:
    hwmon = tree / "sys/bus/pci/devices/0000:03:00.0/hwmon/hwmon3"
    (hwmon / "power1_average").rename(hwmon / "power1_input")
    assert (
        fields(collect(furiosa.PLUGIN.create("npu", Config(root=str(tree))))[CARD0])["power_w"]
        == 38.4
    )


def test_missing_class_directory_is_unavailable_with_the_path(tmp_path: Path) -> None:
    c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path)))
    expected = str(tmp_path / "sys" / "class" / "rngd_mgmt")
    with pytest.raises(CollectorUnavailable, match="no such directory") as e:
        asyncio.run(c.collect())
    assert expected in str(e.value)
    (tmp_path / "sys" / "class" / "rngd_mgmt").mkdir(parents=True)
    with pytest.raises(CollectorUnavailable, match="no RNGD card"):
        asyncio.run(c.inventory())


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("class/rngd_mgmt/rngd!npu0mgmt/throttle_reason", "expected a bitmask"),
        ("class/rngd_mgmt/rngd!npu0pe2/metrics", "expected 'Key: 0x<hex>' lines"),
        ("class/rngd_mgmt/rngd!npu0mgmt/pe_occupancy", "expected 0 or 1"),
        ("bus/pci/devices/0000:03:00.0/hwmon/hwmon3/power1_max", "expected microwatts"),
        ("class/rngd_mgmt/rngd!npu0pe2/alloc_status", "expected 'key: <int>' lines"),
        ("class/rngd_mgmt/rngd!npu0mgmt/npu_clocks", "expected an integer in Hz"),
        ("bus/pci/devices/0000:03:00.0/hwmon/hwmon3/power1_average", "expected microwatts"),
        ("bus/pci/devices/0000:03:00.0/hwmon/hwmon3/temp1_input", "millidegrees"),
    ],
)
def test_garbage_raises_a_parse_error_naming_the_file(
    tree: Path, relative: str, expected: str
) -> None:
    path = tree / "sys" / relative
    path.write_text("banana split\n")
    with pytest.raises(ParseError) as e:
        asyncio.run(furiosa.PLUGIN.create("npu", Config(root=str(tree))).collect())
    assert str(path) in str(e.value)
    assert expected in str(e.value)


def test_alloc_status_without_a_needed_key(tree: Path) -> None:
    path = class_dir(tree) / "rngd!npu0pe1" / "alloc_status"
    path.write_text("dram_capacity: 0x10\ndram_usage: 0x1\n")
    with pytest.raises(ParseError, match=r"pe1/alloc_status: expected a 'shared_usage: <int>'"):
        asyncio.run(furiosa.PLUGIN.create("npu", Config(root=str(tree))).collect())


def test_cards_of_other_kinds_are_skipped(tree: Path) -> None:
    (class_dir(tree) / "rngd!npu1mgmt" / "device_type").write_text("Warboy\n")
    assert set(collect(furiosa.PLUGIN.create("npu", Config(root=str(tree))))) == {CARD0}


# --------------------------------------------------------------------------------- emulated node


def test_reads_an_emulated_node_against_its_ground_truth(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=3, seed=11, workload="steady") as node:
            c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path)))
            truth = node.step(0.0)
            first = {s.tag("device"): s for s in await c.collect()}
            assert set(first) == {d.device for d in truth.devices}
            assert all(s.field("util_ratio") is None for s in first.values())
            steps = [node.step(t) for t in (1.0, 2.0, 2.5)]
            samples = {s.tag("device"): s for s in await c.collect()}
            inventory = await c.inventory()
            assert [d.bus_id for d in inventory] == ["0000:6d:00.0", "0000:6e:00.0", "0000:6f:00.0"]
            for dev, truth_dev in zip(node.devices, steps[-1].devices, strict=True):
                got = dict(samples[truth_dev.device].fields)
                # power: the last interval's, to the µW of the file; and the model within its noise
                assert got["power_w"] == pytest.approx(truth_dev.power_w, abs=1e-6)
                model_w = dev.idle_w + (150.0 - dev.idle_w) * truth_dev.util_ratio**1.2
                assert abs(got["power_w"] - model_w) < 5 * 0.4
                assert got["temp_c"] == pytest.approx(truth_dev.temp_c, abs=1e-3)
                # utilization over the window = the cycle-weighted mean of the steps' utilization
                utils = [s.devices[dev.identity.index].util_ratio for s in steps]
                expected = (utils[0] * 1.0 + utils[1] * 1.0 + utils[2] * 0.5) / 2.5
                assert 0.0 <= got["util_ratio"] <= 1.0
                assert got["util_ratio"] == pytest.approx(expected, abs=1e-6)
                assert got["clock_hz"] == truth_dev.clock_hz == 2.0e9
                assert got["mem_used_bytes"] == truth_dev.mem_used_bytes
                assert got["mem_total_bytes"] == 51_002_736_640
                assert got["power_limit_w"] == 300.0
                assert got["throttled"] == 0

    asyncio.run(go())


def test_emulated_power_cap_and_reset(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=2, symlinks=False) as node:
            c = furiosa.PLUGIN.create("npu", Config(root=str(tmp_path)))
            node.step(0.0)
            await c.collect()
            node.devices[0].power_limit_w = 70.0
            node.devices[1].reset()
            node.step(1.0)
            by_index = {s.tag("device"): s for s in await c.collect()}
            capped = dict(by_index[node.devices[0].identity.uuid].fields)
            assert capped["power_limit_w"] == 70.0
            assert capped["throttled"] == 1
            assert capped["clock_hz"] < 2.0e9
            assert capped["power_w"] < 70.0 + 2.0
            # card 1 was reset before the first step moved its counters: still monotonic
            assert by_index[node.devices[1].identity.uuid].field("util_ratio") is not None
            node.step(2.0)
            await c.collect()
            node.devices[1].reset()
            node.step(2.5)
            after_reset = {s.tag("device"): s for s in await c.collect()}
            assert after_reset[node.devices[1].identity.uuid].field("util_ratio") is None
            assert after_reset[node.devices[0].identity.uuid].field("util_ratio") is not None
            node.step(3.0)
            again = {s.tag("device"): s for s in await c.collect()}
            assert again[node.devices[1].identity.uuid].field("util_ratio") is not None

    asyncio.run(go())


def test_cached_discovery_follows_a_re_enumeration(tree: Path) -> None:
    """Cards are listed once per ``rediscover_s``, but a card whose identity file changed (npuN
    renumbered) is noticed on the next poll: values never go to another card's device tag."""
    c = furiosa.PLUGIN.create("npu", Config(root=str(tree), rediscover_s=3600.0))
    before = collect(c)
    assert before[CARD0].field("power_w") == 38.4
    d = class_dir(tree)
    (d / "rngd!npu0mgmt").rename(d / "tmp")
    (d / "rngd!npu1mgmt").rename(d / "rngd!npu0mgmt")
    (d / "tmp").rename(d / "rngd!npu1mgmt")
    for pe in sorted(d.glob("rngd!npu0pe*")):  # the renumbered card's PEs move with it
        pe.rename(d / pe.name.replace("npu0", "npu1"))
    after = collect(c)
    assert set(after) == {CARD0, CARD1}
    assert fields(after[CARD1]) == fields(before[CARD1])  # the SN-identified card, unchanged
    assert fields(after[CARD0]) == fields(before[CARD0])


@given(
    st.lists(
        st.sampled_from(["CycleCount", "x_1", "9", ":", "=", " ", "\t", "\r", "\n", "0x1F", "12",
                         "-", "é", "\x0b", "a b"]),
        max_size=14,
    ).map("".join)
)  # fmt: skip
def test_key_values_fast_path_agrees_with_the_line_by_line_parser(text: str) -> None:
    def run(f: object) -> object:
        try:
            return f(text, "src", "'Key: <int>'")  # type: ignore[operator]
        except ParseError as e:
            return str(e)

    assert run(furiosa_parse._key_values) == run(furiosa_parse._key_values_slow)
