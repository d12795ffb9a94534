"""The furiosa collector's ``bindings`` source against FuriosaAI's real wheels.

Pure parsing of what the bindings return (shapes measured on the real wheels, see
collectors/furiosa/bindings_parse.py), then kwatt's collector with ``source: bindings`` running,
with each of the real modules ``furiosa_smi`` (furiosa-smi 2026.4) and ``furiosa_smi_py``
(furiosa-smi-py 2026.1), in a private mount namespace over an emulated RNGD node (the helpers of
test_furiosa_conformance.py): its values equal the truth and what the sysfs source reads. No
emulated binding module: the vendor's library is the judge.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_furiosa_conformance import (
    namespace_command,
    need_namespace,
    need_wheel,
    start_node,
    stop,
)

from kwatt.collectors import furiosa
from kwatt.collectors.base import ParseError
from kwatt.collectors.furiosa import (
    BindingDevice,
    BindingReading,
    Config,
    Outcome,
    binding_outcome,
    binding_sample,
    parse_binding,
)
from kwatt.emulators import rngd
from kwatt.emulators.faults import Fault, pause, resume, send
from kwatt.emulators.state import DeviceState, read_snapshot
from kwatt.wire.model import Sample
from kwatt.wire.settings import ConfigError, from_mapping

REPO = Path(__file__).resolve().parents[2]
UUID = "007741DA-70B7-4996-AAC0-7E8E46FFC817"
ALL_BUSY = tuple((m, "Occupied") for m in range(8))

# one RNGD as furiosa_smi 2026.4 hands it over (W, °C, MHz, cycles, bytes, mW)
READING = BindingReading(
    arch="RNGD",
    name="npu0",
    uuid=UUID.lower(),
    serial="RNGD000206",
    bdf="0000:03:00.0",
    firmware="1.7.0, 4dfed1852e7b",
    power_w=38.4,
    temp_c=40.98,
    pe_clock_mhz=(2000,) * 8,
    occupied=ALL_BUSY,
    counters=tuple((m, 1_000_000, 250_000) for m in range(8)),
    memory=((1 << 30, 2 << 30),) * 8,
    power_limit_mw=300_000,
    throttle=("Idle",),  # not a slowdown
)


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
        power_limit_w=300.0,
        throttled=0,
        counters={m: (1_000_000, 250_000) for m in range(8)},
    )
    later = BindingReading(
        **{
            **{f: getattr(READING, f) for f in READING.__slots__},
            "counters": tuple((m, 3_000_000, 1_250_000) for m in range(8)),
            "throttle": ("App Power Cap",),
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
        power_limit_w=300.0,
        throttled=1,
    )


def test_free_pes_and_the_older_module_shapes() -> None:
    # furiosa_smi_py: "rngd", an int bitmask, lower-case core states; half the PEs free (their
    # counters read 0, as the library gives them): the busy share counts them as idle
    half = tuple((m, "occupied" if m < 4 else "available") for m in range(8))
    first = BindingReading(
        arch="rngd", serial="SN1", occupied=half, throttle=0x1, power_w=math.nan,
        counters=tuple((m, 1000 if m < 4 else 0, 0) for m in range(8)),
    )  # fmt: skip
    d = parse_binding(first)
    assert (d.model, d.tag, d.throttled, d.power_w) == ("rngd", "SN1", 0, None)
    assert d.counters == {m: (1000, 0) for m in range(4)}
    later = BindingReading(
        arch="rngd", serial="SN1", occupied=half,
        counters=tuple((m, 2000 if m < 4 else 0, 1000 if m < 4 else 0) for m in range(8)),
    )  # fmt: skip
    assert parse_binding(later, {"SN1": d.counters or {}}).util_ratio == pytest.approx(0.5)
    assert parse_binding(BindingReading(arch="rngd+", bdf="0000:01:00.0")).model == "rngd_plus"


@pytest.mark.parametrize(
    ("reading", "match"),
    [
        (BindingReading(arch="gpu", uuid="u"), "unknown arch"),
        (BindingReading(arch="warboy", uuid="u"), "unknown arch"),  # neither wheel knows Warboy
        (BindingReading(arch="rngd"), "no UUID, serial or PCI address"),
        (BindingReading(arch="rngd", uuid="u", power_w="38 W"), "power_consumption.*a number"),
        (BindingReading(arch="rngd", uuid="u", power_w=-1.0), "negative"),
        (BindingReading(arch="rngd", uuid=7), "uuid: expected a string"),
        (
            BindingReading(arch="rngd", uuid="u", occupied=ALL_BUSY, counters=((0, -1, 0),)),
            "cycle_count",
        ),
        (
            BindingReading(
                arch="rngd", uuid="u", occupied=ALL_BUSY, counters=((0, 1, 0), (0, 2, 0))
            ),
            "twice",
        ),
        (
            BindingReading(arch="rngd", uuid="u", occupied=((0, "Busy"),), counters=()),
            "expected Occupied or Available",
        ),
        (BindingReading(arch="rngd", uuid="u", memory=((True, 1),)), "in_use_bytes"),
        (BindingReading(arch="rngd", uuid="u", power_limit_mw="300 W"), "power_limit"),
        (BindingReading(arch="rngd", uuid="u", throttle=-4), "negative bitmask"),
        (BindingReading(arch="rngd", uuid="u", throttle=1.5), "throttle_reason"),
    ],
)
def test_parse_errors_name_the_value(reading: BindingReading, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_binding(reading)


def test_error_outcomes_of_both_bindings() -> None:
    need_wheel("furiosa_smi")
    furiosa_smi = importlib.import_module("furiosa_smi")  # the real exception classes

    assert binding_outcome(furiosa_smi.DeviceNotFoundError("gone")) is Outcome.DEVICE_GONE
    assert binding_outcome(furiosa_smi.IoError("no hwmon directory found")) is Outcome.ABSENT
    assert binding_outcome(furiosa_smi.ParseError("invalid frequency")) is Outcome.ABSENT
    assert binding_outcome(furiosa_smi.SmiError("?")) is Outcome.FAILED
    # furiosa_smi_py raises RuntimeError with the C code's name ("Io error": measured)
    assert binding_outcome(RuntimeError("Io error")) is Outcome.ABSENT
    assert binding_outcome(RuntimeError("Unknown error")) is Outcome.ABSENT  # temperature file gone
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
    | st.sampled_from(["rngd", "RNGD", "rngd_s", "Idle", "App Power Cap", "Occupied", UUID])
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
        occupied=st.none() | st.lists(st.tuples(_value, _value), max_size=4).map(tuple),
        memory=st.none() | st.lists(st.tuples(_value, _value), max_size=3).map(tuple),
        power_limit_mw=_value,
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


def test_bindings_options_are_validated() -> None:
    assert from_mapping(Config, {"bindings_module": "furiosa_smi_py"}, where="f").bindings_module
    with pytest.raises(ConfigError, match="bindings_module: expected one of furiosa_smi, "):
        from_mapping(Config, {"bindings_module": "emulators.furiosa_smi_emu"}, where="furiosa")
    with pytest.raises(ConfigError, match="bindings reads the host's /sys, so root must be '/'"):
        from_mapping(Config, {"source": "bindings", "root": "/srv/n0"}, where="furiosa")


# ------------------------------------------------------------- the real wheels, emulated node

#: Runs inside the namespace: the collector (source bindings) polls on each line read from stdin
#: and prints its samples and inventory as JSON.
POLL = r"""
import asyncio, json, os, sys
out = os.fdopen(os.dup(1), "w")  # the JSON channel; the native library's own prints go to stderr
os.dup2(2, 1)
from kwatt.collectors import furiosa
c = furiosa.PLUGIN.create("npu", furiosa.Config(source="bindings", bindings_module=sys.argv[1],
                                         timeout_s=60))
