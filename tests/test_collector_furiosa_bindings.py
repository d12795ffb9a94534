"""The furiosa collector's ``furiosa_smi`` Python-bindings source.

The collector imports a binding module by name; here it is pointed at the emulated bindings
(``emulators.furiosa_smi_emu``: the ``furiosa_smi`` 2026.4 API; ``…smi_py``: the older
``furiosa_smi_py`` with ``init()``), which read the emulated node's snapshot, never at a mock of the
collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, from_mapping
from agent.model import Sample
from collectors import furiosa
from collectors.base import CollectorError, CollectorTimeout, CollectorUnavailable, ParseError
from collectors.furiosa import (
    BindingDevice,
    BindingReading,
    Config,
    Outcome,
    binding_outcome,
    binding_sample,
    parse_binding,
)
from emulators.faults import Fault, send
from emulators.node import Node, NodeOptions, parse_devices
from emulators.state import read_snapshot

EMU = "emulators.furiosa_smi_emu"
EMU_PY = "emulators.furiosa_smi_emu.smi_py"
UUID = "007741DA-70B7-4996-AAC0-7E8E46FFC817"

# one RNGD as furiosa_smi_py hands it over (units of the binding: W, °C, MHz, cycles, bytes)
READING = BindingReading(
    arch="rngd",
    name="npu0",
    uuid=UUID.lower(),
    serial="RNGD000206",
    bdf="0000:03:00.0",
    firmware="1.7.0, 4dfed1852e7b",
    power_w=38.4,
    temp_c=40.98,
    pe_clock_mhz=(2000,) * 8,
    counters=tuple((m, 1_000_000, 250_000) for m in range(8)),
    memory=((1 << 30, 2 << 30),) * 8,
    throttle=0x1,  # IDLE only: not a slowdown
)


@pytest.fixture(autouse=True)
def _restore_emulator_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector hands ``root`` to the emulated binding through the environment; put it back."""
    monkeypatch.delenv(furiosa.EMULATOR_ROOT_ENV, raising=False)


# --------------------------------------------------------------------------- pure parsing


def test_golden_parse_of_one_reading() -> None:
    d = parse_binding(READING)
    assert d == BindingDevice(
        model="rngd",
        tag=UUID,  # upper case, as sysfs and furiosa-smi give it
        name="npu0",
        bdf="0000:03:00.0",
        firmware="1.7.0, 4dfed1852e7b",
        power_w=38.4,
        temp_c=40.98,
        clock_hz=2.0e9,
        util_ratio=None,  # no previous read
        mem_used_bytes=8 << 30,
        mem_total_bytes=16 << 30,
        throttled=0,
        counters={m: (1_000_000, 250_000) for m in range(8)},
    )
    later = BindingReading(
        **{
            **{f: getattr(READING, f) for f in READING.__slots__},
            "counters": tuple((m, 3_000_000, 1_250_000) for m in range(8)),
            "throttle": ("AppPowerCap",),  # furiosa_smi 2026.4 shape
        }
    )
    d2 = parse_binding(later, {UUID: d.counters or {}})
    assert d2.util_ratio == pytest.approx(0.5)  # Δtask / Δcycles over the PEs
    assert d2.throttled == 1
    sample = binding_sample(d2, 123)
    assert sample == Sample.accel(
        123,
        vendor="furiosa",
        model="rngd",
        device=UUID,
        power_w=38.4,
        temp_c=40.98,
        util_ratio=0.5,
        clock_hz=2.0e9,
        mem_used_bytes=8 << 30,
        mem_total_bytes=16 << 30,
        throttled=1,
    )


def test_parse_of_the_older_api_shapes() -> None:
    # 2026.4: "RNGD", a Bdf rendered by the I/O layer, no counters but percentages (pre-observer API)
    r = BindingReading(
        arch="RNGD", serial="SN1", pe_util_pct=(50.0, 25.0), throttle=("Idle",), power_w=math.nan
    )
    d = parse_binding(r)
    assert (d.model, d.tag, d.util_ratio, d.throttled, d.power_w) == ("rngd", "SN1", 0.375, 0, None)
    assert parse_binding(BindingReading(arch="rngd+", bdf="0000:01:00.0")).model == "rngd_plus"
    assert parse_binding(BindingReading(arch="warboy", uuid="u")).model == "warboy"
    assert binding_sample(parse_binding(BindingReading(arch="warboy", uuid="u")), 1) is None


