"""kwatt.analytics.ppw, verdict and report on a synthetic fleet whose perf-per-watt is known exactly;
``kwatt report`` end to end (file and InfluxDB), the efficiency measurement, bad input."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kwatt.analytics.findings import build_report
from kwatt.analytics.load import from_points, load_influx, load_lp_file
from kwatt.analytics.ppw import Level, Options, analyze
from kwatt.analytics.render import (
    efficiency_lines,
    render_html,
    render_json,
    render_markdown,
    render_table,
)
from kwatt.analytics.targets import load_targets
from kwatt.analytics.verdict import cost_of, verdicts
from kwatt.cli import main as kwatt
from kwatt.demo.services import Influxd
from kwatt.wire.lineproto import parse_line

T0 = 1_760_000_000


def fleet_lines(
    seconds: int = 600,
    *,
    gpu: bool = True,
    work_offset_s: float = 0.0,
    npu_tok_per_s: float = 400.0,
) -> list[str]:
    """Two NPU nodes (2 × furiosa/rngd at 100 W, power only) and one GPU node (1 × nvidia/h100 at
    400 W, energy counter) serving ``chat``; tokens at ``npu_tok_per_s`` per NPU node and 400/s on
    the GPU node: NPU 2 tok/J, GPU 1 tok/J, exactly."""
    out = []
    for k in range(seconds + 1):
        ts = (T0 + k) * 10**9
        for node in ("npu1", "npu2"):
            for dev in (f"{node}d0", f"{node}d1"):
                out.append(
                    f"accel,device={dev},model=rngd,node={node},site=s1,vendor=furiosa "
                    f"power_w=100,util_ratio=0.5 {ts}"
                )
        if gpu:
            out.append(
                "accel,device=g0,model=h100,node=gpu1,site=s1,vendor=nvidia "
                f"energy_j={400.0 * k},power_w=400,util_ratio=0.9 {ts}"
            )
        wts = int((T0 + k + work_offset_s) * 10**9)
        for node, rate in (("npu1", npu_tok_per_s), ("npu2", npu_tok_per_s), ("gpu1", 400.0)):
            if node == "gpu1" and not gpu:
                continue
            out.append(
                f"serving,node={node},runtime=vllm,service=chat,site=s1 "
                f"tokens_total={int(rate * k)}i,requests_total={k}i,"
                f"latency_p50_s=0.2,latency_p99_s={0.5 + k / seconds} {wts}"
            )
    return out


def write_lp(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_perf_per_watt_and_measured_baseline_verdict(tmp_path: Path) -> None:
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines()))
    targets = load_targets()
    a = analyze(ss, 0, 2e9)
    assert (a.start_s, a.end_s) == (T0, T0 + 600)
    npu = a.select(Level.DEVICE_CLASS, device_class="furiosa/rngd")[0]
    gpu = a.select(Level.DEVICE_CLASS, device_class="nvidia/h100")[0]
    assert npu.devices == 4 and npu.energy_method == "power_trapezoid"
    assert npu.work_per_j == pytest.approx(2.0) and npu.mean_power_w == pytest.approx(400.0)
    assert gpu.work_per_j == pytest.approx(1.0) and gpu.energy_method == "counter"
    assert npu.j_per_work == pytest.approx(0.5) and npu.throughput_per_s == pytest.approx(800.0)
    assert npu.latency_p50_s == 0.2 and npu.latency_p99_s == pytest.approx(1.5)
    assert npu.coverage == pytest.approx(1.0) and npu.aligned
    svc = a.select(Level.SERVICE, service="chat")[0]
    assert svc.work == pytest.approx(1200 * 600) and svc.energy_j == pytest.approx(800 * 600)
    assert svc.work_per_j == pytest.approx(1.5)
    assert [r.name for r in a.select(Level.NODE)] == ["gpu1", "npu1", "npu2"]
    fleet = a.select(Level.FLEET)[0]
    assert fleet.work_per_j == pytest.approx(1.5) and fleet.devices == 5
    assert {d.device.device for d in a.devices if d.service == "chat"} == {
        "g0",
        "npu1d0",
        "npu1d1",
        "npu2d0",
        "npu2d1",
    }
    [v] = verdicts(a, targets)
    assert v.baseline_kind == "measured" and v.baseline_name == "nvidia/h100"
    assert v.workload == "llm_llama31_8b" and v.workload_assumed is not None
    assert v.ratio_vs_baseline == pytest.approx(2.0)
    assert v.target_ratio == 1.0 and v.meets_target is True
    assert v.margin == pytest.approx(1.0) and v.margin_pct == pytest.approx(100.0)
    [v3] = verdicts(a, targets, "phase3_nvm_analog_pim")
    assert v3.meets_target is False and v3.margin == pytest.approx(-8.0)
    # money and carbon: 400 W for 600 s = 240 kJ = 0.0667 kWh; 0.5 J/token
    c = cost_of(npu, targets)
    assert c.energy_kwh == pytest.approx(240_000 / 3.6e6)
    assert c.cost == pytest.approx(c.energy_kwh * 170.0) and c.co2_kg == pytest.approx(
        c.energy_kwh * 0.4594
    )
    assert c.per_label == "1M tokens" and c.kwh_per == pytest.approx(0.5e6 / 3.6e6)


def test_published_reference_when_no_gpu_was_measured(tmp_path: Path) -> None:
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines(gpu=False, npu_tok_per_s=3000)))
    a = analyze(ss, 0, 2e9)
    [v] = verdicts(a, load_targets())
    assert v.baseline_kind == "published_reference" and v.baseline_name == "nvidia_h100"
    assert v.baseline_work_per_j == 18.9 and "tdp" in v.baseline_note
    assert v.ratio_vs_baseline == pytest.approx(15.0 / 18.9)
    assert v.meets_target is False and v.margin < 0


def test_short_window_and_skew_get_no_verdict(tmp_path: Path) -> None:
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines(seconds=30)))
    a = analyze(ss, 0, 2e9)
    assert not any(r.aligned for r in a.rows if r.level is Level.DEVICE_CLASS)
    assert "shorter than" in a.select(Level.DEVICE_CLASS)[0].note
    assert verdicts(a, load_targets())[0].meets_target is None
    # the work samples 5 s late: power and work windows disagree beyond the 0.8 s bound
    ss = load_lp_file(write_lp(tmp_path / "g.lp", fleet_lines(work_offset_s=5.0)))
    a = analyze(ss, 0, 2e9)
    npu = a.select(Level.DEVICE_CLASS, device_class="furiosa/rngd")[0]
    assert not npu.aligned and npu.skew_s == pytest.approx(5.0) and "skew" in npu.note
    a2 = analyze(ss, 0, 2e9, Options(max_skew_s=10.0))
    assert a2.select(Level.DEVICE_CLASS, device_class="furiosa/rngd")[0].aligned


def test_a_sampling_gap_lowers_coverage_not_perf_per_watt(tmp_path: Path) -> None:
    lines = [
        ln
        for ln in fleet_lines()
        if not (
            ln.startswith("accel,device=npu1d0") and 200 <= int(ln.split()[-1]) // 10**9 - T0 < 260
        )
    ]
    a = analyze(load_lp_file(write_lp(tmp_path / "f.lp", lines)), 0, 2e9)
    d = next(d for d in a.devices if d.device.device == "npu1d0")
    assert d.gaps == 1 and d.coverage == pytest.approx(539 / 600)
    npu = a.select(Level.DEVICE_CLASS, device_class="furiosa/rngd")[0]
    assert npu.work_per_j == pytest.approx(2.0)
    assert npu.coverage == pytest.approx((3 + 539 / 600) / 4)


def test_per_device_work_and_service_filter(tmp_path: Path) -> None:
    lines = fleet_lines(gpu=False)
    for k in range(601):
        lines.append(
            f"serving,device=npu1d0,node=npu1,runtime=vllm,service=vision,site=s1 "
            f"inferences_total={50 * k}i {(T0 + k) * 10**9}"
        )
    # npu1d0 is tagged with its own service on its accel series
    lines = [ln.replace("accel,device=npu1d0,", "accel,device=npu1d0,") for ln in lines]
    ss = load_lp_file(write_lp(tmp_path / "f.lp", lines))
    a = analyze(ss, 0, 2e9)
    dev = a.select(Level.DEVICE, service="vision")
    assert len(dev) == 1 and dev[0].work_per_j == pytest.approx(0.5)
    assert a.select(Level.FLEET)[0].work_unit is None  # tokens and inferences do not add up
    only = ss.filter(service="vision")
    assert {s.key.measurement for s in only.series} == {"serving", "accel"}
    assert {s.tag("node") for s in only.series} == {"npu1"}


def test_renderings(tmp_path: Path) -> None:
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines()))
    r = build_report(ss, 0, 2e9, load_targets())
    md = render_markdown(r)
    assert "| chat | furiosa/rngd | 4 | tokens |" in md and "PASS" in md
    doc = json.loads(render_json(r))
    v = next(
        v
        for v in doc["verdicts"]
        if v["phase"] == "phase1_npu" and v["device_class"] == "furiosa/rngd"
    )
    assert v["ratio_vs_baseline"] == pytest.approx(2.0) and v["meets_target"] is True
    assert v["energy_method"] == "power_trapezoid" and v["coverage"] == pytest.approx(1.0)
    assert {x["level"] for x in doc["rows"]} == {"node", "device_class", "service", "fleet"}
    assert doc["economics"]["tariff_status"] == "assumption"
    page = render_html(r)
    assert "<script" not in page and "src=" not in page and "href=" not in page
    svgs = page.count("<svg")
    assert svgs == 3
    body = page[page.index("<body>") : page.index("</html>")]
    ET.fromstring(body.replace("&nbsp;", " "))  # well-formed XHTML-ish: SVG parses
    assert "target furiosa/rngd" in page
    buf = io.StringIO()
    render_table(r, buf)
    assert "Perf-per-watt by service and device class" in buf.getvalue()
    assert "PASS" in buf.getvalue()


def test_efficiency_lines_follow_design_section_4(tmp_path: Path) -> None:
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines()))
    r = build_report(ss, 0, 2e9, load_targets())
    body = efficiency_lines(r).decode()
    points = [parse_line(ln) for ln in body.splitlines()]  # the wire's own validator
    assert len(points) == 4  # 3 nodes + the service
    by_node = {dict(p.tags).get("node"): dict(p.fields) for p in points}
    assert by_node["npu1"]["work_per_j"] == pytest.approx(2.0)
    assert by_node["npu1"]["ratio_vs_baseline"] == pytest.approx(2.0)
    assert by_node["npu1"]["meets_target"] == 1 and by_node["npu1"]["target_ratio"] == 1.0
    assert "ratio_vs_baseline" not in by_node["gpu1"]
    assert by_node[None]["work_per_j"] == pytest.approx(1.5)
    assert all(dict(p.tags)["window"] == "600s" for p in points)


def test_cli_file_formats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lp = write_lp(tmp_path / "f.lp", fleet_lines())
    assert kwatt(["report", "--input", str(lp), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == str(lp)
    out = tmp_path / "r.html"
    assert kwatt(["report", "--input", str(lp), "--format", "html", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert kwatt(["report", "--input", str(lp), "--format", "md", "--node", "npu1"]) == 0
    md = capsys.readouterr().out
    assert "npu2" not in md and "npu1" in md
    bad = tmp_path / "t.yaml"
    bad.write_text("services: {chat: nothing}\n", encoding="utf-8")
    assert kwatt(["report", "--input", str(lp), "--targets", str(bad)]) == 2
    assert "t.yaml: services.chat: expected a workload name" in capsys.readouterr().err
    broken = tmp_path / "b.lp"
    bad_line = fleet_lines()[0].replace("power_w=100", "power_w=oops")
    broken.write_text(fleet_lines()[0] + "\n" + bad_line + "\n", encoding="utf-8")
    assert kwatt(["report", "--input", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "b.lp:2:" in err and "power_w" in err and "expected a float" in err
    assert kwatt(["report", "--input", str(lp), "--write-efficiency"]) == 2
    assert "--write-efficiency needs --influx" in capsys.readouterr().err
    assert kwatt(["report", "--input", str(lp), "--counter-wrap", "nvidia"]) == 2
    assert "VENDOR[/MODEL]=JOULES" in capsys.readouterr().err


@pytest.mark.services
def test_influx_chunked_load_report_and_efficiency(
    influxd: Influxd, capsys: pytest.CaptureFixture[str]
) -> None:
    db = "analytics_report_test"
    influxd.create_database(db)
    lines = fleet_lines()
    for i in range(0, len(lines), 2000):
        influxd.write(db, "\n".join(lines[i : i + 2000]))
    progress: list[tuple[int, int, int]] = []
    ss = load_influx(
        influxd.url,
        db,
        since_ns=T0 * 10**9,
        until_ns=(T0 + 601) * 10**9,
        chunk_s=100,
        progress=lambda d, t, n: progress.append((d, t, n)),
    )
    assert [p[0] for p in progress] == list(range(1, 8)) and progress[-1][1] == 7
    ref = from_points(
        ((p.measurement, p.tags, p.fields, p.ts_ns) for p in map(parse_line, lines)), "ref"
    )
    assert len(ss.series) == len(ref.series)
    for a, b in zip(ss.series, ref.series, strict=True):
        assert a.key == b.key and (a.t_ns == b.t_ns).all() and (a.values == b.values).all()
    since, until = str(T0), str(T0 + 600)
    args = ["report", "--influx", influxd.url, "--database", db, "--since", since, "--until", until]
    assert kwatt([*args, "--format", "json", "--write-efficiency", "--chunk", "120"]) == 0
    doc = json.loads(capsys.readouterr().out)
    v = next(v for v in doc["verdicts"] if v["phase"] == "phase1_npu")
    assert v["ratio_vs_baseline"] == pytest.approx(2.0)
    rows = influxd.query(db, 'SELECT * FROM "efficiency" GROUP BY *')
    got = {r.tags.get("node", ""): r.rows()[0] for r in rows}
    assert set(got) == {"npu1", "npu2", "gpu1", ""}
    assert got["npu1"]["meets_target"] == 1 and math.isclose(got["npu1"]["work_per_j"], 2.0)
    # rolling mode: two cycles, the efficiency points are rewritten (same window: deduplicated)
    assert (
        kwatt([*args, "--format", "json", "--write-efficiency", "--every", "0.1", "--cycles", "2"])
        == 0
    )
    capsys.readouterr()
    assert len(influxd.query(db, 'SELECT * FROM "efficiency" GROUP BY *')) == 4
    # a bad database URL is a clear error, not a traceback
    assert (
        kwatt(["report", "--influx", "http://127.0.0.1:9", "--since", since, "--until", until]) == 2
    )
    assert "127.0.0.1:9" in capsys.readouterr().err
    # kwatt analyze: the same analysis, efficiency always written; --once runs one cycle
    db2 = "analytics_analyze_test"
    influxd.create_database(db2)
    for i in range(0, len(lines), 2000):
        influxd.write(db2, "\n".join(lines[i : i + 2000]))
    an = ["analyze", "--influx", influxd.url, "--database", db2, "--since", since, "--until", until]
    assert kwatt([*an, "--once", "--format", "json"]) == 0
    capsys.readouterr()
    assert len(influxd.query(db2, 'SELECT * FROM "efficiency" GROUP BY *')) == 4
    assert kwatt(["analyze", "--input", "x.lp", "--once"]) == 2
    assert "--influx is required" in capsys.readouterr().err


def test_tops_per_w_from_ops_per_unit_in_a_targets_file(tmp_path: Path) -> None:
    f = tmp_path / "ops.yaml"
    f.write_text(
        "services: {chat: llm_llama31_8b}\n"
        "workloads:\n  llm_llama31_8b:\n    ops_per_unit:\n"
        "      {value: 16000000000, status: assumption, why: '2 ops per parameter per token, 8e9 parameters'}\n",
        encoding="utf-8",
    )
    ss = load_lp_file(write_lp(tmp_path / "f.lp", fleet_lines()))
    targets = load_targets(f)
    [v] = verdicts(analyze(ss, 0, 2e9), targets)
    assert v.workload_assumed is None
    assert v.tops_per_w == pytest.approx(2.0 * 16e9 / 1e12)
    assert v.chip_floor_tflops_per_w == 2.0 and v.meets_chip_floor is False
    [none] = verdicts(analyze(ss, 0, 2e9), load_targets())
    assert none.tops_per_w is None and none.meets_chip_floor is None


def test_configured_workload_picks_its_unit_of_work(tmp_path: Path) -> None:
    lines = [
        ln.replace("requests_total=", "inferences_total=") if ln.startswith("serving") else ln
        for ln in fleet_lines()
    ]
    f = tmp_path / "t.yaml"
    f.write_text("services: {chat: resnet50_offline}\n", encoding="utf-8")
    r = build_report(load_lp_file(write_lp(tmp_path / "f.lp", lines)), 0, 2e9, load_targets(f))
    npu = r.analysis.select(Level.DEVICE_CLASS, device_class="furiosa/rngd")[0]
    assert npu.work_unit is not None and npu.work_unit.value == "inferences"
    assert npu.work_per_j == pytest.approx(2 * 600 / (400 * 600))
    [v] = r.verdicts
    assert v.workload == "resnet50_offline" and v.target_ratio == 2.0
    assert v.ratio_vs_baseline == pytest.approx(
        2.0
    )  # NPUs: 2 inferences/s on 400 W; GPU: 1 on 400 W
    assert v.latency_p99_s_max == 0.015 and v.latency_ok is False and v.meets_target is False
    # without the mapping the same data is judged as LLM serving (tokens)
    r2 = build_report(load_lp_file(tmp_path / "f.lp"), 0, 2e9, load_targets())
    assert r2.verdicts[0].work_unit.value == "tokens"


def test_every_needs_influx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lp = write_lp(tmp_path / "f.lp", fleet_lines(seconds=60))
    assert kwatt(["report", "--input", str(lp), "--every", "5"]) == 2
    assert "--every needs --influx" in capsys.readouterr().err


def test_degenerate_inputs_render() -> None:
    accel = (("device", "d"), ("model", "m"), ("node", "n"), ("site", "x"), ("vendor", "v"))
    serving = (("node", "n"), ("runtime", "r"), ("service", "s"), ("site", "x"))
    sets = [
        from_points([], "empty"),
        from_points([("serving", serving, [("tokens_total", 5.0)], 10**18)], "one sample"),
        from_points(
            [("accel", accel, [("power_w", 5.0)], 10**18 + i * 10**9) for i in range(3)], "no work"
        ),
    ]
    for ss in sets:
        r = build_report(ss, 0, 2e9, load_targets())
        assert r.verdicts == ()
        json.loads(render_json(r))
        assert "<svg" in render_html(r) or "no data" in render_html(r)
        render_markdown(r)
        assert efficiency_lines(r) == b""
