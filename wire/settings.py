"""Settings every part of kwatt shares, and the YAML-to-dataclass loader they are read with.

Every section is a frozen dataclass; :func:`from_mapping` builds one from parsed YAML by looking at the
dataclass's type hints, so the dataclass *is* the schema. Unknown keys, wrong types and bad durations
are :class:`ConfigError`s that name the file, the key path (``collectors[1].timeout_s``) and what was
expected. Keys ending in ``_s`` are durations: a number of seconds or a string such as ``"500ms"``,
``"2s"``, ``"1m"``, ``"1h"``. Secrets are never values in these files: they are read from files
(``*_file``) or environment variables (``*_env``) when used (see :func:`read_secret`).

Here: the loader, and the client settings of the wire's two ends, MQTT (:class:`MqttConfig`,
:class:`TlsConfig`) and InfluxDB (:class:`InfluxConfig`). The agent's and the ingest's own sections
are in ``kwatt.agent.config`` and ``kwatt.ingest.config``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "InfluxConfig",
    "MqttConfig",
    "TlsConfig",
    "from_mapping",
    "parse_duration",
    "read_secret",
    "read_yaml",
    "secret_files",
    "warn_if_secret_readable",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file (or value) that cannot be used; the message says where and why."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 2s or 500ms, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"expected a duration such as 2s, 500ms, 1m or 1h, got {value!r}")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as 2s or 500ms, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative duration, got {value!r}")
    return seconds


def _type_name(tp: object) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true/false",
        }.get(tp.__name__, tp.__name__)
    return str(tp)


def _convert(tp: Any, value: object, where: str, key: str) -> object:
    """Convert one YAML value to ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: no accepted form: {errors}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_convert(item_tp, v, f"{where}[{i}]", key) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_mapping(tp, value, where=where)
    if tp is float and key.endswith("_s"):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(
        f"{where}: unsupported option type {_type_name(tp)}"
    )  # a bug in a Config class


def _join(where: str, key: str) -> str:
    """``file.yaml:`` + ``mqtt`` → ``file.yaml: mqtt``; ``file.yaml: mqtt`` + ``url`` → ``...mqtt.url``."""
    if not where:
        return key
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def from_mapping(cls: type[T], data: object, *, where: str) -> T:
    """Build dataclass ``cls`` from a YAML mapping; unknown keys and bad values raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(':')}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{where.rstrip(':')}: unknown key {unknown[0]!r} (expected one of: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, object] = {}
    for name, f in fields.items():
        sub = _join(where, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{sub}: required key missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where.rstrip(':') or 'top level'}: {e}") from None


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class TlsConfig:
    """TLS for MQTT (``mqtts://``) or HTTPS: CA verification, optional client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Skip the server hostname check (the certificate chain is still verified). Never default.
    insecure_skip_hostname: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")


@dataclass(frozen=True)
class MqttConfig:
    """How to reach the broker. ``url`` is ``mqtt://host:port`` or ``mqtts://host:port``."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    protocol: Literal[3, 5] = 5
    keepalive_s: float = 30.0
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        m = re.fullmatch(r"(mqtts?)://([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d+))?/?", self.url)
        if m is None:
            raise ValueError(
                f"mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], got {self.url!r}"
            )
        if self.password_file and self.password_env:
            raise ValueError("mqtt: give password_file or password_env, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt: reconnect_max_s must be >= reconnect_min_s")

    @property
    def host(self) -> str:
        return self._parts()[1]

    @property
    def port(self) -> int:
        return int(self._parts()[2])

    @property
    def use_tls(self) -> bool:
        return self._parts()[0] == "mqtts" or self.tls is not None

    def _parts(self) -> tuple[str, str, str]:
        m = re.fullmatch(r"(mqtts?)://([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d+))?/?", self.url)
        assert m is not None
        scheme, host = m.group(1), m.group(2).strip("[]")
        default = "8883" if scheme == "mqtts" else "1883"
        return scheme, host, m.group(3) or default

    def password(self) -> str | None:
        return read_secret(self.password_file, self.password_env, "mqtt password")


@dataclass(frozen=True)
class InfluxConfig:
    """Where the ingest writes. ``api: v1`` posts line protocol to ``/write`` (InfluxDB 1.x, the 2.x
    v1-compatibility API, 3.x); ``api: v2`` uses influxdb-client's write API (2.x, 3.x, Cloud)."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "kwatt"
    retention_policy: str | None = None
    create_database: bool = True
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    org: str = "-"
    bucket: str | None = None
    timeout_s: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True
    gzip: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", self.url):
            raise ValueError(f"influx.url: expected http(s)://host:port, got {self.url!r}")
        if self.password_file and self.password_env:
            raise ValueError("influx: give password_file or password_env, not both")
        if self.token_file and self.token_env:
            raise ValueError("influx: give token_file or token_env, not both")

    def password(self) -> str | None:
        return read_secret(self.password_file, self.password_env, "influx password")

    def token(self) -> str | None:
        return read_secret(self.token_file, self.token_env, "influx token")


# ---------------------------------------------------------------- loading


def read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def secret_files(mqtt: MqttConfig) -> tuple[str | None, ...]:
    """Files of an MQTT section that hold a secret: the password and the TLS private key."""
    return (mqtt.password_file, mqtt.tls.key_file if mqtt.tls else None)


def warn_if_secret_readable(config: Path, secret: str | None) -> None:
    if not secret:
        return
    try:
        mode = Path(secret).stat().st_mode
    except OSError:
        return  # reported when the secret is read
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s: secret file %s is readable by group/others (mode %o); chmod 600 it",
            config,
            secret,
            stat.S_IMODE(mode),
        )


def read_secret(path: str | None, env: str | None, what: str) -> str | None:
    """Read a secret from a file (first line, stripped) or an environment variable."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from None
        value = text.splitlines()[0].strip() if text.strip() else ""
        if not value:
            raise ConfigError(f"{what}: {path} is empty")
        return value
    if env:
        from_env = os.environ.get(env)
        if not from_env:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return from_env
    return None
