"""The emulated RNGD node: sysfs layout (reference §1.3), physics, determinism, /metrics, CLI.

These tests read the emulator's output with their own small checks, never with the collectors'
parsers, so a format mistake shared by an emulator and its collector cannot hide.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kwatt.emulators.rngd import (
    CLOCK_NOMINAL_MHZ,
    DRAM_TOTAL_BYTES,
    PE_COUNT,
    TDP_W,
    THERMAL_RESISTANCE_K_PER_W,
    THROTTLE_APP_POWER_CAP,
    THROTTLE_IDLE,
    THROTTLE_THERMAL_SLOWDOWN,
    RngdDevice,
    Workload,
)
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.emulators.truth import RngdTruthRecord, read_rngd_log

REPO = Path(__file__).resolve().parents[2]


def run_node(tmp_path: Path, times: list[float], **kwargs: Any) -> list[RngdTruthRecord]:
    """Start a node in tmp_path/root, step it at ``times``, close it; return its truth records."""

    async def go() -> list[RngdTruthRecord]:
        async with EmulatedNode(tmp_path / "root", **kwargs) as node:
            return [node.step(t) for t in times]

    return asyncio.run(go())


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def mgmt(root: Path, n: int) -> Path:
    return root / "sys" / "class" / "rngd_mgmt" / f"rngd!npu{n}mgmt"


def pe(root: Path, n: int, m: int) -> Path:
    return root / "sys" / "class" / "rngd_mgmt" / f"rngd!npu{n}pe{m}"


def hwmon(root: Path, bdf: str) -> Path:
    dirs = list((root / "sys" / "bus" / "pci" / "devices" / bdf / "hwmon").iterdir())
    assert len(dirs) == 1, "reference §1.3: exactly one hwmon directory per card"
    return dirs[0]


def pe_counters(root: Path, n: int, m: int) -> tuple[int, int]:
    text = read(pe(root, n, m) / "metrics")
    match = re.fullmatch(r"CycleCount: 0x([0-9a-f]+)\nTaskCycleCount: 0x([0-9a-f]+)\n", text)
    assert match, text  # hexadecimal: furiosa-smi 2026.4 reads the values as hex
    return int(match.group(1), 16), int(match.group(2), 16)


# ----------------------------------------------------------------------------------- layout


def test_tree_has_the_reference_layout(tmp_path: Path) -> None:
    run_node(tmp_path, [0.0, 1.0], devices=2)
    root = tmp_path / "root"
    for n in range(2):
        d = mgmt(root, n)
        assert read(d / "platform_type") == "FuriosaAI\n"
        assert read(d / "device_type") == "RNGD\n"
        bdf = read(d / "busname").strip()
        assert bdf == f"0000:{0x6D + n:02x}:00.0"
        assert re.fullmatch(r"\d+:\d+\n", read(d / "dev"))
        assert re.fullmatch(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\n", read(d / "device_uuid"))
        assert re.fullmatch(r"RNGD\d{6}\n", read(d / "device_sn"))
        for name in ("fw_version", "version"):
            assert re.fullmatch(r"\d+\.\d+\.\d+, [0-9a-f]+\n", read(d / name)), name
        assert read(d / "device_state") == "0\n"  # 0 = alive to furiosa-smi 2026.4
        assert re.fullmatch(r"\d+\n", read(d / "heartbeat"))
        assert read(d / "npu_governor") == "performance\n"
        assert re.fullmatch(r"0x[0-9a-f]+\n", read(d / "throttle_reason"))
        assert read(d / "power_limit_mw") == "300000\n"
        clocks = read(d / "npu_clocks").splitlines()
        assert clocks == ["2000000000"] * PE_COUNT  # Hz, one line per PE
        assert read(d / "pe_occupancy").splitlines() == ["1"] * PE_COUNT  # steady load: held
        capacity = 0
        for m in range(PE_COUNT):
            cycles, busy = pe_counters(root, n, m)
            assert 0 <= busy <= cycles
            alloc = dict(
                line.split(": ") for line in read(pe(root, n, m) / "alloc_status").splitlines()
            )
            assert set(alloc) == {"dram_capacity", "dram_usage", "shared_capacity", "shared_usage"}
            assert all(re.fullmatch(r"0x[0-9a-f]+", v) for v in alloc.values())
            capacity += int(alloc["dram_capacity"], 16) + int(alloc["shared_capacity"], 16)
        assert capacity == DRAM_TOTAL_BYTES  # §1.1: 47.50 GiB
        h = hwmon(root, bdf)
        assert re.fullmatch(r"hwmon\d+", h.name)
        assert read(h / "name") == f"rngd{n}\n"
        assert read(h / "power1_label") == "RMS_TOTAL\n"
        assert re.fullmatch(r"\d+\n", read(h / "power1_average"))
        assert read(h / "power1_max") == "300000000\n"  # the power limit, µW
        assert os.readlink(h / "device") == "../.."  # hwmonN/device -> the PCI function
        pci = root / "sys" / "bus" / "pci" / "devices" / bdf
        assert (read(pci / "vendor"), read(pci / "device")) == ("0x1ed2\n", "0x0001\n")
        assert (pci / "driver").resolve() == root / "sys/bus/pci/drivers/furiosa_rngd"
        assert read(pci / "numa_node") == "0\n"
        labels = [read(h / f"temp{i}_label").strip() for i in range(1, 11)]
        assert labels == ["PEAK"] + [f"NPU_PE{m}" for m in range(8)] + ["AMBIENT"]
        for i in range(1, 11):
            assert 20_000 < int(read(h / f"temp{i}_input")) < 100_000  # m°C


def test_symlinks_point_into_sys_devices(tmp_path: Path) -> None:
    run_node(tmp_path, [0.0], devices=1)
    root = tmp_path / "root"
    link = mgmt(root, 0)
    assert link.is_symlink()
    assert not os.readlink(link).startswith("/"), "sysfs links are relative"
    assert link.resolve() == root / "sys/devices/virtual/rngd_mgmt/rngd!npu0mgmt"
    assert (root / "sys/bus/pci/devices/0000:6d:00.0").is_symlink()
    assert (root / "sys/class/hwmon/hwmon2/name").read_text() == "rngd0\n"


def test_plain_directories_without_symlinks(tmp_path: Path) -> None:
    run_node(tmp_path, [0.0, 0.5], devices=1, symlinks=False)
    root = tmp_path / "root"
    assert not any(p.is_symlink() for p in root.rglob("*"))
    assert read(mgmt(root, 0) / "platform_type") == "FuriosaAI\n"
    assert read(hwmon(root, "0000:6d:00.0") / "power1_label") == "RMS_TOTAL\n"


def test_files_are_replaced_atomically_leaving_no_temporaries(tmp_path: Path) -> None:
    run_node(tmp_path, [0.0, 0.1, 0.2, 0.3], devices=2)
    assert not [p for p in (tmp_path / "root").rglob("*") if p.name.endswith(".tmp")]


def test_emulators_never_import_collectors() -> None:
    for path in (REPO / "emulators").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "collectors" for n in names), path


# ----------------------------------------------------------------------------------- physics


def test_same_seed_and_times_give_the_same_node(tmp_path: Path) -> None:
    times = [0.0, 0.25, 1.0, 1.1, 3.0]
    a = run_node(tmp_path / "a", times, devices=2, seed=7, workload="bursty")
    b = run_node(tmp_path / "b", times, devices=2, seed=7, workload="bursty")
    for ra, rb in zip(a, b, strict=True):
        assert dataclasses.replace(ra, wall_ns=0) == dataclasses.replace(rb, wall_ns=0)
    files_a = {p.relative_to(tmp_path / "a"): p for p in (tmp_path / "a").rglob("*") if p.is_file()}
    for rel, p in files_a.items():
        assert read(p) == read(tmp_path / "b" / rel), rel
    c = run_node(tmp_path / "c", times, devices=2, seed=8, workload="bursty")
    assert c[0].devices[0].device != a[0].devices[0].device


def test_counters_advance_at_the_core_clock_and_stay_consistent(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=1, workload="ramp") as node:
            previous = [(0, 0)] * PE_COUNT
            for k in range(11):
                node.step(k * 0.5)
                for m in range(PE_COUNT):
                    cycles, busy = pe_counters(tmp_path, 0, m)
                    d_cycles, d_busy = cycles - previous[m][0], busy - previous[m][1]
                    expected = 0 if k == 0 else CLOCK_NOMINAL_MHZ * 1e6 * 0.5
                    assert abs(d_cycles - expected) <= 1  # floored floats
                    assert 0 <= d_busy <= d_cycles + 1
                    assert busy <= cycles
                    previous[m] = (cycles, busy)

    asyncio.run(go())


def test_idle_card_draws_idle_power_and_reports_idle() -> None:
    d = RngdDevice(0, workload="idle")
    for k in range(1, 50):
        d.advance(k - 0.5, 1.0)
        assert 34.0 < d.power_w < 42.0  # §1.7 item 6: idle ≈ 35–40 W, plus noise
        assert d.throttle_reason == THROTTLE_IDLE
        assert d.util_ratio == 0.0


def test_power_rises_with_utilization_and_energy_is_its_exact_integral() -> None:
    d = RngdDevice(1, seed=3, workload="ramp")
    energy, t = 0.0, 0.0
    pairs: list[tuple[float, float]] = []
    for dt in [0.1, 0.7, 1.0, 2.5] * 30:
        d.advance(t + dt / 2, dt)
        t += dt
        energy += d.power_w * dt
        pairs.append((d.util_ratio, d.power_w))
        model = d.idle_w + (TDP_W - d.idle_w) * d.util_ratio**1.2
        assert abs(d.power_w - model) < 5 * 0.4  # noise σ = 0.4 W
    assert math.isclose(d.energy_j, energy, rel_tol=1e-12)
    low = [p for u, p in pairs if u < 0.2]
    high = [p for u, p in pairs if u > 0.8]
    assert low and high and max(low) < min(high)


def test_temperature_follows_power_with_a_first_order_lag() -> None:
    d = RngdDevice(0, workload="steady", ambient_c=30.0)
    start = d.peak_temp_c
    temps, powers = [], []
    for k in range(300):
        d.advance(k + 0.5, 1.0)
        temps.append(d.peak_temp_c)
        powers.append(d.power_w)
    assert start < temps[5] < temps[30] < temps[120]
    steady = 30.0 + THERMAL_RESISTANCE_K_PER_W * sum(powers[-100:]) / 100
    die = d.peak_temp_c - max(d.pe_temp_c) + min(d.pe_temp_c)  # without the hottest PE's offset
    assert abs(die - steady) < 5.0


def test_thermal_slowdown_at_the_temperature_limit() -> None:
    d = RngdDevice(0, workload="steady", ambient_c=80.0)
    for k in range(200):
        d.advance(k + 0.5, 1.0)
    assert d.throttle_reason & THROTTLE_THERMAL_SLOWDOWN
    assert d.clock_mhz < CLOCK_NOMINAL_MHZ


def test_power_cap_lowers_the_clock_and_holds_the_limit() -> None:
    d = RngdDevice(0, workload="steady")
    d.power_limit_w = 80.0
    for k in range(20):
        d.advance(k + 0.5, 1.0)
        assert d.throttle_reason & THROTTLE_APP_POWER_CAP
        assert d.power_w < 80.0 + 5 * 0.4
        assert d.clock_mhz < CLOCK_NOMINAL_MHZ


def test_reset_restarts_the_counters(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=1) as node:
            node.step(0.0)
            node.step(2.0)
            before = pe_counters(tmp_path, 0, 0)
            node.devices[0].reset()
            node.step(2.5)
            after = pe_counters(tmp_path, 0, 0)
            assert after[0] < before[0]
            assert after[0] == pytest.approx(CLOCK_NOMINAL_MHZ * 1e6 * 0.5, abs=1)

    asyncio.run(go())


def test_workloads() -> None:
    idle = Workload("idle", random.Random(0))
    assert {idle.util(t) for t in range(100)} == {0.0}
    ramp = Workload("ramp", random.Random(0))
    assert ramp.util(0.0) < ramp.util(30.0) < ramp.util(90.0) < 1.0
    bursty = Workload("bursty", random.Random(0))
    levels = [bursty.util(t * 0.5) for t in range(400)]
    assert min(levels) < 0.2 and max(levels) > 0.8
    steady = Workload("steady", random.Random(0))
    assert all(0.45 < steady.util(t) < 0.95 for t in range(100))
    with pytest.raises(ValueError, match="workload 'nope'"):
        Workload("nope", random.Random(0))


# ----------------------------------------------------------------------------------- truth log


def test_truth_log_has_one_line_per_step(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    records = run_node(tmp_path, [0.0, 1.0, 2.0, 4.0], devices=2, truth_log=log)
    lines = list(read_rngd_log(log))
    assert len(lines) == 4
    assert [r.t_s for r in lines] == [0.0, 1.0, 2.0, 4.0]
    assert lines[-1].devices == records[-1].devices
    energies = [r.devices[0].energy_j for r in lines]
    assert energies[0] == 0.0
    assert energies == sorted(energies)
    powers = [r.devices[0].power_w for r in lines[1:]]
    dts = [r.dt_s for r in lines[1:]]
    assert math.isclose(energies[-1], sum(p * dt for p, dt in zip(powers, dts, strict=True)))
    serving = [r.serving for r in lines]
    assert serving[-1].requests_total == sum(len(s.latencies_s) for s in serving) > 0


def test_step_rejects_time_going_backwards(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=1) as node:
            node.step(5.0)
            with pytest.raises(ValueError, match="backwards"):
                node.step(4.0)

    asyncio.run(go())


# ----------------------------------------------------------------------------------- /metrics

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$")


def http_get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        e.close()
        return e.code, e.headers["Content-Type"], ""


def test_metrics_endpoint_serves_furiosa_llm_2026_exposition(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=2) as node:
            for k in range(21):
                truth = node.step(k * 0.5)
            assert node.serving_url.startswith("http://127.0.0.1:")
            status, ctype, body = await asyncio.to_thread(http_get, node.serving_url + "/metrics")
            assert status == 200
            assert ctype.startswith("text/plain; version=0.0.4")
            declared: dict[str, str] = {}
            values: dict[str, float] = {}
            buckets: dict[str, list[float]] = {}
            for line in body.splitlines():
                if line.startswith("# TYPE "):
                    _, _, name, kind = line.split(" ")
                    declared[name] = kind
                    continue
                if line.startswith("# HELP "):
                    continue
                m = SAMPLE.match(line)
                assert m, line
                name, labels, value = m.group(1), m.group(2), float(m.group(3))
                family = re.sub(r"_(bucket|count|sum|created)$", "", name)
                assert family in declared or name in declared, f"{name} has no # TYPE"
                if name.endswith("_bucket"):
                    engine = re.search(r'engine="(\d+)"', labels)
                    assert engine
                    buckets.setdefault(engine.group(1), []).append(value)
                elif not name.endswith("_created"):
                    values[name] = values.get(name, 0.0) + value
            assert declared["furiosa_llm_request_success_total"] == "counter"
            assert declared["furiosa_llm_e2e_request_latency_seconds"] == "histogram"
            serving = truth.serving
            assert values["furiosa_llm_request_success_total"] == serving.requests_total > 0
            assert values["furiosa_llm_generation_tokens_total"] == serving.tokens_total
            assert values["furiosa_llm_prompt_tokens_total"] == serving.prompt_tokens_total
            count = values["furiosa_llm_e2e_request_latency_seconds_count"]
            assert count == serving.requests_total
            for series in buckets.values():
                assert series == sorted(series), "cumulative buckets"
            assert sum(series[-1] for series in buckets.values()) == count  # le="+Inf"
            assert (await asyncio.to_thread(http_get, node.serving_url + "/nope"))[0] == 404
            post = await asyncio.to_thread(http_get, node.serving_url + "/metrics", "POST")
            assert post[0] == 405
            head = await asyncio.to_thread(http_get, node.serving_url + "/metrics", "HEAD")
            assert head[0] == 200 and head[2] == ""

    asyncio.run(go())


def test_idle_node_serves_nothing_but_keeps_the_series(tmp_path: Path) -> None:
    records = run_node(tmp_path, [0.0, 5.0, 10.0], devices=1, workload="idle")
    assert records[-1].serving.requests_total == 0
    assert all(d.util_ratio == 0.0 for r in records for d in r.devices)


# ----------------------------------------------------------------------------------- CLI


def test_cli_prints_where_it_is_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "kwatt.emulators.node",
        "--root",
        str(tmp_path / "root"),
        "--devices",
        "1",
    ]
    cmd += ["--truth-log", str(tmp_path / "truth.jsonl"), "--period", "0.05"]
    with subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["root"] == str((tmp_path / "root").resolve())
        status, _, body = http_get(ready["serving_url"] + "/metrics")
        assert status == 200 and "furiosa_llm_request_success_total" in body
        assert read(mgmt(tmp_path / "root", 0) / "platform_type") == "FuriosaAI\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    assert (tmp_path / "truth.jsonl").read_text().count("\n") >= 1


def test_cli_stops_after_its_duration(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "kwatt.emulators.node",
        "--root",
        str(tmp_path),
        "--duration",
        "0.3",
    ]
    done = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["serving_url"].startswith("http://127.0.0.1:")
    bad = subprocess.run(
        [*cmd, "--workload", "nope"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert bad.returncode == 2
