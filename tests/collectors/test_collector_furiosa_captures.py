"""The furiosa collector's ``furiosa-smi`` table parsers on the outputs FuriosaAI published.

tests/fixtures/real/furiosa-smi/<version>/ holds ``info``, ``info --format full``, ``status`` and
``ps`` as the FuriosaAI docs print them for tool versions 2024.1.0, 2025.1.0, 2025.2.0 and 2026.3.0
(provenance in SOURCES.md there). Each test asserts the values written in the capture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kwatt.collectors.furiosa import (
    SmiDevice,
    merge_smi,
    parse_smi_info_table,
    parse_smi_status_table,
)

REAL = Path(__file__).parents[1] / "fixtures" / "real" / "furiosa-smi"
GIB = 2**30


def capture(version: str, name: str) -> str:
    return (REAL / version / f"{name}.txt").read_text(encoding="utf-8")


def test_every_capture_has_a_source_line() -> None:
    sources = (REAL / "SOURCES.md").read_text(encoding="utf-8")
    for path in sorted(REAL.glob("*/*.txt")):
        assert f"{path.parent.name}/{path.name}" in sources, path


def test_2024_1_info_tables() -> None:
    brief = parse_smi_info_table(capture("2024.1.0", "info"))
    assert [(d.name, d.bdf, d.firmware, d.temp_c, d.power_w) for d in brief] == [
        ("npu0", "0000:17:00.0", "0.0.15+af1daaa", 30.18, 53.0),
        ("npu1", "0000:2a:00.0", "0.0.15+af1daaa", 29.25, 53.0),
    ]
    full = parse_smi_info_table(capture("2024.1.0", "info-format-full"))
    assert [(d.uuid, d.serial, d.temp_c, d.clock_hz) for d in full] == [
        ("3E93AE7C-E8EA-4C62-BED6-AD2EC0461AE8", "RNGDXXXXXX", 30.18, None),  # Clock N/A: absent
        ("176DAD0F-1510-475C-91D8-5F79551CF718", "RNGDXXXXXY", 29.44, None),
    ]
    assert all(d.arch == "rngd" for d in brief + full)


@pytest.mark.parametrize(
    ("version", "firmware"), [("2025.1.0", "0.0.21+d6cada3"), ("2025.2.0", "2025.1.0+696efad")]
)
def test_2025_info_tables_four_cards(version: str, firmware: str) -> None:
    full = parse_smi_info_table(capture(version, "info-format-full"))
    assert [(d.name, d.serial, d.bdf, d.temp_c, d.power_w) for d in full] == [
        ("npu0", "RNGD000002", "0000:30:00.0", 30.00, 35.0),
        ("npu1", "RNGD000126", "0000:3f:00.0", 32.97, 36.0),
        ("npu2", "RNGD000128", "0000:40:00.0", 32.60, 36.0),
        ("npu3", "RNGD000123", "0000:41:00.0", 31.67, 36.0),
    ]
    assert full[0].uuid == "8EAE95DA-2625-40D0-8838-68EA772193A8"
    assert {d.firmware for d in full} == {firmware}  # 2025.2: the PERT column is not the firmware
    assert all(d.clock_hz is None for d in full)
    brief = parse_smi_info_table(capture(version, "info"))
    assert [d.temp_c for d in brief] == [29.81, 32.97, 32.04, 31.48]  # another moment than "full"


def test_2026_3_info_tables() -> None:
    full = parse_smi_info_table(capture("2026.3.0", "info-format-full"))
    assert [(d.name, d.uuid, d.serial, d.temp_c, d.power_w, d.clock_hz) for d in full] == [
        ("npu0", "007741DA-70B7-4996-AAC0-7E8E46FFC817", "RNGD000206", 40.80, 38.40, 2.0e9),
        ("npu1", "A2216AE7-8D79-4086-A3B1-200AB4CE230A", "RNGD000068", 40.97, 37.44, 2.0e9),
        ("npu2", "B1B02CFC-ADAE-4683-BA8E-08CBA0D5F907", "RNGD000198", 40.43, 37.44, 2.0e9),
        ("npu3", "09512C86-0702-4305-824D-44454143444F", "RNGD000145", 46.57, 39.36, 2.0e9),
    ]
    assert {d.firmware for d in full} == {"1.7.0, 4dfed1852e7b"}
    brief = parse_smi_info_table(capture("2026.3.0", "info"))
    assert [(d.temp_c, d.power_w) for d in brief][:2] == [(40.98, 38.40), (41.34, 37.44)]


@pytest.mark.parametrize(
    ("version", "cards"), [("2024.1.0", 2), ("2025.1.0", 4), ("2025.2.0", 4), ("2026.3.0", 4)]
)
def test_status_tables(version: str, cards: int) -> None:
    status = parse_smi_status_table(capture(version, "status"))
    assert sorted(status) == [f"npu{i}" for i in range(cards)]
    for name, s in status.items():
        if version == "2026.3.0" and name in ("npu2", "npu3"):
            assert s.util_ratio is None  # "Core N: -": not in use, absent (never 0)
        else:
            assert s.util_ratio == 0.0  # every core "0.00%"
        if version == "2026.3.0":  # "0.00/47.50 GiB" (Memory column, 2026 only)
            assert (s.mem_used_bytes, s.mem_total_bytes) == (0, round(47.50 * GIB))
        else:  # the Cores column has no memory
            assert (s.mem_used_bytes, s.mem_total_bytes) == (None, None)


def test_info_and_status_merge_into_one_device_per_card() -> None:
    devices = merge_smi(
        parse_smi_info_table(capture("2026.3.0", "info-format-full")),
        parse_smi_status_table(capture("2026.3.0", "status")),
    )
    assert len(devices) == 4
    d0 = devices[0]
    assert isinstance(d0, SmiDevice)
    assert (d0.tag, d0.util_ratio, d0.mem_total_bytes) == (
        "007741DA-70B7-4996-AAC0-7E8E46FFC817",
        0.0,
        round(47.50 * GIB),
    )
