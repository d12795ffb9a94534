"""Emulated ``furiosa-smi``: fidelity to the reference examples, golden files per version, faults.

The reference files under tests/fixtures/emulators/furiosa-smi/reference are verbatim copies of the
docs' examples (docs/device-interfaces.md §1.1); the emulator must print exactly those lines for the same
device values. The per-version directories are the emulator's golden output (regression).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kwatt.emulators.furiosa_surface import SurfaceConfig, install_tool, write_config
from kwatt.emulators.state import DeviceState, Snapshot, ToolFaults, write_snapshot
from kwatt.emulators.tools.furiosa_smi import UsageError, render, views

FIXTURES = Path(__file__).parents[1] / "fixtures" / "emulators" / "furiosa-smi"
REFERENCE = FIXTURES / "reference"
VERSIONS = ("2024.1.0", "2025.1.0", "2025.2.0", "2026.3.0")
GIB = 2**30
UPDATE = os.environ.get("KWATT_UPDATE_GOLDEN") == "1"


def rngd(index: int, **kw: object) -> DeviceState:
    base: dict[str, object] = {
        "index": index,
        "model": "rngd",
        "vendor": "furiosa",
        "serial": f"RNGD00020{6 + index}",
        "uuid": "007741da-70b7-4996-aac0-7e8e46ffc817"
        if index == 0
        else f"0a{index:06d}-0000-4000-8000-000000000000",
        "bus_id": f"0000:{3 + index:02x}:00.0",
        "t_s": 10.0,
        "util_ratio": 0.0,
        "power_w": 38.40,
        "energy_j": 384.0,
        "temp_c": 40.98,
        "clock_hz": 2.0e9,
        "mem_used_bytes": 0,
        "mem_total_bytes": 51_002_736_640,
        "power_limit_w": 300.0,
        "core_util": (0.0,) * 8,
        "service": "chatbot",
    }
    base.update(kw)
    return DeviceState(**base)  # type: ignore[arg-type]


def warboy(index: int, **kw: object) -> DeviceState:
    return rngd(
        index,
        model="warboy",
        serial="WBYB0000000000000",
        uuid="aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
        bus_id="0000:6d:00.0",
        mem_total_bytes=16 * GIB,
        mem_used_bytes=int(1.6 * GIB),
        core_util=(0.5, 0.52),
        util_ratio=0.51,
        service="traffic",
        temp_c=54.0,
        power_w=31.5,
        **kw,
    )


def snapshot(*devices: DeviceState, faults: tuple[tuple[str, ToolFaults], ...] = ()) -> Snapshot:
    return Snapshot(
        t_s=10.0, wall_ns=1_700_000_000_000_000_000, devices=devices, host=None, tool_faults=faults
    )


def out(argv: list[str], snap: Snapshot, version: str = "2026.3.0") -> str:
    return render(argv, views(snap, version), version)


# ------------------------------------------------------------------------- reference fidelity
def test_info_matches_the_docs_table_verbatim() -> None:
    snap = snapshot(rngd(0), rngd(1, temp_c=41.34, power_w=37.44))
    assert out(["info"], snap) == (REFERENCE / "info-2026.3.0.txt").read_text(encoding="utf-8")


def test_info_full_matches_the_docs_row_verbatim() -> None:
    got = out(["info", "--format", "full"], snapshot(rngd(0, temp_c=40.80))).splitlines()
    header, row = (REFERENCE / "info-full-2026.3.0.txt").read_text(encoding="utf-8").splitlines()
    assert got[1] == header
    assert got[3] == row


def test_status_matches_the_docs_rows_verbatim() -> None:
    got = out(["status"], snapshot(rngd(0))).splitlines()
    ref = (REFERENCE / "status-2026.3.0.txt").read_text(encoding="utf-8").splitlines()
    assert got[: len(ref)] == ref
    assert got[len(ref) : len(ref) + 3] == [
        "|      |        |          |                | Core 5: 0.00%    |",
        "|      |        |          |                | Core 6: 0.00%    |",
        "|      |        |          |                | Core 7: 0.00%    |",
    ]


def test_idle_npu_shows_dash_in_the_table() -> None:
    got = out(["status"], snapshot(rngd(0, service="")))
    assert "| Core 0: -        |" in got
    assert "0.00%)" in got


def test_status_json_matches_the_field_notes_sample() -> None:
    got = out(["status", "--format", "json"], snapshot(rngd(0, service="")))
    prefix = (REFERENCE / "status-json-3p.txt").read_text(encoding="utf-8").strip()
    assert got.startswith("[" + prefix)
    doc = json.loads(got)
    assert len(doc[0]["pe_utilizations"]) == 8


def test_info_json_is_an_array_of_string_values() -> None:
    doc = json.loads(out(["info", "--format", "json"], snapshot(rngd(0), warboy(1))))
    assert [d["arch"] for d in doc] == ["rngd", "warboy"]
    r = doc[0]
    assert list(r)[:5] == ["arch", "dev_name", "device_uuid", "device_sn", "firmware"]
    assert all(isinstance(v, str) for d in doc for v in d.values())
    assert r["temperature"] == "40.98°C" and r["power"] == "38.00 W"  # 1 W quantum in JSON (2026)
    assert r["core_clock"] == "2000 MHz" and r["pci_bdf"] == "0000:03:00.0"
    assert doc[1]["index"] == "1"  # Warboy objects carry index
    assert "pert" not in r
    older = json.loads(out(["info", "--format", "json"], snapshot(rngd(0)), "2025.2.0"))
    assert older[0]["pert"] == "2025.1.0+1694e18" and older[0]["power"] == "38.40 W"


def test_ps_lists_serving_processes() -> None:
    snap = snapshot(rngd(0, util_ratio=0.5), rngd(1, util_ratio=0.4))
    lines = out(["ps"], snap).splitlines()
    assert lines[1].split("|")[1:4] == [
        " PID   ",
        " NPU core                 ",
        " CMD" + " " * (len(lines[1].split("|")[3]) - 4),
    ]
    assert "npu0:[0, 7], npu1:[0, 7]" in lines[3]
    assert "furiosa-llm serve" in lines[3]
    doc = json.loads(out(["ps", "--format", "json"], snap))
    assert doc[0]["dev_name"] == "npu0:[0, 7], npu1:[0, 7]" and isinstance(doc[0]["pid"], int)


def test_version_dialects() -> None:
    snap = snapshot(rngd(0))
    assert "| PERT " in out(["info"], snap, "2025.2.0")
    assert "| PERT " not in out(["info"], snap, "2026.3.0")
    assert "0.0.21+d6cada3" in out(["info"], snap, "2025.1.0")
    assert "| Clock |" in out(["info", "--format", "full"], snap, "2024.1.0")
    assert "0 (occupied)," in out(["status"], snap, "2024.1.0")
    assert "0 (available)," in out(["status"], snapshot(rngd(0, service="")), "2025.1.0")
    assert "| NPU       | PID   | CMD" in out(["ps"], snapshot(rngd(0, util_ratio=0.3)), "2024.1.0")
    assert json.loads(out(["info", "--output", "json"], snap, "2024.1.0"))[0]["dev_name"] == "npu0"
    with pytest.raises(UsageError, match="--output"):
        out(["info", "--output", "json"], snap, "2026.3.0")
    with pytest.raises(UsageError):
        out(["topology-of-doom"], snap)


def test_na_and_nan_values() -> None:
    snap = snapshot(rngd(0, na_fields=("temp_c",), power_w=float("nan"), nan_fields=("power_w",)))
    row = out(["info"], snap).splitlines()[3]
    assert "| N/A " in row and "| NaN W " in row


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "argv",
    [["info"], ["info", "--format", "full"], ["status"], ["ps"], ["info", "--format", "json"],
     ["status", "--format", "json"], ["ps", "--format", "json"]],
)  # fmt: skip
def test_golden_output_per_version(version: str, argv: list[str]) -> None:
    snap = snapshot(
        rngd(0, util_ratio=0.62, core_util=(0.6, 0.61, 0.63, 0.64, 0.62, 0.6, 0.63, 0.65),
             power_w=121.3, temp_c=63.42, mem_used_bytes=45_902_462_976),
        rngd(1, service="", temp_c=41.34, power_w=37.44),
        warboy(2),
    )  # fmt: skip
    got = out(argv, snap, version)
    path = FIXTURES / version / ("-".join(a.lstrip("-") for a in argv) + ".txt")
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


# -------------------------------------------------------- structure of the vendor's published output
REAL = Path(__file__).parents[1] / "fixtures" / "real" / "furiosa-smi"
#: columns whose cells carry a unit or a fixed vocabulary: their shape (digits → 9) must match
SHAPED = {"Arch", "Temp.", "Power", "Clock", "Core Clock", "Governor", "Liveness", "Memory",
          "Cores", "Core Utilization"}  # fmt: skip


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, data rows as cell lists) of a furiosa-smi box table."""
    rows = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in text.splitlines()
            if line.startswith("|")]  # fmt: skip
    return rows[0], rows[1:]


