"""MQTT topics of the wire (DESIGN §4) and the ingest's shared subscription (DESIGN §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwatt.wire import topics
from kwatt.wire.model import validate_tag_value
from kwatt.wire.topics import (
    KINDS,
    MAX_SEGMENT,
    PREFIX,
    TopicError,
    TopicName,
    inventory_topic,
    metrics_topic,
    parse_topic,
    status_topic,
    subscription,
    validate_segment,
)


def _ok(value: str) -> bool:
    try:
        validate_segment("x", value)
    except ValueError:
        return False
    return True


segments = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,30}", fullmatch=True),
    st.text(
        st.characters(categories=("L", "M", "N", "P", "S"), exclude_characters=',="\\+#/'),
        min_size=1,
        max_size=MAX_SEGMENT,
    ),
).filter(_ok)


def test_topic_builders():
    assert PREFIX == "kwatt/v1"
    assert KINDS == ("metrics", "status", "inventory")
    assert metrics_topic("seoul-dc1", "npu-07") == "kwatt/v1/seoul-dc1/npu-07/metrics"
    assert status_topic("seoul-dc1", "npu-07") == "kwatt/v1/seoul-dc1/npu-07/status"
    assert inventory_topic("seoul-dc1", "npu-07") == "kwatt/v1/seoul-dc1/npu-07/inventory"


def test_subscriptions():
    assert subscription() == "kwatt/v1/+/+/metrics"
    assert subscription("status") == "kwatt/v1/+/+/status"
    assert subscription(group="kwatt-ingest") == "$share/kwatt-ingest/kwatt/v1/+/+/metrics"
    assert subscription("inventory", group="g") == "$share/g/kwatt/v1/+/+/inventory"
    with pytest.raises(TopicError, match="unknown topic kind 'events'"):
        subscription("events")  # type: ignore[arg-type]
    for bad in ("a/b", "#", "+", "", "a b"):
        with pytest.raises(TopicError, match="group"):
            subscription(group=bad)


@settings(max_examples=200, deadline=None)
@given(site=segments, node=segments, kind=st.sampled_from(KINDS))
def test_build_then_parse_round_trips(site, node, kind):
    topic = {"metrics": metrics_topic, "status": status_topic, "inventory": inventory_topic}[kind](
        site, node
    )
    name = parse_topic(topic)
    assert name == TopicName(site, node, kind)
    assert str(name) == name.topic == topic
    assert validate_tag_value("site", name.site) == site  # segments are legal tag values


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ("", "site: empty topic segment"),
        ("a+b", "site: 'a+b' contains '+'"),
        ("+", "contains '+'"),
        ("a#", "contains '#'"),
        ("a/b", "contains '/'"),
        ("a\0b", "NUL or a non-printable character"),
        ("a\tb", "non-printable"),
        ("a\u200bb", "non-printable"),  # zero-width space
        ("x" * (MAX_SEGMENT + 1), f"65 characters, at most {MAX_SEGMENT}"),
        ("a b", "not usable as a tag value"),
        ("a,b", "not usable as a tag value"),
        ("a=b", "not usable as a tag value"),
        ('a"b', "not usable as a tag value"),
        ("a\\b", "not usable as a tag value"),
    ],
)
def test_bad_segments_are_refused_by_name(site, message):
    with pytest.raises(TopicError) as e:
        metrics_topic(site, "n1")
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(TopicError, match="node"):
        status_topic("s1", site)
    with pytest.raises(ValueError, match="group"):
        validate_segment("group", site)


def test_a_64_character_segment_is_fine():
    assert metrics_topic("x" * MAX_SEGMENT, "n").split("/")[2] == "x" * MAX_SEGMENT


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("kwatt/v1/s/n/metrics/extra", "6 levels"),
        ("kwatt/v1/s/metrics", "4 levels"),
        ("kwatt/v1", "2 levels"),
        ("kwatt/v2/s/n/metrics", "unsupported wire version 'v2'"),
        ("kwat/v1/s/n/metrics", "not under kwatt/v1/"),
        ("/kwatt/v1/s/n/metrics", "not under kwatt/v1/"),
        ("", "not under kwatt/v1/"),
        ("$share/g/kwatt/v1/s/n/metrics", "not under kwatt/v1/"),
        (
            "kwatt/v1/s/n/events",
            "unknown kind 'events'; expected one of metrics, status, inventory",
        ),
        ("kwatt/v1/s/n/", "unknown kind ''"),
        ("kwatt/v1/+/n/metrics", "site: '+' contains '+'"),
        ("kwatt/v1/s/#/metrics", "node: '#' contains '#'"),
        ("kwatt/v1//n/metrics", "site: empty topic segment"),
        ("kwatt/v1/s//metrics", "node: empty topic segment"),
        ("kwatt/v1/s/a b/metrics", "node: not usable as a tag value"),
        ("kwatt/v1/s/a\0/metrics", "node:"),
    ],
)
def test_parse_topic_refuses_everything_else(topic, message):
    with pytest.raises(TopicError) as e:
        parse_topic(topic)
    assert message in str(e.value)
    assert f"topic {topic!r}" in str(e.value)


def test_long_topics_are_cut_in_messages():
    with pytest.raises(TopicError) as e:
        parse_topic("kwatt/v1/" + "x/" * 1000)
    assert len(str(e.value)) < 400


def test_module_surface():
    assert issubclass(topics.TopicError, ValueError)
    assert set(topics.__all__) >= {"metrics_topic", "parse_topic", "subscription", "PREFIX"}
