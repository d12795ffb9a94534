"""``kwatt ingest`` configuration (examples/ingest.yaml), validated on load with the shared loader of
:mod:`kwatt.wire.settings`."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kwatt.wire import topics
from kwatt.wire.settings import (
    InfluxConfig,
    MqttConfig,
    from_mapping,
    read_yaml,
    secret_files,
    warn_if_secret_readable,
)

__all__ = ["BatchConfig", "IngestConfig", "load_ingest_config"]


@dataclass(frozen=True)
class BatchConfig:
    """How the ingest groups messages into InfluxDB writes."""

    max_points: int = 5000
    max_delay_s: float = 0.2
    max_unacked_messages: int = 10000
    max_payload_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_points < 1 or self.max_unacked_messages < 1:
            raise ValueError("batch: max_points and max_unacked_messages must be >= 1")


@dataclass(frozen=True)
class IngestConfig:
    """``kwatt ingest`` configuration (examples/ingest.yaml)."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    group: str = "kwatt-ingest"
    #: Subscribe through the shared subscription ``$share/<group>/…`` (workers split the load). With
    #: ``false`` a single worker subscribes plainly (``group`` unused): Mosquitto 2.0 restores a
    #: persistent session's plain subscription after a restart (with persistence on) and queues
    #: messages for it while the worker is away, which it does not do for shared ones
    #: (docs/delivery.md). Run exactly one worker per client id then.
    shared: bool = True
    deadletter_dir: str | None = None
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: A line stamped further ahead of the ingest's clock than this is dead-lettered (a node whose
    #: clock is that far off would corrupt every window it is joined into).
    max_future_s: float = 3600.0
    #: Each node's clock offset is estimated over windows this long and written per window
    #: (``ingest`` measurement, ``clock_offset_s``; DESIGN §4).
    clock_window_s: float = 60.0

    def __post_init__(self) -> None:
        topics.validate_segment("group", self.group)
        if not self.max_future_s > 0:
            raise ValueError(f"max_future_s: expected > 0 s, got {self.max_future_s!r}")
        if not self.clock_window_s > 0:
            raise ValueError(f"clock_window_s: expected > 0 s, got {self.clock_window_s!r}")

    def client_id(self) -> str:
        return self.mqtt.client_id or f"kwatt-ingest-{socket.gethostname()}"


def load_ingest_config(path: str | os.PathLike[str]) -> IngestConfig:
    """Load and validate an ingest config file."""
    p = Path(path)
    cfg = from_mapping(IngestConfig, read_yaml(p), where=f"{p}:")
    for secret in (*secret_files(cfg.mqtt), cfg.influx.password_file, cfg.influx.token_file):
        warn_if_secret_readable(p, secret)
    return cfg