async def main():
    for line in sys.stdin:
        try:
            samples = await c.collect()
            inventory = await c.inventory()
        except Exception as e:  # the test shows it
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=out, flush=True)
            continue
        print(json.dumps({
            "source": c.last_source,
            "samples": {dict(s.tags)["device"]: dict(s.fields) for s in samples},
            "inventory": [[d.id, d.model, d.bus_id, d.firmware_version, d.driver_version]
                          for d in inventory],
        }), file=out, flush=True)
asyncio.run(main())
"""


def poll(proc: subprocess.Popen[str], stderr: Path | None = None) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("poll\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    why = stderr.read_text(errors="replace")[-3000:] if stderr is not None else ""
    assert line, f"the collector in the namespace died: {why}"
    doc: dict[str, object] = json.loads(line)
    assert "error" not in doc, doc["error"]
    return doc


def busy_share(before: DeviceState, after: DeviceState) -> float:
    """The card's true busy share between two snapshots: Δbusy cycles / Δcycles."""
    return (after.busy_cycles - before.busy_cycles) / (after.cycles - before.cycles)


@pytest.mark.parametrize("module", ["furiosa_smi", "furiosa_smi_py"])
def test_bindings_source_on_the_real_wheel_matches_the_truth_and_sysfs(
    tmp_path: Path, module: str
) -> None:
    need_namespace()
    need_wheel(module)
    root = tmp_path / "root"
    node = start_node(root, "rngd:2", "chatbot", seed=3)
    proc: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        while not (root / ".kwatt-emulator").exists() or read_snapshot(root).t_s < 2.0:
            assert time.monotonic() < deadline, "the node did not start stepping"
            time.sleep(0.1)
        proc = subprocess.Popen(
            namespace_command(root, [sys.executable, "-c", POLL, module]),
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        sysfs = furiosa.PLUGIN.create("s", Config(root=str(root), source="sysfs"))
        pause(root)
        before = {d.uuid.upper(): d for d in read_snapshot(root).devices}
        first = poll(proc)
        asyncio.run(sysfs.collect())
        resume(root)
        time.sleep(1.0)
        pause(root)
        after = {d.uuid.upper(): d for d in read_snapshot(root).devices}
        second = poll(proc)
        want = {dict(s.tags)["device"]: dict(s.fields) for s in asyncio.run(sysfs.collect())}
        resume(root)
    finally:
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        stop(node)
    assert first["source"] == second["source"] == "bindings"
    first_samples = first["samples"]
    assert isinstance(first_samples, dict)
    assert all("util_ratio" not in f for f in first_samples.values())  # no baseline yet
    got = second["samples"]
    assert isinstance(got, dict) and set(got) == set(after) == set(want)
    for tag, d in after.items():
        g, w = got[tag], want[tag]
        assert g["power_w"] == pytest.approx(d.power_w, abs=1e-6) == w["power_w"]
        assert g["temp_c"] == pytest.approx(d.temp_c, abs=5e-4) == w["temp_c"]
        # MHz (floor of the Hz the tree holds) against sysfs' Hz
        assert g["clock_hz"] == (w["clock_hz"] // 10**6) * 10**6
        assert g["util_ratio"] == pytest.approx(busy_share(before[tag], d), abs=1e-6)
        assert g["util_ratio"] == pytest.approx(w["util_ratio"], abs=1e-9)
        assert g["throttled"] == w["throttled"]
        if module == "furiosa_smi":
            assert g["power_limit_w"] == w["power_limit_w"] == d.power_limit_w
            assert g["mem_used_bytes"] == w["mem_used_bytes"]
            assert g["mem_total_bytes"] == w["mem_total_bytes"] == d.mem_total_bytes
        else:  # no power_limit(); memory_utilization() reports 0 in use: not read
            assert not {"power_limit_w", "mem_used_bytes", "mem_total_bytes"} & set(g)
    inventory = second["inventory"]
    assert isinstance(inventory, list)
    assert sorted(inventory) == sorted(
        [t, "rngd", d.bus_id, "1.7.0, 4dfed1852e7b", rngd.DRIVER_VERSION] for t, d in after.items()
    )


def apply(root: Path, fault: Fault) -> None:
    """Inject ``fault`` and wait until the node has taken it and rendered a step with it."""
    path = send(root, fault)
    deadline = time.monotonic() + 20
    while not path.with_suffix(".applied").exists():
        assert not path.with_suffix(".rejected").exists(), path.with_suffix(".error").read_text()
        assert time.monotonic() < deadline, f"{fault.kind} not applied"
        time.sleep(0.02)
    t = read_snapshot(root).t_s
    while read_snapshot(root).t_s <= t:  # one more step rendered with the fault in force
        assert time.monotonic() < deadline, "the node stopped stepping"
        time.sleep(0.02)


@pytest.mark.parametrize("module", ["furiosa_smi", "furiosa_smi_py"])
def test_na_nan_and_disappear_through_the_real_wheel(tmp_path: Path, module: str) -> None:
    """A sensor the device stops reporting (``na``: its file removed; ``nan``) is an absent field,
    never 0, and a card that went away is left out of the poll, with the real library's errors."""
    need_namespace()
    need_wheel(module)
    root = tmp_path / "root"
    node = start_node(root, "rngd:2", "chatbot", seed=4)
    proc: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        while not (root / ".kwatt-emulator").exists() or read_snapshot(root).t_s < 2.0:
            assert time.monotonic() < deadline, "the node did not start stepping"
            time.sleep(0.1)
        first, second = (d.uuid.upper() for d in sorted(
            read_snapshot(root).devices, key=lambda d: d.index))  # fmt: skip
        errors = tmp_path / "stderr.txt"
        with errors.open("w") as err:
            proc = subprocess.Popen(
                namespace_command(root, [sys.executable, "-c", POLL, module]),
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

        def paused_poll() -> dict[str, dict[str, float]]:
            assert proc is not None
            pause(root)
            try:
                samples = poll(proc, errors)["samples"]
            finally:
                resume(root)
            assert isinstance(samples, dict)
            return samples

        got = paused_poll()
        assert {"power_w", "temp_c"} <= set(got[first]) and "power_w" in got[second]
        apply(root, Fault("na", device="furiosa:0", fields=("power_w", "temp_c")))
        got = paused_poll()
        assert not {"power_w", "temp_c"} & set(got[first])  # absent, not 0
        assert "clock_hz" in got[first] and "power_w" in got[second]
        apply(root, Fault("nan", device="furiosa:1", fields=("power_w",)))
        got = paused_poll()
        assert "power_w" not in got[second] and "temp_c" in got[second]
        apply(root, Fault("disappear", device="furiosa:0"))
        got = paused_poll()
        assert set(got) == {second}
    finally:
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        stop(node)
