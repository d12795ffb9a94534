"""Real captures as golden tests: every collector's pure parser against public real output.

The captures live in ``tests/fixtures/real/<surface>/`` with their provenance in a SOURCES file there.
Each ``X.expected.json`` was written by reading the capture ``X`` (quantities copied as printed,
``"67.03 W"``, ``"15.7GiB"``); :func:`si` turns them into SI units with its own table, independent
of ``kwatt.wire.units``, and the parsers must agree. Where an emulated tool renders the same command, a
structural test holds the emulator to the real layout (header, columns, nesting, units in cells).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import subprocess
import tarfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from kwatt.collectors import hwmon, ipmi_dcmi, rapl, redfish, serving
from kwatt.collectors.base import ParseError
from kwatt.collectors.nvidia_smi import parse_csv, parse_xml
from kwatt.collectors.rebellions import parse_text, parse_text_report
from kwatt.emulators import rebellions as rbln_emu
from kwatt.emulators.redfish import (
    render_environment_metrics,
    render_power,
    render_power_subsystem,
    render_power_supply_metrics,
)
from kwatt.emulators.serving import RUNTIMES, ServingModel, TritonEnsemble
from kwatt.emulators.state import DeviceState, Snapshot
from kwatt.emulators.tools import ipmitool as ipmitool_emu

REAL = Path(__file__).parents[1] / "fixtures" / "real"
NVIDIA = Path(__file__).parents[1] / "fixtures" / "nvidia"

# ------------------------------------------------------------------------------- units, by hand

_SCALE = {
    "W": 1.0,
    "Watts": 1.0,
    "C": 1.0,
    "MHz": 1e6,
    "MiB": 2.0**20,
    "GiB": 2.0**30,
    "GB": 2.0**30,  # rbln-smi prints binary multiples as GB/MB (emulators/rebellions.py notes)
    "MB": 2.0**20,
    "KB": 2.0**10,
    "B": 1.0,
    "%": 0.01,
    "Seconds.": 1.0,
}


def si(text: str | None) -> float | None:
    """``"67.03 W"`` → 67.03, ``"15.7GiB"`` → bytes, ``"0 %"`` → 0.0; None/``N/A`` → None."""
    if text is None or text.strip() in ("N/A", "[N/A]", "[Not Supported]"):
        return None
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z%.]*)\s*", text)
    assert m is not None, f"expected-JSON value {text!r} is not a quantity"
    return float(m.group(1)) * _SCALE[m.group(2)] if m.group(2) else float(m.group(1))


def unpacked(surface: str, into: Path) -> Path:
    """The sysfs tree of ``REAL/<surface>/node_exporter-sys.tar.gz``, extracted under ``into``.

    The trees are kept packed: their symlinks loop (``hwmonN/device/hwmon/hwmonN``, as in a real
    /sys), and anything that walks the repository following links (setuptools' file finder while
    building the package) would never finish. The expected values sit beside the archive."""
    with tarfile.open(REAL / surface / "node_exporter-sys.tar.gz") as tar:
        tar.extractall(into, filter="tar")
    return into / "node_exporter-sys"


def expected(path: Path) -> Any:
    return json.loads(path.with_name(path.name + ".expected.json").read_text(encoding="utf-8"))


def captures(surface: str, pattern: str) -> list[Path]:
    found = sorted((REAL / surface).glob(pattern))
    found = [p for p in found if not p.name.endswith(".expected.json")]
    assert found, f"no capture {pattern} in {surface}"
    return found


def test_every_capture_folder_has_its_sources() -> None:
    for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
        if folder.name == "furiosa-smi":
            continue  # another part of issue 13 owns it
        sources = folder / "SOURCES.md"
        assert sources.is_file(), f"{folder} has no SOURCES.md"
        text = sources.read_text(encoding="utf-8")
        for item in folder.iterdir():
            if item.name != "SOURCES.md" and not item.name.endswith(".expected.json"):
                stem = item.name.split(".expected")[0]
                assert stem in text, f"{item} is not described in {sources}"


# ------------------------------------------------------------------------------- nvidia-smi


@pytest.mark.parametrize("path", captures("nvidia-smi", "q-x-*.xml"), ids=lambda p: p.name)
def test_nvidia_smi_xml_capture(path: Path) -> None:
    records = parse_xml(path.read_bytes(), path.name)
    want = expected(path)
    assert len(records) == len(want)
    for record, gpu in zip(records, want, strict=True):
        assert (record.uuid, record.name) == (gpu["uuid"], gpu["name"])
        if gpu["bus_id"] is not None:
            assert record.bus_id == gpu["bus_id"]
        for field in ("power_w", "temp_c", "clock_hz", "power_limit_w"):
            assert getattr(record, field) == pytest.approx(si(gpu[field])), field
        assert record.util_ratio == pytest.approx(si(gpu["util_ratio"]))  # MIG: N/A → absent
        for field in ("mem_used_bytes", "mem_total_bytes"):
            assert getattr(record, field) == si(gpu[field]), field
        assert record.throttled == gpu["throttled"]


def test_nvidia_smi_query_csv_capture() -> None:
    path = REAL / "nvidia-smi" / "query-gpu-nvidia_gpu_exporter.txt"
    records = parse_csv(path.read_bytes(), path.name)
    for record, gpu in zip(records, expected(path), strict=True):
        assert (record.uuid, record.name, record.bus_id) == (
            gpu["uuid"],
            gpu["name"],
            gpu["bus_id"],
        )
        assert record.serial is None and gpu["serial"] is None  # "[N/A]" is absent
        assert record.driver_version == gpu["driver_version"]
        assert record.mem_used_bytes == si(gpu["mem_used_bytes"])
        assert record.power_w is None and record.temp_c is None  # not queried: absent, never 0


def _leaves(element: ET.Element, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for child in element:
        path = f"{prefix}/{child.tag}"
        if len(child):
            out.update(_leaves(child, path))
        else:
            out[path] = (child.text or "").strip()
    return out


def _unit(text: str) -> str | None:
    m = re.fullmatch(r"-?[0-9.]+ (W|C|MHz|MiB|%)", text)
    return m.group(1) if m else None


@pytest.mark.parametrize(
    ("emulated", "real", "dtd"),
    [
        ("q-x-470.182.03-synthetic.xml", "q-x-telegraf-tesla-t4.xml", "nvsmi_device_v11.dtd"),
        ("q-x-535.129.03-synthetic.xml", "q-x-telegraf-a100-sxm4-v12.xml", "nvsmi_device_v12.dtd"),
        ("q-x-575.51.02-synthetic.xml", "q-x-telegraf-rtx-3060-v12.xml", "nvsmi_device_v12.dtd"),
    ],
)
def test_emulated_nvidia_smi_xml_has_the_real_layout(emulated: str, real: str, dtd: str) -> None:
    """The emulator's ``-q -x`` (its golden files, which tests/emulators/test_nvidia_emulator.py holds the
    emulator to byte for byte) against a real report of the same DTD generation: same DOCTYPE,
    every element the emulator prints exists at the same place in the real one, same units."""
    emu_text = (NVIDIA / emulated).read_text(encoding="utf-8")
    real_text = (REAL / "nvidia-smi" / real).read_text(encoding="utf-8")
    assert f'<!DOCTYPE nvidia_smi_log SYSTEM "{dtd}">' in emu_text
    assert f'<!DOCTYPE nvidia_smi_log SYSTEM "{dtd}">' in real_text
    emu_gpu = ET.fromstring(emu_text).find("gpu")
    real_gpu = ET.fromstring(real_text).find("gpu")
    assert emu_gpu is not None and real_gpu is not None
    emu, got = _leaves(emu_gpu), _leaves(real_gpu)
    missing = [p for p in emu if p not in got and not any(q.startswith(p + "/") for q in got)]
    assert not missing, f"elements the real {real} does not have: {missing}"
    for path, text in emu.items():
        if path in got and _unit(got[path]) is not None and _unit(text) is not None:
            assert _unit(text) == _unit(got[path]), path


def test_emulated_nvidia_smi_csv_header_has_the_real_spelling() -> None:
    """``--format=csv`` header cells and unit spellings, emulated (575 golden) against the
    nvidia_gpu_exporter capture, for the fields both hold."""
    real = (REAL / "nvidia-smi" / "query-gpu-nvidia_gpu_exporter.txt").read_text().splitlines()
    emu = (NVIDIA / "query-gpu-575.51.02-synthetic.csv").read_text().splitlines()
    real_header = real[0].split(", ")
    emu_header = emu[0].split(", ")
    common = [h for h in emu_header if h in real_header]
    assert {"uuid", "name", "pci.bus_id", "serial", "memory.used [MiB]", "driver_version"} <= set(
        common
    )
    used_real = real[1].split(", ")[real_header.index("memory.used [MiB]")]
    used_emu = emu[1].split(", ")[emu_header.index("memory.used [MiB]")]
    assert re.fullmatch(r"\d+ MiB", used_real) and re.fullmatch(r"\d+ MiB", used_emu)
    assert real[1].split(", ")[real_header.index("serial")] == "[N/A]"  # the bracketed spelling


# ------------------------------------------------------------------------------- rbln-smi


def _closed_excerpt(path: Path) -> bytes:
    """The ATOM-Max excerpt ends with the author's ``...``: cut it and close the table with the
    capture's own card rule (the line after the fourth die)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[-1] == "..."
    rule = lines[10]
    assert re.fullmatch(r"\+[-+]+\+", rule)
    return ("\n".join([*lines[:-1], rule]) + "\n").encode()


