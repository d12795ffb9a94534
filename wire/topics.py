"""MQTT topic names of the wire (DESIGN §4) and the ingest's shared subscription (DESIGN §5).

Every agent publishes under ``kwatt/v1/<site>/<node>/`` to ``metrics`` (line protocol), ``status``
(retained JSON, also the last will) and ``inventory`` (retained JSON). ``site`` and ``node`` become
the ``site``/``node`` tags of every point, so a segment must be a legal MQTT topic level *and* a
legal kwatt tag value: non-empty, at most :data:`MAX_SEGMENT` characters, printable, and free of
the MQTT wildcards and separator (``+ # /``) and of what :func:`kwatt.wire.model.validate_tag_value`
refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from kwatt.wire.model import validate_tag_value

__all__ = [
    "KINDS",
    "MAX_SEGMENT",
    "PREFIX",
    "TopicError",
    "TopicKind",
    "TopicName",
    "inventory_topic",
    "metrics_topic",
    "parse_topic",
    "status_topic",
    "subscription",
    "validate_segment",
]

#: The first two levels of every kwatt topic: the application and the wire version.
PREFIX = "kwatt/v1"
#: Longest site, node or subscription-group name.
MAX_SEGMENT = 64

TopicKind = Literal["metrics", "status", "inventory"]
KINDS: tuple[TopicKind, ...] = get_args(TopicKind)


class TopicError(ValueError):
    """A topic or topic segment that is not part of the kwatt wire (DESIGN §4)."""


@dataclass(frozen=True, slots=True)
class TopicName:
    """A parsed ``kwatt/v1/<site>/<node>/<kind>`` topic."""

    site: str
    node: str
    kind: TopicKind

    @property
    def topic(self) -> str:
        return f"{PREFIX}/{self.site}/{self.node}/{self.kind}"

    def __str__(self) -> str:
        return self.topic


def validate_segment(name: str, value: str) -> str:
    """Return ``value`` if it may be the ``name`` level of a topic (site, node, group), else raise.

    Raises :class:`TopicError` (a ``ValueError``) naming the segment and the problem.
    """
    if not isinstance(value, str):
        raise TopicError(f"{name}: expected a string, got {type(value).__name__}")
    if not value:
        raise TopicError(f"{name}: empty topic segment")
    if len(value) > MAX_SEGMENT:
        raise TopicError(f"{name}: {len(value)} characters, at most {MAX_SEGMENT} allowed")
    if "\0" in value or not value.isprintable():
        raise TopicError(f"{name}: {value!r} contains NUL or a non-printable character")
    for bad in "+#/":
        if bad in value:
            raise TopicError(f"{name}: {value!r} contains {bad!r} (MQTT wildcard or separator)")
    try:
        validate_tag_value(name, value)
    except ValueError as e:
        raise TopicError(f"{name}: not usable as a tag value: {e}") from None
    return value


def _topic(site: str, node: str, kind: TopicKind) -> str:
    validate_segment("site", site)
    validate_segment("node", node)
    return f"{PREFIX}/{site}/{node}/{kind}"


def metrics_topic(site: str, node: str) -> str:
    """``kwatt/v1/<site>/<node>/metrics``: line protocol, QoS 1, not retained (DESIGN §4)."""
    return _topic(site, node, "metrics")


def status_topic(site: str, node: str) -> str:
    """``kwatt/v1/<site>/<node>/status``: retained JSON state, also the last will (DESIGN §4)."""
    return _topic(site, node, "status")


def inventory_topic(site: str, node: str) -> str:
    """``kwatt/v1/<site>/<node>/inventory``: retained JSON device list (DESIGN §4)."""
    return _topic(site, node, "inventory")


def subscription(kind: TopicKind = "metrics", group: str | None = None) -> str:
    """Topic filter for every node's ``kind`` topic; with ``group``, an MQTT 5 shared subscription.

    ``subscription()`` → ``kwatt/v1/+/+/metrics``; ``subscription(group="ingest")`` →
    ``$share/ingest/kwatt/v1/+/+/metrics`` (DESIGN §5: ingest workers split the load).
    """
    if kind not in KINDS:
        raise TopicError(f"unknown topic kind {kind!r}; expected one of {', '.join(KINDS)}")
    filt = f"{PREFIX}/+/+/{kind}"
    if group is None:
        return filt
    validate_segment("group", group)
    return f"$share/{group}/{filt}"


def parse_topic(topic: str) -> TopicName:
    """Split a received ``kwatt/v1/<site>/<node>/<kind>`` topic, or raise :class:`TopicError`."""
    levels = topic.split("/")
    expected = f"expected {PREFIX}/<site>/<node>/<kind> with kind one of {', '.join(KINDS)}"
    if levels[0] == "kwatt" and len(levels) > 1 and levels[1] != "v1":
        raise TopicError(f"topic {topic[:200]!r}: unsupported wire version {levels[1][:20]!r}")
    if "/".join(levels[:2]) != PREFIX:
        raise TopicError(f"topic {topic[:200]!r}: not under {PREFIX}/; {expected}")
    if len(levels) != 5:
        raise TopicError(f"topic {topic[:200]!r}: {len(levels)} levels, {expected}")
    _, _, site, node, kind = levels
    for seg_name, seg in (("site", site), ("node", node)):
        try:
            validate_segment(seg_name, seg)
        except TopicError as e:
            raise TopicError(f"topic {topic[:200]!r}: {e}") from None
    for k in KINDS:
        if kind == k:
            return TopicName(site, node, k)
    raise TopicError(
        f"topic {topic[:200]!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
    )