def shape(cell: str) -> str:
    """A cell with its numbers made generic: ``40.98°C`` → ``9.9°C``, ``Core 3: 0.00%,`` → ``Core
    9: 9.9%,``; what is left is the unit, the punctuation and the vocabulary (a core's state,
    ``occupied`` in the 2024.1 docs and ``available`` in later ones, is one word class)."""
    return re.sub(r"\((?:available|occupied)\)", "(state)", re.sub(r"\d+", "9", cell))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["info", "info-format-full", "status", "ps"])
def test_tables_have_the_structure_of_the_vendors_published_output(version: str, name: str) -> None:
    """The emulated tool of each version against FuriosaAI's own output of that version: the same
    header cells in the same order, and in every unit-bearing column the same cell shapes."""
    real_header, real_rows = table((REAL / version / f"{name}.txt").read_text(encoding="utf-8"))
    snap = snapshot(
        rngd(0, core_util=(0.0,) * 8),  # held by its runtime, idle: "0.00%" as in the docs
        rngd(1, temp_c=41.34, power_w=37.44),
    )
    argv = {"info-format-full": ["info", "--format", "full"]}.get(name, [name])
    header, rows = table(out(argv, snap, version))
    assert header == real_header
    for col, title in enumerate(header):
        if title not in SHAPED:
            continue
        want = {shape(r[col]) for r in real_rows if r[col]}
        got = {shape(r[col]) for r in rows if r[col]}
        assert got <= want, f"{version} {name} column {title!r}: {got - want} not in {want}"