def _check_rbln(report_devices: Any, want: dict[str, Any]) -> None:
    assert len(report_devices) == len(want["devices"])
    for d, w in zip(report_devices, want["devices"], strict=True):
        assert (d.npu, d.name, d.bus_id, d.pstate) == (
            w["npu"],
            w["name"],
            w["bus_id"],
            w["pstate"],
        )
        assert d.temp_c == si(w["temp_c"])
        assert d.power_w == pytest.approx(si(w["power_w"]))
        util = si(w["util_ratio"])  # a bare percent
        assert d.util_ratio == pytest.approx(None if util is None else util / 100)
        assert d.mem_used_bytes == si(w["mem_used_bytes"])
        assert d.mem_total_bytes == pytest.approx(si(w["mem_total_bytes"]), abs=1)


def test_rbln_smi_atom_ca22_capture() -> None:
    path = REAL / "rbln-smi" / "rbln-smi-kmd3.0.0-atom-ca22.txt"
    report = parse_text_report(path.read_bytes(), path.name)
    want = expected(path)
    assert report.kmd_version == want["kmd_version"]
    _check_rbln(report.devices, want)


def test_rbln_smi_atom_max_every_card_and_die_names() -> None:
    """Defect: the parser stopped at the rule after the first card (rows of the other cards
    dropped) and dies with an empty Name cell became model ``rbln``."""
    path = REAL / "rbln-smi" / "rbln-smi-kmd3.2.2-atom-max-excerpt.txt"
    with pytest.raises(ParseError, match=r"expected a table row, got '\.\.\.'"):
        parse_text_report(path.read_bytes(), path.name)  # the elision is not silently dropped
    raw = _closed_excerpt(path)
    report = parse_text_report(raw, path.name)
    want = expected(path)
    assert report.kmd_version == want["kmd_version"]
    _check_rbln(report.devices, want)  # five dies: the second card's die is there
    samples = parse_text(raw, ts_ns=1)
    assert [s.tag("model") for s in samples] == ["RBLN-CA25"] * 5
    assert [s.field("power_w") for s in samples] == [45.2, None, None, None, 45.6]


