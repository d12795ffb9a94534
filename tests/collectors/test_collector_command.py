"""The generic ``command`` collector: config validation, golden parses, fuzzing, real executables."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kwatt.agent.config import agent_config_from
from kwatt.collectors import REGISTRY, load
from kwatt.collectors.base import Collector, CollectorError, CollectorTimeout, ParseError
from kwatt.collectors.command import PLUGIN, Config, FieldMap, parse, parse_devices, unit_factor
from kwatt.collectors.sapeon import parse_json as sapeon_parse_json
from kwatt.emulators import sapeon as emu
from kwatt.emulators.state import DeviceState, Snapshot, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext
from kwatt.wire.model import Sample
from kwatt.wire.settings import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "command"
CAT = str(FIXTURES / "cat_json.sh")
TS = 1_700_000_000_000_000_000

NESTED: dict[str, Any] = {
    "type": "command",
    "name": "deepx",
    "argv": ["sh", CAT, str(FIXTURES / "nested.json")],
    "devices": "data.cards",
    "vendor": "deepx",
    "model_field": "product",
    "device_field": "serial",
    "fields": [
        {"path": "power", "field": "power_w", "unit": "mW"},
        {"path": "temps.npu.0", "field": "temp_c", "unit": "C"},
        {"path": "util", "field": "util_ratio", "unit": "%"},
        {"path": "clock", "field": "clock_hz", "unit": "MHz"},
        {"path": "mem.used", "field": "mem_used_bytes", "unit": "MiB"},
        {"path": "mem.total", "field": "mem_total_bytes", "unit": "MiB"},
        {"path": "energy_mj", "field": "energy_j", "unit": "mJ"},
        {"path": "throttled", "field": "throttled"},
    ],
}


def agent_doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": "dc1",
        "node": "n1",
        "mqtt": {"url": "mqtt://127.0.0.1:1883"},
        "collectors": list(entries),
    }


def config_of(entry: dict[str, Any]) -> Config:
    cfg = agent_config_from(agent_doc(entry), where="test.yaml")
    options = cfg.collectors[0].options
    assert isinstance(options, Config)
    return options


def by_device(samples: list[Sample]) -> dict[str, Sample]:
    return {s.tag("device") or "": s for s in samples}


# ---------------------------------------------------------------------------------- config


def test_registered() -> None:
    assert REGISTRY["command"] == "kwatt.collectors.command"
    assert load("command").config is Config


def test_config_from_yaml() -> None:
    cfg = config_of(NESTED)
    assert cfg.argv == ("sh", CAT, str(FIXTURES / "nested.json"))
    assert cfg.devices == "data.cards"
    assert cfg.fields[0] == FieldMap("power", "power_w", "mW")
    assert cfg.fields[0].factor == pytest.approx(1e-3)
    assert cfg.fields[4].factor == 1024.0**2
    assert cfg.timeout_s == 1.0  # the poll's timeout (min(interval 1 s, 5 s)) is handed down
    entry = agent_config_from(agent_doc({**NESTED, "timeout_s": "250ms"}), where="t").collectors[0]
    assert isinstance(entry.options, Config) and entry.options.timeout_s == 0.25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": [{"path": "p", "field": "powr_w"}]}, "fields[0]: field 'powr_w' is not"),
        ({"fields": [{"path": "p", "field": "seq"}]}, "fields[0]: field 'seq' is not"),
        (
            {"fields": [{"path": "p", "field": "power_w", "unit": "MHz"}]},
            "unit 'MHz' is not a unit",
        ),
        ({"fields": [{"path": "p", "field": "temp_c", "unit": "furlong"}]}, "unit 'furlong'"),
        ({"fields": [{"path": "", "field": "power_w"}]}, "fields[0]: field 'power_w': empty path"),
        ({"fields": [{"path": "a..b", "field": "power_w"}]}, "fields[0]: path 'a..b'"),
        ({"fields": [{"path": "p", "field": "power_w", "scale": 0}]}, "scale must be finite"),
        ({"fields": [{"path": "p", "field": "power_w", "colour": 1}]}, "unknown key 'colour'"),
        ({"fields": "power"}, "fields: expected a list"),
        ({"fields": []}, "fields: map at least one value"),
        (
            {"fields": [{"path": "a", "field": "power_w"}, {"path": "b", "field": "power_w"}]},
            "['power_w'] mapped more than once",
        ),
        ({"argv": []}, "argv: give the command"),
        ({"argv": "tool --json"}, "argv: expected a list"),
        ({"vendor": "dee px"}, "tag 'vendor'"),
        ({"model_field": ""}, "give model"),
        ({"device_field": ""}, "device_field: empty path"),
        ({"devices": ".cards"}, "path '.cards'"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        agent_config_from(agent_doc({**NESTED, **change}), where="test.yaml")
    assert "collectors[0]" in str(e.value)
    assert message in str(e.value)


def test_config_required_keys() -> None:
    entry = {k: v for k, v in NESTED.items() if k != "device_field"}
    with pytest.raises(ConfigError, match=r"collectors\[0\]\.device_field: required key missing"):
        agent_config_from(agent_doc(entry), where="test.yaml")


def test_unit_factor() -> None:
    assert unit_factor(None, "W") == 1.0
    assert unit_factor("W", "W") == 1.0
    assert unit_factor("mW", "W") == pytest.approx(1e-3)
    assert unit_factor("uJ", "J") == pytest.approx(1e-6)
    assert unit_factor("%", "1") == pytest.approx(0.01)
    assert unit_factor("GiB", "B") == 1024.0**3
    assert unit_factor("mC", "degC") == pytest.approx(1e-3)
    assert unit_factor("°C", "degC") == 1.0
    with pytest.raises(ValueError, match="not a unit of B"):
        unit_factor("MHz", "B")


# ---------------------------------------------------------------------------------- golden


def test_golden_nested() -> None:
    cfg = config_of(NESTED)
    raw = (FIXTURES / "nested.json").read_bytes()
    samples = by_device(parse(raw, cfg, ts_ns=TS))
    assert sorted(samples) == ["DX0001", "DX0002"]  # DX0003 has no value at all: no sample
    a = samples["DX0001"]
    assert dict(a.tags) == {"vendor": "deepx", "model": "dx-m1", "device": "DX0001"}
    assert a.ts_ns == TS
    assert dict(a.fields) == {
        "power_w": pytest.approx(5.234),
        "temp_c": 61.5,
        "util_ratio": pytest.approx(0.735),
        "clock_hz": pytest.approx(8e8),
        "mem_used_bytes": 1024 << 20,
        "mem_total_bytes": 4096 << 20,
        "energy_j": pytest.approx(123456.789),
        "throttled": 0,
    }
    b = samples["DX0002"]
    # N/A, null and "-" are absent, never 0; a string with its own unit wins over the configured one
    assert dict(b.fields) == {
        "mem_used_bytes": int(2.5 * (1 << 30)),
        "mem_total_bytes": 4096 << 20,
        "throttled": 1,
    }
    assert isinstance(b.field("mem_used_bytes"), int)
    devices = parse_devices(raw, cfg)
    assert [d.device for d in devices] == ["DX0001", "DX0002", "DX0003"]
    assert devices[2].values == ()


def test_golden_top_level_list_fixed_model() -> None:
    cfg = Config(
        argv=("mobilint-status",),
        vendor="mobilint",
        model="aries",
        device_field="uuid",
        fields=(
            FieldMap("power_w", "power_w"),
            FieldMap("temp", "temp_c", "C"),
            FieldMap("npu_util", "util_ratio"),
        ),
    )
    samples = by_device(parse((FIXTURES / "top_list.json").read_bytes(), cfg, ts_ns=TS))
    assert dict(samples["MBL-7f3a"].fields) == {
        "power_w": 12.5,
        "temp_c": 44.0,
        "util_ratio": 0.25,
    }
    assert dict(samples["MBL-7f3b"].fields) == {"power_w": 3.0, "temp_c": 45.0, "util_ratio": 1.0}
    assert samples["MBL-7f3b"].tag("model") == "aries"


def simple(**kw: Any) -> Config:
    base: dict[str, Any] = {
        "argv": ("tool", "--json"),
        "vendor": "acme",
        "model": "npu1",
        "device_field": "id",
        "devices": "devs",
        "fields": (FieldMap("p", "power_w", "W"), FieldMap("m", "mem_used_bytes", "B")),
    }
    base.update(kw)
    return Config(**base)


def doc(*devs: dict[str, Any], key: str = "devs") -> bytes:
    return json.dumps({key: list(devs)}).encode()


def test_values_and_absence() -> None:
    cfg = simple()
    cases: list[tuple[object, float | None]] = [
        (38.4, 38.4),
        ("38.4", 38.4),
        ("38.4 W", 38.4),
        ("38400 mW", 38.4),
        (" 7 ", 7.0),
        ("N/A", None),
        ("[Not Supported]", None),
        ("-", None),
        ("", None),
        (None, None),
        ("NaN", None),
        (0, 0.0),  # a real 0 stays 0
    ]
    for raw, want in cases:
        samples = parse(doc({"id": "d0", "p": raw, "m": 5}), cfg, ts_ns=TS)
        assert samples[0].field("power_w") == want, raw
    assert parse(doc({"id": "d0", "p": float("nan")}), cfg, ts_ns=TS) == []  # JSON NaN: absent
    scaled = simple(fields=(FieldMap("p", "power_w", "mW", scale=10.0),))
    assert parse(doc({"id": "d0", "p": 100}), scaled, ts_ns=TS)[0].field("power_w") == 1.0
    # model from the device, fixed model as fallback
    both = simple(model_field="kind")
    got = by_device(
        parse(doc({"id": "a", "kind": "X 330", "p": 1}, {"id": "b", "p": 1}), both, ts_ns=TS)
    )
    assert got["a"].tag("model") == "x-330" and got["b"].tag("model") == "npu1"
    # integer identities are accepted
    assert parse(doc({"id": 7, "p": 1}), cfg, ts_ns=TS)[0].tag("device") == "7"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "tool --json: expected a JSON document"),
        (b"\xff\xfe", "tool --json: expected a JSON document"),
        (b"{}", "tool --json: devs: expected a list of devices, got nothing"),
        (b'{"devs": {"id": 1}}', "devs: expected a list of devices, got dict"),
        (b'{"devs": [1]}', "devs.0: expected a device object, got int"),
        (b'{"devs": [{"p": 1}]}', "devs.0.id: missing"),
        (b'{"devs": [{"id": "a b", "p": 1}]}', "devs.0.id: tag 'device'"),
        (b'{"devs": [{"id": [1], "p": 1}]}', "devs.0.id: expected a string"),
        (b'{"devs": [{"id": "a"}, {"id": "a"}]}', "devs.1.id: device 'a' appears twice"),
        (b'{"devs": [{"id": "a", "p": "hot"}]}', "devs.0.p: 'hot' is not a number"),
        (b'{"devs": [{"id": "a", "p": "3 MHz"}]}', "devs.0.p: '3 MHz': unit 'MHz'"),
        (b'{"devs": [{"id": "a", "p": true}]}', "devs.0.p: expected a number, got True"),
        (b'{"devs": [{"id": "a", "p": [1]}]}', "devs.0.p: expected a number or a string"),
        (b'{"devs": [{"id": "a", "p": 1e999}]}', "devs.0.p: inf is not finite"),
        (b'{"devs": [{"id": "a", "p": "inf"}]}', "is not finite"),
        (b'{"devs": [{"id": "a", "m": -1}]}', "devs.0.m: mem_used_bytes cannot be negative"),
        (b'{"devs": [{"id": "a", "m": 1e30}]}', "out of the int64 range"),
    ],
)
def test_parse_errors_name_tool_and_path(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(raw, simple(), ts_ns=TS)
    assert str(e.value).startswith("tool --json: ")
    assert message in str(e.value)


def test_path_through_wrong_type() -> None:
    cfg = simple(fields=(FieldMap("p.now", "power_w"),))
    with pytest.raises(ParseError, match=r"devs\.0\.p\.now: cannot take 'now' of int at 'p'"):
        parse(doc({"id": "a", "p": 5}), cfg, ts_ns=TS)
    # a missing key on the way is absent, not an error (older tool versions lack whole sections)
    assert parse(doc({"id": "a", "p": {}}), cfg, ts_ns=TS) == []
    assert parse(doc({"id": "a", "p": None}), cfg, ts_ns=TS) == []


# ---------------------------------------------------------------------------------- fuzzing


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["N/A", "38 W", "12 mW", "1.5 GiB", "80 %", "900 MHz", "41 C", "-"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["id", "p", "m", "devs", "x", "0"]), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_bytes(raw: bytes) -> None:
    try:
        samples = parse(raw, simple(), ts_ns=TS)
    except ParseError:
        return
    assert all(isinstance(s, Sample) for s in samples)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_json(value: object) -> None:
    raw = json.dumps({"devs": value} if not isinstance(value, dict) else value).encode()
    deep = simple(fields=(FieldMap("p.0.x", "temp_c", "mC"), FieldMap("m", "throttled")))
    for cfg in (simple(), deep, simple(devices="")):
        try:
            samples = parse(raw, cfg, ts_ns=TS)
        except ParseError:
            continue
        for s in samples:
            assert s.fields  # no empty samples; absent values never become 0 by default


# ---------------------------------------------------------------------------------- end to end


def test_end_to_end_fixture_script() -> None:
    cfg = config_of(NESTED)
    collector = PLUGIN.create("deepx", cfg)
    assert isinstance(collector, Collector)
    before = time.time_ns()
    samples = by_device(asyncio.run(collector.collect()))
    assert sorted(samples) == ["DX0001", "DX0002"]
    assert samples["DX0001"].ts_ns >= before
    assert samples["DX0001"].field("power_w") == pytest.approx(5.234)
    inventory = asyncio.run(collector.inventory())
    assert [(d.vendor, d.model, d.id, d.collector) for d in inventory] == [
        ("deepx", "dx-m1", f"DX000{i}", "deepx") for i in (1, 2, 3)
    ]
    asyncio.run(collector.aclose())


def test_end_to_end_hang_is_killed() -> None:
    cfg = config_of({**NESTED, "argv": ["sh", str(FIXTURES / "hang.sh")], "timeout_s": 0.5})
    started = time.monotonic()
    with pytest.raises(CollectorTimeout, match=r"no answer within 0\.5 s"):
        asyncio.run(PLUGIN.create("hang", cfg).collect())
    assert time.monotonic() - started < 5.0


def test_end_to_end_tool_failures(tmp_path: Path) -> None:
    missing = config_of({**NESTED, "argv": [str(tmp_path / "no-such-tool")]})
    with pytest.raises(CollectorError, match="executable not found"):
        asyncio.run(PLUGIN.create("x", missing).collect())
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"<html>oops")
    bad = config_of({**NESTED, "argv": ["sh", CAT, str(garbage)]})
    with pytest.raises(ParseError, match=r"cat_json\.sh .*garbage\.json: expected a JSON document"):
        asyncio.run(PLUGIN.create("x", bad).collect())
    failing = config_of({**NESTED, "argv": ["sh", "-c", "echo broken >&2; exit 3"]})
    with pytest.raises(CollectorError, match="exit status 3: broken"):
        asyncio.run(PLUGIN.create("x", failing).collect())


def sapeon_state(index: int, model: str, bus_id: str, **kw: Any) -> DeviceState:
    fields: dict[str, Any] = {
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
        **fields,
    )


SAPEON_ENTRY: dict[str, Any] = {
    "type": "command",
    "name": "sapeon-generic",
    "devices": "devices",
    "vendor": "sapeon",
    "model_field": "model",
    "device_field": "pci_bus_id",
    "fields": [
        {"path": "power_mw", "field": "power_w", "unit": "mW"},
        {"path": "power_limit_mw", "field": "power_limit_w", "unit": "mW"},
        {"path": "energy_mj", "field": "energy_j", "unit": "mJ"},
        {"path": "temperature_mc", "field": "temp_c", "unit": "mC"},
        {"path": "utilization_pct", "field": "util_ratio", "unit": "%"},
        {"path": "clock_mhz", "field": "clock_hz", "unit": "MHz"},
        {"path": "memory_used_bytes", "field": "mem_used_bytes", "unit": "B"},
        {"path": "memory_total_bytes", "field": "mem_total_bytes"},
        {"path": "throttled", "field": "throttled"},
    ],
}


def test_end_to_end_emulated_sapeon_tool_matches_the_sapeon_collector(tmp_path: Path) -> None:
    """The emulated ``sapeon-smi --json`` through the generic mapping gives the same samples as
    the dedicated ``sapeon`` collector's parser on the same bytes."""
    devices = (
        sapeon_state(0, "x220-compact", "0000:81:00.0", power_w=41.2345, temp_c=52.25),
        sapeon_state(1, "x330", "0000:83:00.0", throttle_thermal=True, clock_hz=4e8),
    )
    surface = emu.SapeonSurface(SurfaceContext(root=tmp_path, seed=1))
    surface.setup(tmp_path, devices)
    snap = Snapshot(t_s=10.0, wall_ns=TS, devices=devices, host=None, tool_faults=())
    write_snapshot(tmp_path, snap)
    surface.render(snap)
    tool = emu.install_tool(tmp_path)
    cfg = config_of({**SAPEON_ENTRY, "argv": [str(tool), "--json"], "timeout_s": "10s"})
    collector = PLUGIN.create("sapeon-generic", cfg)
    got = by_device(asyncio.run(collector.collect()))
    assert sorted(got) == ["0000:81:00.0", "0000:83:00.0"]
    a = got["0000:81:00.0"]
    assert a.tag("model") == "x220-compact"
    assert a.field("power_w") == pytest.approx(41.2345, abs=1e-3)
    assert a.field("temp_c") == pytest.approx(52.25, abs=1e-3)
    assert got["0000:83:00.0"].field("throttled") == 1
    assert got["0000:83:00.0"].field("clock_hz") == pytest.approx(4e8)
    raw = asyncio.run(collector._run())
    ours = by_device(parse(raw, cfg, ts_ns=TS))
    theirs = by_device(sapeon_parse_json(raw, ts_ns=TS))
    assert sorted(ours) == sorted(theirs)
    for device, sample in ours.items():
        assert sample.tags == theirs[device].tags
        want = dict(theirs[device].fields)
        have = dict(sample.fields)
        assert sorted(have) == sorted(want)
        for name, value in want.items():
            assert have[name] == pytest.approx(value, rel=1e-12), name
            assert type(have[name]) is type(value), name


def test_example_in_agent_yaml_is_valid() -> None:
    """The commented ``command`` block of examples/agent.yaml, uncommented, loads and reads the
    nested fixture (same shape) the same way as the test config."""

    text = (Path(__file__).parents[2] / "examples" / "agent.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("  # - type: command")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    entry = yaml.safe_load("\n".join(block))[0]
    assert entry["type"] == "command"
    cfg = config_of(entry)
    assert cfg.timeout_s == 2.0 and cfg.argv == ("/usr/local/bin/dx-status", "--json")
    raw = (FIXTURES / "nested.json").read_bytes()
    assert parse(raw, cfg, ts_ns=TS) == parse(raw, config_of(NESTED), ts_ns=TS)
