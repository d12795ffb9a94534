"""The unit the agent publishes: one encoded MQTT payload with its per-node sequence number."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Batch"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One encoded MQTT payload: line protocol for ``points`` points, numbered ``seq``."""

    seq: int
    payload: bytes
    points: int
