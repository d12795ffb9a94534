"""``kwatt agent`` configuration (examples/agent.yaml), validated on load with the shared loader of
:mod:`kwatt.wire.settings` (durations, secrets, errors that name the file and key)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kwatt import collectors
from kwatt.collectors.plugin import Options
from kwatt.wire import topics
from kwatt.wire.model import validate_tag_value
from kwatt.wire.settings import (
    ConfigError,
    MqttConfig,
    from_mapping,
    parse_duration,
    read_yaml,
    secret_files,
    warn_if_secret_readable,
)

__all__ = [
    "AgentConfig",
    "CollectorEntry",
    "PublishConfig",
    "SpoolConfig",
    "agent_config_from",
    "load_agent_config",
]


@dataclass(frozen=True)
class CollectorEntry:
    """One collector of the agent: its type (see collectors.REGISTRY), schedule and options.

    ``options``: the plugin's ``Config``, validated by ``collectors.load(type).options()`` with
    ``timeout_s`` (the poll timeout) as its own; ``collectors.load(type).create(name, options)``
    builds the collector."""

    type: str
    name: str
    interval_s: float
    timeout_s: float
    options: Options


@dataclass(frozen=True)
class PublishConfig:
    """Batching and the outbound queue of the agent."""

    max_batch_points: int = 2000
    flush_interval_s: float = 1.0
    queue_max_bytes: int = 64 * 1024 * 1024
    qos: Literal[0, 1] = 1
    #: MQTT 5: hold a batch the broker acknowledged with "no matching subscribers" and resend it,
    #: instead of letting the broker discard it (no ingest subscribed yet).
    require_subscriber: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_points < 1:
            raise ValueError("publish.max_batch_points must be >= 1")
        if self.flush_interval_s <= 0:
            raise ValueError("publish.flush_interval_s must be > 0")


@dataclass(frozen=True)
class SpoolConfig:
    """The agent's on-disk spool (agent/spool.py, docs/delivery.md): store and forward.

    ``fsync``: ``always`` (fsync before a batch is published; survives power loss), ``interval``
    (fsync every ``fsync_interval_s``; a power cut loses at most that), ``never`` (kernel writeback).
    Every policy survives a SIGKILL of the agent. Measured costs: docs/delivery.md.
    """

    dir: str
    max_bytes: int = 256 * 1024 * 1024
    segment_bytes: int | None = None
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.dir:
            raise ValueError("spool.dir: empty path")
        if self.max_bytes < 4096:
            raise ValueError(f"spool.max_bytes: at least 4096, got {self.max_bytes}")
        if self.segment_bytes is not None and self.segment_bytes < 4096:
            raise ValueError(f"spool.segment_bytes: at least 4096, got {self.segment_bytes}")
        if self.fsync == "interval" and self.fsync_interval_s <= 0:
            raise ValueError("spool.fsync_interval_s: must be > 0 with fsync: interval")


@dataclass(frozen=True)
class AgentConfig:
    """``kwatt agent`` configuration (examples/agent.yaml)."""

    site: str
    node: str
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    #: On-disk spool; without one, batches wait in memory (``publish.queue_max_bytes``) and are
    #: lost if the agent dies.
    spool: SpoolConfig | None = None
    collectors: tuple[CollectorEntry, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        for key in ("site", "node"):
            value = getattr(self, key)
            try:
                topics.validate_segment(key, value)
                validate_tag_value(key, value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None


_COLLECTOR_KEYS = {"type", "name", "interval_s", "timeout_s"}


def _collector_entry(item: object, where: str) -> CollectorEntry:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'type' key")
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in collectors.REGISTRY:
        raise ConfigError(
            f"{where}.type: expected one of {sorted(collectors.REGISTRY)}, got {kind!r}"
        )
    name = item.get("name", kind)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string, got {name!r}")
    try:
        validate_tag_value("collector", name)
        interval_s = parse_duration(item.get("interval_s", 1.0))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:
        timeout_s = parse_duration(item.get("timeout_s", min(interval_s, 5.0)))
    except ValueError as e:
        raise ConfigError(f"{where}.timeout_s: {e}") from None
    if interval_s <= 0:
        raise ConfigError(f"{where}.interval_s: must be > 0")
    if timeout_s <= 0:
        raise ConfigError(f"{where}.timeout_s: must be > 0")
    raw = {k: v for k, v in item.items() if k not in _COLLECTOR_KEYS}
    options = collectors.load(kind).options(raw, timeout_s=timeout_s, where=where)
    return CollectorEntry(kind, name, interval_s, timeout_s, options)


def agent_config_from(data: object, *, where: str) -> AgentConfig:
    """Build an AgentConfig from a parsed YAML document (``where`` prefixes error messages)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    raw = dict(data)
    items = raw.pop("collectors", [])
    if not isinstance(items, list):
        raise ConfigError(f"{where}: collectors: expected a list")
    entries = tuple(_collector_entry(it, f"{where}: collectors[{i}]") for i, it in enumerate(items))
    names = [e.name for e in entries]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{where}: collectors: duplicate name(s) {sorted(dup)}; set 'name:'")
    cfg = from_mapping(AgentConfig, raw, where=f"{where}:")
    return dataclasses.replace(cfg, collectors=entries)


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Load and validate an agent config file."""
    p = Path(path)
    cfg = agent_config_from(read_yaml(p), where=str(p))
    for secret in secret_files(cfg.mqtt):
        warn_if_secret_readable(p, secret)
    return cfg