# ----------------------------------------------------------------------- the executable + faults
def run_tool(root: Path, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(root / "bin" / "furiosa-smi"), *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def tool_root(tmp_path: Path) -> Path:
    install_tool(tmp_path)
    write_config(tmp_path, SurfaceConfig("2026.3.0"))
    write_snapshot(tmp_path, snapshot(rngd(0), rngd(1, temp_c=41.34, power_w=37.44)))
    return tmp_path


def test_installed_script_prints_the_real_format(tool_root: Path) -> None:
    script = (tool_root / "bin" / "furiosa-smi").read_text(encoding="utf-8")
    assert script.startswith(f"#!{sys.executable}\n")
    r = run_tool(tool_root, "info")
    assert r.returncode == 0
    assert r.stdout.decode() == (REFERENCE / "info-2026.3.0.txt").read_text(encoding="utf-8")


def test_tool_faults_are_observable(tool_root: Path) -> None:
    full = run_tool(tool_root, "info").stdout

    def with_faults(f: ToolFaults) -> None:
        write_snapshot(
            tool_root,
            snapshot(rngd(0), rngd(1, temp_c=41.34, power_w=37.44), faults=(("furiosa-smi", f),)),
        )

    with_faults(ToolFaults(truncate=True))
    assert run_tool(tool_root, "info").stdout == full[: len(full) // 2]
    with_faults(ToolFaults(garbage=True))
    garbage = run_tool(tool_root, "info").stdout
    assert garbage != full and len(garbage) >= len(full)
    with_faults(ToolFaults(exit_code=3))
    r = run_tool(tool_root, "info")
    assert r.returncode == 3 and r.stdout == full
    with_faults(ToolFaults(hang_s=30.0))
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(tool_root, "info", timeout=1.0)
    assert time.monotonic() - t0 < 5.0


def test_no_snapshot_is_a_driver_error(tmp_path: Path) -> None:
    install_tool(tmp_path)
    r = run_tool(tmp_path, "info")
    assert r.returncode == 1 and b"furiosa-smi" in r.stderr
