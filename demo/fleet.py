"""The demo's fleet: which catalogue model (cards of it) runs which service on each node.

:data:`DEFAULT_FLEET` is phase 1 (each service on a domestic NPU next to a GPU baseline running the
same service); :data:`PHASE_FLEETS` has the fleet of each K-Cloud phase (``kwatt demo --phase``);
:func:`parse_fleet` reads ``--fleet MODEL=SERVICE,…`` and :func:`fleet_specs` takes the first N
node specs cyclically (``--nodes N``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_FLEET", "PHASE_FLEETS", "NodeSpec", "fleet_specs", "parse_fleet"]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the demo fleet: a catalogue model (cards of it) running one service."""

    model: str
    service: str


#: The default fleet, in the order ``--nodes N`` takes it (cyclically): each phase-1 service on a
#: domestic NPU, then a GPU baseline node running the same service (docs/emulators.md catalogue):
#: the chatbot on FuriosaAI RNGD vs H100 (the pair of FuriosaAI's published Llama 3.1 8B figures);
#: traffic (CCTV detection) on FuriosaAI Warboy vs T4, both ~60-70 W inference cards; food (image
#: classification) on Rebellions ATOM vs L4, both ~70 W cards with MLPerf ResNet-50 results; and
#: construction hazard detection on Sapeon X220-compact vs A100 (the data-centre GPU of phase 1).
DEFAULT_FLEET: tuple[NodeSpec, ...] = (
    NodeSpec("rngd", "chatbot"),
    NodeSpec("h100", "chatbot"),
    NodeSpec("warboy", "traffic"),
    NodeSpec("t4", "traffic"),
    NodeSpec("atom", "food"),
    NodeSpec("l4", "food"),
    NodeSpec("x220-compact", "construction"),
    NodeSpec("a100", "construction"),
)


#: The fleet of each K-Cloud phase (``--phase``), GPU baselines on the same services. Phase 2 (DRAM-PIM):
#: what PIM is for, the memory-bound LLM decode of the chatbot: SK hynix AiMX (GDDR6-AiM card) vs
#: H100, then an MI100 with Samsung HBM-PIM. Phase 3 (NVM analog PIM): the IBM HERMES PCM research
#: chip on the vision services its published 8-bit MVM figures allow (CCTV detection vs T4, image
#: classification vs L4); it has no LLM figure (4.2 M weights on chip). docs/emulators.md has the
#: figures and their status.
PHASE_FLEETS: dict[str, tuple[NodeSpec, ...]] = {
    "phase1_npu": DEFAULT_FLEET,
    "phase2_dram_pim": (
        NodeSpec("aimx", "chatbot"),
        NodeSpec("h100", "chatbot"),
        NodeSpec("mi100-pim", "chatbot"),
    ),
    "phase3_nvm_analog_pim": (
        NodeSpec("hermes", "traffic"),
        NodeSpec("t4", "traffic"),
        NodeSpec("hermes", "food"),
        NodeSpec("l4", "food"),
    ),
}


def parse_fleet(text: str) -> tuple[NodeSpec, ...]:
    """``rngd=chatbot,h100=chatbot`` → node specs (validated by the emulator when it starts)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        model, sep, service = part.partition("=")
        if not sep or not model.strip() or not service.strip():
            raise ValueError(f"--fleet: {part!r}: expected MODEL=SERVICE")
        out.append(NodeSpec(model.strip(), service.strip()))
    if not out:
        raise ValueError("--fleet: no node specs")
    return tuple(out)


def fleet_specs(nodes: int, fleet: Sequence[NodeSpec] = DEFAULT_FLEET) -> list[NodeSpec]:
    """The first ``nodes`` specs of ``fleet``, cyclically."""
    return [fleet[k % len(fleet)] for k in range(nodes)]
