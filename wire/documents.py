"""The two retained JSON documents of the wire (DESIGN §4) and their codec, used by both sides.

* ``kwatt/v1/<site>/<node>/status``: :class:`Status`, ``{"state":"online"|"offline",
  "agent":"<version>","since":<ns>,"cause":"lost"|"stopped"}``. ``cause`` only when offline: the
  last will says ``lost`` (the broker saw the connection die), a clean shutdown ``stopped``.
  ``since`` is the agent's start time in ns since the epoch.
* ``kwatt/v1/<site>/<node>/inventory``: a JSON list with one object per device, a
  :class:`kwatt.wire.model.DeviceInfo` (vendor, model, id, collector, driver and firmware version,
  PCI bus id).

The agent builds them with :func:`encode_status` and :func:`encode_inventory`; readers (``kwatt
top``, tests) parse them with :func:`decode_status` and :func:`decode_inventory`. The encoders write
compact JSON (no spaces, ASCII with ``\\u`` escapes), the keys in the order above; the inventory
writes every key of every device, ``null`` for an absent version. The decoders check every known key
and raise :class:`DocumentError` (a ``ValueError``) naming the document and the field; keys they do
not know are ignored, and ``agent`` and ``since`` may be absent (``None``), so a hand-written
``{"state":"offline"}`` is still a status. Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from kwatt.wire.model import DeviceInfo

__all__ = [
    "CAUSES",
    "STATES",
    "DocumentError",
    "OfflineCause",
    "State",
    "Status",
    "decode_inventory",
    "decode_status",
    "encode_inventory",
    "encode_status",
]

State = Literal["online", "offline"]
OfflineCause = Literal["lost", "stopped"]
STATES: tuple[State, ...] = ("online", "offline")
#: ``lost``: the last will (dead agent, host or network); ``stopped``: a clean shutdown.
CAUSES: tuple[OfflineCause, ...] = ("lost", "stopped")

_INT64_MAX = 2**63 - 1
_Choice = TypeVar("_Choice", bound=str)
#: Characters of a bad value quoted in an error message.
_QUOTE = 60


class DocumentError(ValueError):
    """A ``status`` or ``inventory`` payload that is not what DESIGN §4 says; names the field."""


@dataclass(frozen=True, slots=True)
class Status:
    """The retained ``status`` document of one agent.

    ``agent`` is the agent's version and ``since_ns`` its start time (ns since the epoch); both are
    ``None`` only in documents that leave them out. ``cause`` is set only when ``state`` is
    ``offline``. Construction checks the combination and raises :class:`DocumentError`.
    """

    state: State
    agent: str | None = None
    since_ns: int | None = None
    cause: OfflineCause | None = None

    def __post_init__(self) -> None:
        _choice("status.state", self.state, STATES)
        if self.cause is not None:
            _choice("status.cause", self.cause, CAUSES)
            if self.state != "offline":
                raise DocumentError(
                    f"status.cause: only an offline status has one, got {self.cause!r} with "
                    f"state {self.state!r}"
                )
        if self.agent is not None and not isinstance(self.agent, str):
            raise DocumentError(f"status.agent: expected a string, got {_type_name(self.agent)}")
        if self.since_ns is not None and not 0 <= self.since_ns <= _INT64_MAX:
            raise DocumentError(f"status.since: {self.since_ns} ns is outside 0..2^63-1")


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_status(status: Status) -> bytes:
    """The payload of ``status``: ``{"state":...,"agent":...,"since":...,"cause":...}``, a key
    left out when its value is ``None``."""
    doc: dict[str, object] = {"state": status.state}
    if status.agent is not None:
        doc["agent"] = status.agent
    if status.since_ns is not None:
        doc["since"] = status.since_ns
    if status.cause is not None:
        doc["cause"] = status.cause
    return _dumps(doc)


def encode_inventory(devices: Sequence[DeviceInfo]) -> bytes:
    """The payload of the ``inventory`` topic: one object per device, every key of
    :class:`DeviceInfo` in its field order, ``null`` for an absent value."""
    return _dumps(
        [
            {
                "vendor": d.vendor,
                "model": d.model,
                "id": d.id,
                "collector": d.collector,
                "driver_version": d.driver_version,
                "firmware_version": d.firmware_version,
                "bus_id": d.bus_id,
            }
            for d in devices
        ]
    )


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def _loads(what: str, payload: bytes) -> object:
    try:
        return json.loads(payload)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError included
        raise DocumentError(f"{what}: not a JSON document: {e}") from None
    except RecursionError:
        raise DocumentError(f"{what}: not a JSON document: nested too deeply") from None


def _str(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise DocumentError(f"{where}: expected a string, got {_type_name(value)} {_quote(value)}")
    return value


def _opt_str(where: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise DocumentError(
            f"{where}: expected a string or null, got {_type_name(value)} {_quote(value)}"
        )
    return value


def _choice(where: str, value: object, choices: tuple[_Choice, ...]) -> _Choice:
    for c in choices:
        if value == c:
            return c
    raise DocumentError(f"{where}: expected one of {', '.join(choices)}, got {_quote(value)}")


def decode_status(payload: bytes) -> Status:
    """Parse a ``status`` payload, or raise :class:`DocumentError` naming the field."""
    doc = _loads("status", payload)
    if not isinstance(doc, dict):
        raise DocumentError(f"status: expected a JSON object, got {_type_name(doc)}")
    if "state" not in doc:
        raise DocumentError("status.state: missing")
    state = _choice("status.state", doc["state"], STATES)
    agent = _opt_str("status.agent", doc.get("agent"))
    since = doc.get("since")
    if since is not None and type(since) is not int:
        raise DocumentError(
            f"status.since: expected an integer (ns since the epoch), got {_type_name(since)} "
            f"{_quote(since)}"
        )
    cause = doc.get("cause")
    return Status(
        state,
        agent,
        since,
        None if cause is None else _choice("status.cause", cause, CAUSES),
    )


_REQUIRED = ("vendor", "model", "id", "collector")
_OPTIONAL = ("driver_version", "firmware_version", "bus_id")


def decode_inventory(payload: bytes) -> tuple[DeviceInfo, ...]:
    """Parse an ``inventory`` payload, or raise :class:`DocumentError` naming the entry and field
    (``inventory[2].vendor: ...``)."""
    doc = _loads("inventory", payload)
    if not isinstance(doc, list):
        raise DocumentError(f"inventory: expected a JSON list, got {_type_name(doc)}")
    out = []
    for i, entry in enumerate(doc):
        where = f"inventory[{i}]"
        if not isinstance(entry, dict):
            raise DocumentError(f"{where}: expected a JSON object, got {_type_name(entry)}")
        for key in _REQUIRED:
            if key not in entry:
                raise DocumentError(f"{where}.{key}: missing")
        vendor, model, dev_id, collector = (_str(f"{where}.{k}", entry[k]) for k in _REQUIRED)
        driver, firmware, bus = (_opt_str(f"{where}.{k}", entry.get(k)) for k in _OPTIONAL)
        out.append(DeviceInfo(vendor, model, dev_id, collector, driver, firmware, bus))
    return tuple(out)