def _atom_max_dies() -> tuple[DeviceState, ...]:
    """Two ATOM-Max cards (eight dies), idle, as the captured host's cards were."""

    def die(index: int, bus: str) -> DeviceState:
        return DeviceState(
            index=index, model="atom-max", vendor="rebellions", serial=f"S{index // 4}",
            uuid=f"u{index}", bus_id=bus, t_s=0.0, util_ratio=0.0, power_w=11.3, energy_j=0.0,
            temp_c=40.0, clock_hz=1.0e9, mem_used_bytes=0, mem_total_bytes=16857746637,
            power_limit_w=90.0, card=index // 4,
        )  # fmt: skip

    buses = (5, 6, 7, 8, 12, 13, 14, 15)
    return tuple(die(i, f"0000:{b:02x}:00.0") for i, b in enumerate(buses))


def _columns(line: str) -> list[int]:
    return [i for i, ch in enumerate(line) if ch in "|+"]


def test_emulated_rbln_smi_has_the_real_kmd3_layout() -> None:
    """The emulator's default text table against the KMD 3.x captures: header, rules, pipe
    positions, one rule per card, name and power on a card's first die only, the Context table."""
    state = Snapshot(
        t_s=0.0, wall_ns=1_790_000_000_000_000_000, devices=_atom_max_dies(), host=None
    )
    version = rbln_emu.VERSIONS[rbln_emu.DEFAULT_VERSION]
    rbln_emu._NAMES.setdefault("atom-max", "RBLN-CA25")
    out = rbln_emu.render_text(rbln_emu.view(state, version)).splitlines()
    real = (REAL / "rbln-smi" / "rbln-smi-kmd3.2.2-atom-max-excerpt.txt").read_text().splitlines()
    ca22 = (REAL / "rbln-smi" / "rbln-smi-kmd3.0.0-atom-ca22.txt").read_text().splitlines()
    date = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d{1,2} \d\d:\d\d:\d\d \d{4}"
    assert re.fullmatch(date, out[0]) and re.fullmatch(date, real[0])
    assert out[1:6] == real[1:6]  # frame, title with KMD ver, rule, column header, '=' rule
    rows = out[6:16]
    assert [_columns(r) for r in rows] == [_columns(real[6])] * len(rows)
    cells = [[c.strip() for c in r[1:-1].split("|")] for r in rows if r.startswith("|")]
    real_cells = [[c.strip() for c in r[1:-1].split("|")] for r in real[6:13] if r.startswith("|")]
    assert [c[1] != "" for c in cells] == [True, False, False, False] * 2
    assert [c[1] != "" for c in real_cells] == [True, False, False, False, True]
    assert [c[5] != "" for c in cells] == [c[1] != "" for c in cells]  # power with the name
    assert rows[4] == real[10] and rows[4].startswith("+-")  # the rule after a card
    assert out[-7:] == ca22[-7:]  # the Context table, no process
    assert out[-8] == ca22[-8]  # the device table's closing rule


