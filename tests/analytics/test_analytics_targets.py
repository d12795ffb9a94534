"""kwatt.analytics.targets: the shipped targets.yaml (from docs/targets.md §4), overrides, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kwatt.analytics.targets import (
    PHASES,
    STATUSES,
    TargetsError,
    default_targets_text,
    load_targets,
)
from kwatt.analytics.work import WorkUnit

NUMBER_KEYS = {"value", "min_ratio_vs_baseline", "min_tflops_per_w"}


def _numbered(node: object, path: str = "") -> Iterator[tuple[str, dict[str, object]]]:
    if isinstance(node, dict):
        if NUMBER_KEYS & set(node):
            yield path, node
        for k, v in node.items():
            yield from _numbered(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbered(v, f"{path}[{i}]")


def test_every_number_in_the_default_file_has_status_and_source() -> None:
    doc = yaml.safe_load(default_targets_text())
    found = list(_numbered(doc))
    assert len(found) > 30
    for path, node in found:
        assert node.get("status") in STATUSES, path
        if node["status"] == "assumption":
            assert node.get("why") or node.get("source"), path
        else:
            assert node.get("source"), path


def test_defaults_follow_targets_md_section_4() -> None:
    t = load_targets()
    assert set(t.phases) == set(PHASES) and t.phases["phase1_npu"] == (2023, 2025)
    assert t.default_phase == "phase1_npu" and t.baseline_vendor == "nvidia"
    assert t.chip_floors["phase1_npu"].min_tflops_per_w == 2.0
    assert t.chip_floors["phase2_dram_pim"].provenance.status == "assumption"
    assert t.chip_floors["phase3_nvm_analog_pim"].min_tflops_per_w == 10.0
    r50 = t.workloads["resnet50_offline"]
    assert r50.targets["phase1_npu"].min_ratio_vs_baseline == 2.0
    assert r50.targets["phase1_npu"].provenance.status == "sourced"
    assert "S9" in r50.targets["phase1_npu"].provenance.source
    assert r50.latency_p99_s_max is not None and r50.latency_p99_s_max.value == 0.015
    llm = t.workloads["llm_llama31_8b"]
    assert llm.work_unit is WorkUnit.TOKENS
    assert llm.targets["phase1_npu"].min_ratio_vs_baseline == 1.0
    assert llm.targets["phase1_npu"].stretch == 1.5
    assert llm.targets["phase3_nvm_analog_pim"].provenance.status == "secondary"
    h100 = [r for r in llm.references if r.device == "nvidia_h100"]
    assert h100 and h100[0].work_per_j == 18.9 and h100[0].scope == "tdp"
    for wl in t.workloads.values():
        assert set(wl.targets) == set(PHASES)


def test_device_phases_put_each_class_in_one_phase() -> None:
    """Issue 16: the PIM classes in phases 2 and 3, each with its source; unlisted NPUs in the
    default phase; the GPU baseline in none."""
    t = load_targets()
    assert {c: dp.phase for c, dp in t.device_phases.items()} == {
        "skhynix/aimx": "phase2_dram_pim",
        "samsung/mi100_pim": "phase2_dram_pim",
        "ibm/hermes": "phase3_nvm_analog_pim",
    }
    assert all(dp.provenance.source for dp in t.device_phases.values())
    assert t.phase_of("furiosa/rngd") == "phase1_npu" and t.phase_of("nvidia/h100") is None
    assert t.economics.tariff_per_kwh.provenance.status == "assumption"
    assert t.economics.currency == "KRW"
    wl, assumed = t.workload_for("chat", WorkUnit.TOKENS)
    assert wl.name == "llm_llama31_8b" and assumed is not None


def test_user_file_overrides_key_by_key(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        """
services: {chat: llm_70b_class}
workloads:
  llm_70b_class:
    ops_per_unit: {value: 140000000000, status: assumption, why: "2 x 70e9 parameters per token"}
    targets:
      phase1_npu: {min_ratio_vs_baseline: 1.3, status: assumption, why: "our contract"}
economics:
  tariff_per_kwh: {value: 0.12, currency: EUR, status: sourced, source: "invoice 2026-10"}
""",
        encoding="utf-8",
    )
    t = load_targets(f)
    assert t.files[-1] == str(f)
    wl, assumed = t.workload_for("chat", WorkUnit.TOKENS)
    assert wl.name == "llm_70b_class" and assumed is None
    assert wl.targets["phase1_npu"].min_ratio_vs_baseline == 1.3
    assert wl.targets["phase2_dram_pim"].min_ratio_vs_baseline == 4.0  # kept from the default
    assert wl.ops_per_unit is not None and wl.ops_per_unit.value == 1.4e11
    assert t.economics.currency == "EUR" and t.economics.tariff_per_kwh.value == 0.12
    assert t.economics.grid_kg_co2_per_kwh.value == 0.4594


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tarrifs: {}\n", r"mine\.yaml: tarrifs: unknown key; expected one of"),
        (
            "workloads: {llm_llama31_8b: {targets: {phase1_npu: {min_ratio_vs_baseline: fast}}}}\n",
            r"mine\.yaml: workloads\.llm_llama31_8b\.targets\.phase1_npu\.min_ratio_vs_baseline: "
            r"expected a number, got 'fast'",
        ),
        (
            "workloads: {x: {work_unit: tokens, metric: m, targets: {phase1_npu: "
            "{min_ratio_vs_baseline: 2, status: sourced}}}}\n",
            r"mine\.yaml: workloads\.x\.targets\.phase1_npu\.source: expected 'source'",
        ),
        (
            "workloads: {x: {work_unit: watts, metric: m, targets: {}}}\n",
            r"workloads\.x\.work_unit: expected one of tokens, inferences, requests, got 'watts'",
        ),
        ("services: {chat: gpt5}\n", r"services\.chat: expected a workload name"),
        (
            "chip_level_efficiency: {phase1_npu: {min_tflops_per_w: -2}}\n",
            r"chip_level_efficiency\.phase1_npu\.min_tflops_per_w: expected a finite number > 0",
        ),
        (
            "workloads: {bert_large_99: {targets: {phase9: {}}}}\n",
            r"workloads\.bert_large_99\.targets\.phase9: expected one of the keys",
        ),
        (
            "economics: {tariff_per_kwh: {value: 1, status: rumour, source: x}}\n",
            r"status: expected one of",
        ),
        ("[1, 2]\n", r"mine\.yaml: expected a mapping at the top level"),
        ("a: [\n", r"mine\.yaml: not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(TargetsError, match=message):
        load_targets(f)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match=r"nope\.yaml: cannot read"):
        load_targets(tmp_path / "nope.yaml")