@pytest.mark.parametrize(
    ("reading", "match"),
    [
        (BindingReading(arch="gpu", uuid="u"), "unknown arch"),
        (BindingReading(arch="rngd"), "no UUID, serial or PCI address"),
        (BindingReading(arch="rngd", uuid="u", power_w="38 W"), "power_consumption.*a number"),
        (BindingReading(arch="rngd", uuid="u", power_w=-1.0), "negative"),
        (BindingReading(arch="rngd", uuid=7), "uuid: expected a string"),
        (BindingReading(arch="rngd", uuid="u", counters=((0, -1, 0),)), "cycle_count"),
        (BindingReading(arch="rngd", uuid="u", counters=((0, 1, 0), (0, 2, 0))), "twice"),
        (BindingReading(arch="rngd", uuid="u", pe_util_pct=(150.0,)), "not a percentage"),
        (BindingReading(arch="rngd", uuid="u", memory=((True, 1),)), "in_use_bytes"),
        (BindingReading(arch="rngd", uuid="u", throttle=-4), "negative bitmask"),
        (BindingReading(arch="rngd", uuid="u", throttle=1.5), "throttle_reason"),
    ],
)
def test_parse_errors_name_the_value(reading: BindingReading, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_binding(reading)


def test_error_outcomes_of_both_bindings() -> None:
    smi = importlib.import_module(EMU)
    assert binding_outcome(smi.DeviceNotFoundError("gone")) is Outcome.DEVICE_GONE
    assert binding_outcome(smi.IoError("no hwmon directory found")) is Outcome.ABSENT
    assert binding_outcome(smi.SmiError("?")) is Outcome.FAILED
    assert binding_outcome(RuntimeError("Not supported error")) is Outcome.ABSENT
    assert binding_outcome(RuntimeError("Context error")) is Outcome.REINIT
    assert binding_outcome(RuntimeError("Device lost error")) is Outcome.DEVICE_GONE
    assert binding_outcome(RuntimeError("Incompatible driver error")) is Outcome.UNAVAILABLE
    assert binding_outcome(RuntimeError("boom")) is Outcome.FAILED


_value = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=8)
    | st.sampled_from(["rngd", "warboy", "RNGD", "rngd_s", "Idle", "AppPowerCap", UUID])
)
_tuple3 = st.tuples(_value, _value, _value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(
        BindingReading,
        arch=_value,
        name=_value,
        uuid=_value,
        serial=_value,
        bdf=_value,
        firmware=_value,
        power_w=_value,
        temp_c=_value,
        pe_clock_mhz=st.none() | st.lists(_value, max_size=4).map(tuple),
        counters=st.none() | st.lists(_tuple3, max_size=4).map(tuple),
        pe_util_pct=st.none() | st.lists(_value, max_size=4).map(tuple),
        memory=st.none() | st.lists(st.tuples(_value, _value), max_size=3).map(tuple),
        throttle=_value | st.lists(st.text(max_size=8), max_size=3).map(tuple),
    ),
    st.none() | st.dictionaries(st.sampled_from([UUID, "SN1"]), st.just({0: (10, 5)})),
)
def test_fuzz_parse_gives_samples_or_parse_errors(
    reading: BindingReading, previous: dict[str, dict[int, tuple[int, int]]] | None
) -> None:
    try:
        d = parse_binding(reading, previous)
        sample = binding_sample(d, 1)
    except ParseError:
        return
    if sample is not None:
        for _, v in sample.fields:
            assert not (isinstance(v, float) and not math.isfinite(v))
    if d.util_ratio is not None:
        assert 0.0 <= d.util_ratio <= 1.0


# --------------------------------------------------------------------------- emulated node


def node_options(devices: str = "warboy,rngd") -> NodeOptions:
    return NodeOptions(devices=parse_devices(devices), services=("steady",), seed=5)


def by_tag(samples: list[Sample]) -> dict[str, dict[str, float | int]]:
    return {s.tag("device") or "": dict(s.fields) for s in samples}


def bindings(root: Path, module: str = EMU, **kw: object) -> furiosa.FuriosaCollector:
    options: dict[str, object] = {
        "root": str(root),
        "source": "bindings",
        "bindings_module": module,
    }
    return furiosa.create("npu", Config(**{**options, **kw}))  # type: ignore[arg-type]


