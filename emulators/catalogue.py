"""Typed loader of ``emulators/catalogue.yaml``: the published figures of every emulated accelerator.

The YAML is the data (with a status and a source per number, see its header); this module checks it
and turns it into frozen dataclasses. Nothing here invents a number: the physics reads every figure it
uses from a :class:`ModelSpec`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = [
    "BASELINE",
    "CATALOGUE_PATH",
    "PHASES",
    "STATUSES",
    "VENDORS",
    "WORK_CLASSES",
    "CatalogueError",
    "Figure",
    "ModelSpec",
    "load_catalogue",
    "model",
]

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")
STATUSES = ("sourced", "derived", "assumed")
VENDORS = ("furiosa", "rebellions", "sapeon", "nvidia", "skhynix", "samsung", "ibm")
#: K-Cloud phases a device class belongs to (as in analytics/targets.yaml), and ``baseline`` for the
#: GPUs every phase is compared with.
PHASES = ("phase1_npu", "phase2_dram_pim", "phase3_nvm_analog_pim")
BASELINE = "baseline"
#: Workload classes a device's throughput is given for (see the YAML header).
WORK_CLASSES = ("classification", "detection", "llm")

_FIGURES = (
    "cores",
    "tdp_w",
    "idle_w",
    "power_limit_w",
    "int8_tops",
    "bf16_tflops",
    "memory_bytes",
    "memory_bandwidth_gbps",
    "clock_max_mhz",
    "clock_min_mhz",
    "thermal_throttle_c",
    "thermal_shutdown_c",
    "temp_full_load_c",
)


class CatalogueError(ValueError):
    """The catalogue file is malformed (a missing figure, a bad status, an inconsistent range)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One number with its provenance."""

    value: float
    status: str  # sourced | derived | assumed
    source: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One accelerator model (one *visible device*: an ATOM-Max card is ``devices_per_card`` of them)."""

    key: str
    vendor: str
    name: str
    arch: str
    devices_per_card: int
    #: One of :data:`PHASES`, or :data:`BASELINE` (the GPUs).
    phase: str
    #: A research chip (published in a paper, not sold): its figures are a lab's, not a product's.
    research: bool
    cores: Figure
    tdp_w: Figure
    idle_w: Figure
    power_limit_w: Figure
    int8_tops: Figure
    bf16_tflops: Figure
    memory_bytes: Figure
    memory_bandwidth_gbps: Figure
    clock_max_mhz: Figure
    clock_min_mhz: Figure
    thermal_throttle_c: Figure
    thermal_shutdown_c: Figure
    temp_full_load_c: Figure
    throughput: Mapping[str, Figure]  # work class → units/s at full load and the max clock

    @property
    def core_count(self) -> int:
        return int(self.cores.value)

    def capacity(self, work_class: str) -> float:
        """Units/s at full utilization and the max clock; ``KeyError`` if the device cannot run it."""
        return self.throughput[work_class].value

    def figures(self) -> dict[str, Figure]:
        """Every figure by name (throughput as ``throughput.<class>``), for docs and reports."""
        out = {name: getattr(self, name) for name in _FIGURES}
        out.update({f"throughput.{k}": v for k, v in self.throughput.items()})
        return out


