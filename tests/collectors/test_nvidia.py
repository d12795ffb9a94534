"""The ``nvml`` and ``nvidia_smi`` collectors: golden files, fuzzing, and end to end against the emulator.

Golden inputs are tests/fixtures/nvidia/*-synthetic.{csv,xml}: the emulator's output (see
tests/emulators/test_nvidia_emulator.py) and the CSV example of docs/device-interfaces.md §4.2; each has a
``.expected.json`` with the samples it must give (regenerate with ``KWATT_UPDATE_GOLDENS=1`` and review).
No real GPU was available: nothing here was captured from hardware.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nvidia_states import (
    FIXTURES,
    H100,
    P100,
    T4,
    advanced,
    make_node,
    shutdown_nvml,
    step,
    use_nvml,
)

from kwatt import collectors
from kwatt.collectors import nvidia_smi, nvml
from kwatt.collectors.base import (
    Collector,
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
)
from kwatt.collectors.nvidia_common import (
    GpuRecord,
    device_info,
    linux_bus_id,
    model_slug,
    to_sample,
)
from kwatt.collectors.nvidia_smi import parse_csv, parse_xml, samples
from kwatt.collectors.nvml import ERRORS, NvmlReading, Outcome, outcome, to_record
from kwatt.emulators.nvidia import NvidiaSurface
from kwatt.emulators.state import DeviceState, ToolFaults
from kwatt.wire.model import Sample
from kwatt.wire.settings import ConfigError, from_mapping

UPDATE = os.environ.get("KWATT_UPDATE_GOLDENS") == "1"
REPO = Path(__file__).resolve().parents[2]
TS = 1_790_000_000_000_000_000

GOLDEN_INPUTS = sorted(
    p.name for p in FIXTURES.iterdir() if p.suffix in (".csv", ".xml") and p.is_file()
)


def parse_file(path: Path) -> list[GpuRecord]:
    raw = path.read_bytes()
    return parse_xml(raw) if path.suffix == ".xml" else parse_csv(raw)


def sample_doc(s: Sample) -> dict[str, object]:
    return {"device": s.tag("device"), "model": s.tag("model"), "fields": dict(s.fields)}


@pytest.fixture(autouse=True)
def _nvml_shut_down() -> Iterator[None]:
    """Every test starts and ends with NVML uninitialised."""
    shutdown_nvml()
    yield
    shutdown_nvml()


# ----------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_golden_parse(name: str) -> None:
    path = FIXTURES / name
    expected_path = path.with_name(path.name + ".expected.json")
    try:
        records = parse_file(path)
        doc: dict[str, object] = {
            "samples": [sample_doc(s) for s in samples(records, TS, name)],
            "inventory": [
                dataclasses.asdict(i)
                for i in (device_info(r, "gpu") for r in records)
                if i is not None
            ],
        }
    except ParseError as e:
        doc = {"error": str(e)}
    if UPDATE:
        expected_path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert doc == json.loads(expected_path.read_text())


def test_golden_set_covers_every_format() -> None:
    kinds = {n.split("-")[0] + "-" + n.split("-")[1] for n in GOLDEN_INPUTS}
    assert {"query-gpu", "q-x"} <= kinds
    assert any("nounits" in n for n in GOLDEN_INPUTS)
    assert {"470.182.03", "535.129.03", "575.51.02"} <= {
        part for n in GOLDEN_INPUTS for part in n.split("-")
    }
    for n in GOLDEN_INPUTS:
        assert n.removesuffix(".csv").removesuffix(".xml").endswith("-synthetic")


def test_reference_example_needs_an_identity_column() -> None:
    # §4.2's capture has no uuid/serial/pci.bus_id: a GPU we cannot name stably is refused
    with pytest.raises(ParseError, match=r"no uuid, serial or pci\.bus_id column"):
        parse_csv((FIXTURES / "query-gpu-reference-4.2-synthetic.csv").read_bytes())
    records = parse_csv((FIXTURES / "query-gpu-reference-4.2-uuid-synthetic.csv").read_bytes())
    (s,) = samples(records, TS, "ref")
    assert dict(s.fields) == {
        "mem_total_bytes": 80000 * 2**20,
        "mem_used_bytes": 1000 * 2**20,
        "power_w": 120.0,
        "util_ratio": 0.42,
    }


def test_csv_not_available_is_absent_not_zero() -> None:
    raw = (
        b"uuid, power.draw [W], temperature.gpu, utilization.gpu [%], memory.used [MiB]\n"
        b"GPU-1, [N/A], [Not Supported], N/A, 12 MiB\n"
    )
    (r,) = parse_csv(raw)
    assert (r.power_w, r.temp_c, r.util_ratio, r.mem_used_bytes) == (None, None, None, 12 * 2**20)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "does not end with a newline"),
        (b"\n", "empty output"),
        (b"uuid, power.draw [W]\nGPU-1, 5 W, 6 W\n", "line 2 has 3 cells, the header 2"),
        (b"uuid, power.draw [W]\nGPU-1, 5 MHz\n", "power.draw"),
        (b"uuid, power.draw [W]\nGPU-1, lots\n", "power.draw"),
        (b"uuid, clocks_throttle_reasons.active\nGPU-1, 4\n", "bitmask"),
        (b"uuid, power.draw [W\n", "header cell"),
        (b"\xff\xfe\n", "not UTF-8"),
    ],
)
def test_csv_errors_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_csv(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<nvidia_smi_log><gpu>", "not XML"),
        (b"<html/>", "expected <nvidia_smi_log>"),
        (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><nvidia_smi_log>&a;</nvidia_smi_log>',
            "declares entities",
        ),
        (
            b"<nvidia_smi_log><gpu><uuid>GPU-1</uuid><temperature><gpu_temp>hot</gpu_temp>"
            b"</temperature></gpu></nvidia_smi_log>",
            "gpu_temp",
        ),
    ],
)
def test_xml_errors_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_xml(raw)


def test_xml_older_element_names() -> None:
    raw = (
        b"<nvidia_smi_log><driver_version>470.1</driver_version><gpu id='00000000:01:00.0'>"
        b"<product_name>Tesla T4</product_name><uuid>GPU-x</uuid>"
        b"<clocks_throttle_reasons><clocks_throttle_reason_hw_thermal_slowdown>Active"
        b"</clocks_throttle_reason_hw_thermal_slowdown></clocks_throttle_reasons>"
        b"<power_readings><power_draw>N/A</power_draw><power_limit>70.00 W</power_limit>"
        b"</power_readings></gpu></nvidia_smi_log>"
    )
    (r,) = parse_xml(raw)
    assert (r.uuid, r.bus_id, r.power_w, r.power_limit_w, r.throttled) == (
        "GPU-x",
        "00000000:01:00.0",
        None,
        70.0,
        1,
    )
    assert r.driver_version == "470.1" and r.model == "t4"


# ----------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("Tesla T4", "t4"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "geforce-rtx-4090"),
        ("NVIDIA", "unknown"),
    ],
)
def test_model_slug(name: str, slug: str) -> None:
    assert model_slug(name) == slug


def test_linux_bus_id() -> None:
    assert linux_bus_id("00000000:1B:00.0") == "0000:1b:00.0"
    assert linux_bus_id("0000:af:00.1") == "0000:af:00.1"
    assert linux_bus_id("garbage") is None


def test_nvml_reading_units() -> None:
    r = to_record(
        NvmlReading(
            uuid="GPU-1",
            bus_id=b"00000000:1B:00.0",
            name=b"NVIDIA H100 80GB HBM3",
            power_mw=512347,
            energy_mj=48213987,
            util_gpu_pct=73,
            temp_c=61,
            sm_clock_mhz=1755,
            mem_used_bytes=5,
            mem_total_bytes=10,
            power_limit_mw=700000,
            clock_event_reasons=0x1,
        )
    )
    assert (r.power_w, r.energy_j, r.util_ratio, r.clock_hz, r.power_limit_w) == (
        512.347,
        48213.987,
        0.73,
        1.755e9,
        700.0,
    )
    assert (r.bus_id, r.model, r.throttled) == ("00000000:1B:00.0", "h100", 0)
    with pytest.raises(ParseError, match="power usage"):
        to_record(NvmlReading(uuid="GPU-1", power_mw=-1))
    with pytest.raises(ParseError, match="expected an integer"):
        to_record(NvmlReading(uuid="GPU-1", temp_c=41.5))


def test_error_table() -> None:
    assert outcome(3) is Outcome.ABSENT  # NOT_SUPPORTED → absent (§4.1)
    assert outcome(15) is Outcome.DEVICE_GONE
    assert outcome(12) is Outcome.UNAVAILABLE
    assert outcome(10) is Outcome.TIMEOUT
    assert outcome(1) is Outcome.REINIT
    assert outcome(999) is Outcome.FAILED
    assert all(isinstance(code, int) for code in ERRORS)


def test_registry_and_config() -> None:
    assert collectors.load("nvml") is nvml.PLUGIN
    assert collectors.load("nvidia_smi") is nvidia_smi.PLUGIN
    cfg = from_mapping(nvml.Config, {"timeout_s": "2s"}, where="t")
    assert cfg == nvml.Config(timeout_s=2.0)
    smi = from_mapping(nvidia_smi.Config, {"tool": "/x/nvidia-smi", "mode": "xml"}, where="t")
    assert smi.mode == "xml"
    assert nvidia_smi.argv(smi) == ["/x/nvidia-smi", "-q", "-x"]
    assert isinstance(nvml.PLUGIN.create("n", cfg), Collector)
    assert isinstance(nvidia_smi.PLUGIN.create("s", smi), Collector)


def test_module_option_is_deprecated(caplog: pytest.LogCaptureFixture) -> None:
    """``module: pynvml`` is accepted for one release with a warning; any other module, and the
    emulator-only ``emulator_root``, are config errors."""
    with caplog.at_level("WARNING", logger="kwatt.collectors.nvml"):
        cfg = from_mapping(nvml.Config, {"module": "pynvml"}, where="collectors[0]")
    assert cfg.module == "pynvml"
    assert "'module' option is deprecated" in caplog.text
    with pytest.raises(
        ConfigError, match=r"collectors\[0\]: module: 'emulators.pynvml_emu' is not"
    ):
        from_mapping(nvml.Config, {"module": "emulators.pynvml_emu"}, where="collectors[0]")
    with pytest.raises(ConfigError, match="unknown key 'emulator_root'"):
        from_mapping(nvml.Config, {"emulator_root": "/x"}, where="collectors[0]")


# ----------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_parse_error(parse: object, raw: bytes) -> None:
    assert callable(parse)
    try:
        records = parse(raw)
        samples(records, TS, "fuzz")
    except ParseError:
        pass


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_parse_csv_bytes(raw: bytes) -> None:
    _parse_or_parse_error(parse_csv, raw)


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_parse_xml_bytes(raw: bytes) -> None:
    _parse_or_parse_error(parse_xml, raw)


def _mutations() -> st.SearchStrategy[tuple[str, bytes]]:
    """A golden input cut short, with bytes replaced or inserted: close to real, so deep paths run."""
    names = st.sampled_from(GOLDEN_INPUTS)

    def mutate(name: str, data: st.DataObject) -> tuple[str, bytes]:
        raw = bytearray((FIXTURES / name).read_bytes())
        for _ in range(data.draw(st.integers(0, 4))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            op = data.draw(st.sampled_from(["set", "insert", "delete"]))
            b = data.draw(st.sampled_from(list(b" ,.-\n[]/<>%0123456789AaNx\xff")))
            if op == "set":
                raw[pos] = b
            elif op == "insert":
                raw.insert(pos, b)
            else:
                del raw[pos]
        cut = data.draw(st.integers(0, len(raw)))
        return name, bytes(raw[:cut] if data.draw(st.booleans()) else raw)

    return st.builds(mutate, names, st.data())


@FUZZ
@given(_mutations())
def test_fuzz_mutated_golden_inputs(case: tuple[str, bytes]) -> None:
    name, raw = case
    _parse_or_parse_error(parse_xml if name.endswith(".xml") else parse_csv, raw)


_values = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),
)


@FUZZ
@given(st.builds(NvmlReading, *[_values] * 14))
def test_fuzz_nvml_reading(reading: NvmlReading) -> None:
    try:
        record = to_record(reading)
        to_sample(record, TS, "fuzz")
    except ParseError:
        pass


# ----------------------------------------------------------------------------- end to end


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, NvidiaSurface]]:
    """An emulated node; where its libnvidia-ml.so.1 was built, this process's NVML (nvidia-ml-py)
    reads it (the nvml tests require it through :func:`nvml_of`; nvidia-smi needs no compiler)."""
    root = tmp_path / "node"
    surface = make_node(root, (H100, T4))
    if surface.library_dir is not None:
        use_nvml(root, surface)
    yield root, surface


def nvml_of(node: tuple[Path, NvidiaSurface], timeout_s: float = 10.0) -> Collector:
    """The nvml collector on ``node``; skips (fails in CI) where the library could not be built."""
    root, surface = node
    use_nvml(root, surface)
    return nvml.PLUGIN.create("nvml", nvml.Config(timeout_s=timeout_s))


def run(coro: object) -> list[Sample]:
    result = asyncio.run(coro)  # type: ignore[arg-type]
    assert isinstance(result, list)
    return result


def by_device(ss: list[Sample]) -> dict[str, dict[str, float | int]]:
    return {s.tag("device") or "": dict(s.fields) for s in ss}


def make_collector(
    node: tuple[Path, NvidiaSurface], kind: str, timeout_s: float = 10.0
) -> Collector:
    """``nvml`` (nvidia-ml-py over the node's library), or ``nvidia_smi`` in ``csv``/``xml`` mode."""
    if kind == "nvml":
        return nvml_of(node, timeout_s)
    tool = str(node[0] / "bin" / "nvidia-smi")
    return nvidia_smi.PLUGIN.create(
        kind, nvidia_smi.Config(tool=tool, mode=kind, timeout_s=timeout_s)
    )


def assert_matches_truth(kind: str, got: dict[str, float | int], truth: DeviceState) -> None:
    """Each field equals the state to the resolution of the surface's units."""
    power_res = 1e-3 if kind == "nvml" else 1e-2  # mW vs "512.35 W"
    assert abs(got["power_w"] - truth.power_w) <= power_res / 2 + 1e-9
    if kind == "nvml":  # mJ counter, floored
        assert 0 <= truth.energy_j - got["energy_j"] < 1e-3
    else:
        assert "energy_j" not in got  # nvidia-smi has no energy counter (§8)
    assert got["temp_c"] == round(truth.temp_c)
    assert abs(got["util_ratio"] - truth.util_ratio) <= 0.005
    assert got["clock_hz"] == round(truth.clock_hz / 1e6) * 1e6
    assert got["power_limit_w"] == truth.power_limit_w
    assert got["throttled"] == int(truth.throttle_power or truth.throttle_thermal)
    if kind == "nvml":
        assert (got["mem_used_bytes"], got["mem_total_bytes"]) == (
            truth.mem_used_bytes,
            truth.mem_total_bytes,
        )
    else:  # whole MiB
        assert got["mem_used_bytes"] == truth.mem_used_bytes // 2**20 * 2**20
        assert got["mem_total_bytes"] == truth.mem_total_bytes // 2**20 * 2**20


@pytest.mark.parametrize("kind", ["nvml", "csv", "xml"])
def test_end_to_end_against_truth(node: tuple[Path, NvidiaSurface], kind: str) -> None:
    root, surface = node
    c = make_collector(node, kind)
    inventory = asyncio.run(c.inventory())
    assert {(i.id, i.model, i.bus_id) for i in inventory} == {
        (H100.uuid, "h100", "0000:1b:00.0"),
        (T4.uuid, "t4", "0000:af:00.0"),
    }
    got = by_device(run(c.collect()))
    assert_matches_truth(kind, got[H100.uuid], H100)
    assert_matches_truth(kind, got[T4.uuid], T4)
    # one second later at new power: the counter grew by the integral of power
    h100, t4 = advanced(H100, 1.0, 650.0), advanced(T4, 1.0, 70.0)
    step(root, surface, (h100, t4))
    later = by_device(run(c.collect()))
    assert_matches_truth(kind, later[H100.uuid], h100)
    if kind == "nvml":
        delta = later[H100.uuid]["energy_j"] - got[H100.uuid]["energy_j"]
        assert math.isclose(delta, 650.0, abs_tol=2e-3)
    asyncio.run(c.aclose())


@pytest.mark.parametrize("kind", ["nvml", "csv", "xml"])
def test_reenumeration_keeps_identity(node: tuple[Path, NvidiaSurface], kind: str) -> None:
    root, surface = node
    c = make_collector(node, kind)
    first = by_device(run(c.collect()))
    step(root, surface, (H100, dataclasses.replace(T4, present=False)))
    assert set(by_device(run(c.collect()))) == {H100.uuid}  # the T4 fell off the bus
    back = (dataclasses.replace(H100, index=1), dataclasses.replace(T4, index=0))
    step(root, surface, back)
    again = by_device(run(c.collect()))
    assert set(again) == set(first) == {H100.uuid, T4.uuid}
    assert again[T4.uuid]["power_w"] == first[T4.uuid]["power_w"]
    assert again[H100.uuid]["power_w"] == first[H100.uuid]["power_w"]
    asyncio.run(c.aclose())


@pytest.mark.parametrize("mode", ["csv", "xml"])
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (ToolFaults(garbage=True), ParseError),
        (ToolFaults(truncate=True), ParseError),
        (ToolFaults(exit_code=3), CollectorError),
        (ToolFaults(hang_s=60.0), CollectorTimeout),
    ],
    ids=["garbage", "truncate", "exit-code", "hang"],
)
def test_nvidia_smi_faults(
    node: tuple[Path, NvidiaSurface], mode: str, fault: ToolFaults, error: type[Exception]
) -> None:
    root, surface = node
    c = nvidia_smi.PLUGIN.create(
        "smi", nvidia_smi.Config(tool=str(root / "bin" / "nvidia-smi"), mode=mode, timeout_s=2.0)
    )
    step(root, surface, (H100, T4), (("nvidia-smi", fault),))
    t0 = time.monotonic()
    with pytest.raises(error) as e:
        run(c.collect())
    assert time.monotonic() - t0 < 10  # a hung tool is killed at timeout_s
    if error is CollectorError:
        assert not isinstance(e.value, ParseError | CollectorTimeout)
        assert "exit status 3" in str(e.value)
    step(root, surface, (H100, T4))  # fault cleared: the next poll recovers
    assert set(by_device(run(c.collect()))) == {H100.uuid, T4.uuid}


