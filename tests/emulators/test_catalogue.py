"""The device catalogue: every model of issue #3, every number with a status and a source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kwatt.emulators.catalogue import (
    CATALOGUE_PATH,
    STATUSES,
    WORK_CLASSES,
    CatalogueError,
    load_catalogue,
    model,
    parse_catalogue,
)

MODELS = {
    "warboy": "furiosa",
    "rngd": "furiosa",
    "atom": "rebellions",
    "atom-max": "rebellions",
    "rebel-quad": "rebellions",
    "x220-compact": "sapeon",
    "x220-enterprise": "sapeon",
    "x330": "sapeon",
    "t4": "nvidia",
    "l4": "nvidia",
    "a100": "nvidia",
    "h100": "nvidia",
    "l40s": "nvidia",
    # issue 16: phase 2 (DRAM-PIM) and phase 3 (NVM analog PIM)
    "aimx": "skhynix",
    "mi100-pim": "samsung",
    "hermes": "ibm",
}
#: The K-Cloud phase of every model (the GPUs are the baseline of every phase).
PHASE_OF = {
    **{k: "phase1_npu" for k, v in MODELS.items() if v in ("furiosa", "rebellions", "sapeon")},
    **{k: "baseline" for k, v in MODELS.items() if v == "nvidia"},
    "aimx": "phase2_dram_pim",
    "mi100-pim": "phase2_dram_pim",
    "hermes": "phase3_nvm_analog_pim",
}


def test_every_model_of_the_issue_is_there_with_its_vendor() -> None:
    cat = load_catalogue()
    assert {k: m.vendor for k, m in cat.items()} == MODELS


def test_every_model_has_its_phase_and_only_research_chips_say_so() -> None:
    cat = load_catalogue()
    assert {k: m.phase for k, m in cat.items()} == PHASE_OF
    assert {k for k, m in cat.items() if m.research} == {"hermes"}


def test_every_figure_has_a_status_and_a_source() -> None:
    for m in load_catalogue().values():
        figures = m.figures()
        assert len(figures) >= 14
        for name, f in figures.items():
            assert f.status in STATUSES, (m.key, name)
            assert f.source.strip(), (m.key, name)
        assert set(m.throughput) <= set(WORK_CLASSES)


@pytest.mark.parametrize(
    ("key", "name", "value", "status"),
    [
        ("rngd", "tdp_w", 150.0, "sourced"),  # docs/device-interfaces.md §7
        ("rngd", "memory_bytes", 51_002_736_640, "sourced"),  # furiosa-smi status JSON §1.1
        ("rngd", "throughput.llm", 3935.25, "sourced"),  # docs/targets.md §2c [V4]
        ("warboy", "int8_tops", 64.0, "sourced"),
        ("warboy", "throughput.classification", 2758.44, "sourced"),  # MLPerf v2.0 [M2]
        ("atom", "throughput.classification", 7245.87, "sourced"),  # MLPerf v3.0 [M3]
        ("atom", "thermal_throttle_c", 75.0, "sourced"),  # RBLN driver release notes §2.1
        ("x220-compact", "throughput.classification", 6769.07, "sourced"),  # MLPerf v2.1 [M1]
        ("x220-enterprise", "throughput.classification", 13100.9, "sourced"),
        ("l4", "throughput.classification", 13157.8, "sourced"),  # MLPerf v3.0 [M4]
        ("h100", "throughput.llm", 13222.06, "sourced"),
        ("l40s", "throughput.llm", 2989.17, "sourced"),
        ("h100", "tdp_w", 700.0, "sourced"),
        ("x330", "tdp_w", 250.0, "assumed"),  # nothing published (§7 UNCONFIRMED)
        ("rebel-quad", "idle_w", 100.0, "sourced"),  # rbln-smi v0.12 docs example
        # issue 16: HERMES (Nature Electronics 2023): 64 cores, 63.1 TOPS at 9.76 TOPS/W
        ("hermes", "cores", 64, "sourced"),
        ("hermes", "int8_tops", 63.1, "sourced"),
        ("hermes", "tdp_w", 6.47, "derived"),  # 63.1 / 9.76 = 6.465
        ("aimx", "clock_max_mhz", 1000.0, "sourced"),  # 1 GHz PU per bank (Hot Chips 2023)
        ("aimx", "tdp_w", 350.0 / 4, "derived"),  # L40S x 1/4 (SK hynix, fnnews 2024-12-03)
        ("mi100-pim", "throughput.llm", 9699.86, "derived"),  # H100 x 1228.8/3350 x 2
    ],
)
def test_published_figures(key: str, name: str, value: float, status: str) -> None:
    f = model(key).figures()[name]
    assert f.value == pytest.approx(value)
    assert f.status == status


def test_atom_max_card_shows_as_four_devices_of_15_7_gib() -> None:
    m = model("atom-max")
    assert m.devices_per_card == 4
    assert m.memory_bytes.value / 2**30 == pytest.approx(15.72, abs=0.01)


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="rngd"):
        model("h200")


def _doc() -> dict[str, object]:
    doc = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["tdp_w"].update(status="guessed"), "status"),
        (lambda m: m["tdp_w"].update(source=""), "source"),
        (lambda m: m.pop("idle_w"), "idle_w"),
        (
            lambda m: m["throughput"].update(
                video={"value": 1, "status": "assumed", "source": "x"}
            ),
            "video",
        ),
        (lambda m: m["idle_w"].update(value=500.0), "idle_w < tdp_w"),
        (lambda m: m.update(colour="red"), "unknown keys"),
        (lambda m: m.pop("phase"), "phase"),
        (lambda m: m.update(phase="phase4"), "phase"),
        (lambda m: m.update(phase="baseline"), "GPUs"),
        (lambda m: m.update(research="yes"), "research"),
    ],
)
def test_malformed_catalogue_is_rejected(edit: object, message: str, tmp_path: Path) -> None:
    doc = _doc()
    models = doc["models"]
    assert isinstance(models, dict)
    assert callable(edit)
    edit(models["rngd"])
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(doc)