# ------------------------------------------------------------------------------- ipmitool DCMI


@pytest.mark.parametrize("path", captures("ipmi-dcmi", "ipmitool-*.txt"), ids=lambda p: p.name)
def test_ipmitool_capture(path: Path) -> None:
    reading = ipmi_dcmi.parse_ipmitool(path.read_text(encoding="utf-8"))
    want = expected(path)
    assert reading.current_w == si(want["current_w"])
    assert reading.minimum_w == si(want["minimum_w"])
    assert reading.maximum_w == si(want["maximum_w"])
    assert reading.average_w == si(want["average_w"])
    assert reading.period_s == si(want["period"])  # iLO 4 / AMI: printed after the timestamp
    assert reading.active is (want["state"] == "activated")


def test_openbmc_deactivated_readings_need_the_option() -> None:
    for name in ("ipmitool-openbmc-lib-ipmi_utils.txt", "ipmitool-openbmc-test_ipmi_sensor.txt"):
        path = REAL / "ipmi-dcmi" / name
        raw, want = path.read_bytes(), si(expected(path)["current_w"])
        assert ipmi_dcmi.parse(raw, "ipmitool", 1) == []  # default: deactivated = no reading
        (s,) = ipmi_dcmi.parse(raw, "ipmitool", 1, deactivated_is_valid=True)
        assert s.field("power_w") == want and s.tag("source") == "dcmi"
    config = ipmi_dcmi.Config(deactivated_is_valid=True)
    assert config.deactivated_is_valid and not ipmi_dcmi.Config().deactivated_is_valid


def test_emulated_ipmitool_has_the_real_layout() -> None:
    """The emulated ``dcmi power reading`` against the iLO 4 capture: same keys in the same order,
    the watts right-aligned to the same column, the same period and state spellings."""
    real = (REAL / "ipmi-dcmi" / "ipmitool-hp-ilo4-2.82.txt").read_text().splitlines()
    emu = ipmitool_emu.render(221.0, None, 1_700_000_000_000_000_000).splitlines()
    keys = [ln.split(":")[0].strip() for ln in emu if ":" in ln]
    key = r"(?:^\s*|\s{2,})([A-Z][A-Za-z ]*?[a-z]):\s"
    real_keys = [k for ln in real for k in re.findall(key, ln)]
    assert keys == [k for k in real_keys if k in keys] and len(keys) == 7
    watts = [ln.index(" Watts") for ln in emu if ln.endswith(" Watts")]
    assert watts == [ln.index(" Watts") for ln in real if ln.endswith(" Watts")]
    assert any(re.search(r"\d{8} Seconds\.$", ln) for ln in emu)
    assert emu[0] == real[0] == ""  # the leading blank line