@pytest.mark.parametrize("module", [EMU, EMU_PY])
def test_bindings_match_sysfs_and_the_truth(tmp_path: Path, module: str) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options()) as node:
            b = bindings(tmp_path, module)
            sysfs = furiosa.create("s", Config(root=str(tmp_path), source="sysfs"))
            node.step(0.0)
            first = await b.collect()
            await sysfs.collect()
            assert all(s.field("util_ratio") is None for s in first)  # no baseline yet
            truth = node.step(1.0)
            got = by_tag(await b.collect())
            want = by_tag(await sysfs.collect())
            assert b.last_source == "bindings"
            # furiosa_smi 2026.4 knows only RNGD (Arch.Rngd); furiosa_smi_py lists the Warboy too
            models = {"rngd"} if module == EMU else {"rngd", "warboy"}
            states = [d for d in read_snapshot(tmp_path).devices if d.model in models]
            assert set(got) == {d.uuid.upper() for d in states}
            for dev in states:
                g, w = got[dev.uuid.upper()], want[dev.uuid.upper()]
                assert g["power_w"] == pytest.approx(w["power_w"], abs=1e-6)
                assert g["power_w"] == pytest.approx(dev.power_w, abs=1e-9)
                assert g["temp_c"] == pytest.approx(w["temp_c"], abs=1e-3)
                assert g["clock_hz"] == pytest.approx(w["clock_hz"], rel=1e-3)
                # the binding's counters count the device's busy cycles, sysfs the per-PE ones
                assert g["util_ratio"] == pytest.approx(w["util_ratio"], abs=0.05)
                assert abs(g["util_ratio"] - truth["devices"][dev.index]["util_ratio"]) < 0.05
                for k in ("mem_used_bytes", "mem_total_bytes", "throttled"):
                    assert g.get(k) == w.get(k), k
                assert "power_limit_w" not in g  # power_limit()'s unit is not documented
            inventory = {d.id: d for d in await b.inventory()}
            rngd = next(d for d in states if d.model == "rngd")
            info = inventory[rngd.uuid.upper()]
            assert (info.model, info.bus_id, info.firmware_version, info.driver_version) == (
                "rngd",
                rngd.bus_id,
                "1.7.0, 4dfed1852e7b",
                "2026.3.1, 9c0e4f2",
            )

    asyncio.run(go())


def test_auto_order_sysfs_then_bindings_then_tool(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("rngd:2")) as node:
            node.step(1.0)
            auto = furiosa.create(
                "npu", Config(root=str(tmp_path), bindings_module=EMU, timeout_s=30)
            )
            await auto.collect()
            assert auto.last_source == "sysfs"
            for d in ("rngd_mgmt", "npu_mgmt"):
                with contextlib.suppress(FileNotFoundError):
                    (tmp_path / "sys" / "class" / d).rename(tmp_path / f"hidden-{d}")
            assert len(await auto.collect()) == 2
            assert auto.last_source == "bindings"
            assert len(await auto.inventory()) == 2
            # a root other than /: the bindings only when named (the real library reads the host)
            unnamed = furiosa.create("npu", Config(root=str(tmp_path), timeout_s=30))
            await unnamed.collect()
            assert unnamed.last_source == "smi"
            # no binding module importable: the tool, and the reason is kept for the message
            missing = furiosa.create(
                "npu", Config(root=str(tmp_path), bindings_module="no_such_furiosa_smi", tool="x")
            )
            with pytest.raises(CollectorUnavailable, match=r"no such directory.*no_such_furiosa"):
                await missing.collect()

    asyncio.run(go())


def step_with(node: Node, t: float, fault: Fault) -> None:
    send(node.root, fault)
    node.step(t)


@pytest.mark.parametrize("module", [EMU, EMU_PY])
def test_na_nan_and_disappear(tmp_path: Path, module: str) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("rngd:2")) as node:
            b = bindings(tmp_path, module)
            node.step(0.0)
            await b.collect()
            states = {d.index: d for d in read_snapshot(tmp_path).devices}
            first, second = states[0].uuid.upper(), states[1].uuid.upper()
            step_with(node, 1.0, Fault("na", device="furiosa:0", fields=("power_w", "temp_c")))
            got = by_tag(await b.collect())
            assert "power_w" not in got[first] and "temp_c" not in got[first]  # absent, not 0
            assert "clock_hz" in got[first] and "power_w" in got[second]
            step_with(node, 2.0, Fault("nan", device="furiosa:1", fields=("power_w",)))
            got = by_tag(await b.collect())
            assert "power_w" not in got[second] and "temp_c" in got[second]
            step_with(node, 3.0, Fault("disappear", device=states[0].serial, duration_s=1.5))
            got = by_tag(await b.collect())
            assert set(got) == {second}
            node.step(5.0)  # back, re-enumerated last: same tag
            got = by_tag(await b.collect())
            assert set(got) == {first, second}

    asyncio.run(go())


