"""Host power collectors (rapl, hwmon, ipmi_dcmi, redfish): goldens, pure parsing, fuzzing.

End-to-end runs against the emulated host surfaces are in tests/system/test_host_power_e2e.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwatt.collectors import REGISTRY, hwmon, ipmi_dcmi, load, rapl, redfish
from kwatt.collectors.base import (
    Collector,
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
)
from kwatt.collectors.rapl import CounterState, parse_counter, parse_zone, unwrap
from kwatt.wire import units
from kwatt.wire.model import Sample
from kwatt.wire.settings import from_mapping

FIXTURES = Path(__file__).parents[1] / "fixtures" / "host"
RNGD_MATCH = hwmon.DeviceMatch(
    "rngd*", "furiosa", "rngd", power_label="RMS_TOTAL", temp_label="PEAK"
)


def as_dicts(samples: list[Sample]) -> list[dict[str, object]]:
    return [
        {"measurement": s.measurement.value, "tags": dict(s.tags), "fields": dict(s.fields)}
        for s in samples
    ]


def golden(name: str) -> object:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_kwh_to_j() -> None:
    assert units.kwh_to_j(1.0) == 3.6e6
    assert units.kwh_to_j(1234.5) == pytest.approx(4_444_200_000.0, rel=1e-15)


def test_registered_and_protocol(tmp_path: Path) -> None:
    for kind in ("rapl", "hwmon", "ipmi_dcmi", "redfish"):
        assert kind in REGISTRY
        assert load(kind).create is not None
    assert isinstance(rapl.PLUGIN.create("r", rapl.Config()), Collector)
    assert isinstance(hwmon.PLUGIN.create("h", hwmon.Config()), Collector)
    assert isinstance(ipmi_dcmi.PLUGIN.create("i", ipmi_dcmi.Config()), Collector)
    assert isinstance(redfish.PLUGIN.create("f", redfish.Config(url="https://bmc")), Collector)


def test_configs_load_from_yaml_mappings() -> None:
    cfg = from_mapping(
        hwmon.Config,
        {"root": "/x", "devices": [{"name": "rngd*", "vendor": "furiosa", "model": "rngd"}]},
        where="t:",
    )
    assert cfg.devices[0].vendor == "furiosa"
    d = from_mapping(ipmi_dcmi.Config, {"dialect": "freeipmi", "timeout_s": "3s"}, where="t:")
    assert d.dialect == "freeipmi" and d.timeout_s == 3.0
    r = from_mapping(
        redfish.Config,
        {"url": "https://bmc:443", "username": "u", "password_file": "/p", "ca_file": "/ca"},
        where="t:",
    )
    assert r.chassis == "1"
    with pytest.raises(Exception, match="password_file"):
        from_mapping(redfish.Config, {"url": "https://bmc", "username": "u"}, where="t:")


# ------------------------------------------------------------------------------------------ RAPL


def test_rapl_golden() -> None:
    c = rapl.PLUGIN.create("rapl", rapl.Config(root=str(FIXTURES / "rapl-2pkg-synthetic")))
    assert as_dicts(asyncio.run(c.collect())) == golden("rapl-2pkg-synthetic.expected.json")


def test_rapl_zone_filter() -> None:
    cfg = rapl.Config(root=str(FIXTURES / "rapl-2pkg-synthetic"), zones=("package-1/dram",))
    samples = asyncio.run(rapl.PLUGIN.create("rapl", cfg).collect())
    assert [s.tag("zone") for s in samples] == ["package-1/dram"]


def test_rapl_wrap_and_reset_in_a_copied_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "rapl-2pkg-synthetic", root)
    zones = root / "sys" / "class" / "powercap"
    c = rapl.RaplCollector("rapl", rapl.Config(root=str(root)))
    first = {s.tag("zone"): s.field("energy_j") for s in c.collect_sync()}
    # package-1 wraps: 261999999999 -> 1000 with range 262143328850 (+1 per wrap)
    (zones / "intel-rapl:1" / "energy_uj").write_text("1000\n")
    # psys has no range: going backwards is a reset
    (zones / "intel-rapl:2" / "energy_uj").write_text("250000\n")
    second = {s.tag("zone"): s.field("energy_j") for s in c.collect_sync()}
    assert second["package-1"] == pytest.approx((262_143_328_850 + 1 + 1000) / 1e6, abs=1e-9)
    assert first["package-1"] == pytest.approx(261_999.999999)
    assert second["psys"] == pytest.approx(1.0 + 0.25)
    state = c.counter_state("package-1")
    assert state is not None and state.wraps == 1
    psys = c.counter_state("psys")
    assert psys is not None and psys.resets == 1
    assert second["package-0"] == first["package-0"]


def test_rapl_missing_tree_and_garbage(tmp_path: Path) -> None:
    c = rapl.RaplCollector("rapl", rapl.Config(root=str(tmp_path)))
    with pytest.raises(CollectorUnavailable, match="powercap"):
        c.collect_sync()
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "rapl-2pkg-synthetic", root)
    f = root / "sys" / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    f.write_text("12 mJ\n")
    with pytest.raises(ParseError, match=r"intel-rapl:0/energy_uj: expected a non-negative"):
        rapl.RaplCollector("rapl", rapl.Config(root=str(root))).collect_sync()
    f.write_text("262143328851\n")  # beyond its range
    with pytest.raises(ParseError, match="exceeds max_energy_range_uj"):
        rapl.RaplCollector("rapl", rapl.Config(root=str(root))).collect_sync()


def test_rapl_permission_denied_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mapping itself (the real 0400 file is exercised in the e2e tests)."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "rapl-2pkg-synthetic", root)
    real = os.open

    def refusing_open(path: object, flags: int, *args: int, **kwargs: object) -> int:
        if str(path).endswith("/energy_uj"):  # the OS, as root-only 0400 files answer others
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CollectorUnavailable) as e:
        rapl.RaplCollector("rapl", rapl.Config(root=str(root))).collect_sync()
    assert "intel-rapl:0/energy_uj: permission denied" in str(e.value)
    assert "udev" in str(e.value) and "root" in str(e.value)


@pytest.mark.parametrize("module", [rapl, hwmon])
def test_sysfs_collectors_time_out(module: object, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = rapl.RaplCollector if module is rapl else hwmon.HwmonCollector
    monkeypatch.setattr(cls, "collect_sync", lambda self: time.sleep(0.6) or [])
    config = rapl.Config(timeout_s=0.1) if module is rapl else hwmon.Config(timeout_s=0.1)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(CollectorTimeout, match=r"within 0\.1 s"):
            await cls("c", config).collect()  # type: ignore[arg-type]
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.5  # the agent got control back before the read finished


def test_parse_zone() -> None:
    z = parse_zone({"name": "package-0\n", "energy_uj": "5\n", "max_energy_range_uj": "10\n"}, "z")
    assert z == rapl.ZoneReading("package-0", 5, 10, None)
    with pytest.raises(ParseError, match="z/name: missing"):
        parse_zone({"energy_uj": "5"}, "z")
    with pytest.raises(ParseError, match="z/energy_uj: missing"):
        parse_zone({"name": "dram"}, "z")
    with pytest.raises(ParseError, match="positive range"):
        parse_zone({"name": "dram", "energy_uj": "0", "max_energy_range_uj": "0"}, "z")
    with pytest.raises(ParseError, match="zone name"):
        parse_zone({"name": "pack age", "energy_uj": "0"}, "z")
    with pytest.raises(ParseError, match="beyond u64"):
        parse_counter(str(2**64), "f")


def test_unwrap_examples() -> None:
    s = unwrap(None, 90, 99)
    assert s == CounterState(90, 90)
    s = unwrap(s, 5, 99)  # wrap: 90 -> 99 -> 0 -> 5 = 15 µJ
    assert (s.total_uj, s.wraps) == (105, 1)
    s = unwrap(s, 4, None)  # no range: a reset, 4 µJ since
    assert (s.total_uj, s.resets) == (109, 1)


@given(
    st.integers(1, 10**6),
    st.lists(st.integers(0, 2 * 10**6), min_size=1, max_size=40),
)
def test_unwrap_follows_the_truth_when_polled_at_least_once_per_wrap(
    range_uj: int, increments: list[int]
) -> None:
    period = range_uj + 1
    truth = 0
    state: CounterState | None = None
    for inc in increments:
        truth += inc % period  # less than one period between two polls
        previous = None if state is None else state.total_uj
        state = unwrap(state, truth % period, range_uj)
        assert state.total_uj == truth
        assert previous is None or state.total_uj >= previous


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.none() | st.integers(1, 2**64 - 1))))
def test_unwrap_never_goes_backwards(readings: list[tuple[int, int | None]]) -> None:
    state: CounterState | None = None
    for raw, range_uj in readings:
        before = None if state is None else state.total_uj
        state = unwrap(state, raw, range_uj)
        assert before is None or state.total_uj >= before


_TEXT = st.one_of(st.none(), st.text(max_size=30), st.integers(-5, 2**66).map(str))


@given(st.dictionaries(st.sampled_from([*rapl._FILES, "other"]), _TEXT))
def test_fuzz_parse_zone(files: dict[str, str | None]) -> None:
    try:
        z = parse_zone(files, "zone")
    except ParseError:
        return
    assert z.energy_uj >= 0
    assert z.max_energy_range_uj is None or z.energy_uj <= z.max_energy_range_uj


@given(st.binary(max_size=40))
def test_fuzz_parse_counter_and_name(raw: bytes) -> None:
    text = raw.decode("utf-8", "replace")
    for fn in (
        lambda: parse_counter(text, "f"),
        lambda: rapl.parse_zone_name(text, "f"),
    ):
        with contextlib.suppress(ParseError):
            fn()


# ------------------------------------------------------------------------------------------ hwmon


def test_hwmon_golden() -> None:
    cfg = hwmon.Config(root=str(FIXTURES / "hwmon-mixed-synthetic"), devices=(RNGD_MATCH,))
    c = hwmon.PLUGIN.create("hwmon", cfg)
    assert as_dicts(asyncio.run(c.collect())) == golden("hwmon-mixed-synthetic.expected.json")
    inventory = asyncio.run(c.inventory())
    assert {(d.vendor, d.model, d.id) for d in inventory} == {
        ("acmenpu", "acmenpu", "0000:6d:00.0"),
        ("furiosa", "rngd", "0000:6e:00.0"),
        ("sapeon", "x330", "0000:70:00.0"),
    }


def test_hwmon_known_devices_without_config() -> None:
    c = hwmon.PLUGIN.create("hwmon", hwmon.Config(root=str(FIXTURES / "hwmon-mixed-synthetic")))
    rngd = [s for s in asyncio.run(c.collect()) if s.tag("device") == "0000:6e:00.0"]
    assert [(s.tag("vendor"), s.tag("model"), dict(s.fields)) for s in rngd] == [
        ("furiosa", "rngd", {"power_w": 38.4, "temp_c": 40.8})  # RMS_TOTAL and PEAK (§1.3)
    ]


def test_hwmon_without_auto_accel_and_excluded() -> None:
    cfg = hwmon.Config(
        root=str(FIXTURES / "hwmon-mixed-synthetic"), auto_accel=False, exclude=("psu_*",)
    )
    samples = asyncio.run(hwmon.PLUGIN.create("hwmon", cfg).collect())
    zones = {s.tag("zone") for s in samples if s.measurement.value == "host"}
    # the unmatched PCI chips are host meters now; rngd1 has no energy/power label clash
    assert "psu_meter/PSU_1" not in zones
    assert "acmenpu/board" in zones and "rngd1/RMS_TOTAL" in zones
    assert not [s for s in samples if s.measurement.value == "accel"]


def test_hwmon_missing_tree_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable, match="no hwmon chip"):
        hwmon.HwmonCollector("h", hwmon.Config(root=str(tmp_path))).collect_sync()
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "hwmon-mixed-synthetic", root)
    (root / "sys" / "class" / "hwmon" / "hwmon0" / "power1_average").write_text("N/A\n")
    # one chip's garbage costs that chip only (its error is kept), the other chips are reported
    c = hwmon.HwmonCollector("h", hwmon.Config(root=str(root)))
    samples = c.collect_sync()
    zones = {s.tag("zone") for s in samples}
    assert samples and not any((z or "").startswith("power_meter/") for z in zones)
    (message,) = c.chip_errors.values()
    assert "hwmon0/power1_average: expected µW" in message
    # every chip broken: the poll fails, naming them
    single = tmp_path / "single"
    (single / "sys" / "class" / "hwmon" / "hwmon0").mkdir(parents=True)
    (single / "sys" / "class" / "hwmon" / "hwmon0" / "name").write_text("bad name\n")
    with pytest.raises(ParseError, match=r"every hwmon chip failed: .*hwmon0/name"):
        hwmon.HwmonCollector("h", hwmon.Config(root=str(single))).collect_sync()


def test_parse_chip_prefers_average_and_keeps_signs() -> None:
    chip = hwmon.parse_chip(
        {
            "name": "x\n",
            "power1_input": "2000000",
            "power1_average": "1000000",
            "temp1_input": "-1500",
            "energy3_input": "7",
            "curr1_input": "12",
        },
        "chip",
    )
    assert chip.pick("power", None) == hwmon.Channel("power", 1, None, 1.0)
    assert chip.pick("temp", None) == hwmon.Channel("temp", 1, None, -1.5)
    assert chip.pick("energy", None) == hwmon.Channel("energy", 3, None, 7e-6)
    assert chip.pick("energy", "nope") is None
    with pytest.raises(ParseError, match="name: missing"):
        hwmon.parse_chip({"power1_input": "1"}, "chip")


_HWMON_KEYS = st.sampled_from(
    ["name", "power1_input", "power1_average", "power1_label", "energy1_input", "energy1_label",
     "temp1_input", "temp1_label", "temp2_input", "power2_label", "in0_input"]
)  # fmt: skip


@given(st.dictionaries(_HWMON_KEYS, _TEXT), st.booleans())
def test_fuzz_parse_chip_and_samples(files: dict[str, str | None], accel: bool) -> None:
    try:
        chip = hwmon.parse_chip(files, "chip")
    except ParseError:
        return
    # building the samples from any parsed chip must not raise either
    hwmon._host_samples(1, chip.name, chip)
    if accel:
        hwmon.HwmonCollector._accel(
            1,
            hwmon._ChipDir(Path("hwmon3"), "0000:01:00.0"),
            chip,
            hwmon.DeviceMatch("*", "v", "m"),
        )


# ------------------------------------------------------------------------------------------ DCMI


@pytest.mark.parametrize(
    ("fixture", "dialect"),
    [
        ("ipmitool-dcmi-power-reading-reference", "ipmitool"),
        ("freeipmi-system-power-statistics-reference", "freeipmi"),
        ("ipmitool-dcmi-deactivated-synthetic", "ipmitool"),
        ("ipmitool-dcmi-zero-watts-synthetic", "ipmitool"),
        ("freeipmi-not-available-synthetic", "freeipmi"),
    ],
)
def test_dcmi_golden(fixture: str, dialect: ipmi_dcmi.Dialect) -> None:
    raw = (FIXTURES / f"{fixture}.txt").read_bytes()
    assert as_dicts(ipmi_dcmi.parse(raw, dialect, 1)) == golden(f"{fixture}.expected.json")


def test_dcmi_readings_in_full() -> None:
    r = ipmi_dcmi.parse_ipmitool(
        (FIXTURES / "ipmitool-dcmi-power-reading-reference.txt").read_text()
    )
    assert r == ipmi_dcmi.DcmiReading(50, 6, 304, 49, 1.0, True)
    f = ipmi_dcmi.parse_freeipmi(
        (FIXTURES / "freeipmi-system-power-statistics-reference.txt").read_text()
    )
    assert f == ipmi_dcmi.DcmiReading(164, 48, 361, 157, 1_473_439.0, True)


def test_dcmi_zero_kept_when_asked_and_errors() -> None:
    raw = (FIXTURES / "ipmitool-dcmi-zero-watts-synthetic.txt").read_bytes()
    (s,) = ipmi_dcmi.parse(raw, "ipmitool", 1, zero_is_missing=False)
    assert s.field("power_w") == 0.0
    truncated = (FIXTURES / "ipmitool-dcmi-truncated-synthetic.txt").read_bytes()
    with pytest.raises(ParseError, match="ipmitool dcmi power reading: no 'Power reading state"):
        ipmi_dcmi.parse(truncated, "ipmitool", 1)
    with pytest.raises(ParseError, match="ipmi-dcmi"):
        ipmi_dcmi.parse(b"\xff\xfe", "freeipmi", 1)
    wrong = (FIXTURES / "ipmitool-dcmi-power-reading-reference.txt").read_bytes()
    with pytest.raises(ParseError, match="no 'Current Power' line"):
        ipmi_dcmi.parse(wrong, "freeipmi", 1)  # the other dialect
    big = wrong.replace(b"      50 Watts", b"   70000 Watts")
    with pytest.raises(ParseError, match="Instantaneous power reading: expected '<0-65535> Watts'"):
        ipmi_dcmi.parse(big, "ipmitool", 1)


def test_dcmi_argv() -> None:
    assert ipmi_dcmi.argv_for(ipmi_dcmi.Config()) == ["ipmitool", "dcmi", "power", "reading"]
    cfg = ipmi_dcmi.Config(dialect="freeipmi", tool="/opt/x/ipmi-dcmi", args=("-D", "LAN_2_0"))
    assert ipmi_dcmi.argv_for(cfg) == [
        "/opt/x/ipmi-dcmi",
        "-D",
        "LAN_2_0",
        "--get-system-power-statistics",
    ]


_DCMI_LINES = [
    line
    for f in (
        "ipmitool-dcmi-power-reading-reference.txt",
        "freeipmi-system-power-statistics-reference.txt",
    )
    for line in (FIXTURES / f).read_text().splitlines()
]


@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.one_of(st.sampled_from(_DCMI_LINES), st.text(max_size=40)), max_size=12).map(
            lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")
        ),
    ),
    st.sampled_from(["ipmitool", "freeipmi"]),
)
@settings(max_examples=300)
def test_fuzz_dcmi(raw: bytes, dialect: ipmi_dcmi.Dialect) -> None:
    try:
        samples = ipmi_dcmi.parse(raw, dialect, 1)
    except ParseError:
        return
    assert len(samples) <= 1
    for s in samples:
        value = s.field("power_w")
        assert isinstance(value, float) and 0 < value <= 65535


# ------------------------------------------------------------------------------------------ Redfish


@pytest.mark.parametrize(
    "fixture",
    [
        "redfish-environment-metrics-dmtf-reference",
        "redfish-environment-metrics-energy-synthetic",
        "redfish-environment-metrics-null-synthetic",
        "redfish-power-hpe-synthetic",
        "redfish-power-null-synthetic",
    ],
)
def test_redfish_golden(fixture: str) -> None:
    raw = (FIXTURES / f"{fixture}.json").read_bytes()
    parse = (
        redfish.parse_power
        if fixture.startswith("redfish-power")
        else redfish.parse_environment_metrics
    )
    r = parse(raw)
    assert {"power_w": r.power_w, "energy_j": r.energy_j} == golden(f"{fixture}.expected.json")


def test_redfish_parse_errors() -> None:
    with pytest.raises(ParseError, match="expected a JSON EnvironmentMetrics"):
        redfish.parse_environment_metrics(b"<html>", "u")
    with pytest.raises(ParseError, match=r"@odata\.type"):
        redfish.parse_power(b'{"@odata.type": "#Thermal.v1_0_0.Thermal"}', "u")
    with pytest.raises(ParseError, match=r"PowerWatts\.Reading: expected a number"):
        redfish.parse_environment_metrics(b'{"PowerWatts": {"Reading": "12 W"}}', "u")
    with pytest.raises(ParseError, match="finite"):
        redfish.parse_environment_metrics(b'{"PowerWatts": {"Reading": NaN}}', "u")
    with pytest.raises(ParseError, match="finite"):
        redfish.parse_power(b'{"PowerControl": [{"PowerConsumedWatts": 1' + b"0" * 400 + b"}]}")
    with pytest.raises(ParseError, match="PowerControl: expected an array"):
        redfish.parse_power(b'{"PowerControl": {}}', "u")
    assert redfish.parse_power(b"{}") == redfish.RedfishReading(None, None)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(10**300, 10**400) | st.floats()
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["PowerWatts", "EnergykWh", "EnergyJoules", "Reading", "PowerControl",
             "PowerConsumedWatts", "@odata.type", "x"]
        ),
        children,
        max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip


@given(st.one_of(st.binary(max_size=200), _JSON.map(lambda d: json.dumps(d).encode())))
@settings(max_examples=300)
def test_fuzz_redfish(raw: bytes) -> None:
    for parse in (redfish.parse_environment_metrics, redfish.parse_power):
        try:
            r = parse(raw)
        except ParseError:
            continue
        for v in (r.power_w, r.energy_j):
            assert v is None or v >= 0


def test_redfish_deep_json_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        redfish.parse_power(b"[" * 100_000)


def test_redfish_secret_errors(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    cfg = redfish.Config(url="http://127.0.0.1:9", username="u", password_file=str(empty))
    with pytest.raises(CollectorUnavailable, match="empty"):
        redfish.RedfishCollector("r", cfg).read_sync()
    cfg = redfish.Config(url="http://127.0.0.1:9", username="u", password_file=str(tmp_path / "no"))
    with pytest.raises(CollectorError, match="password_file"):
        redfish.RedfishCollector("r", cfg).read_sync()


def test_hwmon_lists_chips_once_and_follows_them_going_and_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between listings a poll reads only value files; a vanished chip forces a new listing at the
    next poll; a new chip appears at the next listing (hwmon.RESCAN_S)."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "hwmon-mixed-synthetic", root, symlinks=True)
    c = hwmon.HwmonCollector("h", hwmon.Config(root=str(root)))
    chips = root / "sys" / "class" / "hwmon"
    first = {(s.measurement.value, s.tag("zone") or s.tag("device")) for s in c.collect_sync()}
    assert first
    # a value change is read at the next poll without a new listing
    power = next(chips.glob("hwmon*/power1_average"))
    power.write_text("123000000\n")
    assert any(s.field("power_w") == 123.0 for s in c.collect_sync())
    # a chip that goes away drops out at once (its values are not reported as 0)
    gone = power.parent
    shutil.move(str(gone), str(tmp_path / "parked"))
    c.collect_sync()  # notices the chip is gone
    after = {(s.measurement.value, s.tag("zone") or s.tag("device")) for s in c.collect_sync()}
    assert after < first
    # it comes back: seen at the next listing
    shutil.move(str(tmp_path / "parked"), str(gone))
    monkeypatch.setattr(hwmon, "RESCAN_S", 0.0)
    assert {
        (s.measurement.value, s.tag("zone") or s.tag("device")) for s in c.collect_sync()
    } == first


def test_rapl_lists_zones_once_and_follows_them_going_and_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "rapl-2pkg-synthetic", root, symlinks=True)
    c = rapl.RaplCollector("rapl", rapl.Config(root=str(root)))
    first = {s.tag("zone") for s in c.collect_sync()}
    assert len(first) >= 2
    zone = root / "sys" / "class" / "powercap" / "intel-rapl:1"
    shutil.move(str(zone), str(tmp_path / "parked"))
    c.collect_sync()  # notices the zone is gone
    after = {s.tag("zone") for s in c.collect_sync()}
    assert after and after < first
    shutil.move(str(tmp_path / "parked"), str(zone))
    monkeypatch.setattr(rapl, "RESCAN_S", 0.0)
    assert {s.tag("zone") for s in c.collect_sync()} == first


def test_hwmon_nan_sensor_is_absent_and_the_others_count() -> None:
    chip = hwmon.parse_chip(
        {"name": "acme\n", "power1_average": "nan\n", "energy1_input": "5000000\n",
         "temp1_input": "-inf\n", "power2_input": "2000000\n"},
        "chip",
    )  # fmt: skip
    values = {(c.kind, c.index): c.value for c in chip.channels}
    assert values == {("energy", 1): 5.0, ("power", 2): 2.0}