def test_nvidia_smi_missing_tool(tmp_path: Path) -> None:
    c = nvidia_smi.PLUGIN.create("smi", nvidia_smi.Config(tool=str(tmp_path / "nvidia-smi")))
    with pytest.raises(CollectorUnavailable):
        run(c.collect())


def test_nvml_hang_times_out_and_recovers(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    c = nvml_of(node, timeout_s=0.3)
    step(root, surface, (H100, T4), (("nvml", ToolFaults(hang_s=1.0)),))

    async def scenario() -> list[Sample]:
        with pytest.raises(CollectorTimeout, match="did not answer"):
            await c.collect()
        with pytest.raises(CollectorTimeout, match="still blocked"):
            await c.collect()  # no second thread piles up behind the blocked one
        await asyncio.to_thread(step, root, surface, (H100, T4))
        deadline = time.monotonic() + 30
        while True:
            try:
                return await c.collect()
            except CollectorTimeout:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    assert set(by_device(asyncio.run(scenario()))) == {H100.uuid, T4.uuid}


@pytest.mark.parametrize(
    ("code", "error", "match"),
    [
        (999, CollectorError, "Unknown Error"),
        (15, CollectorError, "all 2 GPUs were lost"),
        (9, CollectorUnavailable, "Driver Not Loaded"),
        (10, CollectorTimeout, "Timeout"),
    ],
)
def test_nvml_error_codes_are_typed(
    node: tuple[Path, NvidiaSurface], code: int, error: type[Exception], match: str
) -> None:
    root, surface = node
    c = nvml_of(node)
    step(root, surface, (H100, T4), (("nvml", ToolFaults(exit_code=code)),))
    with pytest.raises(error, match=match):
        run(c.collect())
    step(root, surface, (H100, T4))
    assert set(by_device(run(c.collect()))) == {H100.uuid, T4.uuid}


def test_nvml_not_supported_is_absent(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    step(root, surface, (H100, T4, P100))
    got = by_device(run(nvml_of(node).collect()))
    assert "energy_j" not in got[P100.uuid]  # pre-Volta: NOT_SUPPORTED → absent, never 0
    assert got[P100.uuid]["power_w"] == P100.power_w
    assert "energy_j" in got[T4.uuid]  # Turing has the counter


def _collect_in_a_new_process(prelude: str, env: dict[str, str]) -> str:
    """Run one nvml collector poll in a fresh interpreter (NVML loads once per process)."""
    code = (
        f"{prelude}\n"
        "import asyncio\n"
        "from collectors import nvml\n"
        "try:\n"
        "    asyncio.run(nvml.PLUGIN.create('n', nvml.Config()).collect())\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_nvml_unavailable_module_and_library(tmp_path: Path) -> None:
    pytest.importorskip("pynvml")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "KWATT_NVML_STATE")}
    # nvidia-ml-py not installed
    out = _collect_in_a_new_process("import sys; sys.modules['pynvml'] = None", env)
    assert out.startswith("CollectorUnavailable pynvml: cannot import"), out
    # an emulated library whose node is gone: no driver
    surface = make_node(tmp_path / "node", (H100,))
    use_nvml(tmp_path / "node", surface)  # skips without a compiler (fails in CI)
    assert surface.library_dir is not None
    gone = {**env, "LD_LIBRARY_PATH": str(surface.library_dir)}
    gone["KWATT_NVML_STATE"] = str(tmp_path / "nowhere" / "state")
    out = _collect_in_a_new_process("", gone)
    assert out.startswith("CollectorUnavailable NVML nvmlInit: Driver Not Loaded (code 9"), out


@pytest.mark.parametrize("kind", ["nvml", "csv", "xml"])
def test_na_and_nan_sensors_are_absent(node: tuple[Path, NvidiaSurface], kind: str) -> None:
    root, surface = node
    c = make_collector(node, kind)
    faulty = dataclasses.replace(H100, na_fields=("power_w", "temp_c"), nan_fields=("clock_hz",))
    step(root, surface, (faulty, T4))
    got = by_device(run(c.collect()))
    h100 = got[H100.uuid]
    assert "power_w" not in h100 and "temp_c" not in h100 and "clock_hz" not in h100
    assert h100["util_ratio"] == pytest.approx(H100.util_ratio, abs=0.005)  # the rest is there
    assert_matches_truth(kind, got[T4.uuid], T4)  # the other GPU is untouched


def test_nvml_energy_counter_restarts_at_a_reset(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    c = nvml_of(node)
    before = by_device(run(c.collect()))[H100.uuid]["energy_j"]
    reset = dataclasses.replace(
        advanced(H100, 1.0, 600.0), reset_count=1, energy_at_reset_j=H100.energy_j + 0.5
    )
    step(root, surface, (reset, T4))
    after = by_device(run(c.collect()))[H100.uuid]["energy_j"]
    assert after < before  # the counter went back: analytics see a reset (DESIGN §6)
    assert math.isclose(after, reset.energy_j - reset.energy_at_reset_j, abs_tol=1e-3)


def test_stuck_sensor_repeats_through_both_collectors(node: tuple[Path, NvidiaSurface]) -> None:
    root, surface = node
    hot = dataclasses.replace(advanced(H100, 1.0, 690.0), temp_c=83.0, stuck=True)
    step(root, surface, (hot, T4))
    for kind in ("nvml", "csv", "xml"):
        c = make_collector(node, kind)
        h100 = by_device(run(c.collect()))[H100.uuid]
        assert h100["temp_c"] == round(H100.temp_c), kind
        assert abs(h100["power_w"] - H100.power_w) < 0.01, kind


def test_real_binding_without_a_gpu_is_unavailable() -> None:
    """With nvidia-ml-py installed on a node without libnvidia-ml: unavailable, with the reason."""
    pytest.importorskip("pynvml")
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this node has an NVIDIA driver")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "KWATT_NVML_STATE")}
    out = _collect_in_a_new_process("", env)
    assert re.match(r"CollectorUnavailable .*\(code (12|9);", out), out