# ------------------------------------------------------------------------------- Redfish


def _doc(name: str) -> bytes:
    return (REAL / "redfish" / f"dmtf-public-rackmount1-Chassis-1U-{name}.json").read_bytes()


def test_redfish_dmtf_mockup_environment_metrics_and_power() -> None:
    env = redfish.parse_environment_metrics(_doc("EnvironmentMetrics"))
    want = expected(REAL / "redfish" / "dmtf-public-rackmount1-Chassis-1U-EnvironmentMetrics.json")
    assert env == redfish.RedfishReading(float(want["power_w"]), None)
    power = redfish.parse_power(_doc("Power"))
    want = expected(REAL / "redfish" / "dmtf-public-rackmount1-Chassis-1U-Power.json")
    assert power == redfish.RedfishReading(float(want["power_w"]), None)
    link = redfish.parse_power_subsystem(_doc("PowerSubsystem"))
    want = expected(REAL / "redfish" / "dmtf-public-rackmount1-Chassis-1U-PowerSubsystem.json")
    assert link == want["power_supplies"]


def test_redfish_resource_type_is_checked_exactly() -> None:
    """Defect: ``.Power`` was matched as a substring, so a PowerSubsystem (or PowerSupply) document
    passed as ``Power`` and gave an empty reading."""
    with pytest.raises(ParseError, match=r"#PowerSubsystem\.v1_1_0\.PowerSubsystem"):
        redfish.parse_power(_doc("PowerSubsystem"))
    with pytest.raises(ParseError, match=r"expected @odata\.type #Power"):
        redfish.parse_power(b'{"@odata.type": "#PowerSupply.v1_5_0.PowerSupply"}')
    with pytest.raises(ParseError, match=r"expected @odata\.type #EnvironmentMetrics"):
        redfish.parse_environment_metrics(_doc("Sensors-TotalEnergy"))
    with pytest.raises(ParseError, match=r"expected @odata\.type #PowerSubsystem"):
        redfish.parse_power_subsystem(_doc("Power"))


def test_redfish_energy_sensor_capture() -> None:
    """The mockup's TotalEnergy sensor: the kWh reading an EnvironmentMetrics.EnergykWh excerpt
    points to (``DataSourceUri``), in the unit the collector converts."""
    doc = json.loads(_doc("Sensors-TotalEnergy"))
    want = expected(REAL / "redfish" / "dmtf-public-rackmount1-Chassis-1U-Sensors-TotalEnergy.json")
    assert (doc["ReadingType"], doc["Reading"], doc["ReadingUnits"]) == (
        want["reading_type"], want["reading"], want["units"],
    )  # fmt: skip
    body = json.dumps(
        {"@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
         "EnergykWh": {"DataSourceUri": doc["@odata.id"], "Reading": doc["Reading"]}}
    ).encode()  # fmt: skip
    assert redfish.parse_environment_metrics(body).energy_j == pytest.approx(325675 * 3.6e6)