def _figure(doc: object, where: str) -> Figure:
    if not isinstance(doc, dict):
        raise CatalogueError(f"{where}: expected {{value, status, source}}, got {doc!r}")
    if set(doc) != {"value", "status", "source"}:
        raise CatalogueError(f"{where}: keys must be value, status, source; got {sorted(doc)}")
    value, status, source = doc["value"], doc["status"], doc["source"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogueError(f"{where}.value: expected a number, got {value!r}")
    if status not in STATUSES:
        raise CatalogueError(f"{where}.status: expected one of {STATUSES}, got {status!r}")
    if not isinstance(source, str) or not source.strip():
        raise CatalogueError(f"{where}.source: every figure needs a source or a reason")
    return Figure(float(value), status, source)


def _model(key: str, doc: object) -> ModelSpec:
    if not isinstance(doc, dict):
        raise CatalogueError(f"models.{key}: expected a mapping")
    where = f"models.{key}"
    for name in ("vendor", "name", "arch"):
        if not isinstance(doc.get(name), str):
            raise CatalogueError(f"{where}.{name}: expected a string")
    if doc["vendor"] not in VENDORS:
        raise CatalogueError(f"{where}.vendor: expected one of {VENDORS}, got {doc['vendor']!r}")
    per_card = doc.get("devices_per_card", 1)
    if not isinstance(per_card, int) or per_card < 1:
        raise CatalogueError(f"{where}.devices_per_card: expected an integer >= 1")
    phase = doc.get("phase")
    if phase not in (*PHASES, BASELINE):
        raise CatalogueError(f"{where}.phase: expected one of {(*PHASES, BASELINE)}, got {phase!r}")
    research = doc.get("research", False)
    if not isinstance(research, bool):
        raise CatalogueError(f"{where}.research: expected true or false, got {research!r}")
    if (phase == BASELINE) != (doc["vendor"] == "nvidia"):
        raise CatalogueError(
            f"{where}.phase: the GPUs (vendor nvidia) and only they are {BASELINE}"
        )
    known = {
        "vendor", "name", "arch", "devices_per_card", "phase", "research", "throughput", *_FIGURES
    }  # fmt: skip
    if unknown := set(doc) - known:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
    figures = {name: _figure(doc.get(name), f"{where}.{name}") for name in _FIGURES}
    tp_doc = doc.get("throughput")
    if not isinstance(tp_doc, dict) or not tp_doc:
        raise CatalogueError(f"{where}.throughput: expected a mapping of work classes")
    throughput: dict[str, Figure] = {}
    for cls, fig in tp_doc.items():
        if cls not in WORK_CLASSES:
            raise CatalogueError(f"{where}.throughput.{cls}: expected one of {WORK_CLASSES}")
        throughput[cls] = _figure(fig, f"{where}.throughput.{cls}")
        if throughput[cls].value <= 0:
            raise CatalogueError(f"{where}.throughput.{cls}: must be > 0")
    spec = ModelSpec(
        key=key,
        vendor=doc["vendor"],
        name=doc["name"],
        arch=doc["arch"],
        devices_per_card=per_card,
        phase=phase,
        research=research,
        throughput=throughput,
        **figures,
    )
    _check(spec, where)
    return spec


def _check(s: ModelSpec, where: str) -> None:
    if not 0 < s.idle_w.value < s.tdp_w.value:
        raise CatalogueError(f"{where}: need 0 < idle_w < tdp_w")
    if not 0 < s.clock_min_mhz.value <= s.clock_max_mhz.value:
        raise CatalogueError(f"{where}: need 0 < clock_min_mhz <= clock_max_mhz")
    if not s.temp_full_load_c.value < s.thermal_throttle_c.value < s.thermal_shutdown_c.value:
        raise CatalogueError(f"{where}: need temp_full_load_c < thermal_throttle_c < shutdown")
    if s.core_count < 1 or s.memory_bytes.value <= 0:
        raise CatalogueError(f"{where}: cores and memory_bytes must be positive")


def parse_catalogue(doc: object, *, where: str = "catalogue") -> dict[str, ModelSpec]:
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != 1
        or not isinstance(doc.get("models"), dict)
    ):
        raise CatalogueError(f"{where}: expected schema: 1 and a models mapping")
    return {str(k): _model(str(k), v) for k, v in doc["models"].items()}


@functools.cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Mapping[str, ModelSpec]:
    """The catalogue at ``path`` (cached; the default is the one shipped with the emulators)."""
    with path.open(encoding="utf-8") as f:
        return parse_catalogue(yaml.safe_load(f), where=str(path))


def model(key: str) -> ModelSpec:
    """The spec of model ``key``; ``KeyError`` naming the known models if there is none."""
    cat = load_catalogue()
    if key not in cat:
        raise KeyError(f"unknown device model {key!r}; known: {', '.join(cat)}")
    return cat[key]