def test_a_vanished_handle_is_left_out_of_the_poll(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("rngd:2")) as node:
            node.step(1.0)
            smi = importlib.import_module(EMU)
            b = bindings(tmp_path)
            await b.collect()  # sets KWATT_EMULATOR_ROOT
            handles = smi.list_devices()
            step_with(node, 2.0, Fault("disappear", device="furiosa:0"))
            with pytest.raises(smi.DeviceNotFoundError):
                handles[0].power_consumption()
            assert len(smi.list_devices()) == 1

    asyncio.run(go())


def test_tool_faults_of_the_bindings(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("rngd:1")) as node:
            node.step(1.0)
            py = bindings(tmp_path, EMU_PY)
            await py.collect()
            # CONTEXT (16): the library lost its context → typed error, init() again next poll
            step_with(node, 2.0, Fault("tool_exit", tool="furiosa_smi", value=16))
            with pytest.raises(CollectorError, match="Context error"):
                await py.collect()
            assert py._binding is not None and not py._binding.initialised
            # DEVICE_LOST (5) on every call: the only card left out → a typed error
            step_with(node, 3.0, Fault("tool_exit", tool="furiosa_smi", value=5))
            with pytest.raises(CollectorError, match="went away"):
                await py.collect()
            step_with(node, 4.0, Fault("tool_hang", tool="furiosa_smi", value=2.0))
            slow = bindings(tmp_path, EMU, timeout_s=0.3)
            with pytest.raises(CollectorTimeout, match=r"did not answer within 0\.3 s"):
                await slow.collect()
            with pytest.raises(CollectorTimeout, match="still blocked"):
                await slow.collect()

    asyncio.run(go())


def test_init_is_called_for_the_older_binding(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("rngd:1")) as node:
            node.step(1.0)
            py = importlib.import_module(EMU_PY)
            b = bindings(tmp_path, EMU_PY)
            assert len(await b.collect()) == 1
            assert b._binding is not None and b._binding.initialised
            assert py.list_devices()  # initialised by the collector

    asyncio.run(go())


def test_missing_methods_of_an_older_binding_give_absent_fields(tmp_path: Path) -> None:
    """A binding without performance counters, memory or throttle calls (an older release): the
    emulated module's devices wrapped so those methods are not there."""
    real = importlib.import_module(EMU_PY)

    class OldDevice:
        def __init__(self, dev: object) -> None:
            self._dev = dev

        def __getattr__(self, name: str) -> object:
            if name in ("device_performance_counter", "memory_utilization", "throttle_reason"):
                raise AttributeError(name)
            return getattr(self._dev, name)

    old = types.ModuleType("old_furiosa_smi_py")
    old.init = real.init  # type: ignore[attr-defined]
    old.list_devices = lambda: [OldDevice(d) for d in real.list_devices()]  # type: ignore[attr-defined]
    sys.modules["old_furiosa_smi_py"] = old
    try:

        async def go() -> None:
            async with Node(tmp_path, node_options("rngd:1")) as node:
                node.step(0.0)
                b = bindings(tmp_path, "old_furiosa_smi_py")
                node.step(1.0)
                (got,) = by_tag(await b.collect()).values()
                assert "mem_used_bytes" not in got and "throttled" not in got
                assert 0.0 <= float(got["util_ratio"]) <= 1.0  # core_utilization() percentages
                assert "power_w" in got

        asyncio.run(go())
    finally:
        del sys.modules["old_furiosa_smi_py"]


def test_no_card_and_not_a_binding_are_unavailable(tmp_path: Path) -> None:
    async def go() -> None:
        async with Node(tmp_path, node_options("h100:1")):
            with pytest.raises(CollectorUnavailable, match="found no card"):
                await bindings(tmp_path).collect()
            with pytest.raises(CollectorUnavailable, match="not a furiosa_smi module"):
                await bindings(tmp_path, "json").collect()

    asyncio.run(go())


def test_bindings_module_option_is_validated() -> None:
    assert from_mapping(Config, {"source": "bindings"}, where="furiosa").source == "bindings"
    with pytest.raises(ConfigError, match=r"furiosa.source: expected one of .*'bindings'"):
        from_mapping(Config, {"source": "python"}, where="furiosa")
    with pytest.raises(ConfigError, match="bindings_module: expected a Python module name"):
        from_mapping(Config, {"bindings_module": "furiosa smi"}, where="furiosa")