def _shape(value: Any) -> Any:
    """Member names and JSON kinds of a document (what the structural test compares)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


def test_emulated_redfish_has_the_dmtf_layout() -> None:
    """The emulated BMC's resources against DMTF's mockup: the same ``@odata.type`` (schema
    version included) and, for the members the collector reads, the same nesting and kinds."""
    env = render_environment_metrics("1U", 374.0, 1.0e9)
    dmtf_env = json.loads(_doc("EnvironmentMetrics"))
    assert env["@odata.type"] == dmtf_env["@odata.type"]
    assert _shape(env["PowerWatts"]) == {"DataSourceUri": "str", "Reading": "float"}
    assert set(_shape(dmtf_env["PowerWatts"])) == {"DataSourceUri", "Reading"}
    power = render_power("1U", 344.0, None)
    dmtf_power = json.loads(_doc("Power"))
    assert power["@odata.type"] == dmtf_power["@odata.type"]
    emu_control = power["PowerControl"]
    assert isinstance(emu_control, list)
    assert set(emu_control[0]) <= set(dmtf_power["PowerControl"][0]) | {"@odata.id"}
    assert set(emu_control[0]["PowerMetrics"]) == set(dmtf_power["PowerControl"][0]["PowerMetrics"])
    sub = render_power_subsystem("1U")
    dmtf_sub = json.loads(_doc("PowerSubsystem"))
    assert sub["@odata.type"] == dmtf_sub["@odata.type"]
    assert sub["PowerSupplies"] == dmtf_sub["PowerSupplies"]
    assert set(sub) <= set(dmtf_sub) | {"Id", "Name"}
    metrics = render_power_supply_metrics("1U", "Bay1", 100.0, 3.6e6)
    assert metrics["@odata.type"] == "#PowerSupplyMetrics.v1_0_1.PowerSupplyMetrics"  # the mockup's
    chassis = json.loads(_doc("index"))
    for link in ("PowerSubsystem", "EnvironmentMetrics", "Power"):
        assert link in chassis  # what the emulated chassis links too
    assert "Power@Redfish.Deprecated" in chassis


# ------------------------------------------------------------------------------- Triton


def test_triton_ensemble_capture_counts_client_requests_once() -> None:
    """Defect: the serving collector summed the ensemble and each composing model (59 client
    requests counted as 177)."""
    path = REAL / "serving" / "triton-trtllm-ensemble-issue49-excerpt.txt"
    expo = serving.parse_exposition(path.read_text(encoding="utf-8"), path.name)
    want = expected(path)
    for name in ("nv_inference_request_success", "nv_inference_count"):
        got = {s.labels["model"]: s.value for s in expo.samples if s.name == name}
        assert got == want[name]
    steps = frozenset(want["ensemble_steps"]["ensemble"])
    naive = serving.snapshot(expo, "triton")
    assert naive.requests_total == 177  # what the collector did before: three times too much
    snap = serving.snapshot(expo, "triton", composing=steps)
    assert snap.requests_total == want["nv_inference_request_success"]["ensemble"]
    assert snap.inferences_total == want["nv_inference_count"]["ensemble"]
    assert snap.model_names == frozenset({"ensemble"})
    # a composing model asked for by name is still counted
    assert serving.snapshot(expo, "triton", "preprocessing", composing=steps).requests_total == 59


def test_triton_model_config_names_the_steps() -> None:
    """``GET /v2/models/<name>/config`` of the TensorRT-LLM ensemble (its config.pbtxt steps)."""
    steps = expected(REAL / "serving" / "triton-trtllm-ensemble-issue49-excerpt.txt")[
        "ensemble_steps"
    ]["ensemble"]
    emulated = TritonEnsemble("ensemble", steps)
    config = json.dumps(emulated.config("ensemble")).encode()
    assert serving.parse_model_config(config, "ensemble") == tuple(steps)
    for step in steps:
        assert serving.parse_model_config(json.dumps(emulated.config(step)).encode(), step) == ()
    with pytest.raises(ParseError, match=r"step\[0\]: expected a model_name"):
        serving.parse_model_config(b'{"ensemble_scheduling": {"step": [{}]}}', "x")


def test_emulated_triton_ensemble_has_the_real_layout() -> None:
    """The emulated ensemble's exposition against the capture: the same HELP texts and family
    order, one line per model in each family, the ensemble and every step counting each request."""
    path = REAL / "serving" / "triton-trtllm-ensemble-issue49-excerpt.txt"
    real = path.read_text(encoding="utf-8").splitlines()
    emulated = TritonEnsemble("ensemble", ["preprocessing", "tensorrt_llm", "postprocessing"])
    emulated.advance(59.0, 0.2, 0.5, 0.4)
    text = emulated.render().splitlines()
    real_help = [ln for ln in real if ln.startswith("# HELP")]
    emu_help = [ln for ln in text if ln.startswith("# HELP")]
    assert emu_help[:1] == real_help[:1] and real_help[2] in emu_help
    expo = serving.parse_exposition("\n".join(text), "emulated")
    success = {s.labels["model"]: s.value for s in expo.samples if s.name == serving.TRITON_SUCCESS}
    assert success == {
        "ensemble": 59,
        "preprocessing": 59,
        "tensorrt_llm": 59,
        "postprocessing": 59,
    }


# ------------------------------------------------------------------------------- sysfs trees


def test_powercap_capture(tmp_path: Path) -> None:
    root = unpacked("powercap", tmp_path)
    want = expected(REAL / "powercap" / "node_exporter-sys")
    samples = asyncio.run(rapl.PLUGIN.create("rapl", rapl.Config(root=str(root))).collect())
    got = {s.tag("zone"): s.field("energy_j") for s in samples}
    assert got == {w["zone"]: int(w["energy_uj"]) / 1e6 for w in want}


def test_hwmon_capture_has_no_power_and_does_not_fail(tmp_path: Path) -> None:
    root = unpacked("hwmon", tmp_path)
    want = expected(REAL / "hwmon" / "node_exporter-sys")
    c = hwmon.HwmonCollector("hwmon", hwmon.Config(root=str(root)))
    assert c.collect_sync() == want["host_samples"]
    assert c.chip_errors == {}
    names = sorted(
        p.read_text().strip() for p in root.glob("sys/class/hwmon/*/name") if p.is_file()
    )
    assert names == want["chips_with_name"]


def test_hwmon_one_malformed_chip_costs_that_chip_only(tmp_path: Path) -> None:
    """Defect: one chip whose ``name`` fails validation failed the whole hwmon poll. The real tree,
    copied, gets two chips added by this test: a power meter and a chip with a malformed name."""
    root = unpacked("hwmon", tmp_path)
    meter = root / "sys" / "class" / "hwmon" / "hwmon20"
    meter.mkdir()
    (meter / "name").write_text("power_meter\n")
    (meter / "power1_average").write_text("345000000\n")
    bad = root / "sys" / "class" / "hwmon" / "hwmon21"
    bad.mkdir()
    (bad / "name").write_text("bad name, with=chars\n")
    (bad / "power1_input").write_text("1000000\n")
    c = hwmon.HwmonCollector("hwmon", hwmon.Config(root=str(root)))
    (s,) = c.collect_sync()
    assert (s.tag("zone"), s.field("power_w")) == ("power_meter/power1", 345.0)
    (path, message) = next(iter(c.chip_errors.items()))
    assert path.endswith("hwmon21") and "hwmon21/name: expected a chip name" in message


def _masked(text: str) -> list[str]:
    """Lines with every number and timestamp replaced and each run of blanks one tab: the layout of
    a text (the column alignment is checked by test_emulated_ipmitool_has_the_real_layout)."""
    stamp = (
        r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d [AP]M [A-Z]{3}|\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"
    )
    masked = (re.sub(r"\d+", "N", re.sub(stamp, "T", ln)) for ln in text.split("\n"))
    return [re.sub(r" {2,}", "\t", ln) for ln in masked]  # widths differ with the numbers


@pytest.mark.parametrize(
    ("layout", "capture"),
    [
        ("one-line", "ipmitool-hp-ilo4-2.82.txt"),
        ("one-line", "ipmitool-ami-asus-esc8000a-e12.txt"),
        ("openbmc", "ipmitool-openbmc-lib-ipmi_utils.txt"),
    ],
)
def test_emulated_ipmitool_layouts_are_the_real_ones(layout: str, capture: str) -> None:
    """The emulated BMC variants against the captures: every line the same once numbers and
    timestamps are masked (the OpenBMC capture lost its indentation in the docstring it sits in)."""
    real = (REAL / "ipmi-dcmi" / capture).read_text(encoding="utf-8")
    emu = ipmitool_emu.render(234.0, None, 1_790_000_000_000_000_000, layout)
    if layout == "openbmc":
        assert [ln.strip() for ln in _masked(emu) if ln.strip()] == _masked(real.strip())
        assert "Thu Jan  1 00:00:00 1970" in emu and "deactivated" in emu
    else:
        assert _masked(emu) == _masked(real)
    reading = ipmi_dcmi.parse_ipmitool(emu)
    assert reading.current_w == 234 and reading.active is (layout != "openbmc")


class _MockupHandler(http.server.BaseHTTPRequestHandler):
    """Serves DMTF's public-rackmount1 files of tests/fixtures/real/redfish by their Redfish path."""

    def do_GET(self) -> None:  # the http.server hook's name
        prefix = "/redfish/v1/Chassis/1U"
        name = None
        if self.path == prefix:
            name = "index"
        elif self.path.startswith(prefix + "/"):
            name = self.path[len(prefix) + 1 :].replace("/", "-")
        path = REAL / "redfish" / f"dmtf-public-rackmount1-Chassis-1U-{name}.json"
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if name is None or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def test_redfish_collector_against_the_dmtf_mockup() -> None:
    """The collector, ``resource: auto``, against DMTF's mockup served over HTTP: the chassis watts
    of EnvironmentMetrics; no energy, because the PowerSubsystem's second supply publishes no
    metrics (a sum over the first alone would be too low) and EnvironmentMetrics has none."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MockupHandler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        c = redfish.PLUGIN.create("bmc", redfish.Config(url=url, chassis="1U"))
        (s,) = asyncio.run(c.collect())
        want = expected(
            REAL / "redfish" / "dmtf-public-rackmount1-Chassis-1U-EnvironmentMetrics.json"
        )
        assert (s.field("power_w"), s.field("energy_j"), s.tag("zone")) == (
            want["power_w"],
            None,
            "1U",
        )
        supplies = redfish.PLUGIN.create(
            "bmc", redfish.Config(url=url, chassis="1U", resource="subsystem")
        )
        assert asyncio.run(supplies.collect()) == []  # incomplete: no sum rather than a low one
        metrics = (
            REAL
            / "redfish"
            / "dmtf-public-rackmount1-Chassis-1U-PowerSubsystem-PowerSupplies-Bay1-Metrics.json"
        )
        one = redfish.parse_power_supply_metrics(metrics.read_bytes())
        assert one == redfish.RedfishReading(937.4, pytest.approx(325675 * 3.6e6))  # type: ignore[arg-type]
        requests = server.requests  # type: ignore[attr-defined]
        assert "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay2" in requests
        assert "/redfish/v1/Chassis/1U/Power" not in requests  # watts known: no deprecated GET
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------- vLLM


def _vllm_example() -> str:
    path = REAL / "serving" / "vllm-docs-design-metrics-example.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(ln for ln in lines if ln != "...") + "\n"  # the docs' elisions


def test_vllm_docs_example() -> None:
    want = expected(REAL / "serving" / "vllm-docs-design-metrics-example.txt")
    expo = serving.parse_exposition(_vllm_example(), "vllm docs")
    snap = serving.snapshot(expo, "vllm")
    assert snap.requests_total == sum(want["vllm:request_success_total"].values())
    assert snap.tokens_total == want["vllm:generation_tokens_total"]
    assert snap.latency_buckets is want["e2e_latency_histogram"]  # only TTFT in the example
    assert snap.model_names == frozenset({want["model_name"]})


def test_emulated_vllm_has_the_real_names() -> None:
    """The emulated vLLM runtime against vLLM's docs example: the same HELP texts and types for the
    families both print, the same finished reasons, values written as prometheus_client does."""
    prefix, model = RUNTIMES["vllm"]
    emulated = ServingModel(2, model_name=model, prefix=prefix).render()
    real = _vllm_example()
    real_meta = {ln for ln in real.splitlines() if ln.startswith("# ")}
    emu_meta = {ln for ln in emulated.splitlines() if ln.startswith("# ")}
    shared = {
        "vllm:num_requests_running",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
    }
    for name in shared:
        got = {ln for ln in real_meta if ln.split()[2] == name}
        assert len(got) == 2 and got <= emu_meta, name
    reasons = {
        s.labels["finished_reason"]
        for text in (real, emulated)
        for s in serving.parse_exposition(text, "x").samples
        if s.name == "vllm:request_success_total"
    }
    assert reasons == {"stop", "length", "abort"}
    value = re.compile(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", re.MULTILINE)
    assert all(v.endswith(".0") for v in value.findall(real) + value.findall(emulated))


def test_the_repository_tracks_no_symlinks() -> None:
    """A tracked symlink loop (a /sys tree) makes setuptools' file finder walk forever when the
    package is built from a clean clone; sysfs trees are committed as archives instead."""
    out = subprocess.run(
        ["git", "ls-files", "-s"], cwd=REAL.parents[2], capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("120000")]
    # the only links: kwatt/<room> -> ../<room>, the import namespace (README, "Development")
    root = REAL.parents[2]
    for link in links:
        target = (root / link).readlink()
        assert link.startswith("kwatt/") and str(target) == f"../{link.removeprefix('kwatt/')}", (
            link,
            target,
        )
